"""Snake activation (Ziyin et al. 2020) as used by DAC/BigVGAN: periodic inductive bias for audio.

y = x + 1/(alpha + 1e-9) * sin(alpha * x)^2      (alpha per channel)
"""

from __future__ import annotations

import torch
from torch import nn


def snake(x: torch.Tensor, alpha: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """x (B, C, T), alpha (1, C, 1) -> (B, C, T); the values of DAC's scripted form, bit for bit.

    Without autograd it runs in place on one buffer (the activation is memory-bound; one
    allocation instead of four), and with ``inplace`` the result also overwrites ``x`` (for
    callers that own ``x``); with autograd, the plain out-of-place expression.
    """
    inv = (alpha + 1e-9).reciprocal()
    if torch.is_grad_enabled() and (x.requires_grad or alpha.requires_grad or inplace):
        # autograd may have saved x for another op: never overwrite it while grad mode is on
        return x + inv * torch.sin(alpha * x).pow(2)
    y = torch.mul(alpha, x).sin_().square_().mul_(inv)
    return x.add_(y) if inplace else y.add_(x)


class Snake1d(nn.Module):
    """Per-channel Snake; parameter ``alpha`` (1, C, 1) (DAC's key name), initialised to 1."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """x (B, C, T) -> (B, C, T); ``inplace``: overwrite x when autograd is off."""
        return snake(x, self.alpha, inplace)

    def extra_repr(self) -> str:
        return f"channels={self.alpha.shape[1]}"
