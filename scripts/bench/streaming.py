"""Benchmark: cache-aware streaming vs buffered streaming of the same streaming_conformer encoder.

One command, no files besides the repository; prints a self-contained markdown report:

    OMP_NUM_THREADS=1 python scripts/bench/streaming.py [--models librispeech] [--seconds 10]

Same model and (random, seeded: timing only) weights for every mode, CPU, ``--threads`` torch
threads (default 1), inference mode, ``--seconds`` of audio (a synthetic tone sweep + noise
through the 80-dim Kaldi fbank, or ``--audio FILE``) arriving one chunk of ``8 * (right + 1)``
feature frames (``(right + 1) * 80`` ms) at a time. For each ``[left, right]`` context:

- ``cache-aware (kv)``: ``encoder.stream_step`` on the new chunk only, with the fast state:
  projected key/value caches per layer and the window's positional projection (computed once at
  stream start, counted in the first step); the final remainder is flushed with the last chunk.
- ``cache-aware (input)``: the same with NeMo's attention-input cache (keys, values and
  positions re-projected every step): the previous implementation, for reference.
- ``cache-aware (kv) + rnnt``: ``model.step`` (CMVN + encoder step + batched greedy RNN-T of
  the new frames), the whole per-chunk work of ``audiokit asr stream`` minus the fbank. The
  joint's blank bias is raised so random weights emit (almost) only blanks.
- ``cache-aware (kv), N streams batched``: ``--streams`` identical streams in one batched
  step (latency = the whole step; RTF, GFLOP and ratios per stream): small chunks are bound by
  reading the weights once per step, which a batch of streams shares.
- ``buffered``: every chunk re-runs the offline encoder (same weights, same context mask) over
  a buffer of the ``left`` frames of left context the cache-aware model sees plus the new chunk
  (``left + right + 1`` output frames of input), and keeps only the new chunk's outputs: the
  least a buffered system must re-encode to give each new frame its trained left context.
- ``buffered (all audio)`` (``--all``): the offline encoder over all audio so far; its new
  outputs equal the cache-aware ones (printed as a check that both do the same work).

Latency per chunk = wall time of one step, median and p90 over every step of ``--repeats`` runs
(after a warm-up run; modes interleaved per run so load changes hit all alike). RTF = a run's
total compute / audio duration (median run). GFLOP = ``torch.utils.flop_counter`` over one run
(matmuls, convolutions, attention), per chunk (mean). Ratios: buffered / cache-aware (kv), by
median-run wall time and by FLOPs.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from audiokit.asr.streaming import StreamingConformer  # noqa: E402
from audiokit.features.frontend import build_frontend  # noqa: E402

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


def chunk_starts(model: StreamingConformer, feats: torch.Tensor, ctx) -> tuple[int, list[int]]:
    step_in = model.subsampling_factor * (ctx[1] + 1)
    return step_in, list(range(0, feats.shape[1], step_in))


def stamp(t0: float, counter: FlopCounterMode | None) -> float:
    """A step's seconds, or with a FLOP counter the running FLOP total."""
    return time.perf_counter() - t0 if counter is None else float(counter.get_total_flops())


def run_cache_aware(model, feats, ctx, cache: str, outs=None, counter=None) -> list[float]:
    """Per-chunk seconds of one streaming pass of the encoder (state made in the first step;
    the final flush added to the last chunk). ``outs`` collects the per-chunk outputs."""
    enc, b = model.encoder, feats.shape[0]
    feats_n = model.cmvn(feats, torch.full((b,), feats.shape[1]))
    step_in, starts = chunk_starts(model, feats, ctx)
    times = []
    for k, s in enumerate(starts):
        x = feats_n[:, s : s + step_in]
        t0 = time.perf_counter()
        if k == 0:
            state = enc.init_state(b, ctx, cache=cache)
        out, _, state = enc.stream_step(x, torch.full((b,), x.shape[1]), state)
        if k == len(starts) - 1:
            empty = torch.zeros(b, dtype=torch.long)
            last, _, state = enc.stream_step(x[:, :0], empty, state, final=True)
            out = torch.cat([out, last], dim=1)
        times.append(stamp(t0, counter))
        if outs is not None:
            outs.append(out)
    return times


