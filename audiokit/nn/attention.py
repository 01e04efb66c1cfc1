"""Relative-position multi-head self-attention (Transformer-XL; ESPnet ``RelPositionMultiHeadedAttention``).

Scores for query ``i`` and key ``j`` (per head, ``d_k = d_model / heads``)::

    (q_i + u) . k_j  +  (q_i + v) . p_{i-j}        all divided by sqrt(d_k)
       matrix_ac          matrix_bd

``u``/``v`` are learnt per-head biases and ``p_r`` is the projected embedding of distance ``r``
(:class:`audiokit.nn.positional.RelPositionalEncoding`). ``matrix_bd`` is computed against all
``2T - 1`` distances, rel-shifted to ``(T, T)``, and handed to
``torch.nn.functional.scaled_dot_product_attention`` as an additive float mask together with
the padding/chunk mask (``-inf`` where attention is not allowed); SDPA does ``matrix_ac``,
softmax, dropout and the value product in one fused call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """``(..., T, 2T - 1)`` scores against distances ``T-1 .. -(T-1)`` -> ``(..., T, T)``.

    ``out[..., i, j] = x[..., i, T - 1 - i + j]``, i.e. the column of distance ``i - j``. Done as
    a strided view (no copy): row ``i`` starts ``T - 1 - i`` columns in, so consecutive rows are
    ``2T - 2`` elements apart in the contiguous buffer.
    """
    x = x.contiguous()
    t = x.shape[-2]
    if x.shape[-1] != 2 * t - 1:
        raise ValueError(f"rel_shift expects (..., T, 2T-1), got {tuple(x.shape)}")
    size = (*x.shape[:-1], t)
    stride = (*x.stride()[:-2], 2 * t - 2, 1)
    return x.as_strided(size, stride, x.storage_offset() + t - 1)


class RelPositionMultiHeadAttention(nn.Module):
    """Self-attention ``x (B, T, d)`` -> ``(B, T, d)`` with relative positions.

    ``pos_emb``: ``(1, 2T - 1, d)`` from :class:`RelPositionalEncoding`. ``allowed``: bool,
    broadcastable to ``(B, heads, T, T)``, True where query ``i`` may attend key ``j`` (see
    :func:`audiokit.nn.masks.attention_allowed_mask`; every row needs one True).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.h = num_heads
        self.d_k = d_model // num_heads
        self.dropout = dropout
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(num_heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(num_heads, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` -> ``(B, T, h, d_k)``."""
        return x.view(x.shape[0], x.shape[1], self.h, self.d_k)

    def forward(
        self, x: torch.Tensor, pos_emb: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        b, t, d = x.shape
        q = self._heads(self.linear_q(x))
        k = self._heads(self.linear_k(x)).transpose(1, 2)  # (B, h, T, d_k)
        v = self._heads(self.linear_v(x)).transpose(1, 2)
        p = self._heads(self.linear_pos(pos_emb)).transpose(1, 2)  # (1, h, 2T-1, d_k)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, h, T, d_k)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        scale = 1.0 / math.sqrt(self.d_k)
        bd = rel_shift(torch.matmul(q_v, p.transpose(-2, -1))) * scale  # (B, h, T, T)
        bias = bd.masked_fill(~allowed, float("-inf"))
        out = F.scaled_dot_product_attention(
            q_u,
            k,
            v,
            attn_mask=bias,
            dropout_p=self.dropout if self.training else 0.0,
            scale=scale,
        )
        return self.linear_out(out.transpose(1, 2).reshape(b, t, d))
