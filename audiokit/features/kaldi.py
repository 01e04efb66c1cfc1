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
import threading
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
from audiokit.features.kaldi_mel import (
    MelBand,
    apply_mel_bands,
    dct_matrix,
    lifter_coeffs,
    mel_bands,
)
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


# CPU work runs in two cache-sized stages. Framing and FFT go block by block (frames per block
# and thread): a block's working set stays in cache, ~2x faster than one pass over every frame.
# The spectra of up to CPU_CHUNK_FRAMES frames are then featurised together (mel product, log,
# DCT): those steps are cheap per frame, so fewer, larger calls beat per-block ones (each torch
# call costs microseconds). Accelerators take everything in one block and one chunk.
CPU_BLOCK_FRAMES = 512
MAX_CPU_BLOCK_FRAMES = 4096
CPU_CHUNK_FRAMES = 2048

# CPU scratch buffers are kept per thread between calls (up to this many elements each). malloc
# returns large freed blocks to the OS, and every freshly mapped 4 KiB page then costs a page
# fault (~4 us each on the shared VM we measured): without this, ~1000 faults (~4 ms) per call
# of the benchmark in docs/benchmarks.md. Accelerator allocators cache blocks themselves.
MAX_KEPT_SCRATCH = 1 << 22
_kept = threading.local()


def _scratch(name: str, shape: tuple[int, ...], like: Tensor, dtype: torch.dtype) -> Tensor:
    """An uninitialised buffer of `shape` on `like`'s device, reused across calls on CPU."""
    numel = math.prod(shape)
    if like.device.type != "cpu" or numel > MAX_KEPT_SCRATCH:
        return torch.empty(shape, dtype=dtype, device=like.device)
    pool: dict[tuple[str, torch.dtype], Tensor] = _kept.__dict__.setdefault("pool", {})
    buf = pool.get((name, dtype))
    if buf is None or buf.numel() < numel:
        with torch.inference_mode(False):  # an inference tensor could not be reused outside
            buf = pool[(name, dtype)] = torch.empty(numel, dtype=dtype)
    return buf[:numel].view(shape)


# f(spectra (C, K) (float, overwritable), log energy (C,) or None, out (C, dim)): writes the
# features of C frames into `out`.
Featurise = Callable[[Tensor, "Tensor | None", Tensor], None]


