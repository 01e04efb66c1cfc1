"""Benchmark: OWSM-CTC greedy decoding vs an OWSM v3.1-style attention encoder-decoder (AED),
and long-form OWSM-CTC decoding throughput on a 5-minute file.

1. **CTC vs AED**, set up as the OWSM-CTC paper compares OWSM-CTC v3.1 1B with OWSM v3.1 medium
   (1.02B), scaled down for a CPU (same depth ratio, same per-layer shape ratios):

   =====================  ===================================  ==============================
   (paper -> here)        OWSM-CTC v3.1 (``ebf27_conv2d8``)     OWSM v3.1 medium (``e18_d18``)
   =====================  ===================================  ==============================
   width d / heads        1024 / 16 -> ``--d-model`` 256 / 4   1024 / 16 -> 256 / 4
   FFN, cgMLP units       4096 -> 4d                           4096 -> 4d
   encoder                27 E-Branchformer -> 12              18 E-Branchformer -> 8
   subsampling            conv2d8                              conv2d (4x): twice the frames
   extras                 interCTC 6/12/15/21 -> 3/5/7/9 with  --
                          conditioning; prompt encoder 4 x
                          512 -> 4 x d/2; cross-attn every 3rd
   decoder                --                                   18 Transformer -> 8 (d, 4d FFN)
   vocabulary             50k -> ``--vocab`` 12.5k (scaled with d, so output layer / layer
                          cost stays as in the paper's models)
   =====================  ===================================  ==============================

   Both models read the same 30 s input (OWSM pads every utterance to 30 s): ``--seconds``
   (10) of the first ``--speech`` recording, zero-padded to 30 s; features once, not timed.
   - CTC: ``OwsmCTC.recognize`` (prompt encoder + encoder + greedy CTC over all frames).
   - AED: encoder, then the decoder with a KV cache (:class:`TransformerARDecoder`), prefilled
     with ``<sos><lang><task><notimestamps>`` and forced to emit ``--tokens-per-s`` x
     ``--seconds`` text tokens + ``<eos>`` (random weights would stop anywhere). Two settings:
     **greedy**, and **beam 5, CTC weight 0, no length penalty**: ESPnet's ``s2t_inference``
     defaults, i.e. OWSM v3.1's default inference (batched beams: cache reordered per step;
     cross-attention keys/values computed once and shared by the beams).
   Random weights: the text is gibberish; speed does not depend on it. Round-robin repeats
   after a warm-up; min and median wall time.
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
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from audiokit.asr.espnet_asr_encoder import EspnetEncoder
from audiokit.asr.owsm_ctc import OwsmCTC
from audiokit.nn.ar_decoder import DecoderState, TransformerARDecoder

SHARED = Path(__file__).resolve().parents[3] / "shared"
PAD_S = 30.0  # OWSM input length
CTC_LAYERS, AED_ENC_LAYERS, AED_DEC_LAYERS = 12, 8, 8  # paper: 27 / 18 / 18 (ratio 3:2:2)


def encoder_args(d: int, vocab: int) -> dict:
    """Scaled OWSM-CTC v3.1 (``train_s2t_multitask-ctc_ebf27_conv2d8_size1024.yaml``)."""
    layers = CTC_LAYERS
    return dict(
        input_dim=80, vocab_size=vocab, languages={"<eng>": 5, "<zho>": 8}, tasks={"<asr>": 9},
        na_id=2, nolang_id=3, d_model=d, num_heads=max(d // 64, 1), num_layers=layers,
        ff_units=4 * d, cgmlp_units=4 * d, cgmlp_kernel=31, merge_kernel=31,
        subsampling="conv2d8", dropout=0.0, pos_dropout=0.0,
        cross_attention=[(i + 1) % 3 == 0 for i in range(layers)], interctc_layers=[3, 5, 7, 9],
        interctc_conditioning=True, prompt_d_model=d // 2, prompt_heads=max(d // 128, 1),
        prompt_ff_units=2 * d, prompt_layers=4, prompt_dropout=0.0,
    )  # fmt: skip


def aed_models(d: int, vocab: int) -> tuple[EspnetEncoder, TransformerARDecoder]:
    """Scaled OWSM v3.1 medium (``train_s2t_ebf_conv2d_size1024_e18_d18...yaml``)."""
    enc = EspnetEncoder(
        80, "e_branchformer", d, max(d // 64, 1), AED_ENC_LAYERS, 4 * d, "conv2d4", "abs",
        dropout=0.0, pos_dropout=0.0, use_ffn=True, macaron=True, cgmlp_units=4 * d,
        cgmlp_kernel=31, merge_kernel=31,
    )  # fmt: skip
    dec = TransformerARDecoder(vocab, d, max(d // 64, 1), 4 * d, AED_DEC_LAYERS, dropout=0.0)
    return enc.eval(), dec.eval()


def forced_decode(
    dec: TransformerARDecoder,
    memory: torch.Tensor,
    lengths: torch.Tensor,
    prefix: list[int],
    eos: int,
    n_tokens: int,
    beam: int,
) -> list[int]:
    """Beam search (``beam`` 1 = greedy) over ``memory (1, T, d)`` with a KV cache; ``<eos>``
    is masked for ``n_tokens`` steps, then forced (fixed work for timing). Returns the best
    hypothesis' text tokens. Scores: summed log-probs, no length penalty (ESPnet defaults)."""
    state = dec.init_state(memory, lengths)
    for tok in prefix[:-1]:  # prefill <sos><lang><task>; the last prefix token starts the loop
        _, state = dec.step(torch.tensor([tok]), state)
    if beam > 1:  # beams share the memory's cross-attention keys/values (expanded views)
        state = DecoderState(
            state.self_k, state.self_v, [k.expand(beam, -1, -1, -1) for k in state.src_k],
            [v.expand(beam, -1, -1, -1) for v in state.src_v],
            state.src_allowed.expand(beam, -1, -1, -1),
        )  # fmt: skip
        state.self_k = [k.expand(beam, -1, -1, -1) for k in state.self_k]
        state.self_v = [v.expand(beam, -1, -1, -1) for v in state.self_v]
    rows = beam
    last = torch.full((rows,), prefix[-1], dtype=torch.long)
    scores = torch.zeros(rows)
    scores[1:] = float("-inf")  # all beams start as one hypothesis
    hyps = torch.zeros(rows, 0, dtype=torch.long)
    vocab = dec.output_layer.out_features
    for step in range(n_tokens + 1):
        logp, state = dec.step(last, state)
        if step < n_tokens:
            logp[:, eos] = float("-inf")
        else:
            logp = torch.where(torch.arange(vocab) == eos, 0.0, float("-inf")).expand(rows, -1)
        total = (scores[:, None] + logp).flatten()
        scores, flat = total.topk(beam)
        src, last = flat // vocab, flat % vocab
        hyps = torch.cat([hyps[src], last[:, None]], dim=1)
        state.self_k = [k[src] for k in state.self_k]
        state.self_v = [v[src] for v in state.self_v]
    return hyps[0, :-1].tolist()


