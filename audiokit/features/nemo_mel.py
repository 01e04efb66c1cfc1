"""NeMo's log-mel features (``AudioToMelSpectrogramPreprocessor`` / ``FilterbankFeatures``), batched.

The steps and their order follow NeMo exactly, because imported NeMo models (FastConformer,
cache-aware streaming) expect these features bit for bit:

1. valid frames ``floor((S + 2 * pad - n_fft) / hop)`` with ``pad = n_fft // 2`` (centred STFT),
   i.e. ``S // hop`` -- one less than the STFT gives: NeMo zero-masks the last column;
2. dither (training only), then pre-emphasis ``x[t] - 0.97 x[t-1]`` (``x[0]`` kept) with every
   sample at or past the utterance's length set to 0, so a padded batch equals one-by-one;
3. centred STFT (constant zero padding), symmetric window of ``win_length`` centred in ``n_fft``,
   magnitude ``sqrt(re^2 + im^2)`` raised to ``mag_power``;
4. librosa mel filters (Slaney scale, ``mel_norm``) -> ``log(mel + 2**-24)`` (``log_zero_guard``);
5. frame splicing (NeMo's ``splice_frames`` tiles the features ``frame_splicing`` times; kept as is);
6. normalisation ``per_feature`` / ``all_features`` over the valid frames (unbiased std + 1e-5),
   any other value (``"NA"``) = none;
7. frames at or past the valid length set to ``pad_value``; time padded to a multiple of ``pad_to``.

Options use NeMo's preprocessor config names (``window_size``/``window_stride`` in seconds or
``n_window_size``/``n_window_stride`` in samples, ``features``, ``n_fft``, ``normalize`` ...), so
a ``.nemo`` model's ``preprocessor`` section goes into model.yaml's ``frontend:`` unchanged
(plus ``type: nemo_mel``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from audiokit.errors import ConfigError, FeatureError
from audiokit.features.mel import mel_filterbank

_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "bartlett": torch.bartlett_window,
}
_NORM_EPS = 1e-5  # NeMo's CONSTANT added to the std
# Accepted for config compatibility but without effect at inference (training-only augmentation,
# deprecated STFT switches, the class path).
_IGNORED_KEYS = {
    "_target_", "stft_conv", "stft_exact_pad", "rng", "nb_augmentation_prob", "nb_max_freq",
    "use_grads", "max_duration",
}  # fmt: skip


@dataclass(frozen=True)
class NemoMelOptions:
    """Resolved options (NeMo defaults). ``win_length``/``hop_length`` are in samples."""

    sample_rate: int = 16000
    win_length: int = 320
    hop_length: int = 160
    window: str = "hann"
    normalize: str | None = "per_feature"
    n_fft: int = 512
    preemph: float | None = 0.97
    features: int = 64
    lowfreq: float = 0.0
    highfreq: float | None = None
    log: bool = True
    log_zero_guard_type: str = "add"
    log_zero_guard_value: float | str = 2**-24
    dither: float = 1e-5
    pad_to: int = 16
    frame_splicing: int = 1
    exact_pad: bool = False
    pad_value: float = 0.0
    mag_power: float = 2.0
    mel_norm: str | None = "slaney"

    @classmethod
    def from_config(cls, cfg: dict[str, Any], sample_rate: int | None = None) -> NemoMelOptions:
        """Options from a NeMo ``preprocessor`` config dict (NeMo's key names and defaults)."""
        cfg = {k: v for k, v in cfg.items() if k not in _IGNORED_KEYS and k != "type"}
        if cfg.pop("use_torchaudio", False):
            raise ConfigError(
                "frontend use_torchaudio=true (NeMo's FilterbankFeaturesTA) is not supported; "
                "set use_torchaudio: false in model.yaml"
            )
        sr = int(cfg.pop("sample_rate", sample_rate or 16000))
        if sample_rate is not None and sr != int(sample_rate):
            raise ConfigError(
                f"frontend sample_rate {sr} differs from the model's sample rate {sample_rate}; "
                "make them equal in model.yaml"
            )
        win = _samples(cfg, "window_size", "n_window_size", sr, 0.02)
        hop = _samples(cfg, "window_stride", "n_window_stride", sr, 0.01)
        if "features" in cfg and "nfilt" in cfg:
            raise ConfigError("frontend has both features and nfilt; keep one in model.yaml")
        if "nfilt" in cfg:
            cfg["features"] = cfg.pop("nfilt")
        known = {f.name for f in fields(cls)} - {"sample_rate", "win_length", "hop_length"}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(
                f"frontend option(s) {', '.join(unknown)} unknown to nemo_mel; remove them from model.yaml"
            )
        n_fft = cfg.pop("n_fft", None) or 2 ** math.ceil(math.log2(win))
        opts = cls(sample_rate=sr, win_length=win, hop_length=hop, n_fft=int(n_fft), **cfg)
        opts.validate()
        return opts

    def validate(self) -> None:
        if self.win_length <= 0 or self.hop_length <= 0:
            raise ConfigError(
                f"nemo_mel window {self.win_length} / stride {self.hop_length} samples must be "
                "positive; fix window_size/window_stride"
            )
        if self.win_length > self.n_fft:
            raise ConfigError(
                f"nemo_mel window {self.win_length} exceeds n_fft {self.n_fft}; raise n_fft"
            )
        if self.window not in _WINDOWS:
            raise ConfigError(
                f"nemo_mel window {self.window!r} unknown; use one of {', '.join(_WINDOWS)}"
            )
        if self.log_zero_guard_type not in ("add", "clamp"):
            raise ConfigError(
                f"nemo_mel log_zero_guard_type {self.log_zero_guard_type!r} unknown; use add or clamp"
            )
        if isinstance(self.log_zero_guard_value, str) and self.log_zero_guard_value not in (
            "tiny",
            "eps",
        ):
            raise ConfigError(
                f"nemo_mel log_zero_guard_value {self.log_zero_guard_value!r} unknown; use a number, tiny or eps"
            )
        if not isinstance(self.pad_to, int) or self.pad_to < 0:
            raise ConfigError(f"nemo_mel pad_to {self.pad_to!r} unsupported; use an integer >= 0")
        if self.exact_pad and self.hop_length % 2 == 1:
            raise ConfigError(
                "nemo_mel exact_pad needs an even window_stride in samples; change one of them"
            )
        if self.frame_splicing < 1:
            raise ConfigError(f"nemo_mel frame_splicing {self.frame_splicing} must be >= 1")
        if isinstance(self.normalize, dict):
            raise ConfigError(
                "nemo_mel normalize with fixed_mean/fixed_std is not supported; use NA"
            )

    @property
    def stft_pad(self) -> int:
        """Samples padded on each side before the STFT (explicit when exact_pad, else centring)."""
        return (self.n_fft - self.hop_length) // 2 if self.exact_pad else self.n_fft // 2


def _samples(
    cfg: dict[str, Any], seconds_key: str, samples_key: str, sr: int, default: float
) -> int:
    """NeMo's window/stride resolution: ``int(seconds * sr)`` unless given in samples."""
    seconds, samples = cfg.pop(seconds_key, None), cfg.pop(samples_key, None)
    if seconds and samples:
        raise ConfigError(
            f"frontend has both {seconds_key} and {samples_key}; keep one in model.yaml"
        )
    if samples:
        return int(samples)
    return int((seconds or default) * sr)


def valid_frames(num_samples: torch.Tensor, opts: NemoMelOptions) -> torch.Tensor:
    """NeMo's ``get_seq_len``: valid feature frames per utterance ``(B,)`` (0 for empty input)."""
    n = torch.div(
        num_samples + 2 * opts.stft_pad - opts.n_fft, opts.hop_length, rounding_mode="floor"
    )
    return torch.where(num_samples == 0, torch.zeros_like(n), n).long()


def _normalize(x: torch.Tensor, frames: torch.Tensor, kind: str | None) -> torch.Tensor:
    """x (B, D, T) normalised over its valid frames (``frames`` (B,)), as NeMo's normalize_batch."""
    if kind not in ("per_feature", "all_features"):
        return x
    valid = (torch.arange(x.shape[-1], device=x.device) < frames[:, None]).unsqueeze(
        1
    )  # True = real frame
    if kind == "per_feature":
        count = frames.to(x.dtype)[:, None]  # (B, 1)
        mean = torch.where(valid, x, 0.0).sum(-1) / count
        var = torch.where(valid, x - mean[..., None], 0.0).pow(2).sum(-1) / (count - 1.0)
        std = var.sqrt().nan_to_num(nan=0.0) + _NORM_EPS  # one frame: NeMo sets std to 0
        return (x - mean[..., None]) / std[..., None]
    count = (frames * x.shape[1]).to(x.dtype)  # (B,) elements over features and valid frames
    mean = torch.where(valid, x, 0.0).sum((1, 2)) / count
    var = torch.where(valid, x - mean[:, None, None], 0.0).pow(2).sum((1, 2)) / (count - 1.0)
    std = var.sqrt() + _NORM_EPS
    return (x - mean[:, None, None]) / std[:, None, None]


class NemoMel:
    """NeMo log-mel frontend: ``(waves (B, S), lengths (B,)) -> (feats (B, T, D), frames (B,))``.

    ``T`` is ``max(S) // hop + 1`` (centred STFT; rounded up to ``pad_to``), one column more than
    the longest valid length, exactly as NeMo returns it; frames at or past ``frames[b]`` hold
    ``pad_value``. ``D = features * frame_splicing``. ``window``/``filterbank`` may be given (e.g.
    the ``preprocessor.featurizer.window`` / ``fb`` buffers of a checkpoint); by default they are
    computed (symmetric window, librosa filters), which matches those buffers to float rounding.
    """

    def __init__(
        self,
        opts: NemoMelOptions,
        window: torch.Tensor | None = None,
        filterbank: torch.Tensor | None = None,
    ) -> None:
        opts.validate()
        self.opts = opts
        self.frame_shift = opts.hop_length
        self.sample_rate = opts.sample_rate
        self.window = (
            window.float().reshape(-1)
            if window is not None
            else _WINDOWS[opts.window](opts.win_length, periodic=False)
        )
        if filterbank is None:
            highfreq = opts.highfreq or opts.sample_rate / 2  # NeMo: 0/None -> Nyquist
            filterbank = mel_filterbank(
                opts.sample_rate, opts.n_fft, opts.features, float(opts.lowfreq), highfreq,
                htk=False, norm=opts.mel_norm,
            )  # fmt: skip
        self.filterbank = filterbank.float().reshape(opts.features, opts.n_fft // 2 + 1)

    @property
    def frame_shift_s(self) -> float:
        return self.frame_shift / self.sample_rate

    @property
    def feature_dim(self) -> int:
        return self.opts.features * self.opts.frame_splicing

    def num_frames(self, num_samples: int) -> int:
        """Valid feature frames for ``num_samples`` samples (``num_samples // hop`` when centred)."""
        return int(valid_frames(torch.tensor([int(num_samples)]), self.opts)[0])

    def __call__(
        self,
        waves: torch.Tensor,
        lengths: torch.Tensor,
        training: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of a padded batch; ``training`` adds NeMo's dither (off at inference)."""
        o = self.opts
        if waves.dim() != 2 or lengths.shape != waves.shape[:1]:
            raise FeatureError(
                f"nemo_mel expects waves (B, S) and lengths (B,), got {tuple(waves.shape)} and "
                f"{tuple(lengths.shape)}; batch the audio first"
            )
        x = waves.float()
        lengths = lengths.to(x.device).long()
        frames = valid_frames(lengths, o)
        if o.exact_pad:
            x = torch.nn.functional.pad(x, (o.stft_pad, o.stft_pad))
        if training and o.dither > 0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + o.dither * noise
        if o.preemph is not None:
            # NeMo masks by the *unpadded* sample length, also when exact_pad shifted the audio.
            keep = torch.arange(x.shape[1], device=x.device) < lengths[:, None]
            x = torch.cat((x[:, :1], x[:, 1:] - o.preemph * x[:, :-1]), dim=1)
            x = x.masked_fill(~keep, 0.0)
        spec = torch.stft(
            x,
            n_fft=o.n_fft,
            hop_length=o.hop_length,
            win_length=o.win_length,
            window=self.window.to(x.device),
            center=not o.exact_pad,
            pad_mode="constant",
            return_complex=True,
        )
        mag = torch.view_as_real(spec).pow(2).sum(-1).sqrt()  # (B, F, T)
        if o.mag_power != 1.0:
            mag = mag.pow(o.mag_power)
        feats = torch.matmul(self.filterbank.to(x.device), mag)  # (B, D, T)
        if o.log:
            guard = _guard_value(o.log_zero_guard_value, feats.dtype)
            if o.log_zero_guard_type == "add":
                feats = torch.log(feats + guard)
            else:
                feats = torch.log(torch.clamp(feats, min=guard))
        if o.frame_splicing > 1:
            feats = feats.repeat(1, o.frame_splicing, 1)  # what NeMo's splice_frames computes
        feats = _normalize(feats, frames, o.normalize)
        pad = torch.arange(feats.shape[-1], device=x.device)[None, :] >= frames[:, None]
        feats = feats.masked_fill(pad.unsqueeze(1), o.pad_value)
        if o.pad_to > 0 and feats.shape[-1] % o.pad_to:
            extra = o.pad_to - feats.shape[-1] % o.pad_to
            feats = torch.nn.functional.pad(feats, (0, extra), value=o.pad_value)
        return feats.transpose(1, 2).contiguous(), frames


def _guard_value(value: float | str, dtype: torch.dtype) -> float:
    if value == "tiny":
        return torch.finfo(dtype).tiny
    if value == "eps":
        return torch.finfo(dtype).eps
    return float(value)


def build_nemo_mel_frontend(options: dict[str, Any], sample_rate: int) -> NemoMel:
    """Frontend builder for model.yaml ``frontend: {type: nemo_mel, <NeMo preprocessor keys>}``."""
    return NemoMel(NemoMelOptions.from_config(options, sample_rate))
