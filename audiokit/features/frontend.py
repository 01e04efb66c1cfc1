"""Waveform -> features, as a model dir's ``frontend:`` section describes it.

A model.yaml names its frontend by ``type`` (``fbank``: Kaldi filterbanks; ``nemo_mel``: NeMo's
mel spectrogram) with that type's options. :func:`build_frontend` turns the section into a
:class:`Frontend`; :class:`audiokit.asr.inference.Recognizer` uses nothing else, so a model
with a new kind of features needs only a new entry in :data:`FRONTENDS`.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import torch

from audiokit.errors import ConfigError

# frontend.type -> "module:builder"; a builder takes (options without "type", sample_rate).
FRONTENDS: dict[str, str] = {
    "fbank": "audiokit.features.frontend:build_fbank_frontend",
    "nemo_mel": "audiokit.features.nemo_mel:build_nemo_mel_frontend",
    "espnet_logmel": "audiokit.features.espnet_logmel:build_espnet_logmel_frontend",
}


class Frontend(Protocol):
    """``(waves (B, S) float32 in [-1, 1], lengths (B,)) -> (feats (B, T, D), frames (B,))``."""

    frame_shift: int  # samples between frames

    @property
    def frame_shift_s(self) -> float: ...

    def num_frames(self, num_samples: int) -> int: ...

    def __call__(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class FbankFrontend:
    """Kaldi fbank (dither 0) with the options of a model dir."""

    def __init__(self, options) -> None:
        self.options = options
        self.frame_shift = options.frame.window_shift
        self.sample_rate = int(options.frame.sample_frequency)

    @property
    def frame_shift_s(self) -> float:
        return self.frame_shift / self.sample_rate

    def num_frames(self, num_samples: int) -> int:
        from audiokit.features.kaldi_frames import num_frames

        return int(num_frames(int(num_samples), self.options.frame))

    def __call__(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        from audiokit.features.kaldi import fbank

        return fbank(waves, lengths, self.options)


def build_fbank_frontend(options: dict[str, Any], sample_rate: int) -> FbankFrontend:
    from audiokit.model_dir import frontend_options

    return FbankFrontend(frontend_options({"type": "fbank", **options}, sample_rate, dither=0.0))


def build_frontend(frontend: dict[str, Any] | None, sample_rate: int) -> Frontend:
    """The :class:`Frontend` of a model.yaml ``frontend:`` section (dither always 0)."""
    if frontend is None:
        raise ConfigError("model.yaml has no frontend section; re-pack or re-import the model")
    kind = str(frontend.get("type", "fbank"))
    if kind not in FRONTENDS:
        raise ConfigError(
            f"frontend.type={kind!r} is unknown; use one of {', '.join(FRONTENDS)} in model.yaml"
        )
    module, _, name = FRONTENDS[kind].partition(":")
    builder = getattr(importlib.import_module(module), name)
    return builder({k: v for k, v in frontend.items() if k != "type"}, sample_rate)
