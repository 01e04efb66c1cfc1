"""ITU-R BS.1770-4 integrated loudness (LUFS), batched; audiotools' ``Meter`` conventions.

* K-weighting: pyloudnorm's two biquads (RBJ high shelf +4 dB at 1500 Hz, Q 1/sqrt(2); high
  pass at 38 Hz, Q 0.5), designed for the signal's rate and run with ``scipy.signal.lfilter``
  in float64 over every channel at once.
* 400 ms blocks with 75 % overlap; the end is zero-padded so every sample is in a block
  (``1 + ceil((S - K) / stride)`` blocks, as audiotools' julius unfold gives; pyloudnorm rounds
  the count instead, which can drop the last partial block).
* Channel weights 1, 1, 1, 1.41, 1.41 (L, R, C, Ls, Rs); block loudness
  ``-0.691 + 10 log10(sum_c G_c z_c)``; absolute gate -70 LUFS, relative gate -10 LU below the
  absolute-gated loudness (both strict ``>``, as audiotools).
* Signals shorter than 0.5 s are zero-padded to 0.5 s for the measurement; the result is floored
  at -70 LUFS (silence gives -70, never -inf).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal
import torch

MIN_LOUDNESS = -70.0
CHANNEL_GAINS = (1.0, 1.0, 1.0, 1.41, 1.41)
GAIN_FACTOR = math.log(10.0) / 20.0  # dB -> natural-log amplitude gain


def _biquad(kind: str, gain_db: float, q: float, fc: float, rate: float) -> tuple:
    """RBJ cookbook biquad (b, a), normalised by a0 (pyloudnorm's IIRfilter design)."""
    a_ = 10 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * fc / rate
    alpha = np.sin(w0) / (2.0 * q)
    cos = np.cos(w0)
    if kind == "high_shelf":
        sq = 2 * np.sqrt(a_) * alpha
        b = [a_ * ((a_ + 1) + (a_ - 1) * cos + sq), -2 * a_ * ((a_ - 1) + (a_ + 1) * cos),
             a_ * ((a_ + 1) + (a_ - 1) * cos - sq)]  # fmt: skip
        a = [(a_ + 1) - (a_ - 1) * cos + sq, 2 * ((a_ - 1) - (a_ + 1) * cos),
             (a_ + 1) - (a_ - 1) * cos - sq]  # fmt: skip
    else:  # high_pass
        b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
        a = [1 + alpha, -2 * cos, 1 - alpha]
    b, a = np.asarray(b, dtype=np.float64), np.asarray(a, dtype=np.float64)
    return b / a[0], a / a[0]


def k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting stages [(b, a), (b, a)] for `sample_rate` (float64)."""
    return [
        _biquad("high_shelf", 4.0, 1 / np.sqrt(2), 1500.0, sample_rate),
        _biquad("high_pass", 0.0, 0.5, 38.0, sample_rate),
    ]


def block_energies(x: np.ndarray, sample_rate: int, block_size: float = 0.4) -> np.ndarray:
    """K-weighted x (..., S) float64 -> mean square per 400 ms block, 75 % overlap (..., n_blocks).

    No (n_blocks, K) frame copy is made, so hours of audio fit: when a block is exactly four
    steps (every common rate) blocks are sums of four step sums, else differences of one
    cumulative sum.
    """
    size = int(block_size * sample_rate)
    step = int(block_size * sample_rate * 0.25)
    s = x.shape[-1]
    n_blocks = math.ceil((max(s, size) - size) / step) + 1
    total = (n_blocks - 1) * step + size
    sq = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, total - s)])
    np.square(sq, out=sq)
    if size == 4 * step:
        seg = sq.reshape(*x.shape[:-1], n_blocks + 3, step).sum(-1)
        sums = seg[..., :n_blocks] + seg[..., 1 : n_blocks + 1]
        sums += seg[..., 2 : n_blocks + 2] + seg[..., 3 : n_blocks + 3]
    else:
        csum = np.concatenate([np.zeros((*x.shape[:-1], 1)), np.cumsum(sq, axis=-1)], axis=-1)
        starts = np.arange(n_blocks) * step
        sums = csum[..., starts + size] - csum[..., starts]
    return sums / (block_size * sample_rate)


def integrated_loudness(
    wav: torch.Tensor | np.ndarray, sample_rate: int, block_size: float = 0.4
) -> torch.Tensor:
    """Integrated loudness in LUFS of wav (B, C, S), (C, S) as one item, or (S,) -> (B,) float32.

    C <= 5 channels in BS.1770 order (L, R, C, Ls, Rs). Not differentiable (computed in numpy).
    """
    x = wav.detach().cpu().double().numpy() if torch.is_tensor(wav) else np.asarray(wav)
    x = x.astype(np.float64, copy=False)
    if x.ndim == 1:
        x = x[None, None]
    elif x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1] > len(CHANNEL_GAINS):
        raise ValueError(f"loudness: expected (B, C<=5, S) audio, got shape {x.shape}")
    duration = x.shape[-1] / sample_rate
    if duration < 0.5:  # too short for the gating: measure it padded to 0.5 s (audiotools)
        x = np.pad(x, [(0, 0), (0, 0), (0, int((0.5 - duration) * sample_rate))])
    for b, a in k_weighting(sample_rate):
        x = scipy.signal.lfilter(b, a, x, axis=-1)
    z = block_energies(x, sample_rate, block_size)  # (B, C, J)
    gains = np.asarray(CHANNEL_GAINS[: x.shape[1]])[None, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10((gains * z).sum(1))  # (B, J)
        above_abs = block_lufs > MIN_LOUDNESS
        mean_abs = (z * above_abs[:, None]).sum(-1) / above_abs.sum(-1)[:, None]  # (B, C)
        gamma_r = -0.691 + 10.0 * np.log10((gains[..., 0] * mean_abs).sum(-1)) - 10.0  # (B,)
        gated = above_abs & (block_lufs > gamma_r[:, None])
        mean = (z * gated[:, None]).sum(-1) / gated.sum(-1)[:, None]
        mean = np.nan_to_num(mean, nan=0.0)
        lufs = -0.691 + 10.0 * np.log10((gains[..., 0] * mean).sum(-1))
    return torch.from_numpy(np.maximum(lufs, MIN_LOUDNESS)).float()


def loudness_gain(target_db: torch.Tensor | float, current_db: torch.Tensor) -> torch.Tensor:
    """Amplitude gain (B,) taking `current_db` (B,) LUFS to `target_db`: exp((t - c) ln10 / 20)."""
    return torch.exp((torch.as_tensor(target_db, dtype=torch.float32) - current_db) * GAIN_FACTOR)


def normalize_loudness(
    wav: torch.Tensor, sample_rate: int, target_db: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """wav (B, C, S) scaled to `target_db` LUFS per item -> (scaled wav, measured input LUFS (B,))."""
    current = integrated_loudness(wav, sample_rate)
    gain = loudness_gain(target_db, current).to(wav.device, wav.dtype)
    return wav * gain[:, None, None], current
