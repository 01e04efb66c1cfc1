"""Non-autoregressive decoders for Paraformer: every query position is decoded at once.

Both take ``memory (B, T, d)`` (encoder output) + ``memory_lengths (B,)`` and ``queries (B, N, d)``
(CIF acoustic embeddings, or the sampler's mix with target embeddings) + ``query_lengths (B,)``
and return logits ``(B, N, V)``. Queries attend each other without a causal mask.

:class:`ParaformerSANMDecoder` (FunASR ``ParaformerSANMDecoder``), pre-norm, LayerNorm eps 1e-12::

    block:   y = FFN(LN1(x)); x = x + FSMN(LN2(y)); x = x + CrossAttn(LN3(x), memory)
             (FSMN adds its own input; FFN = Linear -> ReLU -> LayerNorm(ff) -> Linear, no bias)
    fsmn-only blocks (FunASR ``decoders2``): the same without the cross-attention
    final:   x = FFN(LN(x))           # no residual (FunASR ``decoders3``)
    out:     Linear(LN(x))

:class:`TransformerNARDecoder` (FunASR ``ParaformerSANDecoder``): pre-norm transformer blocks
``x + SelfAttn(LN(x)); x + CrossAttn(LN(x), memory); x + FFN(LN(x))`` (ReLU FFN with bias).

``embed`` (``Embedding(V, d)``) is unused by the forward pass: the glancing sampler reads it to
embed target tokens. Masks: ``valid`` bool ``(B, N)``/``(B, T)`` True on real positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.nn.masks import make_valid_mask
from audiokit.nn.sanm import FeedForward, FSMNMemory, layer_norm


class CrossAttention(nn.Module):
    """Multi-head attention of ``x (B, N, d)`` over ``memory (B, T, mem_dim)`` -> ``(B, N, d)``.

    ``kv`` is one fused ``Linear(mem_dim, 2d)`` (k | v), FunASR's ``linear_k_v``.
    """

    def __init__(self, d: int, num_heads: int, dropout: float = 0.0, mem_dim: int | None = None):
        super().__init__()
        if d % num_heads:
            raise ValueError(f"d_model {d} is not divisible by num_heads {num_heads}")
        self.h, self.d_k, self.dropout = num_heads, d // num_heads, dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(mem_dim or d, 2 * d)
        self.out = nn.Linear(d, d)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor
    ) -> torch.Tensor:
        """``memory_valid (B, T)`` True on real memory frames (the only keys attended)."""
        b, n, _ = x.shape
        q = self.q(x).view(b, n, self.h, self.d_k).transpose(1, 2)
        k, v = (
            z.reshape(b, -1, self.h, self.d_k).transpose(1, 2)
            for z in self.kv(memory).chunk(2, dim=-1)
        )
        att = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=memory_valid[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(att.transpose(1, 2).reshape(b, n, self.h * self.d_k))


class SelfAttention(nn.Module):
    """Plain multi-head self-attention (no causal mask); ``qkv`` fused ``Linear(d, 3d)``."""

    def __init__(self, d: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.h, self.d_k, self.dropout = num_heads, d // num_heads, dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (z.view(b, n, self.h, self.d_k).transpose(1, 2) for z in self.qkv(x).chunk(3, -1))
        allowed = valid | ~valid.any(dim=1, keepdim=True)  # an empty utterance: no all -inf rows
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed[:, None, None, :], dropout_p=self.dropout * self.training
        )
        return self.out(att.transpose(1, 2).reshape(b, n, self.h * self.d_k))


class SANMFeedForward(nn.Module):
    """``Linear(d, ff) -> ReLU -> Dropout -> LayerNorm(ff) -> Linear(ff, d, no bias)``."""

    def __init__(self, d: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.w1 = nn.Linear(d, ff_dim)
        self.norm = layer_norm(ff_dim)
        self.w2 = nn.Linear(ff_dim, d, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.norm(self.dropout(torch.relu(self.w1(x)))))


class SANMDecoderBlock(nn.Module):
    """FFN -> FSMN memory (+ residual) [-> cross-attention (+ residual)]; ``(B, N, d)``."""

    def __init__(
        self,
        d: int,
        num_heads: int,
        ff_dim: int,
        kernel_size: int,
        shift: int,
        dropout: float,
        self_attn_dropout: float,
        src_attn_dropout: float,
        cross: bool = True,
    ) -> None:
        super().__init__()
        self.norm_ff = layer_norm(d)
        self.ff = SANMFeedForward(d, ff_dim, dropout)
        self.norm_fsmn = layer_norm(d)
        self.fsmn = FSMNMemory(d, kernel_size, shift, self_attn_dropout)
        self.norm_cross = layer_norm(d) if cross else None
        self.cross = CrossAttention(d, num_heads, src_attn_dropout) if cross else None
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor,
        memory: torch.Tensor,
        memory_valid: torch.Tensor,
    ) -> torch.Tensor:
        y = self.ff(self.norm_ff(x))
        x = x + self.dropout(self.fsmn(self.norm_fsmn(y), valid))
        if self.cross is not None:
            x = x + self.dropout(self.cross(self.norm_cross(x), memory, memory_valid))
        return x


class ParaformerSANMDecoder(nn.Module):
    """SANM NAR decoder (Paraformer-large); see the module docstring for the block layout.

    ``num_layers`` blocks with cross-attention, then ``num_fsmn_layers`` without, then the
    FFN-only block.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 512,
        num_heads: int = 4,
        ff_dim: int = 2048,
        num_layers: int = 16,
        num_fsmn_layers: int = 0,
        kernel_size: int = 11,
        sanm_shift: int = 0,
        dropout: float = 0.1,
        self_attn_dropout: float = 0.1,
        src_attn_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        args = (d_model, num_heads, ff_dim, kernel_size)
        drops = (dropout, self_attn_dropout, src_attn_dropout)
        self.layers = nn.ModuleList(
            SANMDecoderBlock(*args, sanm_shift, *drops) for _ in range(num_layers)
        )
        self.fsmn_layers = nn.ModuleList(
            SANMDecoderBlock(*args, 0, *drops, cross=False) for _ in range(num_fsmn_layers)
        )
        self.final_norm = layer_norm(d_model)
        self.final_ff = SANMFeedForward(d_model, ff_dim, dropout)
        self.after_norm = layer_norm(d_model)
        self.output = nn.Linear(d_model, vocab_size)

    def forward(
        self,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        queries: torch.Tensor,
        query_lengths: torch.Tensor,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, N, V)``; with ``return_hidden`` also each block's output ``(B, N, d)``."""
        valid = make_valid_mask(query_lengths, queries.shape[1])
        memory_valid = make_valid_mask(memory_lengths, memory.shape[1])
        x, hidden = queries, []
        for layer in [*self.layers, *self.fsmn_layers]:
            x = layer(x, valid, memory, memory_valid)
            hidden.append(x)
        x = self.final_ff(self.final_norm(x))
        hidden.append(x)
        logits = self.output(self.after_norm(x))
        return (logits, hidden) if return_hidden else logits