@torch.no_grad()  # feature extraction, not a differentiable layer
def _compute(
    waveforms: Tensor,
    lengths: Tensor | None,
    frame: FrameOptions,
    generator: torch.Generator | None,
    energy_kind: str | None,
    dim: int,
    make_featurise: Callable[[torch.device, torch.dtype], Featurise],
) -> tuple[Tensor, Tensor]:
    """Frame, window, FFT and featurise a batch.

    Every real frame gets its power spectrum |X|^2 (K = n_fft/2 + 1 bins) and, with
    ``energy_kind`` "raw" (before preemphasis and window) or "windowed", its log energy;
    ``make_featurise(device, dtype)`` turns those into features. Returns feats (B, F_max, dim),
    zero past each count (or (F, dim) for 1-D input), and the counts (B,) int64.
    """
    wave, lens, single = _check_inputs(waveforms, lengths)
    counts = check_lengths(lens, frame)
    frames, first = frame_signal(wave, lens, counts, frame)  # (R, L) strided view
    rows, dest = frame_index(counts, first, frame.window_shift)
    batch, f_max, total = wave.shape[0], int(counts.max()), rows.numel()
    process = FrameProcessor(frame, wave.device, wave.dtype)
    featurise = make_featurise(wave.device, wave.dtype)
    block = chunk = total
    if wave.device.type == "cpu":
        block = min(total, CPU_BLOCK_FRAMES * torch.get_num_threads(), MAX_CPU_BLOCK_FRAMES)
        chunk = min(total, block * max(1, CPU_CHUNK_FRAMES // block))  # whole blocks
    # Scratch reused throughout: gathered frames, the zero-padded FFT input, a chunk's spectra
    # and energies, and (unless rows are already in output order) its features.
    n_fft, real = frame.padded_window_size, wave.dtype
    scratch = _scratch("frames", (block, frame.window_size), wave, real)
    padded = _scratch("padded", (block, n_fft), wave, real)
    padded[:, frame.window_size :] = 0.0  # the FFT's zero padding; blocks fill the rest
    spectra = _scratch("spectra", (chunk, n_fft // 2 + 1), wave, real)
    energies = _scratch("energies", (chunk,), wave, real) if energy_kind else None
    in_order = total == batch * f_max  # every utterance has F_max frames
    if in_order:
        out = wave.new_empty(total, dim)
    else:
        out, feats = wave.new_zeros(batch * f_max, dim), _scratch("feats", (chunk, dim), wave, real)
    for c0 in range(0, total, chunk):
        cn = min(chunk, total - c0)
        for b0 in range(c0, c0 + cn, block):
            n, i = min(block, c0 + cn - b0), b0 - c0
            x = torch.index_select(frames, 0, rows[b0 : b0 + n], out=scratch[:n])
            energy = process(x, padded[:n], generator, energy_kind == "raw")
            if energy_kind == "windowed":
                energy = log_energy(padded[:n])  # Kaldi: energy of the windowed frame
            if energies is not None:
                energies[i : i + n] = energy
            _power_spectrum(padded[:n], spectra[i : i + n])
        chunk_energy = None if energies is None else energies[:cn]
        if in_order:
            featurise(spectra[:cn], chunk_energy, out[c0 : c0 + cn])
        else:
            featurise(spectra[:cn], chunk_energy, feats[:cn])
            out.index_copy_(0, dest[c0 : c0 + cn], feats[:cn])
    out = out.view(batch, f_max, dim)
    if single:
        return out[0], counts[0]
    return out, counts


def _power_spectrum(windowed: Tensor, out: Tensor) -> Tensor:
    """(C, n_fft) -> (C, n_fft/2 + 1) power spectrum re^2 + im^2, written into `out`."""
    # rfft(out=) would transform into a temporary and copy, so take its own output.
    parts = torch.view_as_real(torch.fft.rfft(windowed, dim=1)).square_()  # (C, K, 2)
    return torch.add(parts[..., 0], parts[..., 1], out=out)


def _floored_energy(energy: Tensor, energy_floor: float) -> Tensor:
    if energy_floor > 0.0:
        return energy.clamp_min(math.log(float(torch.tensor(energy_floor, dtype=torch.float32))))
    return energy


def _energy_kind(use_energy: bool, raw_energy: bool) -> str | None:
    if not use_energy:
        return None
    return "raw" if raw_energy else "windowed"


def _mel_energies(
    power: Tensor, bands: tuple[MelBand, ...], mel: MelOptions, use_power: bool, out: Tensor
) -> Tensor:
    """(C, K) power spectra (overwritten) -> mel energies (not logged) in `out` (C, num_bins)."""
    if not use_power:
        power = power.sqrt_()  # magnitude spectrum
    energies = apply_mel_bands(power, bands, out)
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
    num_bins = opts.mel.num_bins
    # Columns of the energy (first, or last with htk_compat) and of the mel bins.
    e_col = num_bins if opts.htk_compat else 0
    m0 = int(opts.use_energy and not opts.htk_compat)

    def make_featurise(device: torch.device, dtype: torch.dtype) -> Featurise:
        bands = mel_bands(opts.mel, opts.frame, device, dtype, vtln_warp)

        def featurise(power: Tensor, energy: Tensor | None, out: Tensor) -> None:
            feats = _mel_energies(
                power, bands, opts.mel, opts.use_power, out[:, m0 : m0 + num_bins]
            )
            if opts.use_log_fbank:
                feats.clamp_min_(FLT_EPSILON).log_()
            if energy is not None:
                out[:, e_col] = _floored_energy(energy, opts.energy_floor)

        return featurise

    dim = num_bins + int(opts.use_energy)
    kind = _energy_kind(opts.use_energy, opts.raw_energy)
    return _compute(waveforms, lengths, opts.frame, generator, kind, dim, make_featurise)


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

    def make_featurise(device: torch.device, dtype: torch.dtype) -> Featurise:
        bands = mel_bands(opts.mel, opts.frame, device, dtype, vtln_warp)
        dct = dct_matrix(opts.num_ceps, opts.mel.num_bins, device, dtype)
        lifter = None
        if opts.cepstral_lifter != 0.0:
            lifter = lifter_coeffs(opts.num_ceps, opts.cepstral_lifter, device, dtype)

        def featurise(power: Tensor, energy: Tensor | None, out: Tensor) -> None:
            mel = power.new_empty(power.shape[0], opts.mel.num_bins)
            log_mel = _mel_energies(power, bands, opts.mel, True, mel).clamp_min_(FLT_EPSILON)
            feats = log_mel.log_() @ dct
            if lifter is not None:
                feats.mul_(lifter)
            if energy is not None:
                feats[:, 0] = _floored_energy(energy, opts.energy_floor)
            if opts.htk_compat:
                first = feats[:, :1] if opts.use_energy else feats[:, :1] * math.sqrt(2.0)
                feats = torch.cat([feats[:, 1:], first], dim=1)
            out.copy_(feats)

        return featurise

    kind = _energy_kind(opts.use_energy, opts.raw_energy)
    return _compute(waveforms, lengths, opts.frame, generator, kind, opts.num_ceps, make_featurise)


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

    def featurise(power: Tensor, energy: Tensor | None, out: Tensor) -> None:
        assert energy is not None
        torch.clamp_min(power, FLT_EPSILON, out=out).log_()
        out[:, 0] = _floored_energy(energy, opts.energy_floor)  # Kaldi: bin 0 = log energy

    dim = opts.frame.padded_window_size // 2 + 1
    kind = _energy_kind(True, opts.raw_energy)
    return _compute(waveforms, lengths, opts.frame, generator, kind, dim, lambda d, t: featurise)
