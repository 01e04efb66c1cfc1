"""Relative sinusoidal positional encoding (ESPnet ``RelPositionalEncoding``, "latest" version).

For a length-``T`` input it returns embeddings of the ``2T - 1`` relative distances
``T-1, T-2, ..., 1, 0, -1, ..., -(T-1)`` (index ``k`` <-> distance ``T - 1 - k``), the layout
that :func:`audiokit.nn.attention.rel_shift` expects. The input itself is scaled by
``sqrt(d_model)`` (as ESPnet/WeNet do) and gets no absolute position.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def relative_sinusoids(length: int, d_model: int, device=None, dtype=None) -> torch.Tensor:
    """``(2 * length - 1, d_model)`` table for distances ``length-1`` down to ``-(length-1)``.

    Row ``k`` holds ``[sin(r w_0), cos(r w_0), sin(r w_1), ...]`` with ``r = length - 1 - k`` and
    ``w_i = 10000 ** (-2i / d_model)``.
    """
    r = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    freqs = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    angles = r[:, None] * freqs[None, :]
    table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :d_model]
    return table.to(dtype or torch.float32)


class RelPositionalEncoding(nn.Module):
    """``x (B, T, d)`` -> ``(dropout(x * sqrt(d)), dropout(pos_emb (1, 2T - 1, d)))``.

    The sinusoid table is cached (not saved in the state dict) and grown on demand.
    """

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 1500) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("table", relative_sinusoids(max_len, d_model), persistent=False)

    def _positions(self, length: int, x: torch.Tensor) -> torch.Tensor:
        cached = (self.table.shape[0] + 1) // 2
        if length > cached or self.table.device != x.device:
            self.table = relative_sinusoids(max(length, cached), self.d_model, device=x.device)
            cached = (self.table.shape[0] + 1) // 2
        centre = cached - 1  # row of distance 0
        return self.table[centre - length + 1 : centre + length].to(x.dtype)[None]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos_emb = self._positions(x.shape[1], x)
        return self.dropout(x * self.xscale), self.dropout(pos_emb)
