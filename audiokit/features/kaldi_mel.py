"""Kaldi mel filterbanks (mel-computations.cc), VTLN warping, MFCC DCT and lifter.

The filterbank is built in single precision step by step as Kaldi does (its options and
arithmetic are C++ float), so bin edges fall exactly where Kaldi puts them. It is returned as a
dense ``(N/2 + 1, num_bins)`` matrix: one matmul applies every bank to every frame. The Nyquist
row is zero because Kaldi's banks only span FFT bins ``0 .. N/2 - 1``.

The matrix is banded (each bank covers a short run of FFT bins; 80 banks at N = 512 have 501
nonzeros out of 20560), so the feature path applies it as a few dense blocks along the band
(:func:`mel_bands`, :func:`apply_mel_bands`) instead of one dense matmul.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from audiokit.errors import ConfigError
from audiokit.features.kaldi_options import FrameOptions, MelOptions, cached, options_key

# Cost of one extra matmul call, in multiply-adds per frame, when splitting the mel band into
# blocks: small matmuls run well below peak, so a few mid-sized blocks beat many tiny ones.
# Measured on CPU (MKL, 512 to 3695 frames per call): 80 banks -> 4 blocks (32+16+16+16 banks),
# 2-3x faster than the dense matmul. Accelerators launch a kernel per block: one dense block.
CPU_MEL_BLOCK_COST = 1000
MEL_BLOCK_ALIGN = 8  # block edges on multiples of 8 banks: whole SIMD vectors of outputs

f32 = np.float32


def mel_scale(freq: np.ndarray | float) -> np.ndarray:
    """Hz -> mel, 1127 ln(1 + f/700), in float32 like Kaldi's MelScale."""
    return f32(1127.0) * np.log(f32(1.0) + np.asarray(freq, dtype=f32) / f32(700.0))


def inverse_mel_scale(mel: np.ndarray | float) -> np.ndarray:
    """mel -> Hz, in float32 like Kaldi's InverseMelScale."""
    return f32(700.0) * (np.exp(np.asarray(mel, dtype=f32) / f32(1127.0)) - f32(1.0))


def vtln_warp_freq(
    vtln_low: float, vtln_high: float, low: float, high: float, warp: float, freq: np.ndarray
) -> np.ndarray:
    """Kaldi's piecewise-linear VTLN warp of `freq` (Hz), identity outside [low, high]."""
    one = f32(1.0)
    vtln_low, vtln_high, low, high, warp = (f32(v) for v in (vtln_low, vtln_high, low, high, warp))
    freq = np.asarray(freq, dtype=f32)
    l_ = vtln_low * max(one, warp)
    h_ = vtln_high * min(one, warp)
    scale = f32(1.0 / float(warp))
    f_l, f_h = scale * l_, scale * h_
    scale_left = (f_l - low) / (l_ - low)
    scale_right = (high - f_h) / (high - h_)
    warped = np.where(
        freq < l_,
        low + scale_left * (freq - low),
        np.where(freq < h_, scale * freq, high + scale_right * (freq - high)),
    ).astype(f32)
    return np.where((freq < low) | (freq > high), freq, warped)


def _mel_banks_numpy(mel: MelOptions, frame: FrameOptions, vtln_warp: float) -> np.ndarray:
    sample_freq = f32(frame.sample_frequency)
    padded = frame.padded_window_size
    num_fft_bins = padded // 2
    nyquist = f32(0.5) * sample_freq
    low, high = (f32(v) for v in mel.edges(frame.sample_frequency))
    fft_bin_width = sample_freq / f32(padded)
    mel_low, mel_high = mel_scale(low), mel_scale(high)
    delta = (mel_high - mel_low) / f32(mel.num_bins + 1)

    b = np.arange(mel.num_bins, dtype=f32)
    left = mel_low + b * delta
    center = mel_low + (b + f32(1)) * delta
    right = mel_low + (b + f32(2)) * delta
    if vtln_warp != 1.0:
        vtln_high = f32(mel.vtln_high) + nyquist if mel.vtln_high < 0.0 else f32(mel.vtln_high)

        def warp(m: np.ndarray) -> np.ndarray:
            hz = inverse_mel_scale(m)
            return mel_scale(vtln_warp_freq(mel.vtln_low, vtln_high, low, high, vtln_warp, hz))

        left, center, right = warp(left), warp(center), warp(right)

    fft_mel = mel_scale(fft_bin_width * np.arange(num_fft_bins, dtype=f32))[:, None]  # (K, 1)
    inside = (fft_mel > left) & (fft_mel < right)  # (K, M)
    rising = (fft_mel - left) / (center - left)
    falling = (right - fft_mel) / (right - center)
    weights = np.where(inside, np.where(fft_mel <= center, rising, falling), f32(0.0)).astype(f32)
    empty = ~inside.any(axis=0)
    if empty.any():
        raise ConfigError(
            f"mel bin {int(np.argmax(empty))} of {mel.num_bins} covers no FFT bin "
            f"(FFT size {padded}); lower num_bins or widen low_freq..high_freq"
        )
    if mel.htk_mode and mel_low != 0.0:
        # Kaldi replicates an HTK bug: the first weight of the first bin is zeroed.
        weights[int(np.argmax(inside[:, 0])), 0] = 0.0
    return np.concatenate([weights, np.zeros((1, mel.num_bins), dtype=f32)], axis=0)


def mel_banks(
    mel: MelOptions,
    frame: FrameOptions,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    vtln_warp: float = 1.0,
) -> Tensor:
    """(N/2 + 1, num_bins) triangular mel weights; ``power (.., N/2+1) @ W`` gives mel energies.

    Cached per (options, warp, device, dtype).
    """
    key = (
        "mel",
        options_key(mel),
        options_key(frame),
        float(vtln_warp),
        torch.device(device),
        dtype,
    )
    return cached(
        key,
        lambda: torch.from_numpy(_mel_banks_numpy(mel, frame, vtln_warp)).to(
            device=device, dtype=dtype
        ),
    )


def _band_blocks(lo: list[int], hi: list[int], block_cost: int) -> list[tuple[int, int]]:
    """Split banks 0..M-1 into consecutive ranges [a, b) minimising the sum over blocks of
    ``block_cost + (hi[b-1] - lo[a]) * (b - a)`` (the FFT rows times banks of each block).

    `lo`/`hi` are each bank's first and past-last nonzero FFT row; both grow with the bank.
    Dynamic programming over edges at multiples of MEL_BLOCK_ALIGN (and M).
    """
    m = len(lo)
    edges = sorted({*range(0, m, MEL_BLOCK_ALIGN), m})
    best: dict[int, tuple[int, list[tuple[int, int]]]] = {0: (0, [])}
    for j in edges[1:]:
        best[j] = min(
            (best[i][0] + block_cost + (hi[j - 1] - lo[i]) * (j - i), [*best[i][1], (i, j)])
            for i in edges
            if i < j
        )
    return best[m][1]


MelBand = tuple[int, int, int, int, Tensor]  # FFT rows lo:hi, banks a:b, weights (hi-lo, b-a)


def mel_bands(
    mel: MelOptions,
    frame: FrameOptions,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    vtln_warp: float = 1.0,
) -> tuple[MelBand, ...]:
    """:func:`mel_banks` as dense blocks along its band, for :func:`apply_mel_bands`.

    Every nonzero weight is in exactly one block, so the product sums the same nonzero terms
    as the dense matmul (only the order of the float additions may differ). On CPU the banks
    are split to minimise multiply-adds plus a per-call cost; elsewhere one block spans the
    whole band. Cached per (options, warp, device, dtype).
    """
    dev = torch.device(device)
    block_cost = CPU_MEL_BLOCK_COST if dev.type == "cpu" else 1 << 40

    def build() -> tuple[MelBand, ...]:
        dense = _mel_banks_numpy(mel, frame, vtln_warp)
        nz = dense != 0
        rows = np.arange(dense.shape[0])[:, None]
        # A bank whose weights are all zero (HTK mode can zero the single weight of a bank)
        # gets an empty row range; its block then still writes zeros for it.
        lo = np.where(nz, rows, dense.shape[0]).min(axis=0)
        hi = np.where(nz, rows + 1, 0).max(axis=0)
        lo = np.minimum.accumulate(lo[::-1])[::-1].tolist()  # monotone for the block costs
        hi = np.maximum.accumulate(hi).tolist()
        weights = torch.from_numpy(dense).to(device=dev, dtype=dtype)
        bands = []
        for a, b in _band_blocks(lo, hi, block_cost):
            r0, r1 = lo[a], max(hi[b - 1], lo[a])
            bands.append((r0, r1, a, b, weights[r0:r1, a:b].contiguous()))
        return tuple(bands)

    key = ("mel_bands", options_key(mel), options_key(frame), float(vtln_warp), dev, dtype)
    return cached(key, build)


def apply_mel_bands(power: Tensor, bands: tuple[MelBand, ...], out: Tensor) -> Tensor:
    """``power (C, N/2+1) @ mel_banks`` into `out` (C, num_bins), one matmul per band block.

    `out` may be a column slice of a wider buffer (its rows must have unit column stride).
    """
    for r0, r1, a, b, weights in bands:
        torch.mm(power[:, r0:r1], weights, out=out[:, a:b])
    return out


def dct_matrix(
    num_ceps: int, num_bins: int, device: torch.device | str, dtype: torch.dtype
) -> Tensor:
    """(num_bins, num_ceps) Kaldi DCT-II (row 0 scaled sqrt(1/N), others sqrt(2/N)), transposed.

    ``log_mel (.., num_bins) @ D`` gives the first `num_ceps` cepstra.
    """

    def build() -> Tensor:
        n = torch.arange(num_bins, dtype=torch.float64)
        k = torch.arange(num_ceps, dtype=torch.float64)[:, None]
        norm = torch.full((num_ceps, 1), float(f32(math.sqrt(2.0 / num_bins))), dtype=torch.float64)
        norm[0] = float(f32(math.sqrt(1.0 / num_bins)))
        # Kaldi: float normaliser times a double cosine, stored as float.
        mat = (norm * torch.cos(math.pi / num_bins * (n + 0.5) * k)).to(torch.float32)
        mat[0] = float(f32(math.sqrt(1.0 / num_bins)))
        return mat.t().contiguous().to(device=device, dtype=dtype)

    return cached(("dct", num_ceps, num_bins, torch.device(device), dtype), build)


def lifter_coeffs(
    num_ceps: int, q: float, device: torch.device | str, dtype: torch.dtype
) -> Tensor:
    """(num_ceps,) cepstral lifter 1 + Q/2 sin(pi i / Q); coefficient 0 (C0) is 1."""

    def build() -> Tensor:
        i = torch.arange(num_ceps, dtype=torch.float64)
        qf = float(f32(q))
        coeffs = 1.0 + 0.5 * qf * torch.sin(math.pi * i / qf)
        return coeffs.to(torch.float32).to(device=device, dtype=dtype)

    return cached(("lifter", num_ceps, float(q), torch.device(device), dtype), build)
