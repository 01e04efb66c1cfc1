"""Kaldi mel filterbanks (mel-computations.cc), VTLN warping, MFCC DCT and lifter.

The filterbank is built in single precision step by step as Kaldi does (its options and
arithmetic are C++ float), so bin edges fall exactly where Kaldi puts them. It is returned as a
dense ``(N/2 + 1, num_bins)`` matrix: one matmul applies every bank to every frame. The Nyquist
row is zero because Kaldi's banks only span FFT bins ``0 .. N/2 - 1``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from audiokit.errors import ConfigError
from audiokit.features.kaldi_options import FrameOptions, MelOptions, cached, options_key

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
