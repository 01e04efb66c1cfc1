"""OWSM-CTC's text side: absolute positions, the prompt encoder, and the prefix/prompt embedding.

The prompt (``text.prev``: the previous utterance's text, or ``<na>``) is embedded with the
model's token embedding, scaled and positionally encoded (``x * sqrt(d) + PE``), and encoded
by a pre-LN Transformer (no input layer; ReLU FFN; final LayerNorm). The same embedding table
gives the ``<lang>``/``<task>`` prefix vectors that the speech encoder prepends.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from audiokit.nn.e_branchformer import LN_EPS, FeedForward, MultiHeadAttention


def sinusoids(length: int, d_model: int, device=None) -> torch.Tensor:
    """``(length, d_model)`` absolute table: ``sin`` on even, ``cos`` on odd channels (float32).

    Computed like ESPnet's ``PositionalEncoding`` (float32 positions x float32 frequencies)
    so imported models see the same values.
    """
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freqs = torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32, device=device)
        * -(math.log(10000.0) / d_model)
    )
    table = torch.zeros(length, d_model, device=device)
    table[:, 0::2] = torch.sin(pos * freqs)
    table[:, 1::2] = torch.cos(pos * freqs)
    return table


class AbsPositionalEncoding(nn.Module):
    """``x (B, T, d)`` -> ``dropout(x * sqrt(d) + PE[:T])``."""

    def __init__(self, d_model: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = sinusoids(x.shape[1], self.d_model, x.device).to(x.dtype)
        return self.dropout(x * self.xscale + pe[None])


class TransformerLayer(nn.Module):
    """Pre-LN Transformer block: ``x + MHA(LN(x))``, then ``x + FFN(LN(x))`` (ReLU)."""

    def __init__(self, d_model: int, num_heads: int, ff_units: int, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=LN_EPS)
        self.ff = FeedForward(d_model, ff_units, "relu", dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x (B, P, d)``, ``valid (B, P)`` True on real tokens."""
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, h, h, valid[:, None, None, :]))
        return x + self.dropout(self.ff(self.norm2(x)))


class PromptEncoder(nn.Module):
    """``(embedded prompt (B, P, d), valid (B, P)) -> (B, P, d)`` (layers + final LayerNorm)."""

    def __init__(
        self, d_model: int, num_heads: int, ff_units: int, num_layers: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(d_model, num_heads, ff_units, dropout) for _ in range(num_layers)
        )
        self.after_norm = nn.LayerNorm(d_model, eps=LN_EPS)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, valid)
        return self.after_norm(x)


class PromptAndPrefix(nn.Module):
    """Token embedding shared by the prompt and the ``<lang><task>`` prefix.

    ``memory(prompt (B, P), lengths (B,)) -> (memory (B, P, d_enc), valid (B, P))`` and
    ``prefix(ids (B, K)) -> (B, K, d_enc)``. Projections to the encoder width exist only when
    the widths differ (ESPnet uses Identity otherwise).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        prompt_d_model: int,
        num_heads: int,
        ff_units: int,
        num_layers: int,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, prompt_d_model)
        self.pos = AbsPositionalEncoding(prompt_d_model, 0.0)
        self.encoder = PromptEncoder(prompt_d_model, num_heads, ff_units, num_layers, dropout)
        same = prompt_d_model == d_model
        self.embed_proj = nn.Identity() if same else nn.Linear(prompt_d_model, d_model)
        self.prompt_proj = nn.Identity() if same else nn.Linear(prompt_d_model, d_model)

    def prefix(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed_proj(self.embed(ids))

    def memory(
        self, prompt: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        valid = torch.arange(prompt.shape[1], device=prompt.device)[None, :] < lengths[:, None]
        ids = prompt.clamp(min=0)  # padding (-1) embeds as id 0; it is masked everywhere
        enc = self.encoder(self.pos(self.embed(ids)), valid)
        return self.prompt_proj(enc), valid
