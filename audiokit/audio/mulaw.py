"""Mu-law companding to discrete classes (WaveNet-style targets), as torchaudio's mu_law_encoding.

mu = Q - 1. Encoding: y = sign(x) * ln(1 + mu|x|) / ln(1 + mu), then y in [-1, 1] is mapped to
the nearest of Q levels. Decoding inverts that. The round-trip error at amplitude |x| is at
most about ln(1 + mu) * (|x| + 1/mu) / mu (half a level in the companded domain).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from audiokit.errors import ConfigError

if TYPE_CHECKING:
    import torch


def _mu(quantization_channels: int) -> int:
    if (
        isinstance(quantization_channels, bool)
        or int(quantization_channels) != quantization_channels
        or quantization_channels < 2
    ):
        raise ConfigError(
            f"quantization_channels={quantization_channels!r} is invalid; give an integer >= 2 (256 is usual)"
        )
    return int(quantization_channels) - 1


def mulaw_encode(x: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """(..., T) float in [-1, 1] -> (..., T) int64 classes in [0, Q-1]. Values outside [-1, 1] are clipped."""
    import torch

    mu = _mu(quantization_channels)
    if not torch.is_floating_point(x):
        x = x.to(torch.get_default_dtype())
    x = x.clamp(-1.0, 1.0)
    y = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((y + 1) / 2 * mu + 0.5).to(torch.int64)


def mulaw_decode(q: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """(..., T) int classes in [0, Q-1] -> (..., T) float in [-1, 1] (float32 unless q is float64)."""
    import torch

    mu = _mu(quantization_channels)
    dtype = q.dtype if q.dtype == torch.float64 else torch.float32
    y = q.to(dtype) / mu * 2 - 1
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu
