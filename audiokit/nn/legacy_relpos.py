"""ESPnet "legacy" relative positions (``rel_pos_type: legacy``, FunASR's ConformerEncoder default).

Before ESPnet PR #2816 the Conformer used Transformer-XL attention with a ``(1, T, d)`` table of
*descending* absolute sinusoids (``LegacyRelPositionalEncoding``: row ``k`` is position
``P - 1 - k``, where ``P`` = the table length, ``max(5000, T)``) and a rel-shift on the
``(T, T)`` position scores that is not an exact relative shift: for key ``j <= i`` it picks row
``T - 1 - (i - j)``, i.e. position ``P - T + (i - j)``; at ``j = i + 1`` it gives 0 and for
``j > i + 1`` it reads row ``i + 1``'s scores. Checkpoints trained that way (FunASR's
AISHELL Conformer-Paraformer) need exactly this arithmetic, reproduced here.

In ESPnet/FunASR that arithmetic runs on the padded batch, so an utterance's output changes
with the padding. Here it is applied to each utterance's own length
(:func:`legacy_rel_shift_padded`): outputs equal FunASR run on the utterance alone, padded or
not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.nn.attention import RelPositionMultiHeadAttention


def sinusoids(positions: torch.Tensor, d_model: int) -> torch.Tensor:
    """``positions (...)`` -> ``(..., d_model)``: ``[sin(p w_0), cos(p w_0), sin(p w_1), ...]``,
    ``w_i = 10000 ** (-2i / d_model)``, computed in float32 exactly as ESPnet does."""
    freqs = torch.exp(
        torch.arange(0, d_model, 2, device=positions.device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    angles = positions.to(torch.float32)[..., None] * freqs
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)[..., :d_model]


class LegacyRelPositionalEncoding(nn.Module):
    """``x (B, T, d)``, ``lengths (B,)`` -> ``(dropout(x * sqrt(d)), dropout(pos_emb (B, T, d)))``.

    Row ``k`` of utterance ``b`` is position ``P_b - 1 - k``, ``P_b = max(max_len, T_b)``: the
    table ESPnet builds for that utterance alone (a fresh model; ESPnet keeps the longest table
    it has seen, so its outputs past ``max_len`` frames also depend on earlier inputs).
    """

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = lengths.to(x.device).clamp_min(self.max_len) - 1  # (B,) position of row 0
        positions = top[:, None] - torch.arange(x.shape[1], device=x.device)[None, :]
        pos_emb = sinusoids(positions, self.d_model).to(x.dtype)
        return self.dropout(x * self.xscale), self.dropout(pos_emb)


def legacy_rel_shift(x: torch.Tensor) -> torch.Tensor:
    """``(..., T, T)`` -> ``(..., T, T)``: ESPnet's legacy shift of one unpadded utterance (pad
    a zero column on the left, re-view as ``(T + 1, T)``, drop the first row)."""
    *lead, t, t2 = x.shape
    padded = F.pad(x, (1, 0)).reshape(*lead, t2 + 1, t)
    return padded[..., 1:, :].reshape(*lead, t, t2)


def legacy_rel_shift_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """:func:`legacy_rel_shift` of each utterance's own ``(T_b, T_b)`` block of a padded batch.

    ``x (B, h, T, T)``, ``lengths (B,)``. The shift's result depends on the matrix size, so a
    plain shift of the padded matrix would make outputs depend on the padding; this gathers,
    for ``i, j < T_b``: ``x[i, T_b - 1 - (i - j)]`` (``j <= i``), 0 (``j = i + 1``),
    ``x[i + 1, j - i - 2]`` (``j > i + 1``). Entries outside the block are don't-care.
    """
    b, h, t, _ = x.shape
    i = torch.arange(t, device=x.device)[:, None]
    j = torch.arange(t, device=x.device)[None, :]
    lower = j <= i  # (T, T)
    row = torch.where(lower, i, i + 1)
    col = torch.where(lower, lengths.to(x.device)[:, None, None] - 1 - (i - j), j - i - 2)
    keep = (j != i + 1) & (row < t) & (col >= 0)  # (B, T, T)
    index = row.clamp(max=t - 1) * t + col.clamp(0, t - 1)
    out = x.flatten(-2).gather(-1, index.flatten(-2)[:, None].expand(b, h, -1))
    return out.view(b, h, t, t).masked_fill(~keep[:, None], 0.0)


class LegacyRelPositionMultiHeadAttention(RelPositionMultiHeadAttention):
    """Same parameters as :class:`RelPositionMultiHeadAttention`; ``pos_emb`` is ``(B, T, d)``
    from :class:`LegacyRelPositionalEncoding` and scores use :func:`legacy_rel_shift_padded`.
    ``x (B, T, d)``; ``allowed`` bool broadcastable to ``(B, heads, T, T)``, True = may attend;
    ``valid (B, T)`` True on real frames (None: no padding)."""

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        allowed: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, t, d = x.shape
        q = self._heads(self.linear_q(x))
        k = self._heads(self.linear_k(x)).transpose(1, 2)  # (B, h, T, d_k)
        v = self._heads(self.linear_v(x)).transpose(1, 2)
        p = self._heads(self.linear_pos(pos_emb)).transpose(1, 2)  # (B, h, T, d_k)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        scale = 1.0 / math.sqrt(self.d_k)
        lengths = valid.sum(1) if valid is not None else torch.full((b,), t, device=x.device)
        bd = legacy_rel_shift_padded(torch.matmul(q_v, p.transpose(-2, -1)), lengths) * scale
        bias = bd.masked_fill(~allowed, float("-inf"))
        out = F.scaled_dot_product_attention(
            q_u, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0,
            scale=scale,
        )  # fmt: skip
        return self.linear_out(out.transpose(1, 2).reshape(b, t, d))
