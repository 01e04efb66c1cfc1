"""Codec quality table: our codecs (packed model dirs) and Opus at matching bitrates, markdown.

Every system round-trips each utterance of a Kaldi data dir (default: speech_en_dev, dev
audio) and is scored with the metrics of ``audiokit codec eval`` (audiokit.metrics.audio_quality):
mel distance (DAC multi-scale log-mel L1, lower is better), SI-SDR, STOI, and PESQ when the
optional ``pesq`` package imports. Opus runs through opusenc/opusdec (or ffmpeg), hard CBR, at
the audio rate of the first model (``--sample-rate`` without models); by default at each
evaluated codec bitrate raised to libopus's 6 kbit/s minimum, plus ``--opus`` rates.

    python scripts/bench/codec_eval.py --model exp/codec_dac/packed --n-codebooks 2 4 8 \\
        [--model DIR ...] [--opus 6 12 24] [--no-opus-match] [--data DIR] [--json-dir OUT]
    python scripts/bench/codec_eval.py --json exp/.../eval_test/*.json   # table of saved runs
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speech_en_dev"
COLUMNS = ("mel_distance", "si_sdr", "stoi", "pesq")


def _fmt(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown_table(results: list[dict], title: str | None = None) -> str:
    """Rows of `audiokit codec eval --output json` results, sorted by bitrate (Opus after ours
    at equal rates); latent codecs (no bitrate) last."""

    def key(r: dict):
        kbps = r.get("kbps")
        return (kbps is None, kbps or 0.0, r["system"].startswith("opus"), r["system"])

    lines = [f"### {title}", ""] if title else []
    lines += [
        "| system | kbit/s | utts | mel dist ↓ | SI-SDR dB ↑ | STOI ↑ | PESQ ↑ | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(results, key=key):
        m = r["mean"]
        lines.append(
            f"| {r['system']} | {_fmt(r.get('kbps'), 2)} | {r['num_utts']} | "
            f"{_fmt(m['mel_distance'], 3)} | {_fmt(m['si_sdr'], 2)} | {_fmt(m['stoi'], 3)} | "
            f"{_fmt(m['pesq'], 2)} | {len(r.get('failed') or {})} |"
        )
    return "\n".join(lines) + "\n"


def _evaluate(args) -> list[dict]:
    import torch

    from audiokit.codec import inference as inf

    torch.set_num_threads(1)
    results, codec_rates, sr = [], set(), args.sample_rate
    for model_dir in args.model:
        codec = inf.load_codec(model_dir, args.device)
        sr = sr or codec.sample_rate
        for k in (args.n_codebooks or [None]) if codec.kind == "rvq" else [None]:
            system = inf.CodecSystem(codec, k)
            print(f"evaluating {system.name} on {args.data}", file=sys.stderr)
            res = inf.evaluate_data(system, args.data).to_dict()
            res["model"] = str(model_dir)
            results.append(res)
            if res["kbps"]:
                codec_rates.add(max(6.0, math.ceil(res["kbps"] * 10) / 10))
    opus = set(args.opus or []) | (codec_rates if args.opus_match else set())
    for b in sorted(opus):
        system = inf.OpusSystem(b, sr or 16000)
        if system.backend is None:
            print(
                "no opusenc/ffmpeg: Opus rows skipped (apt-get install opus-tools)", file=sys.stderr
            )
            break
        print(f"evaluating {system.name} on {args.data}", file=sys.stderr)
        results.append(inf.evaluate_data(system, args.data).to_dict())
    if args.json_dir:
        out = Path(args.json_dir)
        out.mkdir(parents=True, exist_ok=True)
        for r in results:
            name = r["system"].replace(" ", "_").replace("=", "")
            (out / f"{name}.json").write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", nargs="+", type=Path, help="saved `audiokit codec eval` JSON files")
    p.add_argument("--model", nargs="+", type=Path, default=[], help="packed codec model dirs")
    p.add_argument("--n-codebooks", nargs="+", type=int, help="RVQ codebook counts (default all)")
    p.add_argument("--opus", nargs="+", type=float, help="extra Opus bitrates (kbit/s)")
    p.add_argument("--no-opus-match", dest="opus_match", action="store_false",
                   help="no Opus rows at the codecs' bitrates")  # fmt: skip
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kaldi data dir (dev audio)")
    p.add_argument("--sample-rate", type=int, help="Opus rate without --model (default 16000)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json-dir", type=Path, help="also save each system's JSON here")
    p.add_argument("--title", help="heading above the table")
    args = p.parse_args(argv)
    if args.json:
        results = [json.loads(f.read_text(encoding="utf-8")) for f in args.json]
    elif args.model or args.opus:
        results = _evaluate(args)
    else:
        p.error("give --json FILES, or --model DIRS and/or --opus RATES")
    title = args.title or (None if args.json else f"{args.data.name}: codecs vs Opus")
    print(markdown_table(results, title), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
