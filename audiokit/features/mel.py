"""Mel filterbanks and a batched log-mel spectrogram (librosa conventions, for TTS/codec losses).

These are *not* Kaldi fbank features (see :mod:`audiokit.features.kaldi` for those): the filters
follow ``librosa.filters.mel`` (Slaney or HTK mel scale, optional Slaney area normalisation) and
the spectrogram follows ``librosa.feature.melspectrogram`` (centred frames, periodic Hann window).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from audiokit.errors import ConfigError

# Slaney's auditory-toolbox mel scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(freqs: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Hz -> mel on the HTK (``2595 log10(1 + f/700)``) or Slaney scale; float64."""
    f = np.asanyarray(freqs, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    linear = f / _F_SP
    log_part = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log_part, linear)


def mel_to_hz(mels: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`; float64."""
    m = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    linear = _F_SP * m
    log_part = _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log_part, linear)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: Literal["slaney"] | None = "slaney",
) -> torch.Tensor:
    """Triangular mel filters, equal to ``librosa.filters.mel`` with the same arguments.

    Returns a float32 tensor of shape ``(n_mels, n_fft // 2 + 1)``; multiply a power or
    magnitude spectrogram ``(..., n_fft // 2 + 1, frames)`` by it to get mel bands.
    ``norm="slaney"`` divides each triangle by its width in Hz (constant energy per band).
    """
    if norm not in ("slaney", None):
        raise ConfigError(f"mel norm {norm!r} is not supported; use 'slaney' or None")
    if fmax is None:
        fmax = sample_rate / 2.0
    if not 0.0 <= fmin < fmax:
        raise ConfigError(f"mel range fmin={fmin} fmax={fmax} is empty; need 0 <= fmin < fmax")
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    # n_mels + 2 band edges equally spaced on the mel scale.
    edges = mel_to_hz(
        np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels + 2), htk=htk
    )
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


class MelSpectrogram(nn.Module):
    """Batched mel spectrogram matching ``librosa.feature.melspectrogram``.

    Input ``(B, T)`` (or ``(T,)``) waveforms; output ``(B, n_mels, frames)`` (or
    ``(n_mels, frames)``) with ``frames = 1 + T // hop_length`` when ``center`` else
    ``1 + (T - n_fft) // hop_length``. ``power`` 2 gives power, 1 magnitude. With ``log`` the
    result is ``log(clamp(mel, min=log_floor))`` (the usual TTS/vocoder loss target).
    """

    def __init__(
        self,
        sample_rate: int = 22050,
        n_fft: int = 2048,
        hop_length: int | None = None,
        win_length: int | None = None,
        n_mels: int = 128,
        fmin: float = 0.0,
        fmax: float | None = None,
        center: bool = True,
        pad_mode: Literal["constant", "reflect"] = "constant",
        power: float = 2.0,
        htk: bool = False,
        norm: Literal["slaney"] | None = "slaney",
        log: bool = False,
        log_floor: float = 1e-5,
    ) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length if hop_length is not None else n_fft // 4
        self.win_length = win_length if win_length is not None else n_fft
        if self.win_length > n_fft:
            raise ConfigError(f"win_length {self.win_length} exceeds n_fft {n_fft}; lower it")
        self.center = center
        self.pad_mode = pad_mode
        self.power = power
        self.log = log
        self.log_floor = log_floor
        # Periodic Hann, as scipy.signal.get_window('hann', N, fftbins=True) used by librosa.
        self.register_buffer(
            "window", torch.hann_window(self.win_length, periodic=True), persistent=False
        )
        self.register_buffer(
            "mel_basis",
            mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk=htk, norm=norm),
            persistent=False,
        )

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames per utterance for sample lengths ``(B,)``."""
        if self.center:
            return 1 + torch.div(lengths, self.hop_length, rounding_mode="floor")
        return 1 + torch.div(lengths - self.n_fft, self.hop_length, rounding_mode="floor")

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        squeeze = waveforms.dim() == 1
        x = waveforms.unsqueeze(0) if squeeze else waveforms
        spec = torch.stft(
            x.to(self.window.dtype),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=self.center,
            pad_mode=self.pad_mode,
            return_complex=True,
        ).abs()
        if self.power != 1.0:
            spec = spec.pow(self.power)
        mel = torch.matmul(self.mel_basis, spec)  # (B, n_mels, frames)
        if self.log:
            mel = torch.log(torch.clamp(mel, min=self.log_floor))
        return mel.squeeze(0) if squeeze else mel
