"""Benchmark: OWSM-CTC greedy decoding vs an attention encoder-decoder with the same encoder,
and long-form OWSM-CTC decoding throughput on a 5-minute file.

1. **CTC vs AED** (the OWSM-CTC paper reports 3-4x faster decoding than OWSM v3.1's AED).
   Encoder: :class:`audiokit.asr.owsm_ctc.OwsmCTC` scaled for CPU (``--d-model`` 256, 12
   E-Branchformer layers, conv2d8, interCTC with conditioning after layers 3/6/9, a 2-layer
   prompt encoder with cross-attention in layers 4/8/12), vocabulary ``--vocab`` 5000.
   - CTC: ``recognize`` = prompt encoder + encoder + CTC greedy (all frames).
   - AED: the same ``encode`` + :class:`audiokit.nn.ar_decoder.TransformerARDecoder`
     (``--dec-layers`` 12 = the encoder's depth, as OWSM v3.1's AED pairs them; 6 is ESPnet's
     default decoder; d 256, FFN 2048) greedy search with a KV cache, forced to emit
     ``tokens_per_s x seconds`` tokens (``--tokens-per-s`` 3.0, about BPE-5k English speech).
   Input: the first recording of ``--speech`` cut/padded to ``--seconds`` (default 10),
   ESPnet log-mel features computed once (not timed). Random weights: outputs are gibberish;
   speed does not depend on them. Round-robin repeats after a warm-up; min and median.
2. **Long form**: the ``--speech`` recordings concatenated (repeated) into a 300 s waveform,
   decoded by :class:`audiokit.asr.inference.Recognizer` from a packed dir of the same CTC
   model (30 s windows, 2 s context each side, batched); RTF = wall time / 300 s.

CPU, ``torch.set_num_threads(--threads)`` (default 1), inference mode. Prints the load average.

    python scripts/bench/owsm_ctc.py [--repeats 5] [--seconds 10] [--speech DIR] [--skip-long]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from timing import time_interleaved  # scripts/bench/timing.py

from audiokit.asr.owsm_ctc import OwsmCTC
from audiokit.nn.ar_decoder import TransformerARDecoder

SHARED = Path(__file__).resolve().parents[3] / "shared"


def encoder_args(d: int, vocab: int) -> dict:
    layers = 12
    return dict(
        input_dim=80, vocab_size=vocab, languages={"<eng>": 5, "<zho>": 8}, tasks={"<asr>": 9},
        na_id=2, nolang_id=3, d_model=d, num_heads=4, num_layers=layers, ff_units=4 * d,
        cgmlp_units=4 * d, cgmlp_kernel=31, merge_kernel=31, subsampling="conv2d8",
        dropout=0.0, pos_dropout=0.0, cross_attention=[(i + 1) % 4 == 0 for i in range(layers)],
        interctc_layers=[3, 6, 9], interctc_conditioning=True, prompt_d_model=d,
        prompt_heads=4, prompt_ff_units=4 * d, prompt_layers=2, prompt_dropout=0.0,
    )  # fmt: skip


def load_speech(folder: Path) -> list[np.ndarray]:
    from audiokit.data.data_dir import DataDir

    data = DataDir.load(folder)
    return [data.load_audio(u, 16000)[0] for u in data.utt_ids]


def bench_ctc_vs_aed(args: argparse.Namespace, speech: list[np.ndarray]) -> None:
    from audiokit.features.frontend import build_frontend

    torch.manual_seed(0)
    model = OwsmCTC(**encoder_args(args.d_model, args.vocab)).eval()
    decoder = TransformerARDecoder(
        args.vocab, args.d_model, 4, 2048, args.dec_layers, dropout=0.0
    ).eval()
    n = int(args.seconds * 16000)
    wave = np.zeros(n, np.float32)
    wave[: min(n, len(speech[0]))] = speech[0][:n]
    frontend = build_frontend({"type": "espnet_logmel"}, 16000)
    waves = torch.from_numpy(np.tile(wave, (args.batch, 1)))
    feats, lengths = frontend(waves, torch.full((args.batch,), n))
    tokens = int(round(args.tokens_per_s * args.seconds))
    prefix = torch.tensor([[5, 9]]).expand(args.batch, 2)
    sos = eos = args.vocab - 1

    def ctc() -> object:
        return model.recognize(feats, lengths, lang="eng", task="asr")

    def aed() -> object:
        out, out_lengths, _ = model.encode(feats, lengths, prefix)
        return decoder.greedy_decode(out, out_lengths, sos, eos, tokens + 1, min_len=tokens)

    def encoder_only() -> object:
        return model.encode(feats, lengths, prefix)

    with torch.inference_mode():
        times = time_interleaved({"ctc": ctc, "aed": aed, "encoder": encoder_only}, args.repeats)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    dec_params = sum(p.numel() for p in decoder.parameters()) / 1e6
    print(
        f"\n## CTC vs AED: {args.seconds:g} s input, batch {args.batch}, {tokens} AED tokens, "
        f"encoder {params:.1f} M params, AED decoder ({args.dec_layers} layers) "
        f"+{dec_params:.1f} M, vocab {args.vocab}"
    )
    print("| decoding | min s | median s | RTF (min) |\n|---|---|---|---|")
    for name, t in times.items():
        rtf = min(t) / (args.seconds * args.batch)
        print(f"| {name} | {min(t):.3f} | {statistics.median(t):.3f} | {rtf:.4f} |")
    ratio = min(times["aed"]) / min(times["ctc"])
    dec = min(times["aed"]) - min(times["encoder"])
    print(f"\nspeed-up of CTC greedy over AED greedy (min/min): {ratio:.2f}x; "
          f"AED decoder alone ~{dec:.3f} s for {tokens} steps")  # fmt: skip


def bench_long_form(args: argparse.Namespace, speech: list[np.ndarray]) -> None:
    from audiokit.asr.inference import Recognizer
    from audiokit.asr.long_form import plan_windows
    from audiokit.importers.espnet import build_from_espnet
    from audiokit.model_dir import write_model_dir

    fixture = SHARED / "fixtures" / "espnet_owsm_ctc" / "model"
    # the fixture gives a real tokenizer and frontend; the network is the bench encoder
    _, _, frontend, rate, tokenizer, _ = build_from_espnet(fixture)
    vocab = len(tokenizer.token_list)
    enc = encoder_args(args.d_model, vocab)
    torch.manual_seed(0)
    model = OwsmCTC(**enc).eval()
    total = int(args.long_seconds * 16000)
    reps = int(np.ceil(total / sum(len(s) for s in speech)))
    wave = np.concatenate(speech * reps)[:total].astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        out = write_model_dir(
            Path(tmp) / "m", model, "owsm_ctc", enc, frontend, rate, tokenizer,
            decoding={"method": "greedy", "options": {"lang": "<eng>", "task": "<asr>"}},
        )  # fmt: skip
        rec = Recognizer(out)
        rec.transcribe_waves(["warm"], [wave[: 16000 * 30]])
        t0 = time.perf_counter()
        result = rec.transcribe_waves(["long"], [wave])[0]
        wall = time.perf_counter() - t0
    windows = len(plan_windows(total, 16000, rec.window_s, rec.overlap_s, rec.align))
    print(
        f"\n## Long form: {args.long_seconds:g} s from {len(speech)} recordings x{reps}, "
        f"{windows} windows of {rec.window_s:g} s (context {rec.overlap_s:g} s), "
        f"vocab {vocab}\nwall {wall:.2f} s, RTF {wall / args.long_seconds:.4f}, "
        f"{len(result.token_ids)} tokens, last token at {result.token_times[-1]:.2f} s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--vocab", type=int, default=5000)
    p.add_argument("--dec-layers", type=int, default=12)
    p.add_argument("--tokens-per-s", type=float, default=3.0)
    p.add_argument("--long-seconds", type=float, default=300.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speech", type=Path, default=SHARED / "data" / "speech_en_dev")
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--skip-aed", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"torch {torch.__version__}, {args.threads} thread(s)")  # fmt: skip
    speech = load_speech(args.speech)
    if not args.skip_aed:
        bench_ctc_vs_aed(args, speech)
    if not args.skip_long:
        bench_long_form(args, speech)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
