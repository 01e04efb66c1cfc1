"""ESPnet's default frontend (``DefaultFrontend``): STFT power spectrum -> log mel.

``waves (B, S)`` float in [-1, 1) (int16 / 32768, no dither, no pre-emphasis, no DC removal)
-> ``torch.stft(n_fft, hop_length, win_length, hann window (periodic, zero-padded to n_fft,
centred), center=True, reflect padding)`` -> ``|X|^2`` -> ``@ melmat`` (librosa Slaney mel,
``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk)``) -> ``log(max(mel, 1e-10))``.
``T = 1 + S // hop_length`` frames per utterance.

The reflect padding is done per utterance (each at its own length), so a padded batch gives
every utterance exactly the features it gets alone. ESPnet's GlobalMVN is not part of this:
it lives in the model (CMVN buffers), as for the fbank models.

model.yaml::

    frontend: {type: espnet_logmel, n_fft: 512, win_length: 400, hop_length: 160, n_mels: 80}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from audiokit.errors import ConfigError, FeatureError
from audiokit.features.mel import hz_to_mel, mel_to_hz

LOG_FLOOR = 1e-10  # ESPnet LogMel clamps the mel energies here before the log


def librosa_melmat(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
) -> torch.Tensor:
    """``(n_fft // 2 + 1, n_mels)`` float32 Slaney-normalised mel matrix, as ESPnet stores it.

    Rounds like ``librosa.filters.mel(dtype=float32)``: triangles in float64 stored to
    float32, then scaled by the float32 Slaney norm in float32.
    """
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax:
        raise ConfigError(f"mel range fmin={fmin} fmax={fmax} is empty; need 0 <= fmin < fmax")
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    enorm = (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels])).astype(np.float32)
    weights *= enorm[:, None]
    return torch.from_numpy(np.ascontiguousarray(weights.T))


def _parse_rate(fs: Any) -> int:
    """ESPnet writes ``fs`` as ``16000`` or ``"16k"``."""
    if isinstance(fs, str):
        text = fs.strip().lower()
        scale = 1000 if text.endswith("k") else 1
        return int(float(text.rstrip("k")) * scale)
    return int(fs)


class EspnetLogMelFrontend:
    """``(waves (B, S), lengths (B,)) -> (log-mel (B, T, n_mels), frames (B,))``.

    Frames beyond an utterance's ``1 + length // hop_length`` are zero.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 512,
        win_length: int | None = None,
        hop_length: int = 128,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: float | None = None,
        htk: bool = False,
    ) -> None:
        win_length = n_fft if win_length is None else int(win_length)
        if not 0 < win_length <= n_fft or hop_length < 1:
            raise ConfigError(
                f"frontend: win_length {win_length} / hop_length {hop_length} do not fit "
                f"n_fft {n_fft}; need 0 < win_length <= n_fft and hop_length >= 1"
            )
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.win_length = win_length
        self.frame_shift = int(hop_length)
        self.n_mels = int(n_mels)
        self.melmat = librosa_melmat(self.sample_rate, self.n_fft, self.n_mels, fmin, fmax, htk)
        self.window = torch.hann_window(win_length)  # periodic, as torch.stft/ESPnet use

    @property
    def frame_shift_s(self) -> float:
        return self.frame_shift / self.sample_rate

    def num_frames(self, num_samples: int) -> int:
        return 1 + int(num_samples) // self.frame_shift

    def _reflect_padded(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, S + n_fft)``: each row reflect-padded by ``n_fft // 2`` at its own length."""
        pad = self.n_fft // 2
        b, s = waves.shape
        short = lengths <= pad
        if bool(short.any()):
            i = int(short.nonzero()[0, 0])
            raise FeatureError(
                f"utterance {i} of the batch has {int(lengths[i])} samples; the STFT needs more "
                f"than {pad} (n_fft // 2); pad or drop it"
            )
        n = torch.arange(-pad, s + pad, device=waves.device)[None, :]  # (1, S + 2 pad)
        last = (lengths.to(waves.device) - 1)[:, None]
        idx = torch.where(n < 0, -n, n)
        idx = torch.where(idx > last, 2 * last - idx, idx)  # mirror at the utterance's end
        idx = idx.clamp(0, s - 1)  # frames past an utterance's end: any sample, masked later
        return waves.gather(1, idx)

    def __call__(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if waves.dim() != 2:
            raise FeatureError(f"waves must be (B, S), got shape {tuple(waves.shape)}")
        x = self._reflect_padded(waves.float(), lengths)
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.frame_shift,
            win_length=self.win_length,
            window=self.window.to(x.device),
            center=False,
            onesided=True,
            return_complex=True,
        )  # (B, F, T)
        power = spec.real**2 + spec.imag**2
        mel = torch.matmul(power.transpose(1, 2), self.melmat.to(x.device))  # (B, T, n_mels)
        feats = mel.clamp(min=LOG_FLOOR).log()
        frames = 1 + lengths.to(x.device) // self.frame_shift
        valid = torch.arange(feats.shape[1], device=x.device)[None, :] < frames[:, None]
        return feats.masked_fill(~valid[:, :, None], 0.0), frames


def build_espnet_logmel_frontend(options: dict[str, Any], sample_rate: int) -> EspnetLogMelFrontend:
    """Builder for ``frontend.type: espnet_logmel`` (options: ESPnet ``frontend_conf`` names)."""
    known = {"n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax", "htk", "fs", "dither"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"frontend option(s) {', '.join(unknown)} are not supported by espnet_logmel; "
            "remove them from model.yaml"
        )
    rate = _parse_rate(options.get("fs", sample_rate))
    if rate != int(sample_rate):
        raise ConfigError(
            f"frontend fs {rate} differs from sample_rate {sample_rate}; fix model.yaml"
        )
    return EspnetLogMelFrontend(
        sample_rate=rate,
        n_fft=int(options.get("n_fft", 512)),
        win_length=options.get("win_length"),
        hop_length=int(options.get("hop_length", 128)),
        n_mels=int(options.get("n_mels", 80)),
        fmin=float(options.get("fmin") or 0.0),
        fmax=options.get("fmax"),
        htk=bool(options.get("htk", False)),
    )
