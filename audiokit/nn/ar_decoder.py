"""Autoregressive transformer attention decoder (ESPnet ``TransformerDecoder`` layout, pre-norm).

Each layer (``x`` is ``(B, U, d)``, ``memory`` the encoder output ``(B, T, d)``)::

    x = x + drop(SelfAttn(LN1(x)))          causal: token u sees tokens <= u
    x = x + drop(CrossAttn(LN2(x), memory)) padding frames of memory masked
    x = x + drop(FFN(LN3(x)))               Linear -> ReLU -> Dropout -> Linear

``embed`` = token embedding * sqrt(d) + absolute sinusoidal position (interleaved sin/cos, as
ESPnet's ``PositionalEncoding``); ``after_norm`` and ``output_layer`` close the stack.

Incremental decoding keeps an explicit :class:`DecoderState` (self-attention keys/values per
layer, grown one step at a time, and the cross-attention keys/values of the memory, computed
once), so each step costs one query position instead of re-running the prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.nn.masks import make_valid_mask


def absolute_sinusoids(length: int, d_model: int, device=None) -> torch.Tensor:
    """``(length, d_model)``: row ``p`` = ``[sin(p w_0), cos(p w_0), sin(p w_1), ...]``."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freqs = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )
    angles = pos * freqs
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :d_model]


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention ``query (B, U, d)`` over ``key``/``value`` ``(B, S, d)``.

    ``allowed``: bool broadcastable to ``(B, heads, U, S)``, True where a query may attend a key.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.h, self.d_k, self.dropout = num_heads, d_model // num_heads, dropout
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, d)`` -> ``(B, h, S, d_k)``."""
        return x.view(x.shape[0], x.shape[1], self.h, self.d_k).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``x (B, S, d)``, each ``(B, h, S, d_k)``."""
        return self.heads(self.linear_k(x)), self.heads(self.linear_v(x))

    def attend(
        self, query: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None
    ) -> torch.Tensor:
        """``query (B, U, d)`` against projected ``k``/``v`` -> ``(B, U, d)``."""
        b, u, d = query.shape
        out = F.scaled_dot_product_attention(
            self.heads(self.linear_q(query)),
            k,
            v,
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.linear_out(out.transpose(1, 2).reshape(b, u, d))


class DecoderLayer(nn.Module):
    """Pre-norm self-attention + cross-attention + FFN block; ``(B, U, d)`` -> ``(B, U, d)``."""

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.src_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        self_kv: tuple[torch.Tensor, torch.Tensor],
        self_allowed: torch.Tensor | None,
        src_kv: tuple[torch.Tensor, torch.Tensor],
        src_allowed: torch.Tensor,
    ) -> torch.Tensor:
        """``self_kv`` are the keys/values of every visible position (the prefix when cached)."""
        x = x + self.dropout(self.self_attn.attend(self.norm1(x), *self_kv, self_allowed))
        x = x + self.dropout(self.src_attn.attend(self.norm2(x), *src_kv, src_allowed))
        return x + self.dropout(self.feed_forward(self.norm3(x)))


@dataclass
class DecoderState:
    """Incremental-decoding cache for a batch of ``B`` running sequences.

    self_k/self_v: per layer ``(B, h, U, d_k)`` keys/values of the ``U`` tokens fed so far.
    src_k/src_v:   per layer ``(B, h, T, d_k)`` keys/values of the memory (fixed).
    src_allowed:   ``(B, 1, 1, T)`` bool, True on real memory frames.
    """

    self_k: list[torch.Tensor]
    self_v: list[torch.Tensor]
    src_k: list[torch.Tensor]
    src_v: list[torch.Tensor]
    src_allowed: torch.Tensor

    @property
    def length(self) -> int:
        return self.self_k[0].shape[2] if self.self_k else 0


