"""Benchmark: cache-aware streaming vs buffered streaming of the same streaming_conformer encoder.

Same model, same chunk (``right + 1`` encoder frames of 80 ms), same ``[left, right]`` context,
``--seconds`` of audio (default 10 s: a synthetic tone sweep + noise through the 80-dim Kaldi
fbank, or ``--audio FILE``), random weights (timing only), CPU, ``--threads`` torch threads
(default 1), inference mode. Audio arrives one chunk of input frames at a time:

- ``cache-aware``: ``encoder.stream_step`` encodes only the new chunk, with per-layer attention
  / convolution caches and the subsampling's pre-encode buffer (the final remainder flushed).
- ``cache-aware + rnnt``: ``model.step`` (CMVN + encoder step + batched greedy RNN-T decoding of
  the new frames): the whole per-chunk work of ``audiokit asr stream`` minus the features. The
  joint's blank bias is raised so random weights emit (almost) only blanks: one joint call a
  frame; a trained model adds one predictor + joint step per emitted token.
- ``buffered (window)``: each chunk re-runs the offline encoder over a buffer holding the
  model's whole left context plus the new chunk (``left + right + 1`` output frames of input):
  the least a buffered system must re-encode to give every new frame its trained context.
- ``buffered (all)``: each chunk re-runs the offline encoder over all audio received so far.

Compute per chunk = wall time of one step (min / mean / p95 over all steps of ``--repeats`` runs
after a warm-up run); RTF = a run's total compute / audio duration (mean over runs, and the best
run: the least disturbed on a shared machine); ratio = buffered / cache-aware compute (best runs).
As a check that both do the same work, ``buffered (all)``'s outputs for each new chunk are
compared with the cache-aware ones (max abs difference; they should agree to float noise).

    python scripts/bench/streaming.py [--models librispeech mini_en] [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from audiokit.asr.streaming import StreamingConformer
from audiokit.features.frontend import build_frontend

REPO = Path(__file__).resolve().parents[2]
# name -> (training config, vocabulary size incl. <blank> and <sos/eos>)
MODELS = {
    "librispeech": (REPO / "egs/librispeech/asr1/conf/train_streaming.yaml", 514),
    "mini_en": (REPO / "egs/mini_en/asr1/conf/train_streaming.yaml", 258),
}
RATE = 16000


def build(name: str) -> StreamingConformer:
    path, vocab = MODELS[name]
    args = yaml.safe_load(path.read_text())["model"]["args"]
    torch.manual_seed(0)
    model = StreamingConformer(input_dim=80, vocab_size=vocab, **args).eval()
    with torch.no_grad():  # random weights would emit max_symbols tokens a frame: favour blank
        model.joint.out.bias[-1] = 20.0
    return model


def features(seconds: float, audio: Path | None) -> torch.Tensor:
    """``(1, T, 80)`` fbank of ``seconds`` of audio (a file, looped, or a synthetic sweep)."""
    n = int(seconds * RATE)
    if audio is not None:
        from audiokit.audio import load

        x, _ = load(audio, sample_rate=RATE, channel="mix")
        x = np.resize(x, n).astype(np.float32)
    else:
        t = np.arange(n) / RATE
        rng = np.random.default_rng(0)
        sweep = np.sin(2 * np.pi * (200 * t + 150 * t**2 / seconds)) * (0.5 + 0.4 * np.sin(3 * t))
        x = (0.3 * sweep + 0.02 * rng.standard_normal(n)).astype(np.float32)
    fe = build_frontend({"type": "fbank", "num_mel_bins": 80, "dither": 0.0}, RATE)
    feats, _ = fe(torch.from_numpy(x)[None], torch.tensor([n]))
    return feats


def run_cache_aware(model: StreamingConformer, feats, ctx, with_decoder: bool):
    """Per-step seconds and the encoder outputs (list of (1, e, d)) of one streaming pass."""
    enc = model.encoder
    step_in = model.subsampling_factor * (ctx[1] + 1)
    times, outs = [], []
    if with_decoder:
        state = model.init_state(1, att_context=ctx, decoder="rnnt")
    else:
        est = enc.init_state(1, ctx)
    feats_n = model.cmvn(feats, torch.tensor([feats.shape[1]]))  # as model.step does per chunk
    starts = list(range(0, feats.shape[1], step_in))
    for s in [*starts, None]:  # None: the final flush
        chunk = feats[:, s : s + step_in] if s is not None else feats[:, :0]
        t0 = time.perf_counter()
        if with_decoder:
            if s is None:
                model.flush(state)
            else:
                _, state = model.step(chunk, torch.tensor([chunk.shape[1]]), state)
        else:
            x = feats_n[:, s : s + step_in] if s is not None else feats_n[:, :0]
            out, _, est = enc.stream_step(x, torch.tensor([x.shape[1]]), est, final=s is None)
            outs.append(out)
        times.append(time.perf_counter() - t0)
    times[-2] += times.pop()  # the flush belongs to the last chunk's work
    return times, outs


def run_buffered(
    model: StreamingConformer,
    feats: torch.Tensor,
    ctx: tuple[int, int],
    window: bool,
    emitted: list[int],
    ref: list[torch.Tensor] | None = None,
) -> tuple[list[float], float]:
    """Per-step seconds of re-encoding a buffer for each chunk, and the max |diff| of the new
    frames vs ``ref`` (the cache-aware outputs). ``emitted``: frames the cache-aware pass gave
    at each step (its last step + flush merged), so both emit the same frames per step."""
    enc = model.encoder
    s_f = model.subsampling_factor
    step_in = s_f * (ctx[1] + 1)
    feats_n = model.cmvn(feats, torch.tensor([feats.shape[1]]))
    times, diff, done = [], 0.0, 0
    for k, e in enumerate(emitted):
        end = min((k + 1) * step_in, feats.shape[1])
        w0 = max(0, done - ctx[0]) if window else 0  # first output frame in the buffer
        t0 = time.perf_counter()
        x = feats_n[:, s_f * w0 : end]
        out, _ = enc(x, torch.tensor([x.shape[1]]), ctx)
        times.append(time.perf_counter() - t0)
        if ref is not None and e:
            diff = max(diff, float((out[:, done - w0 : done - w0 + e] - ref[k]).abs().max()))
        done += e
    return times, diff


def stats(times: list[list[float]], audio_s: float) -> tuple[float, float, float, float, float]:
    """Per step over all runs: min, mean and p95 ms; RTF: mean over runs and the best run."""
    flat = np.array([t for run in times for t in run]) * 1000
    totals = np.array([sum(run) for run in times])
    return (
        float(flat.min()),
        float(flat.mean()),
        float(np.percentile(flat, 95)),
        float(totals.mean()) / audio_s,
        float(totals.min()) / audio_s,
    )


def bench(name: str, ctx: tuple[int, int], feats, repeats: int, audio_s: float) -> list[str]:
    model = build(name)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    _, outs = run_cache_aware(model, feats, ctx, with_decoder=False)
    ref = outs[:-2] + [torch.cat(outs[-2:], dim=1)]  # last chunk + flush, as the steps merge
    emitted = [o.shape[1] for o in ref]
    _, diff = run_buffered(model, feats, ctx, False, emitted, ref)
    modes: dict[str, Callable[[], list[float]]] = {
        "cache-aware": lambda: run_cache_aware(model, feats, ctx, False)[0],
        "cache-aware + rnnt": lambda: run_cache_aware(model, feats, ctx, True)[0],
        "buffered (window)": lambda: run_buffered(model, feats, ctx, True, emitted)[0],
        "buffered (all)": lambda: run_buffered(model, feats, ctx, False, emitted)[0],
    }
    times: dict[str, list[list[float]]] = {m: [] for m in modes}
    for fn in modes.values():
        fn()  # warm-up
    for r in range(repeats):  # round-robin so that load changes hit every mode alike
        names = list(modes)
        for m in names[r % len(names) :] + names[: r % len(names)]:
            times[m].append(modes[m]())
    base = stats(times["cache-aware"], audio_s)[4]
    rows = []
    chunk_ms = (ctx[1] + 1) * 80
    for m in modes:
        lo, mean, p95, rtf, best = stats(times[m], audio_s)
        ratio = "1" if m == "cache-aware" else f"{best / base:.1f}x"
        if m == "cache-aware + rnnt":
            ratio = f"({best / base:.2f}x)"
        rows.append(
            f"| {name} ({params:.1f} M) | {ctx[0]},{ctx[1]} ({chunk_ms} ms) | {m} | "
            f"{lo:.1f} | {mean:.1f} | {p95:.1f} | {rtf:.4f} | {best:.4f} | {ratio} |"
        )
    rows.append(f"| | | max abs diff, buffered (all) vs cache-aware: {diff:.1e} | | | | | | |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--contexts", nargs="+", help="L,R each (default: each model's first and last)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--audio", type=Path, help="audio file (looped/cut to --seconds)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    feats = features(args.seconds, args.audio)
    print(
        f"# {args.seconds:g} s of audio ({feats.shape[1]} fbank frames), {args.threads} thread(s), "
        f"torch {torch.__version__}, load average before: {os.getloadavg()[0]:.2f}"
    )
    print(
        "| model | context L,R (chunk) | mode | compute/chunk min ms | mean ms | p95 ms | RTF mean "
        "| RTF best run | ratio (best runs) |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    with torch.inference_mode():
        for name in args.models:
            model_ctx = build(name).att_contexts
            wanted = args.contexts or [
                f"{c[0]},{c[1]}" for c in dict.fromkeys([model_ctx[0], model_ctx[-1]])
            ]
            for c in wanted:
                left, right = (int(v) for v in c.split(","))
                for row in bench(name, (left, right), feats, args.repeats, args.seconds):
                    print(row, flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