def load_speech(folder: Path) -> list[np.ndarray]:
    from audiokit.data.data_dir import DataDir

    data = DataDir.load(folder)
    return [data.load_audio(u, 16000)[0] for u in data.utt_ids]


def time_wall_and_cpu(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, tuple[list[float], list[float]]]:
    """(wall s, thread CPU s) of every run, round-robin as ``timing.time_interleaved``. With
    one torch thread the thread's CPU time ignores time spent preempted by other jobs, so it
    is the steadier figure on a shared machine."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in fns}
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            w0, c0 = time.perf_counter(), time.thread_time()
            fns[name]()
            out[name][1].append(time.thread_time() - c0)
            out[name][0].append(time.perf_counter() - w0)
    return out


def gflops(fn: Callable[[], object]) -> float:
    """Floating-point operations of one call (matmuls, convolutions, attention), in G."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def bench_ctc_vs_aed(args: argparse.Namespace, speech: list[np.ndarray]) -> None:
    from audiokit.features.frontend import build_frontend

    torch.manual_seed(0)
    ctc_model = OwsmCTC(**encoder_args(args.d_model, args.vocab)).eval()
    aed_enc, aed_dec = aed_models(args.d_model, args.vocab)
    n, pad = int(args.seconds * 16000), int(PAD_S * 16000)
    wave = np.zeros(pad, np.float32)
    wave[: min(n, len(speech[0]))] = speech[0][:n]
    frontend = build_frontend(
        {"type": "espnet_logmel", "hop_length": 160, "win_length": 400}, 16000
    )
    feats, lengths = frontend(torch.from_numpy(wave)[None], torch.tensor([pad]))
    tokens = int(round(args.tokens_per_s * args.seconds))
    sos = eos = args.vocab - 1
    prefix = [sos, 5, 9, 10]  # <sos><eng><asr><notimestamps>

    def aed(beam: int):
        def run() -> object:
            memory, mem_lengths = aed_enc(feats, lengths)
            return forced_decode(aed_dec, memory, mem_lengths, prefix, eos, tokens, beam)

        return run

    fns = {
        "ctc greedy": lambda: ctc_model.recognize(feats, lengths, lang="eng", task="asr"),
        "aed greedy": aed(1),
        f"aed beam {args.beam}": aed(args.beam),
        "ctc encoder only": lambda: ctc_model.encode(feats, lengths, torch.tensor([[5, 9]])),
        "aed encoder only": lambda: aed_enc(feats, lengths),
    }
    with torch.inference_mode():
        times = time_wall_and_cpu(fns, args.repeats)
        flops = {name: gflops(fn) for name, fn in fns.items()}
        out_frames = int(aed_enc(feats, lengths)[1][0])
    millions = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(
        f"\n## CTC vs AED: {args.seconds:g} s of speech padded to {PAD_S:g} s, batch 1, "
        f"{tokens} text tokens (+4 prefix, +eos) for the AED, vocab {args.vocab}\n"
        f"CTC {CTC_LAYERS}-layer model {millions(ctc_model):.1f} M params; AED encoder "
        f"{AED_ENC_LAYERS} layers {millions(aed_enc):.1f} M ({out_frames} frames) + decoder "
        f"{AED_DEC_LAYERS} layers {millions(aed_dec):.1f} M; d {args.d_model}"
    )
    print("| decoding | GFLOP | CPU min s | CPU median s | wall min s | wall median s |")
    print("|---|---|---|---|---|---|")
    for name, (wall, cpu) in times.items():
        print(
            f"| {name} | {flops[name]:.1f} | {min(cpu):.3f} | {statistics.median(cpu):.3f} | "
            f"{min(wall):.3f} | {statistics.median(wall):.3f} |"
        )
    ctc_wall, ctc_cpu = (min(t) for t in times["ctc greedy"])
    for name in ("aed greedy", f"aed beam {args.beam}"):
        wall, cpu = (min(t) for t in times[name])
        print(
            f"speed-up of CTC greedy over {name}: {cpu / ctc_cpu:.2f}x CPU time (min/min), "
            f"{wall / ctc_wall:.2f}x wall, {flops[name] / flops['ctc greedy']:.2f}x FLOPs"
        )


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


def wait_for_load(limit: float, max_wait: float) -> None:
    t0 = time.time()
    while os.getloadavg()[0] >= limit and time.time() - t0 < max_wait:
        time.sleep(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--vocab", type=int, default=12500)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--tokens-per-s", type=float, default=3.0)
    p.add_argument("--long-seconds", type=float, default=300.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speech", type=Path, default=SHARED / "data" / "speech_en_dev")
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--skip-aed", action="store_true")
    p.add_argument("--wait-load", type=float, help="first wait (<= 20 min) for load below this")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.wait_load:
        wait_for_load(args.wait_load, 1200)
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
