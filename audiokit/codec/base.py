"""What every audiokit codec offers: the encode/decode contract the CLI, recipes and TTS use.

A codec is an ``nn.Module`` registered with :func:`audiokit.registry.register_model`, so a packed
model dir (``model.yaml`` + ``model.safetensors``) loads it. Waveforms are ``(B, C, S)`` float32
at ``sample_rate``, roughly in [-1, 1]; frames are ``hop_length`` samples.

Two kinds:

* ``"rvq"`` (DAC, EnCodec, QDAC): ``encode`` gives integer ``codes (B, K, T)`` — K codebooks,
  the first k of which reconstruct at a lower bitrate (``n_codebooks=k``).
* ``"latent"`` (the CLEAR-style VAE): ``encode`` gives continuous ``latents (B, D, T)`` (the
  posterior mean) and ``logvar``; ``decode`` takes ``latents``.

Training goes through :mod:`audiokit.codec.gan` (generator/discriminator optimiser groups); the
generator side of every codec is ``forward_train(wav) -> CodecOutput``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch

CodecKind = Literal["rvq", "latent"]


@dataclass
class CodecEncoding:
    """The result of ``encode``; everything ``decode`` needs (the .npz holds these fields).

    codes:       (B, K, T) int64 for RVQ codecs, else None. Models that encode in segments
                 (EnCodec's 48 kHz model) concatenate the segments' codes along T.
    latents:     (B, D, T) float for latent codecs (posterior mean), else None.
    logvar:      (B, D, T) posterior log-variance (latent codecs), else None.
    scales:      (B, n_segments) per-segment input scale (EnCodec ``normalize``), else None.
    num_samples: input length in samples; ``decode`` trims its output to it (None: untrimmed).
    extra:       model-specific scalars/lists needed to decode (e.g. ``segment_frames``,
                 ``chunk_length`` and ``input_db`` of DAC's chunked compress); JSON-able.
    """

    codes: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    logvar: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    num_samples: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class CodecOutput:
    """The generator's training forward (``forward_train``).

    audio:  (B, C, S) reconstruction, trimmed to the input length S.
    latent: (B, D, T) what the decoder consumed (quantised latent / VAE sample).
    codes:  (B, K, T) int64 codes used (RVQ), else None.
    losses: generator-side auxiliary losses, unweighted scalars, e.g. ``commitment``,
            ``codebook`` (RVQ), ``kl`` (VAE), ``asr`` (QDAC); the GAN wrapper weights them.
    """

    audio: torch.Tensor
    latent: torch.Tensor
    codes: torch.Tensor | None = None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class AudioCodec(Protocol):
    """Attributes and methods every codec model provides (see the module docstring)."""

    kind: CodecKind
    sample_rate: int
    channels: int
    hop_length: int

    def encode(self, wav: torch.Tensor, n_codebooks: int | None = None) -> CodecEncoding:
        """wav (B, C, S) -> encoding; `n_codebooks` None = all (ignored by latent codecs)."""
        ...

    def decode(self, encoding: CodecEncoding) -> torch.Tensor:
        """encoding -> wav (B, C, S'), trimmed to `encoding.num_samples` when it is set."""
        ...

    def forward_train(self, wav: torch.Tensor) -> CodecOutput:
        """Training forward of the generator (quantiser dropout etc. applied)."""
        ...


class RVQInfo(Protocol):
    """Extra attributes of ``kind == "rvq"`` codecs."""

    n_codebooks: int
    codebook_size: int

    def n_codebooks_for_bandwidth(self, kbps: float) -> int:
        """Codebooks used at `kbps` kilobits/s (EnCodec's rule: floor(bw / bw_per_q), >= 1)."""
        ...


def frame_rate(codec: AudioCodec) -> float:
    """Frames per second of a codec's codes/latents."""
    return codec.sample_rate / codec.hop_length


def bitrate_kbps(n_codebooks: int, codebook_size: int, frames_per_second: float) -> float:
    """Bitrate of k codebooks of `codebook_size` entries at `frames_per_second`, in kbit/s."""
    import math

    return n_codebooks * math.log2(codebook_size) * frames_per_second / 1000.0