def run_model_step(model, feats, ctx, counter=None) -> list[float]:
    """Per-chunk seconds of ``model.step`` (CMVN + encoder + greedy RNN-T), flush included."""
    step_in, starts = chunk_starts(model, feats, ctx)
    times = []
    for k, s in enumerate(starts):
        x = feats[:, s : s + step_in]
        t0 = time.perf_counter()
        if k == 0:
            state = model.init_state(1, att_context=ctx, decoder="rnnt")
        _, state = model.step(x, torch.tensor([x.shape[1]]), state)
        if k == len(starts) - 1:
            model.flush(state)
        times.append(stamp(t0, counter))
    return times


def run_buffered(model, feats, ctx, emitted: list[int], window: bool, outs=None, counter=None):
    """Per-chunk seconds of re-encoding a buffer for each chunk (``window``: the left context
    + the chunk; else all audio so far), keeping the new frames only. ``emitted``: frames the
    cache-aware pass gave per chunk, so both emit the same frames at the same step."""
    enc, s_f, left = model.encoder, model.subsampling_factor, ctx[0]
    feats_n = model.cmvn(feats, torch.tensor([feats.shape[1]]))
    step_in, _ = chunk_starts(model, feats, ctx)
    times, done = [], 0
    for k, e in enumerate(emitted):
        end = min((k + 1) * step_in, feats.shape[1])
        w0 = max(0, done - left) if window else 0  # first output frame in the buffer
        t0 = time.perf_counter()
        x = feats_n[:, s_f * w0 : end]
        out, _ = enc(x, torch.tensor([x.shape[1]]), ctx)
        new = out[:, done - w0 : done - w0 + e]
        times.append(stamp(t0, counter))
        if outs is not None:
            outs.append(new)
        done += e
    return times


def flops_per_step(run: Callable[..., list[float]]) -> np.ndarray:
    """FLOPs of each step of one run (``run(counter)`` returns the running totals)."""
    counter = FlopCounterMode(display=False)
    with counter:
        totals = run(counter)
    return np.diff(np.array([0.0, *totals]))


def bench(model, name: str, ctx, feats, args) -> tuple[list[str], list[str]]:
    """Table rows and summary lines for one context."""
    audio_s = feats.shape[1] / 100.0
    ref: list[torch.Tensor] = []
    run_cache_aware(model, feats, ctx, "kv", ref)
    emitted = [o.shape[1] for o in ref]
    base = "cache-aware (kv)"
    modes: dict[str, Callable[..., list[float]]] = {
        base: lambda c=None: run_cache_aware(model, feats, ctx, "kv", None, c),
        "cache-aware (input)": lambda c=None: run_cache_aware(model, feats, ctx, "input", None, c),
        "cache-aware (kv) + rnnt": lambda c=None: run_model_step(model, feats, ctx, c),
        "buffered": lambda c=None: run_buffered(model, feats, ctx, emitted, True, None, c),
    }
    streams = f"cache-aware (kv), {args.streams} streams batched, per stream"
    if args.streams > 1:  # one step serves B streams: the weights are read once per step
        many = feats.expand(args.streams, -1, -1)
        modes[streams] = lambda c=None: run_cache_aware(model, many, ctx, "kv", None, c)
    if args.all:
        modes["buffered (all audio)"] = lambda c=None: run_buffered(
            model, feats, ctx, emitted, False, None, c
        )
    notes = []
    # All audio re-encoded gives the offline result: equal to the cache-aware outputs (the
    # exactness check); the window drops older context, so its outputs differ (approximate).
    for label, window in (("buffered", True), ("buffered (all audio)", False)):
        got: list[torch.Tensor] = []
        run_buffered(model, feats, ctx, emitted, window, got)
        pairs = [(a, b) for a, b in zip(got, ref, strict=True) if b.numel()]
        diff = max(float((a - b).abs().max()) for a, b in pairs)
        notes.append(f"{ctx[0]},{ctx[1]}: max abs({label} - cache-aware) on new frames {diff:.1e}")
    flops = {m: flops_per_step(fn) for m, fn in modes.items()}
    for fn in modes.values():
        fn()  # warm-up
    load0 = os.getloadavg()[0]
    names = list(modes)
    runs: dict[str, list[list[float]]] = {m: [] for m in modes}
    for r in range(args.repeats):  # rotate the order so load changes hit every mode alike
        for m in names[r % len(names) :] + names[: r % len(names)]:
            runs[m].append(modes[m]())
    load1 = os.getloadavg()[0]
    times = {m: np.array(v) for m, v in runs.items()}  # (repeats, chunks) seconds
    total = {m: float(np.median(t.sum(1))) for m, t in times.items()}  # median run
    rows, chunk_ms = [], (ctx[1] + 1) * 80
    for m in modes:
        per = args.streams if m == streams else 1  # latency: the whole batched step
        flat = times[m].ravel() * 1000
        ratio_w = "1" if m == base else f"{total[m] / per / total[base]:.1f}x"
        ratio_f = "1" if m == base else f"{flops[m].sum() / per / flops[base].sum():.1f}x"
        rows.append(
            f"| {name} | {ctx[0]},{ctx[1]} ({chunk_ms} ms) | {m} | {np.median(flat):.1f} | "
            f"{np.percentile(flat, 90):.1f} | {total[m] / per / audio_s:.4f} | "
            f"{flops[m].mean() / per / 1e9:.3f} | {ratio_w} | {ratio_f} |"
        )
    wall_x = total["buffered"] / total[base]
    flop_x = flops["buffered"].sum() / flops[base].sum()
    rtf = total[base] / audio_s
    ok = "met" if min(wall_x, flop_x) >= 5 else "NOT met"
    line = (
        f"{ctx[0]},{ctx[1]}: whole {audio_s:g} s: buffered / cache-aware = {wall_x:.1f}x wall, "
        f"{flop_x:.1f}x FLOPs (goal >= 5x: {ok})"
    )
    # Steady state: chunks whose buffer already holds the whole left context.
    steady = np.cumsum([0, *emitted[:-1]]) >= ctx[0]
    if steady.any() and not steady.all():
        med = {m: float(np.median(times[m][:, steady], axis=0).sum()) for m in ("buffered", base)}
        fs = flops["buffered"][steady].sum() / flops[base][steady].sum()
        line += (
            f"; steady state ({int(steady.sum())} chunks with the full {ctx[0]}-frame left "
            f"context): {med['buffered'] / med[base]:.1f}x wall, {fs:.1f}x FLOPs"
        )
    line += (
        f"; cache-aware RTF {rtf:.4f} (goal <= 0.05: {'met' if rtf <= 0.05 else 'NOT met'}); "
        f"load average {load0:.2f} -> {load1:.2f}"
    )
    return rows, [*notes, line]


