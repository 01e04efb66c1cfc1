"""Benchmark: audiokit batched Kaldi fbank vs torchaudio.compliance.kaldi vs kaldi-native-fbank.

80-bin fbank, dither 0, on the utterances of a Kaldi data dir (default: speech_en_dev), at torch
thread counts 1 and 2. audiokit gets the whole batch in one call (building the padded batch is
inside the timing); the peers run per utterance. kaldi-native-fbank is timed twice: its C++
compute only (accept_waveform + input_finished on a pre-built Python list) and with reading the
frames back. The implementations run round-robin; the table gives the minimum (least disturbed)
and median wall time over the repeats. Outputs are compared first (max |difference|). An extra
row times the audiokit call alone on a batch built beforehand (for information; the speed-ups
use the row that includes building the batch).

``--breakdown`` then times each stage of audiokit's CPU path on the same frames, round-robin
like the table (each stage runs alone over all blocks, so its data is warmer in cache than in
the real call; the stages mirror ``audiokit.features.kaldi._compute``).

    python scripts/bench/fbank.py [--data DIR] [--repeats 20] [--breakdown]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from timing import min_median, time_interleaved  # scripts/bench/timing.py

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speech_en_dev"


def load_dir(data: Path) -> list[np.ndarray]:
    """Mono float32 waveforms in [-1, 1] for every wav.scp entry (paths relative to `data`)."""
    waves = []
    for line in (data / "wav.scp").read_text().splitlines():
        if not line.strip():
            continue
        _, rel = line.split(maxsplit=1)
        wav, sr = sf.read(data / rel, dtype="float32", always_2d=True)
        if sr != 16000:
            raise SystemExit(f"{rel}: {sr} Hz; this benchmark expects 16 kHz audio")
        waves.append(np.ascontiguousarray(wav[:, 0]))
    return waves


def breakdown(tensors: list[torch.Tensor], opts: object, repeats: int) -> None:
    """Per-stage minimum wall times of the CPU fbank path, summed over all blocks."""
    from audiokit.features import kaldi
    from audiokit.features.kaldi_frames import (
        FLT_EPSILON,
        FrameProcessor,
        check_lengths,
        frame_index,
        frame_signal,
    )
    from audiokit.features.kaldi_mel import apply_mel_bands, mel_bands, mel_banks

    fo, mel = opts.frame, opts.mel  # type: ignore[attr-defined]
    lengths = torch.tensor([len(t) for t in tensors])
    batch = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
    counts = check_lengths(lengths, fo)
    frames, first = frame_signal(batch, lengths, counts, fo)
    rows, dest = frame_index(counts, first, fo.window_shift)
    total, f_max = rows.numel(), int(counts.max())
    block = min(total, kaldi.CPU_BLOCK_FRAMES * torch.get_num_threads(), kaldi.MAX_CPU_BLOCK_FRAMES)
    starts = [(b, min(block, total - b)) for b in range(0, total, block)]
    process = FrameProcessor(fo, batch.device, batch.dtype)
    bands, dense = mel_bands(mel, fo), mel_banks(mel, fo)
    # Per-block inputs of every stage, prepared once.
    gathered = [frames[rows[b : b + n]] for b, n in starts]
    centred = [g - g.mean(1, keepdim=True) for g in gathered]
    windowed = []
    for c in centred:
        w = torch.zeros(c.shape[0], fo.padded_window_size)
        process(c.clone(), w)
        windowed.append(w)
    spectra = [torch.view_as_real(torch.fft.rfft(w)) for w in windowed]
    power = torch.cat([(x * x).sum(-1) for x in spectra])
    mel_out = torch.empty(total, mel.num_bins)
    scratch = torch.empty(block, fo.window_size)

    def each(fn: Callable[[int], object]) -> Callable[[], None]:
        return lambda: [fn(i) for i in range(len(starts))] and None

    def preemph_window(i: int) -> None:
        x, body = centred[i], windowed[i][:, : fo.window_size]
        torch.sub(x[:, 1:], x[:, :-1], alpha=process.coeff, out=body[:, 1:])
        torch.sub(x[:, :1], x[:, :1], alpha=process.coeff, out=body[:, :1])
        body.mul_(process.window)

    squares = [torch.empty_like(x) for x in spectra]
    power_rows = [power[b : b + n] for b, n in starts]

    def power_of(i: int) -> None:  # as shipped: square in place, add the halves into a buffer
        sq = torch.square(spectra[i], out=squares[i])
        torch.add(sq[..., 0], sq[..., 1], out=power_rows[i])

    stages: dict[str, Callable[[], object]] = {
        "pad_sequence (benchmark harness)": lambda: torch.nn.utils.rnn.pad_sequence(
            tensors, batch_first=True
        ),
        "checks, frame counts, frame index": lambda: frame_index(
            check_lengths(lengths, fo), frame_signal(batch, lengths, counts, fo)[1], 160
        ),
        "gather frames (index_select)": each(
            lambda i: torch.index_select(
                frames, 0, rows[starts[i][0] : sum(starts[i])], out=scratch[: starts[i][1]]
            )
        ),
        "DC removal (mean, subtract)": each(
            lambda i: scratch[: starts[i][1]].sub_(gathered[i].mean(1, keepdim=True))
        ),
        "pre-emphasis + window": each(preemph_window),
        "real FFT (rfft, 512 points)": each(lambda i: torch.fft.rfft(windowed[i])),
        "power re^2 + im^2": each(power_of),
        "mel, banded (shipped)": lambda: apply_mel_bands(power, bands, mel_out),
        "mel, dense matmul (before)": lambda: power @ dense,
        "log (clamp, log)": lambda: mel_out.clamp_min(FLT_EPSILON).log_(),
        "zero padded output + scatter": lambda: batch.new_zeros(
            len(tensors) * f_max, 80
        ).index_copy_(0, dest, mel_out),
        "whole fbank call, batch prebuilt": lambda: kaldi.fbank(batch, lengths, opts),
    }
    results = min_median(time_interleaved(stages, repeats))
    print(
        f"\nper-stage min (median) over {repeats} round-robin runs, {torch.get_num_threads()} "
        f"thread(s), {total} frames in {len(starts)} blocks of <= {block}:"
    )
    shipped = 0.0
    for name, (best, median) in results.items():
        if "before" not in name and "whole" not in name:
            shipped += best
        print(f"  {name:<36} {best * 1e3:7.3f} ms ({median * 1e3:7.3f})")
    print(f"  {'sum of the shipped stages':<36} {shipped * 1e3:7.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--breakdown", action="store_true", help="also time each stage")
    args = parser.parse_args()

    import kaldi_native_fbank as knf  # benchmark-only dependency
    import torchaudio.compliance.kaldi as ta_kaldi

    from audiokit.features.kaldi import FbankOptions, FrameOptions, MelOptions, fbank

    waves = load_dir(args.data)
    audio_s = sum(len(w) for w in waves) / 16000.0
    tensors = [torch.from_numpy(w) for w in waves]
    opts = FbankOptions(frame=FrameOptions(dither=0.0), mel=MelOptions(num_bins=80))
    lists = [(w * 32768).tolist() for w in waves]  # knf expects 16-bit sample values

    def run_audiokit() -> None:
        lengths = torch.tensor([len(t) for t in tensors])
        batch = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
        fbank(batch, lengths, opts)

    prebuilt = torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)
    prebuilt_lengths = torch.tensor([len(t) for t in tensors])

    def run_audiokit_prebuilt() -> None:
        fbank(prebuilt, prebuilt_lengths, opts)

    def run_torchaudio() -> None:
        for t in tensors:
            ta_kaldi.fbank(t[None] * 32768, num_mel_bins=80, dither=0.0)

    def knf_opts() -> knf.FbankOptions:
        o = knf.FbankOptions()
        o.frame_opts.dither = 0.0
        o.mel_opts.num_bins = 80
        return o

    def run_knf(read_back: bool) -> None:
        for samples in lists:
            f = knf.OnlineFbank(knf_opts())
            f.accept_waveform(16000, samples)
            f.input_finished()
            if read_back:
                np.array([f.get_frame(i) for i in range(f.num_frames_ready)])

    # Same numbers first: the three must agree before their speeds mean anything.
    lengths = torch.tensor([len(t) for t in tensors])
    ours, counts = fbank(torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), lengths, opts)
    worst_ta = worst_knf = 0.0
    for i, t in enumerate(tensors):
        ref_ta = ta_kaldi.fbank(t[None] * 32768, num_mel_bins=80, dither=0.0)
        f = knf.OnlineFbank(knf_opts())
        f.accept_waveform(16000, lists[i])
        f.input_finished()
        ref_knf = torch.tensor(np.array([f.get_frame(j) for j in range(f.num_frames_ready)]))
        mine = ours[i, : counts[i]]
        worst_ta = max(worst_ta, float((mine - ref_ta).abs().max()))
        worst_knf = max(worst_knf, float((mine - ref_knf).abs().max()))
    print(f"{len(waves)} utterances, {audio_s:.1f} s of audio, {int(counts.sum())} frames")
    print(f"max |audiokit - torchaudio| = {worst_ta:.2e}, max |audiokit - knf| = {worst_knf:.2e}\n")

    header = (
        f"{'threads':>7} | {'implementation':<42} | {'min s':>7} | {'median s':>8} | "
        f"{'x real time':>11} | {'audiokit speed-up':>17}"
    )
    print(header)
    print("-" * len(header))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        fns = {
            "audiokit (one batched call)": run_audiokit,
            "torchaudio.compliance.kaldi (per utt)": run_torchaudio,
            "kaldi-native-fbank compute (per utt)": lambda: run_knf(False),
            "kaldi-native-fbank + get_frame (per utt)": lambda: run_knf(True),
            "audiokit, batch built beforehand (info)": run_audiokit_prebuilt,
        }
        results = min_median(time_interleaved(fns, args.repeats))
        ours = results["audiokit (one batched call)"][0]
        for name, (best, median) in results.items():
            speedup = f"{best / ours:16.2f}x" if "(info)" not in name else f"{'-':>17}"
            print(
                f"{threads:>7} | {name:<42} | {best:7.4f} | {median:8.4f} | "
                f"{audio_s / best:11.0f} | {speedup}"
            )
    if args.breakdown:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            breakdown(tensors, opts, args.repeats)


if __name__ == "__main__":
    main()
