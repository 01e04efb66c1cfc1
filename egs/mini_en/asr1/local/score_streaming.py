#!/usr/bin/env python3
"""Offline vs chunk-by-chunk (streaming) WER/CER of a streaming_conformer model at several
attention contexts, and how many utterances get identical token ids both ways.

    python local/score_streaming.py --exp exp/asr_train_streaming \
        [--sets dev test] [--contexts 32,7 32,0] [--decoders rnnt ctc] [--results RESULTS.md]

Run from egs/<corpus>/asr1 with audiokit's Python (`. path.sh; $AUDIOKIT_PYTHON local/...`).
- offline: :class:`audiokit.asr.inference.Recognizer` at context L,R (what `audiokit asr decode`
  and `audiokit asr transcribe --att-context L,R` do: whole utterances, batched);
- streaming: :class:`audiokit.asr.stream_session.StreamSession` (what `audiokit asr stream
  --input` runs): 100 ms audio blocks, incremental fbank, the model stepped chunk by chunk with
  its caches, the remainder flushed at the end.
Writes EXP/decode_stream/<set>/<decoder>_<L>_<R>/{offline,stream}/ (text, token_ids, wer, cer,
result.txt) and prints a markdown table; --results appends it (with the command) to a file.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from audiokit.asr.decode_data import score_outputs, write_outputs
from audiokit.asr.inference import Recognizer
from audiokit.asr.stream_session import Done, StreamSession
from audiokit.asr.stream_sources import BLOCK_S, AudioSource
from audiokit.data.data_dir import DataDir
from audiokit.errors import AudiokitError, ConfigError
from audiokit.utils.atomic import atomic_write


class ArraySource(AudioSource):
    """Samples already in memory, queued as BLOCK_S blocks (no pacing: as fast as decoded)."""

    def __init__(self, samples: np.ndarray, rate: int) -> None:
        super().__init__()
        self.samples, self.rate = samples, rate

    def start(self) -> None:
        step = max(1, int(round(BLOCK_S * self.rate)))
        for i in range(0, len(self.samples), step):
            self.blocks.put(np.asarray(self.samples[i : i + step], dtype=np.float32))
        self.blocks.put(None)  # end of input


@dataclass
class Run:
    """One decoding of one set: {utt: (text, ids)}, wall seconds, scores."""

    done: dict[str, tuple[str, list[int]]]
    wall_s: float
    wer: float = float("nan")
    cer: float = float("nan")
    compute_s: float = 0.0  # streaming: summed per-block compute


def _score(run: Run, data: Path, out: Path, dd: DataDir) -> None:
    write_outputs(out, run.done, {})
    lines = score_outputs(data / "text", out, run.done, dd.utt2spk, {})
    for line in lines:
        m = re.match(r"%(WER|CER) ([\d.]+)", line)
        if m:
            setattr(run, m.group(1).lower(), float(m.group(2)))


def decode_offline(model: Path, decoder: str, ctx: str, utts, waves) -> Run:
    t0 = time.perf_counter()
    rec = Recognizer(model, decoder=decoder, options={"att_context": ctx})
    res = rec.transcribe_waves(list(utts), list(waves))
    done = {u: (r.text, r.token_ids) for u, r in zip(utts, res, strict=True)}
    return Run(done, time.perf_counter() - t0)


def decode_streaming(model: Path, decoder: str, ctx: str, utts, waves, rate: int) -> Run:
    t0 = time.perf_counter()
    session = StreamSession.from_model_dir(model, decoder=decoder, att_context=ctx)
    done, compute = {}, 0.0
    for utt, wave in zip(utts, waves, strict=True):
        final = None
        for event in session.run(ArraySource(wave, rate)):
            if isinstance(event, Done):
                final = event
        assert final is not None
        done[utt] = (final.text, final.token_ids)
        compute += sum(c.compute_s for c in final.chunks)
    return Run(done, time.perf_counter() - t0, compute_s=compute)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", type=Path, required=True, help="experiment dir (EXP/packed is used)")
    p.add_argument("--model", type=Path, help="packed model dir [EXP/packed]")
    p.add_argument("--data-root", type=Path, default=Path("dump/raw"), help="[dump/raw]")
    p.add_argument("--sets", nargs="+", default=["dev", "test"])
    p.add_argument("--contexts", nargs="+", default=["32,7", "32,0"], help="L,R each")
    p.add_argument("--decoders", nargs="+", default=["rnnt", "ctc"])
    p.add_argument("--max-utts", type=int, default=0, help="first N utterances per set (0: all)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads [1]")
    p.add_argument("--results", type=Path, help="append the table to this markdown file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = args.model or args.exp / "packed"
    if not (model / "model.yaml").is_file():
        raise ConfigError(f"{model}: no packed model (model.yaml); run the recipe to stage 11")
    rate = Recognizer(model).sample_rate
    header = (
        "| set | decoder | context L,R (chunk) | offline %WER | offline %CER | streaming %WER "
        "| streaming %CER | same ids | offline wall | streaming wall (RTF) |"
    )
    rows = [header, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    mismatched = 0
    for name in args.sets:
        data = args.data_root / name
        dd = DataDir.load(data)
        utts = dd.utt_ids[: args.max_utts or None]
        waves = [dd.load_audio(u, rate)[0] for u in utts]
        audio_s = sum(len(w) for w in waves) / rate
        for decoder in args.decoders:
            for ctx in args.contexts:
                left, right = (int(v) for v in ctx.split(","))
                out = args.exp / "decode_stream" / name / f"{decoder}_{left}_{right}"
                off = decode_offline(model, decoder, ctx, utts, waves)
                st = decode_streaming(model, decoder, ctx, utts, waves, rate)
                _score(off, data, out / "offline", dd)
                _score(st, data, out / "stream", dd)
                same = sum(off.done[u][1] == st.done[u][1] for u in utts)
                mismatched += len(utts) - same
                chunk_ms = (right + 1) * 80
                rows.append(
                    f"| {name} | {decoder} | {left},{right} ({chunk_ms} ms) | {off.wer:.2f} | "
                    f"{off.cer:.2f} | {st.wer:.2f} | {st.cer:.2f} | {same}/{len(utts)} | "
                    f"{off.wall_s:.1f} s | {st.wall_s:.1f} s ({st.compute_s / audio_s:.3f}) |"
                )
                print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if args.results is not None:
        cmd = "python local/score_streaming.py " + " ".join(map(shlex.quote, sys.argv[1:]))
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        old = args.results.read_text() if args.results.exists() else ""
        with atomic_write(args.results) as f:
            f.write(old.rstrip("\n") + "\n\n" if old else "")
            f.write(f"### Offline vs streaming ({model}, {when})\n\n```bash\n{cmd}\n```\n\n")
            f.write(table + "\n")
    if mismatched:
        print(f"warning: {mismatched} utterance(s) decoded differently offline and streaming")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AudiokitError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
