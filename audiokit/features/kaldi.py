"""Kaldi-compatible fbank, MFCC and spectrogram for padded batches (feature-{fbank,mfcc,spectrogram}.cc).

All three take ``waveforms`` (B, T) float (zero-padded, any device) plus ``lengths`` (B,) in
samples, and return ``(feats, num_frames)``: feats (B, F_max, D) with rows at or past
``num_frames[b]`` set to zero, num_frames (B,) int64. A 1-D waveform (T,) gives feats (F, D)
and a 0-dim num_frames. Float64 input is computed in float64, every other float in float32.
Float samples are multiplied by ``frame.waveform_scale`` (32768: Kaldi sees 16-bit integers).
Features are computed without autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from audiokit.errors import FeatureError
from audiokit.features.kaldi_frames import (
    FLT_EPSILON,
    FrameProcessor,
    check_lengths,
    frame_index,
    frame_signal,
    log_energy,
    num_frames,
)
from audiokit.features.kaldi_mel import dct_matrix, lifter_coeffs, mel_banks
from audiokit.features.kaldi_options import (
    FbankOptions,
    FrameOptions,
    MelOptions,
    MfccOptions,
    SpectrogramOptions,
)

__all__ = [
    "FbankOptions",
    "FrameOptions",
    "MelOptions",
    "MfccOptions",
    "SpectrogramOptions",
    "fbank",
    "mfcc",
    "num_frames",
    "spectrogram",
]


def _check_inputs(waveforms: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor, bool]:
    """Validate and normalise to ((B, T) compute-dtype waveforms, (B,) int64 lengths, was_1d)."""
    if not isinstance(waveforms, Tensor) or not waveforms.is_floating_point():
        kind = waveforms.dtype if isinstance(waveforms, Tensor) else type(waveforms).__name__
        raise FeatureError(
            f"waveforms must be a float tensor in [-1, 1], got {kind}; convert with .float() / 32768"
        )
    single = waveforms.dim() == 1
    if single:
        waveforms = waveforms[None]
    if waveforms.dim() != 2:
        raise FeatureError(
            f"waveforms must be (T,) or (B, T), got shape {tuple(waveforms.shape)}; "
            "mix channels down or flatten the batch first"
        )
    if waveforms.dtype != torch.float64:
        waveforms = waveforms.to(torch.float32)
    batch, total = waveforms.shape
    if lengths is None:
        lengths = torch.full((batch,), total, dtype=torch.int64, device=waveforms.device)
    else:
        lengths = (
            torch.as_tensor(lengths).to(device=waveforms.device, dtype=torch.int64).reshape(-1)
        )
        if lengths.numel() != batch:
            raise FeatureError(
                f"lengths has {lengths.numel()} entries for a batch of {batch}; pass one per row"
            )
        bad = ((lengths < 0) | (lengths > total)).nonzero().flatten()
        if bad.numel():
            i = int(bad[0])
            raise FeatureError(
                f"utterance {i}: length {int(lengths[i])} is outside [0, {total}] "
                "(the padded length); pass lengths in samples"
            )
    if batch == 0:
        raise FeatureError("waveforms is an empty batch; pass at least one utterance")
    return waveforms, lengths, single


# Frames per block and CPU thread: a block's working set stays in cache, which measured ~2x
# faster than one pass over every frame at once. Accelerators take everything in one block.
CPU_BLOCK_FRAMES = 512
MAX_CPU_BLOCK_FRAMES = 4096

BlockFeatures = Callable[[Tensor, "Tensor | None"], Tensor]


@torch.no_grad()  # feature extraction, not a differentiable layer
def _compute(
    waveforms: Tensor,
    lengths: Tensor | None,
    frame: FrameOptions,
    generator: torch.Generator | None,
    want_raw_energy: bool,
    dim: int,
    make_block_fn: Callable[[torch.device, torch.dtype], BlockFeatures],
) -> tuple[Tensor, Tensor]:
    """Frame, window and featurise a batch block by block.

    ``make_block_fn(device, dtype)`` returns ``f(windowed (C, n_fft), raw_log_energy (C,) or
    None) -> (C, dim)``, which does the rest. Returns feats (B, F_max, dim), zero past each
    count (or (F, dim) for 1-D input), and the counts.
    """
    wave, lens, single = _check_inputs(waveforms, lengths)
    counts = check_lengths(lens, frame)
    frames, first = frame_signal(wave, lens, counts, frame)  # (R, L) strided view
    rows, dest = frame_index(counts, first, frame.window_shift)
    f_max, total = int(counts.max()), rows.numel()
    out = wave.new_zeros(wave.shape[0] * f_max, dim)
    process = FrameProcessor(frame, wave.device, wave.dtype)
    per_block = make_block_fn(wave.device, wave.dtype)
    block = total
    if wave.device.type == "cpu":
        block = min(total, CPU_BLOCK_FRAMES * torch.get_num_threads(), MAX_CPU_BLOCK_FRAMES)
    # Scratch reused by every block: gathered frames and the zero-padded FFT input.
    scratch = wave.new_empty(block, frame.window_size)
    padded = wave.new_zeros(block, frame.padded_window_size)
    for start in range(0, total, block):
        n = min(block, total - start)
        x = torch.index_select(frames, 0, rows[start : start + n], out=scratch[:n])
        energy = process(x, padded[:n], generator, want_raw_energy)
        out.index_copy_(0, dest[start : start + n], per_block(padded[:n], energy))
    out = out.view(wave.shape[0], f_max, dim)
    if single:
        return out[0], counts[0]
    return out, counts


def _power_spectrum(windowed: Tensor) -> Tensor:
    """(C, n_fft) -> (C, n_fft/2 + 1) power spectrum |X|^2."""
    parts = torch.view_as_real(torch.fft.rfft(windowed, dim=1)).square_()  # (C, K, 2)
    return parts[..., 0] + parts[..., 1]


def _floored_energy(energy: Tensor, energy_floor: float) -> Tensor:
    if energy_floor > 0.0:
        return energy.clamp_min(math.log(float(torch.tensor(energy_floor, dtype=torch.float32))))
    return energy


def _mel_energies(windowed: Tensor, banks: Tensor, mel: MelOptions, use_power: bool) -> Tensor:
    """(C, n_fft) windowed frames -> (C, num_bins) mel energies (not logged)."""
    power = _power_spectrum(windowed)
    if not use_power:
        power = power.sqrt_()
    energies = power @ banks
    if mel.htk_mode:
        energies.clamp_min_(1.0)  # HTK-style flooring of each bank
    return energies


def fbank(
    waveforms: Tensor,
    lengths: Tensor | None = None,
    opts: FbankOptions | None = None,
    generator: torch.Generator | None = None,
    *,
    vtln_warp: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Kaldi ``compute-fbank-feats``: log mel filterbank energies.

    Args:
        waveforms: (B, T) float, padded, or (T,).
        lengths: (B,) samples per utterance; None means all T.
        opts: FbankOptions (Kaldi defaults: 23 bins, povey window, dither 1.0).
        generator: torch.Generator for the dither noise (on the waveforms' device).
        vtln_warp: VTLN warp factor (1.0 = none), as Kaldi's ``--vtln-warp``.

    Returns:
        feats (B, F_max, D) with D = num_bins (+1 with use_energy: first, or last if htk_compat),
        zero past num_frames[b]; num_frames (B,) int64. For (T,) input: (F, D) and a 0-dim count.
    """
    opts = opts or FbankOptions()
    opts.validate(vtln_warp)

    def make_block_fn(device: torch.device, dtype: torch.dtype) -> BlockFeatures:
        banks = mel_banks(opts.mel, opts.frame, device, dtype, vtln_warp)

        def per_block(windowed: Tensor, energy: Tensor | None) -> Tensor:
            if opts.use_energy and not opts.raw_energy:
                energy = log_energy(windowed)  # Kaldi: energy of the windowed frame
            feats = _mel_energies(windowed, banks, opts.mel, opts.use_power)
            if opts.use_log_fbank:
                feats = feats.clamp_min_(FLT_EPSILON).log_()
            if not opts.use_energy:
                return feats
            assert energy is not None
            e = _floored_energy(energy, opts.energy_floor)[:, None]
            return torch.cat([feats, e] if opts.htk_compat else [e, feats], dim=1)

        return per_block

    dim = opts.mel.num_bins + int(opts.use_energy)
    need_raw = opts.use_energy and opts.raw_energy
    return _compute(waveforms, lengths, opts.frame, generator, need_raw, dim, make_block_fn)


