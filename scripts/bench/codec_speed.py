"""Benchmark: audiokit's codecs vs the reference implementations, waveform -> codes -> waveform.

Each peer pair runs in THIS process on its parity fixture (CPU, 1 torch thread, batch 1,
``torch.no_grad()``, eval mode). Waveforms are read once before timing; each timed call is one
full encode + decode at the full number of codebooks:

- **encodec** (``shared/fixtures/encodec``, the tiny causal 24 kHz model, 4 codebooks):
  audiokit ``EncodecCodec.decode(encode(x))`` vs encodec 0.1.1 ``model.decode(model.encode(x))``,
  once as the fixture is configured (one segment) and once with the 48 kHz model's framing
  (``segment=1.0, overlap=0.01, normalize=True``; the fixture's segment runs).
- **dac** (``shared/fixtures/dac``, weights.pth): audiokit ``RVQCodec.decode(encode(x))`` vs
  descript-audio-codec 1.0.0 ``decode(quantizer.from_codes(encode(preprocess(x))[1])[0])``.

``--batch N`` codes N copies of each utterance at gains 1 .. 0.5 in one call instead (the
batched API, both sides). Codes must be identical before anything is timed. Implementations run round-robin
``--repeats`` times after a warm-up (``timing.time_interleaved``); the table gives min and median
seconds and the speed-up ``reference min / audiokit min`` (> 1: audiokit is faster).
``--clock thread`` measures this thread's CPU time instead of wall time, for a shared machine.

The references are NOT audiokit dependencies: run this with a throwaway virtualenv::

    python3.11 -m venv /tmp/codec_ref_venv
    /tmp/codec_ref_venv/bin/pip install torch encodec descript-audio-codec
    /tmp/codec_ref_venv/bin/python scripts/bench/codec_speed.py [--only encodec|dac] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from timing import min_median, time_interleaved  # scripts/bench/timing.py

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # audiokit from this checkout, whatever venv runs the script
SHARED = ROOT.parent / "shared" / "fixtures"

Pair = tuple[str, str, Callable[[], object], Callable[[], object]]  # config, utt, ours, ref


def _interleaved_thread_time(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2):
    """As ``timing.time_interleaved`` but with this thread's CPU time (``time.thread_time``):
    unaffected by preemption when other jobs share the cores (cache contention remains)."""
    import time

    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.thread_time()
            fns[name]()
            times[name].append(time.thread_time() - t0)
    return times


def _read(path: Path, batch: int = 1):
    import numpy as np
    import soundfile as sf
    import torch

    x, _ = sf.read(path, dtype="float32", always_2d=True)
    x = torch.from_numpy(np.ascontiguousarray(x.T))[None]  # (1, C, S)
    if batch > 1:  # (batch, C, S): the utterance at gains 1 .. 0.5
        x = x * torch.linspace(1.0, 0.5, batch).view(batch, 1, 1)
    return x


def encodec_pairs(fixture: Path, batch: int = 1) -> list[Pair]:
    import torch
    from encodec import EncodecModel
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    from audiokit.codec.encodec import EncodecCodec
    from audiokit.importers.encodec import args_from_config, load_into

    cfg = json.loads((fixture / "config.json").read_text())
    ckpt = next(fixture.glob("*.th"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    m = cfg["model"]
    pairs: list[Pair] = []
    for label, segment, normalize in (
        ("one segment", None, False),
        ("segment 1.0 + normalize", 1.0, True),
    ):
        enc = SEANetEncoder(
            channels=m["channels"], norm=m["model_norm"], causal=m["causal"], **cfg["seanet"]
        )
        dec = SEANetDecoder(
            channels=m["channels"], norm=m["model_norm"], causal=m["causal"], **cfg["seanet"]
        )
        quant = ResidualVectorQuantizer(dimension=enc.dimension, **cfg["quantizer"])
        ref = EncodecModel(
            enc,
            dec,
            quant,
            cfg["target_bandwidths"],
            m["sample_rate"],
            m["channels"],
            normalize=normalize,
            segment=segment,
            overlap=m["overlap"],
        )
        ref.load_state_dict(state)
        ref.eval()
        ref.set_target_bandwidth(cfg["target_bandwidths"][-1])
        args = {
            **args_from_config(cfg, fixture / "config.json"),
            "segment": segment,
            "audio_normalize": normalize,
        }
        ours = EncodecCodec(**args)
        load_into(ours, state, ckpt)
        ours.eval()
        for wav in sorted((fixture / "inputs").glob("*.wav")):
            x = _read(wav, batch)
            with torch.no_grad():
                theirs = torch.cat([c for c, _ in ref.encode(x)], dim=-1)
                if not torch.equal(ours.encode(x).codes, theirs.long()):
                    raise SystemExit(f"encodec {label} {wav.stem}: codes differ; fix parity first")

            def run_ours(x=x, model=ours):
                return model.decode(model.encode(x))

            def run_ref(x=x, model=ref):
                return model.decode(model.encode(x))

            pairs.append((f"encodec {label}", wav.stem, run_ours, run_ref))
    return pairs


def dac_pairs(fixture: Path, batch: int = 1) -> list[Pair]:
    import dac
    import torch

    from audiokit.codec.dac import RVQCodec
    from audiokit.importers.dac import _load, convert_state, model_args

    path = fixture / "weights.pth"
    ref = dac.DAC.load(str(path))
    ref.eval()
    state, kwargs = _load(path)
    ours = RVQCodec(**model_args(kwargs, path))
    ours.load_state_dict(convert_state(state, ours, path), strict=True)
    ours.eval()
    pairs: list[Pair] = []
    for wav in sorted((fixture / "inputs").glob("*.wav")):
        x = _read(wav, batch)

        def run_ref(x=x, model=ref):
            codes = model.encode(model.preprocess(x, model.sample_rate))[1]
            return model.decode(model.quantizer.from_codes(codes)[0]), codes

        with torch.no_grad():
            if not torch.equal(ours.encode(x).codes, run_ref()[1].long()):
                raise SystemExit(f"dac {wav.stem}: codes differ; fix parity first")

        def run_ours(x=x, model=ours):
            return model.decode(model.encode(x))

        pairs.append(("dac", wav.stem, run_ours, run_ref))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["encodec", "dac"], default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--shared", type=Path, default=SHARED, help="shared/fixtures folder")
    parser.add_argument("--batch", type=int, default=1, help="utterances per call (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="wall: timing.time_interleaved (perf_counter); thread: CPU time of this thread, "
        "for a machine that other jobs share",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]  # other processes skew wall times: report the load
    builders = {"encodec": (encodec_pairs, "encodec"), "dac": (dac_pairs, "dac")}
    rows = []
    for name, (build, folder) in builders.items():
        if args.only not in (None, name):
            continue
        try:
            pairs = build(args.shared / folder, args.batch)
        except ImportError as e:
            print(f"# {name}: skipped ({e}); install the reference into this venv (see --help)")
            continue
        for config, utt, ours, ref in pairs:
            with torch.no_grad():
                timer = time_interleaved if args.clock == "wall" else _interleaved_thread_time
                stats = min_median(timer({"audiokit": ours, "reference": ref}, args.repeats))
            (o_min, o_med), (r_min, r_med) = stats["audiokit"], stats["reference"]
            rows.append(
                {
                    "config": config,
                    "utt": utt,
                    "audiokit_min_s": o_min,
                    "audiokit_median_s": o_med,
                    "reference_min_s": r_min,
                    "reference_median_s": r_med,
                    "speedup": r_min / o_min,
                }
            )
    load = (load_before, os.getloadavg()[0])
    print(
        f"torch {torch.__version__}, 1 thread, batch {args.batch}, {args.clock} clock, "
        f"repeats {args.repeats}, load "
        f"{load[0]:.1f} -> {load[1]:.1f}; speedup = reference min / audiokit min"
    )
    print("| config | utt | audiokit min / median (ms) | reference min / median (ms) | speedup |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['config']} | {r['utt']} | {1e3 * r['audiokit_min_s']:.1f} / {1e3 * r['audiokit_median_s']:.1f} "
            f"| {1e3 * r['reference_min_s']:.1f} / {1e3 * r['reference_median_s']:.1f} | {r['speedup']:.2f}x |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