class TransformerARDecoder(nn.Module):
    """Autoregressive decoder: ``tokens (B, U)`` + ``memory (B, T, d)`` -> logits ``(B, U, V)``."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 2048,
        num_layers: int = 6,
        dropout: float = 0.1,
        max_len: int = 5000,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.embed = nn.Embedding(vocab_size, d_model)
        self.register_buffer("pe", absolute_sinusoids(max_len, d_model), persistent=False)
        self.embed_dropout = nn.Dropout(dropout)
        self.decoders = nn.ModuleList(
            DecoderLayer(d_model, num_heads, ff_dim, dropout) for _ in range(num_layers)
        )
        self.after_norm = nn.LayerNorm(d_model)
        self.output_layer = nn.Linear(d_model, vocab_size)

    def _embed(self, tokens: torch.Tensor, offset: int) -> torch.Tensor:
        x = self.embed(tokens) * math.sqrt(self.d_model)
        return self.embed_dropout(x + self.pe[offset : offset + tokens.shape[1]].to(x.dtype))

    def forward(
        self, tokens: torch.Tensor, memory: torch.Tensor, memory_lengths: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits ``(B, U, V)``; token ``u`` sees tokens ``<= u`` (padding after a
        sequence's end only affects positions that are padding themselves)."""
        u = tokens.shape[1]
        causal = torch.ones(u, u, dtype=torch.bool, device=tokens.device).tril()
        src_allowed = make_valid_mask(memory_lengths, memory.shape[1])[:, None, None, :]
        x = self._embed(tokens, 0)
        for layer in self.decoders:
            h = layer.norm1(x)
            x = layer(
                x,
                layer.self_attn.project_kv(h),
                causal,
                layer.src_attn.project_kv(memory),
                src_allowed,
            )
        return self.output_layer(self.after_norm(x))

    def init_state(self, memory: torch.Tensor, memory_lengths: torch.Tensor) -> DecoderState:
        """Empty self-attention cache and the memory's cross-attention keys/values."""
        src = [layer.src_attn.project_kv(memory) for layer in self.decoders]
        b = memory.shape[0]
        h, d_k = self.decoders[0].self_attn.h, self.decoders[0].self_attn.d_k
        empty = memory.new_zeros(b, h, 0, d_k)
        return DecoderState(
            [empty] * len(self.decoders),
            [empty] * len(self.decoders),
            [k for k, _ in src],
            [v for _, v in src],
            make_valid_mask(memory_lengths, memory.shape[1])[:, None, None, :],
        )

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """Feed the next token ``(B,)``; returns log-probs ``(B, V)`` and the grown state."""
        x = self._embed(tokens[:, None], state.length)  # (B, 1, d)
        new_k, new_v = [], []
        for i, layer in enumerate(self.decoders):
            k, v = layer.self_attn.project_kv(layer.norm1(x))
            k = torch.cat([state.self_k[i], k], dim=2)
            v = torch.cat([state.self_v[i], v], dim=2)
            new_k.append(k)
            new_v.append(v)
            x = layer(x, (k, v), None, (state.src_k[i], state.src_v[i]), state.src_allowed)
        logits = self.output_layer(self.after_norm(x[:, 0]))
        return F.log_softmax(logits, dim=-1), DecoderState(
            new_k, new_v, state.src_k, state.src_v, state.src_allowed
        )

    @torch.no_grad()
    def greedy_decode(
        self,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        sos: int,
        eos: int,
        max_len: int,
        min_len: int = 0,
    ) -> list[list[int]]:
        """Batched greedy search: token ids per utterance (without ``sos``/``eos``).

        Every sequence starts from ``sos``; a sequence stops at ``eos`` or after ``max_len``
        tokens; the loop stops when all have (``min_len`` steps are forced, e.g. for benchmarks).
        """
        b = memory.shape[0]
        state = self.init_state(memory, memory_lengths)
        last = torch.full((b,), sos, dtype=torch.long, device=memory.device)
        out = torch.full((b, max_len), eos, dtype=torch.long, device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        for i in range(max_len):
            logp, state = self.step(last, state)
            if i < min_len:
                logp[:, eos] = float("-inf")
            last = logp.argmax(dim=-1).masked_fill(done, eos)
            out[:, i] = last
            done = done | (last == eos)
            if bool(done.all()):
                break
        results = []
        for row in out.tolist():
            results.append(row[: row.index(eos)] if eos in row else row)
        return results