def wait_for_load(limit: float, max_wait: float) -> None:
    t0 = time.time()
    while os.getloadavg()[0] >= limit and time.time() - t0 < max_wait:
        time.sleep(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["librispeech"], choices=list(MODELS))
    p.add_argument("--contexts", nargs="+", help="L,R each (default: every trained context)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--audio", type=Path, help="audio file (looped/cut to --seconds)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--all", action="store_true", help="also time buffered over all audio")
    p.add_argument("--streams", type=int, default=8, help="batched streams row (0: none)")
    p.add_argument("--wait-load", type=float, help="first wait for a load average below this")
    p.add_argument("--wait-max", type=float, default=1200, help="seconds to wait at most")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.wait_load:
        wait_for_load(args.wait_load, args.wait_max)
    feats = features(args.seconds, args.audio)
    cmd = " ".join(["OMP_NUM_THREADS=" + os.environ.get("OMP_NUM_THREADS", "(unset)"), "python"])
    print(f"## Cache-aware vs buffered streaming\n\n`{cmd} {shlex.join(sys.argv)}`\n")
    print(
        f"{args.seconds:g} s of audio ({feats.shape[1]} fbank frames), {args.threads} torch "
        f"thread(s), torch {torch.__version__}, {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores), random weights (timing only), load average at start "
        f"{os.getloadavg()[0]:.2f}. Latency = compute per chunk (wall), RTF = compute / audio.\n"
    )
    print(
        "| model | context L,R (chunk) | mode | latency/chunk median ms | p90 ms | RTF "
        "| GFLOP/chunk | buffered/cache-aware wall | FLOPs |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    notes = []
    with torch.inference_mode():
        for name in args.models:
            model = build(name)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            label = f"{name} ({params:.1f} M)"
            wanted = args.contexts or [f"{c[0]},{c[1]}" for c in model.att_contexts]
            for c in wanted:
                left, right = (int(v) for v in c.split(","))
                rows, more = bench(model, label, (left, right), feats, args)
                print("\n".join(rows), flush=True)
                notes += [f"- {label} {n}" for n in more]
    print("\n" + "\n".join(notes))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