def mfcc(
    waveforms: Tensor,
    lengths: Tensor | None = None,
    opts: MfccOptions | None = None,
    generator: torch.Generator | None = None,
    *,
    vtln_warp: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Kaldi ``compute-mfcc-feats``: DCT of log mel energies, liftered.

    Shapes as :func:`fbank`; D = num_ceps. Column 0 is log energy (use_energy) or C0; with
    htk_compat it moves last and C0 (not energy) is scaled by sqrt(2), as HTK orders it.
    """
    opts = opts or MfccOptions()
    opts.validate(vtln_warp)

    def make_block_fn(device: torch.device, dtype: torch.dtype) -> BlockFeatures:
        banks = mel_banks(opts.mel, opts.frame, device, dtype, vtln_warp)
        dct = dct_matrix(opts.num_ceps, opts.mel.num_bins, device, dtype)
        lifter = None
        if opts.cepstral_lifter != 0.0:
            lifter = lifter_coeffs(opts.num_ceps, opts.cepstral_lifter, device, dtype)

        def per_block(windowed: Tensor, energy: Tensor | None) -> Tensor:
            if opts.use_energy and not opts.raw_energy:
                energy = log_energy(windowed)
            log_mel = _mel_energies(windowed, banks, opts.mel, True)
            feats = log_mel.clamp_min_(FLT_EPSILON).log_() @ dct
            if lifter is not None:
                feats.mul_(lifter)
            if opts.use_energy:
                assert energy is not None
                feats[:, 0] = _floored_energy(energy, opts.energy_floor)
            if opts.htk_compat:
                first = feats[:, :1] if opts.use_energy else feats[:, :1] * math.sqrt(2.0)
                feats = torch.cat([feats[:, 1:], first], dim=1)
            return feats

        return per_block

    need_raw = opts.use_energy and opts.raw_energy
    return _compute(
        waveforms, lengths, opts.frame, generator, need_raw, opts.num_ceps, make_block_fn
    )


def spectrogram(
    waveforms: Tensor,
    lengths: Tensor | None = None,
    opts: SpectrogramOptions | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Kaldi ``compute-spectrogram-feats``: log power spectrum, bin 0 replaced by log energy.

    Shapes as :func:`fbank`; D = n_fft/2 + 1 (257 for 25 ms at 16 kHz).
    """
    opts = opts or SpectrogramOptions()
    opts.validate()

    def per_block(windowed: Tensor, energy: Tensor | None) -> Tensor:
        if not opts.raw_energy:
            energy = log_energy(windowed)
        assert energy is not None
        feats = _power_spectrum(windowed).clamp_min_(FLT_EPSILON).log_()
        feats[:, 0] = _floored_energy(energy, opts.energy_floor)  # Kaldi: bin 0 = log energy
        return feats

    dim = opts.frame.padded_window_size // 2 + 1
    return _compute(
        waveforms, lengths, opts.frame, generator, opts.raw_energy, dim, lambda d, t: per_block
    )