class TransformerNARBlock(nn.Module):
    """Pre-norm self-attention, cross-attention and ReLU FFN, each with a residual."""

    def __init__(
        self, d: int, num_heads: int, ff_dim: int, dropout: float, self_drop: float, src_drop: float
    ) -> None:
        super().__init__()
        self.norm_self = layer_norm(d)
        self.self_attn = SelfAttention(d, num_heads, self_drop)
        self.norm_cross = layer_norm(d)
        self.cross = CrossAttention(d, num_heads, src_drop)
        self.norm_ff = layer_norm(d)
        self.ff = FeedForward(d, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor, memory: torch.Tensor, memory_valid: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.norm_self(x), valid))
        x = x + self.dropout(self.cross(self.norm_cross(x), memory, memory_valid))
        return x + self.dropout(self.ff(self.norm_ff(x)))


class TransformerNARDecoder(nn.Module):
    """Plain transformer NAR decoder (FunASR ``ParaformerSANDecoder``, AISHELL Paraformer)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 2048,
        num_layers: int = 6,
        dropout: float = 0.1,
        self_attn_dropout: float = 0.0,
        src_attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(
            TransformerNARBlock(
                d_model, num_heads, ff_dim, dropout, self_attn_dropout, src_attn_dropout
            )
            for _ in range(num_layers)
        )
        self.after_norm = layer_norm(d_model)
        self.output = nn.Linear(d_model, vocab_size)

    def forward(
        self,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        queries: torch.Tensor,
        query_lengths: torch.Tensor,
        return_hidden: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, N, V)``; with ``return_hidden`` also each block's output ``(B, N, d)``."""
        valid = make_valid_mask(query_lengths, queries.shape[1])
        memory_valid = make_valid_mask(memory_lengths, memory.shape[1])
        x, hidden = queries, []
        for layer in self.layers:
            x = layer(x, valid, memory, memory_valid)
            hidden.append(x)
        logits = self.output(self.after_norm(x))
        return (logits, hidden) if return_hidden else logits
