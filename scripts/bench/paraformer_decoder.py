"""Benchmark: Paraformer's NAR decoding (CIF + one decoder pass) vs an AR attention decoder.

Both decoders have the same size (FunASR's AISHELL Paraformer: d_model 256, 4 heads, FFN 2048,
6 blocks, 4233-char vocabulary) and decode the SAME encoder output: a 12-block Conformer
(subsampling 4) run once on random 80-dim fbank of ``--seconds`` (default 5 s -> 125 encoder
frames). Output length: ``--tokens`` (default 20, ~4 chars/s of Mandarin): the CIF output bias
is calibrated so that the longest utterance of the batch fires exactly that many tokens, and
the AR decoder is forced to emit that many tokens plus ``</s>`` (``tokens + 1`` steps).

- NAR: ``Paraformer.predict`` (CIF, inference path with the tail frame) + ``decoder_logprobs``
  + argmax — ``--nar-decoder transformer`` (default; FunASR ``ParaformerSANDecoder``, the
  AISHELL recipe) or ``sanm`` (Paraformer-large's ``ParaformerSANMDecoder``).
- AR: :class:`audiokit.nn.ar_decoder.TransformerARDecoder` greedy search with a KV cache
  (one query position per step; cross-attention keys/values computed once) — the headline.
- AR, memory K/V per step (information): the same decoder and steps, but the memory's
  cross-attention keys/values are projected again in every step, as the ``forward_one_step``
  of ESPnet/WeNet/FunASR's transformer decoders does (the usual AR baseline in papers).

CPU, 1 torch thread, inference mode, batch sizes 1 and 16. The two run round-robin ``--repeats``
times after a warm-up; the table gives min and median wall times and the ratio of the minima.

    python scripts/bench/paraformer_decoder.py [--repeats 20] [--tokens 20] [--seconds 5]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from timing import time_interleaved  # scripts/bench/timing.py

from audiokit.asr.paraformer import Paraformer
from audiokit.nn.ar_decoder import DecoderState, TransformerARDecoder

D, HEADS, FFN, LAYERS, VOCAB = 256, 4, 2048, 6, 4233
SOS = EOS = 2


def calibrate_cif(model: Paraformer, enc: torch.Tensor, lens: torch.Tensor, tokens: int) -> None:
    """Shift the CIF output bias until the batch's longest utterance fires ``tokens`` tokens."""
    bias = model.predictor.output.bias
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        bias.fill_(mid)
        n = int(model.predict(enc, lens).lengths.max())
        if n == tokens:
            return
        lo, hi = (mid, hi) if n < tokens else (lo, mid)
    raise SystemExit(f"could not calibrate the CIF to {tokens} tokens")


def bench_batch(
    para: Paraformer, ar: TransformerARDecoder, b: int, frames: int, tokens: int, repeats: int
) -> None:
    """One table row: both decoders on the same encoder output of ``b`` random utterances."""
    feats = torch.randn(b, frames, 80)
    enc, enc_lens = para.encode(feats, torch.full((b,), frames))
    calibrate_cif(para, enc, enc_lens, tokens)
    counts = para.predict(enc, enc_lens).lengths.float()

    def nar() -> list[list[int]]:
        cif = para.predict(enc, enc_lens)
        logp = para.decoder_logprobs(enc, enc_lens, cif.acoustic_embeds, cif.lengths)
        return logp.argmax(-1).tolist()

    def autoregressive() -> list[list[int]]:
        return ar.greedy_decode(enc, enc_lens, SOS, EOS, max_len=tokens + 1, min_len=tokens)

    def ar_recompute_memory() -> None:
        # ESPnet/WeNet/FunASR's forward_one_step projects the memory's keys/values in every
        # step; same decoder, same greedy steps, only that caching differs.
        state = ar.init_state(enc, enc_lens)
        last = torch.full((b,), SOS)
        for _ in range(tokens + 1):
            fresh = ar.init_state(enc, enc_lens)
            state = DecoderState(
                state.self_k, state.self_v, fresh.src_k, fresh.src_v, fresh.src_allowed
            )
            logp, state = ar.step(last, state)
            last = logp.argmax(-1)

    times = time_interleaved(
        {"nar": nar, "ar": autoregressive, "ar_espnet": ar_recompute_memory}, repeats
    )
    best = {k: min(v) * 1e3 for k, v in times.items()}
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(
        f"| {b} | {int(counts.max())} / {counts.mean():.1f} | {best['nar']:.2f} ({med['nar']:.2f}) "
        f"| {best['ar']:.2f} ({med['ar']:.2f}) | {best['ar'] / best['nar']:.1f}x "
        f"| {best['ar_espnet']:.2f} ({med['ar_espnet']:.2f}) "
        f"| {best['ar_espnet'] / best['nar']:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--nar-decoder", choices=["transformer", "sanm"], default="transformer")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    para = Paraformer(
        input_dim=80, vocab_size=VOCAB, lfr_m=1, lfr_n=1, encoder="conformer", d_model=D,
        num_heads=HEADS, ff_dim=FFN, num_layers=12, predictor="v1", decoder=args.nar_decoder,
        decoder_layers=LAYERS, decoder_heads=HEADS, decoder_ff_dim=FFN, ctc_weight=0.0,
    ).eval()  # fmt: skip
    ar = TransformerARDecoder(VOCAB, D, HEADS, FFN, LAYERS).eval()
    n_nar = sum(p.numel() for p in para.decoder.parameters())
    n_ar = sum(p.numel() for p in ar.parameters())
    frames = int(args.seconds * 100)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread; {args.seconds:g} s input "
        f"({frames} fbank frames); NAR decoder '{args.nar_decoder}' {n_nar / 1e6:.2f} M params "
        f"(+ CIF {sum(p.numel() for p in para.predictor.parameters()):,} params), "
        f"AR decoder {n_ar / 1e6:.2f} M params"
    )
    print(
        "| batch | tokens (max / mean) | NAR min (median) ms | AR, KV cache, min (median) ms "
        "| AR / NAR | AR, memory K/V per step, min (median) ms | that / NAR |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with torch.inference_mode():
        for b in args.batches:
            bench_batch(para, ar, b, frames, args.tokens, args.repeats)


if __name__ == "__main__":
    main()
