"""Building blocks of the cache-aware streaming FastConformer (see
:mod:`audiokit.nn.streaming_conformer`): the ``chunked_limited`` mask, relative-position
attention over ``cache + chunk`` (attention-input cache, or projected key/value caches), the
macaron layer (NeMo ``ConformerLayer``) with its causal convolution module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.errors import ConfigError
from audiokit.nn.attention import RelPositionMultiHeadAttention
from audiokit.nn.causal_conv import CausalConv1d, gather_time


def chunked_limited_mask(
    query_pos: torch.Tensor, key_pos: torch.Tensor, left: int, right: int
) -> torch.Tensor:
    """``(Tq, Tk)`` bool, True where a query at position ``query_pos[i]`` may attend a key at
    ``key_pos[j]`` (NeMo ``chunked_limited``). ``right == -1``: no chunks, keys up to ``left``
    frames back and all future; ``left == -1``: unlimited left context."""
    q, k = query_pos[:, None], key_pos[None, :]
    if right < 0:
        return (q - k <= left) if left >= 0 else torch.ones_like(q - k, dtype=torch.bool)
    diff = torch.div(q, right + 1, rounding_mode="floor") - torch.div(
        k, right + 1, rounding_mode="floor"
    )
    left_chunks = left // (right + 1) if left >= 0 else 10**9
    return (diff >= 0) & (diff <= left_chunks)


def rel_shift_cached(x: torch.Tensor, keys: int | None = None) -> torch.Tensor:
    """``(..., Tq, P)`` scores against distances ``K-1, K-2, ...`` -> ``(..., Tq, K)``.

    Queries are the last ``Tq`` of ``K`` key positions (a cache of ``K - Tq`` frames first):
    ``out[i, j] = x[i, Tq - 1 - i + j]``, the column of distance ``(K - Tq + i) - j``. Only
    distances ``K-1 .. -(Tq-1)`` occur, so ``P >= K + Tq - 1`` columns suffice; ``keys``
    (``K``) defaults to ``(P + 1) // 2``, the full ``2K - 1`` table.
    """
    x = x.contiguous()
    tq, p = x.shape[-2], x.shape[-1]
    k = (p + 1) // 2 if keys is None else keys
    stride = (*x.stride()[:-2], p - 1, 1)
    return x.as_strided((*x.shape[:-1], k), stride, x.storage_offset() + tq - 1)


class CachedRelPositionAttention(RelPositionMultiHeadAttention):
    """:class:`RelPositionMultiHeadAttention` whose keys may be ``cat(cache, x)``.

    ``x (B, T, d)``, ``cache (B, C, d)`` or None, ``pos_emb (1, 2(C+T) - 1, d)``, ``allowed``
    bool ``(B, 1, T, C+T)``, True where query ``i`` may attend key ``j`` (None: all may).
    Scores ``((q+u).k + (q+v).p) / sqrt(d_k)`` as NeMo; softmax over allowed keys only.
    """

    def project_positions(self, pos_emb: torch.Tensor) -> torch.Tensor:
        """``(R, d)`` relative embeddings -> ``(h, d_k, R)`` projected, pre-scaled by
        ``1 / sqrt(d_k)``: the right operand of the position scores (see :meth:`forward_kv`)."""
        p = self.linear_pos(pos_emb).view(pos_emb.shape[0], self.h, self.d_k)
        return (p.permute(1, 2, 0) / math.sqrt(self.d_k)).contiguous()

    def forward_kv(
        self,
        x: torch.Tensor,
        pos_proj: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        allowed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Streaming step with already projected keys/values of the cache.

        ``x (B, E, d)`` new normalised inputs; ``k_cache`` / ``v_cache (B, C, d)``;
        ``pos_proj (h, d_k, C + 2E - 1)`` from :meth:`project_positions` for distances
        ``C+E-1 .. -(E-1)``; ``allowed`` as in :meth:`forward` (None: all keys). Returns the
        output ``(B, E, d)`` and the keys / values ``(B, C + E, d)`` of cache + new frames.
        Only the ``E`` new frames are projected: same result as :meth:`forward`.
        """
        b, e, d = x.shape
        k_all = torch.cat([k_cache, self.linear_k(x)], dim=1)  # (B, K, d)
        v_all = torch.cat([v_cache, self.linear_v(x)], dim=1)
        n = k_all.shape[1]
        q = self._heads(self.linear_q(x))
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, h, E, d_k)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        bd = rel_shift_cached(torch.matmul(q_v, pos_proj), n)  # (B, h, E, K), already scaled
        if allowed is not None:
            bd = bd.masked_fill(~allowed, float("-inf"))
        out = F.scaled_dot_product_attention(
            q_u,
            self._heads(k_all).transpose(1, 2),
            self._heads(v_all).transpose(1, 2),
            attn_mask=bd,
            scale=1.0 / math.sqrt(self.d_k),
        )
        return self.linear_out(out.transpose(1, 2).reshape(b, e, d)), k_all, v_all

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        allowed: torch.Tensor | None,
        cache: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, t, d = x.shape
        kv = x if cache is None else torch.cat([cache, x], dim=1)
        q = self._heads(self.linear_q(x))
        k = self._heads(self.linear_k(kv)).transpose(1, 2)  # (B, h, K, d_k)
        v = self._heads(self.linear_v(kv)).transpose(1, 2)
        p = self._heads(self.linear_pos(pos_emb)).transpose(1, 2)  # (1, h, 2K-1, d_k)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        scale = 1.0 / math.sqrt(self.d_k)
        bd = rel_shift_cached(torch.matmul(q_v, p.transpose(-2, -1))) * scale  # (B, h, T, K)
        out = F.scaled_dot_product_attention(
            q_u,
            k,
            v,
            attn_mask=bd if allowed is None else bd.masked_fill(~allowed, float("-inf")),
            dropout_p=self.dropout if self.training else 0.0,
            scale=scale,
        )
        return self.linear_out(out.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """``Linear(d, ff) -> Swish -> Dropout -> Linear(ff, d)``; ``(B, T, d)``."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, ff_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ff_dim, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.linear1(x))
        return self.linear2(self.dropout(h) if self.training else h)


CONV_NORMS = ("layer_norm", "batch_norm")


class CausalConvModule(nn.Module):
    """Pointwise(d -> 2d) -> GLU -> causal depthwise(k) -> norm -> Swish -> pointwise.

    ``norm``: ``"layer_norm"`` (NeMo's streaming default) or ``"batch_norm"`` (NeMo
    ``conv_norm_type: batch_norm``; per-channel, so a fixed affine map per frame at inference:
    streaming still equals offline).

    ``x (B, T, d)``, ``valid (B, T)`` True on real frames (others are zeroed before the
    depthwise conv; None: all real); ``cache (B, d, k-1)`` / ``lengths (B,)`` for streaming
    (see :class:`CausalConv1d`). Returns ``(B, T, d)`` and the next cache (None offline).
    """

    def __init__(self, d_model: int, kernel: int, norm: str = "layer_norm") -> None:
        super().__init__()
        if norm not in CONV_NORMS:
            raise ConfigError(f"conv_norm={norm!r}: use one of {', '.join(CONV_NORMS)}")
        self.pointwise1 = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = CausalConv1d(d_model, d_model, kernel, groups=d_model)
        self.norm: nn.Module = (
            nn.LayerNorm(d_model) if norm == "layer_norm" else nn.BatchNorm1d(d_model)
        )
        self.pointwise2 = nn.Conv1d(d_model, d_model, 1)

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None,
        cache: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # The 1x1 convs as Linear over (B, T, d): same weights, no transposes, faster on CPU.
        pw1, pw2 = self.pointwise1, self.pointwise2
        x = F.glu(F.linear(x, pw1.weight[:, :, 0], pw1.bias), dim=-1)
        if valid is not None:
            x = x * valid[:, :, None].to(x.dtype)
        x, cache = self.depthwise(x.transpose(1, 2), cache, lengths)  # (B, d, T)
        if isinstance(self.norm, nn.BatchNorm1d):
            x = F.silu(self.norm(x).transpose(1, 2))
        else:
            x = F.silu(self.norm(x.transpose(1, 2)))
        return F.linear(x, pw2.weight[:, :, 0], pw2.bias), cache


class FastConformerLayer(nn.Module):
    """One macaron block (NeMo ``ConformerLayer``); ``x (B, T, d)`` -> ``(B, T, d)``."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        kernel: int,
        dropout: float,
        dropout_att: float,
        conv_norm: str = "layer_norm",
    ) -> None:
        super().__init__()
        self.norm_ff1 = nn.LayerNorm(d_model)
        self.ff1 = FeedForward(d_model, ff_dim, dropout)
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = CachedRelPositionAttention(d_model, num_heads, dropout_att)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = CausalConvModule(d_model, kernel, conv_norm)
        self.norm_ff2 = nn.LayerNorm(d_model)
        self.ff2 = FeedForward(d_model, ff_dim, dropout)
        self.norm_out = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout in training only (no dispatch per residual branch at inference)."""
        return self.dropout(x) if self.training else x

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        allowed: torch.Tensor | None,
        valid: torch.Tensor | None,
        attn_cache: torch.Tensor | None = None,
        conv_cache: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``valid (B, T)`` True on real frames (None: all); caches as in
        :class:`StreamingConformerEncoder` (``lengths``: real frames of this chunk, to cut the
        next caches; None: all ``T``). Returns ``(x, next_attn_cache, next_conv_cache)``
        (caches None offline)."""
        x = torch.add(x, self._drop(self.ff1(self.norm_ff1(x))), alpha=0.5)
        a = self.norm_attn(x)
        next_attn = None
        if attn_cache is not None:
            keys = torch.cat([attn_cache, a], dim=1)  # (B, C + T, d)
            next_attn = keep_last(keys, lengths, attn_cache.shape[1])
        x = x + self._drop(self.attn(a, pos_emb, allowed, attn_cache))
        return self._conv_ff(x, valid, conv_cache, lengths, next_attn)

    def forward_kv(
        self,
        x: torch.Tensor,
        pos_proj: torch.Tensor,
        allowed: torch.Tensor | None,
        valid: torch.Tensor | None,
        kv_cache: tuple[torch.Tensor, torch.Tensor],
        conv_cache: torch.Tensor,
        lengths: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Streaming step with projected key/value caches ``(B, C, d)`` each (see
        :meth:`CachedRelPositionAttention.forward_kv`); otherwise as :meth:`forward`.
        Returns ``(x, next (k, v) caches, next conv cache)``."""
        x = torch.add(x, self._drop(self.ff1(self.norm_ff1(x))), alpha=0.5)
        a, k_all, v_all = self.attn.forward_kv(self.norm_attn(x), pos_proj, *kv_cache, allowed)
        c = kv_cache[0].shape[1]
        next_kv = (keep_last(k_all, lengths, c), keep_last(v_all, lengths, c))
        x, _, next_conv = self._conv_ff(x + self._drop(a), valid, conv_cache, lengths, None)
        assert next_conv is not None
        return x, next_kv, next_conv

    def _conv_ff(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None,
        conv_cache: torch.Tensor | None,
        lengths: torch.Tensor | None,
        next_attn: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The layer after its attention: conv module, second FFN, output norm."""
        y, next_conv = self.conv(self.norm_conv(x), valid, conv_cache, lengths)
        x = x + self._drop(y)
        x = torch.add(x, self._drop(self.ff2(self.norm_ff2(x))), alpha=0.5)
        return self.norm_out(x), next_attn, next_conv


def keep_last(x: torch.Tensor, lengths: torch.Tensor | None, size: int) -> torch.Tensor:
    """Next cache from ``x (B, C + T, d)`` = cache + this chunk: the ``size`` frames before
    each stream's ``C + lengths[b]`` (``lengths`` None: all ``T`` real, a view, no copy)."""
    if lengths is None:
        return x[:, x.shape[1] - size :]
    return gather_time(x.transpose(1, 2), lengths, size).transpose(1, 2)
