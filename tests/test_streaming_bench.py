"""scripts/bench/streaming.py on a tiny configuration: it runs, its modes emit the same frames,
and buffered streaming over all audio reproduces the cache-aware outputs (no timing asserts)."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "streaming.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_streaming", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_rows_and_exactness(one_torch_thread):
    bench = load_bench()
    model = bench.build("mini_en")
    feats = bench.features(1.5, None)
    ctx = (32, 3)
    args = argparse.Namespace(all=True, streams=2, repeats=1)
    with torch.inference_mode():
        # every mode emits the same frames per chunk; the flush is merged into the last chunk
        ref: list[torch.Tensor] = []
        bench.run_cache_aware(model, feats, ctx, "kv", ref)
        emitted = [o.shape[1] for o in ref]
        assert sum(emitted) == int(model.encoder.output_lengths(torch.tensor([feats.shape[1]])))
        got: list[torch.Tensor] = []
        bench.run_buffered(model, feats, ctx, emitted, False, got)
        for a, b in zip(got, ref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
        flops = bench.flops_per_step(
            lambda c: bench.run_buffered(model, feats, ctx, emitted, True, None, c)
        )
        assert len(flops) == len(emitted) and (flops > 0).all()
        rows, notes = bench.bench(model, "mini_en", ctx, feats, args)
    assert len(rows) == 6 and all(r.count("|") == 10 for r in rows)
    exact = [n for n in notes if "buffered (all audio)" in n]
    assert float(re.search(r"new frames (\S+)", exact[0]).group(1)) < 1e-4
    assert "buffered / cache-aware" in notes[-1]
