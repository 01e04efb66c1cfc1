"""Cache-aware streaming FastConformer encoder (Noroozi et al. 2023; NeMo ``ConformerEncoder``
with ``causal_downsampling``, ``att_context_style: chunked_limited``, ``conv_context_size: causal``).

``feats (B, T, F) -> CausalConvSubsampling (8x) -> x * sqrt(d) -> layers`` (no final norm), each
layer (NeMo ``ConformerLayer``)::

    x = x + 0.5 * FFN1(LN(x));  x = x + MHSA_relpos(LN(x));  x = x + CausalConv(LN(x))
    x = x + 0.5 * FFN2(LN(x));  x = LN(x)

Attention context ``[left, right]`` (output frames) is ``chunked_limited``: frames are grouped in
chunks of ``right + 1``; a chunk sees itself and ``left // (right + 1)`` chunks before it. As
``left`` is a multiple of ``right + 1``, a streaming step that encodes one chunk with a cache of
the last ``left`` attention inputs sees exactly what the offline pass sees, and the depthwise
conv is causal with a ``kernel - 1`` frame cache: streaming output == offline output.

Streaming state (:class:`EncoderState`, batched over streams):

- ``mel``/``mel_len``: input frames not yet fully used; the buffer starts at input frame
  ``factor * (frames_out - 2)`` (the pre-encode cache: ``factor + 1`` frames already used plus the
  pending ones). At stream start it holds ``2 * factor`` left frames that are masked as padding.
- ``attn_cache (L, B, left, d)`` + ``cache_len (B,)`` valid entries (right-aligned): the last
  ``left`` normalised attention inputs of each layer (NeMo ``cache_last_channel``);
- ``conv_cache (L, B, d, kernel - 1)``: the last depthwise-conv inputs (``cache_last_time``);
- ``frames_out (B,)``: output frames emitted so far.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.errors import ConfigError
from audiokit.nn.attention import RelPositionMultiHeadAttention
from audiokit.nn.causal_conv import (
    CausalConv1d,
    CausalConvSubsampling,
    causal_subsampled_length,
    gather_time,
)
from audiokit.nn.masks import chunk_attention_mask, make_valid_mask
from audiokit.nn.positional import RelPositionalEncoding


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


def rel_shift_cached(x: torch.Tensor) -> torch.Tensor:
    """``(..., Tq, 2K - 1)`` scores against distances ``K-1 .. -(K-1)`` -> ``(..., Tq, K)``.

    Queries are the last ``Tq`` of ``K`` key positions (a cache of ``K - Tq`` frames first):
    ``out[i, j] = x[i, Tq - 1 - i + j]``, the column of distance ``(K - Tq + i) - j``.
    """
    x = x.contiguous()
    tq, p = x.shape[-2], x.shape[-1]
    k = (p + 1) // 2
    stride = (*x.stride()[:-2], p - 1, 1)
    return x.as_strided((*x.shape[:-1], k), stride, x.storage_offset() + tq - 1)


class CachedRelPositionAttention(RelPositionMultiHeadAttention):
    """:class:`RelPositionMultiHeadAttention` whose keys may be ``cat(cache, x)``.

    ``x (B, T, d)``, ``cache (B, C, d)`` or None, ``pos_emb (1, 2(C+T) - 1, d)``, ``allowed``
    bool ``(B, 1, T, C+T)``, True where query ``i`` may attend key ``j``.
    Scores ``((q+u).k + (q+v).p) / sqrt(d_k)`` as NeMo; softmax over allowed keys only.
    """

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        allowed: torch.Tensor,
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
            attn_mask=bd.masked_fill(~allowed, float("-inf")),
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
        return self.linear2(self.dropout(F.silu(self.linear1(x))))


class CausalConvModule(nn.Module):
    """Pointwise(d -> 2d) -> GLU -> causal depthwise(k) -> LayerNorm -> Swish -> pointwise.

    ``x (B, T, d)``, ``valid (B, T)`` True on real frames (others are zeroed before the
    depthwise conv); ``cache (B, d, k-1)`` / ``lengths (B,)`` for streaming (see
    :class:`CausalConv1d`). Returns ``(B, T, d)`` and the next cache (None offline).
    """

    def __init__(self, d_model: int, kernel: int) -> None:
        super().__init__()
        self.pointwise1 = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = CausalConv1d(d_model, d_model, kernel, groups=d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pointwise2 = nn.Conv1d(d_model, d_model, 1)

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor,
        cache: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = F.glu(self.pointwise1(x.transpose(1, 2)), dim=1)
        x = x * valid[:, None, :].to(x.dtype)
        x, cache = self.depthwise(x, cache, lengths)
        x = self.norm(x.transpose(1, 2))
        return self.pointwise2(F.silu(x).transpose(1, 2)).transpose(1, 2), cache


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
    ) -> None:
        super().__init__()
        self.norm_ff1 = nn.LayerNorm(d_model)
        self.ff1 = FeedForward(d_model, ff_dim, dropout)
        self.norm_attn = nn.LayerNorm(d_model)
        self.attn = CachedRelPositionAttention(d_model, num_heads, dropout_att)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = CausalConvModule(d_model, kernel)
        self.norm_ff2 = nn.LayerNorm(d_model)
        self.ff2 = FeedForward(d_model, ff_dim, dropout)
        self.norm_out = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        allowed: torch.Tensor,
        valid: torch.Tensor,
        attn_cache: torch.Tensor | None = None,
        conv_cache: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``valid (B, T)`` True on real frames; caches as in :class:`StreamingConformerEncoder`
        (``lengths``: real frames of this chunk, to cut the next caches). Returns
        ``(x, next_attn_cache, next_conv_cache)`` (caches None offline)."""
        x = x + 0.5 * self.dropout(self.ff1(self.norm_ff1(x)))
        a = self.norm_attn(x)
        next_attn = None
        if attn_cache is not None:
            keys = torch.cat([attn_cache, a], dim=1)  # (B, C + T, d)
            c = attn_cache.shape[1]
            next_attn = gather_time(keys.transpose(1, 2), lengths, c).transpose(1, 2)
        x = x + self.dropout(self.attn(a, pos_emb, allowed, attn_cache))
        y, next_conv = self.conv(self.norm_conv(x), valid, conv_cache, lengths)
        x = x + self.dropout(y)
        x = x + 0.5 * self.dropout(self.ff2(self.norm_ff2(x)))
        return self.norm_out(x), next_attn, next_conv


@dataclass
class EncoderState:
    """Per-stream streaming state of :class:`StreamingConformerEncoder` (see the module doc)."""

    att_context: tuple[int, int]
    mel: torch.Tensor  # (B, P, F) buffered input frames, starting at factor * (frames_out - 2)
    mel_len: torch.Tensor  # (B,) real frames in mel
    attn_cache: torch.Tensor  # (L, B, left, d)
    conv_cache: torch.Tensor  # (L, B, d, kernel - 1)
    cache_len: torch.Tensor  # (B,) valid (right-aligned) entries of attn_cache
    frames_out: torch.Tensor  # (B,) output frames emitted so far


class StreamingConformerEncoder(nn.Module):
    """Features ``(B, T, input_dim)`` + ``lengths (B,)`` -> ``(B, T', d_model)`` + ``(B,)``.

    ``att_context_size``: list of ``[left, right]`` contexts the model is trained for (drawn
    per training step with ``att_context_probs``, uniform by default); the first is the default.
    Output frames at or past an utterance's length are zero.
    """

    def __init__(
        self,
        input_dim: int,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        num_layers: int = 16,
        conv_kernel: int = 9,
        subsampling_factor: int = 8,
        subsampling_channels: int = 256,
        att_context_size: list[list[int]] | None = None,
        att_context_probs: list[float] | None = None,
        xscaling: bool = True,
        dropout: float = 0.1,
        dropout_pre_encoder: float = 0.1,
        dropout_att: float = 0.1,
    ) -> None:
        super().__init__()
        contexts = [tuple(int(v) for v in c) for c in (att_context_size or [[-1, -1]])]
        for left, right in contexts:
            if left > 0 and right >= 0 and left % (right + 1):
                raise ConfigError(
                    f"att_context_size [{left}, {right}]: left must be a multiple of right + 1 "
                    "so streaming sees the offline context; e.g. use "
                    f"[{left - left % (right + 1)}, {right}]"
                )
        if att_context_probs is not None and (
            len(att_context_probs) != len(contexts) or abs(sum(att_context_probs) - 1) > 1e-6
        ):
            raise ConfigError(
                f"att_context_probs {att_context_probs} must have one probability per "
                f"att_context_size entry ({len(contexts)}) summing to 1"
            )
        self.att_contexts: list[tuple[int, int]] = contexts  # type: ignore[assignment]
        self.att_context_probs = att_context_probs
        self.input_dim = input_dim
        self.d_model = d_model
        self.conv_kernel = conv_kernel
        self.subsampling = CausalConvSubsampling(
            input_dim, d_model, subsampling_factor, subsampling_channels
        )
        self.xscale = math.sqrt(d_model) if xscaling else 1.0
        self.pos_enc = RelPositionalEncoding(d_model, 0.0)  # scaling and dropout done here
        self.dropout_pre = nn.Dropout(dropout_pre_encoder)
        self.layers = nn.ModuleList(
            FastConformerLayer(d_model, num_heads, ff_dim, conv_kernel, dropout, dropout_att)
            for _ in range(num_layers)
        )

    @property
    def subsampling_factor(self) -> int:
        return self.subsampling.factor

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return causal_subsampled_length(lengths.long(), self.subsampling_factor)

    def draw_att_context(self) -> tuple[int, int]:
        """A context drawn with ``att_context_probs`` (multi-lookahead training)."""
        return random.choices(self.att_contexts, weights=self.att_context_probs)[0]

    def resolve_context(self, att_context: tuple[int, int] | list[int] | None) -> tuple[int, int]:
        if att_context is None:
            return self.att_contexts[0]
        ctx = (int(att_context[0]), int(att_context[1]))
        if ctx not in self.att_contexts:
            known = ", ".join(f"{a},{b}" for a, b in self.att_contexts)
            raise ConfigError(
                f"att_context {ctx[0]},{ctx[1]} is not one the model was trained for; use one of: {known}"
            )
        return ctx

    def _positions(self, x: torch.Tensor, cache: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled + dropped-out input and ``(1, 2(cache+T) - 1, d)`` relative embeddings."""
        pos_emb = self.pos_enc._positions(x.shape[1] + cache, x)
        return self.dropout_pre(x * self.xscale), pos_emb

    def forward(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        att_context: tuple[int, int] | list[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Offline pass with the ``chunked_limited`` mask of ``att_context`` (default: first)."""
        left, right = self.resolve_context(att_context)
        x, out_lengths = self.subsampling(feats, lengths)
        x, pos_emb = self._positions(x, 0)
        t = x.shape[1]
        valid = make_valid_mask(out_lengths, t)
        if right >= 0:
            chunk = chunk_attention_mask(
                t, right + 1, left // (right + 1) if left >= 0 else -1, x.device
            )
        else:
            pos = torch.arange(t, device=x.device)
            chunk = chunked_limited_mask(pos, pos, left, right)
        allowed = valid[:, None, None, :] & chunk[None, None]
        allowed = allowed | ~allowed.any(-1, keepdim=True)  # padding rows: avoid all -inf
        for layer in self.layers:
            x, _, _ = layer(x, pos_emb, allowed, valid)
        return x * valid[:, :, None].to(x.dtype), out_lengths

    # ------------------------------------------------------------------ streaming

    def init_state(
        self,
        batch_size: int,
        att_context: tuple[int, int] | list[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> EncoderState:
        """Zero caches for ``batch_size`` new streams at ``att_context`` (default: first)."""
        left, right = self.resolve_context(att_context)
        if left < 0 or right < 0:
            raise ConfigError(
                f"att_context {left},{right} is unlimited; streaming needs left >= 0 and right >= 0"
            )
        n, s = len(self.layers), self.subsampling_factor
        zeros = torch.zeros
        return EncoderState(
            att_context=(left, right),
            mel=zeros(batch_size, 2 * s, self.input_dim, device=device, dtype=dtype),
            mel_len=torch.full((batch_size,), 2 * s, dtype=torch.long, device=device),
            attn_cache=zeros(n, batch_size, left, self.d_model, device=device, dtype=dtype),
            conv_cache=zeros(
                n, batch_size, self.d_model, self.conv_kernel - 1, device=device, dtype=dtype
            ),
            cache_len=torch.zeros(batch_size, dtype=torch.long, device=device),
            frames_out=torch.zeros(batch_size, dtype=torch.long, device=device),
        )

    def stream_step(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        state: EncoderState,
        final: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, EncoderState]:
        """Encode the next input frames of a batch of streams.

        ``feats (B, T, input_dim)``: new frames, ``lengths (B,)`` real ones per stream (0 is
        fine). Emits every output frame of the whole attention chunks (``right + 1`` frames)
        whose input has fully arrived; the rest stays buffered. With ``final=True`` the
        remainder is flushed as a last (partial) chunk, with the same right zero padding as the
        offline pass, so the concatenated outputs equal :meth:`forward` at this context.
        Returns ``out (B, E, d)`` (zero past ``out_lengths``), ``out_lengths (B,)``, the new state.
        """
        left, right = state.att_context
        s, chunk = self.subsampling_factor, right + 1
        dev = feats.device
        lengths = lengths.to(dev).long()
        # Append each stream's new frames right after its buffered ones.
        full = torch.cat([state.mel, feats.to(state.mel.dtype)], dim=1)  # (B, P + T, F)
        total = state.mel_len + lengths
        width = max(int(total.max()), 1)
        t = torch.arange(width, device=dev)[None, :]
        src = torch.where(
            t < state.mel_len[:, None], t, t - state.mel_len[:, None] + state.mel.shape[1]
        )
        src = src.clamp(max=full.shape[1] - 1)
        mel = full.gather(1, src[:, :, None].expand(-1, -1, full.shape[2]))
        mel = mel * (t < total[:, None])[:, :, None].to(mel.dtype)
        if final:
            emit = (causal_subsampled_length(total, s) - 2).clamp(min=0)
            need = total
        else:  # local output t needs input frames up to s * t; keep whole chunks only
            emit = ((total - 1) // s - 1).clamp(min=0) // chunk * chunk
            need = torch.minimum(s * (emit + 1) + 1, total)
        e = int(emit.max())
        if e == 0:
            out = mel.new_zeros(mel.shape[0], 0, self.d_model)
            return out, emit, replace(state, mel=mel, mel_len=total)
        left_invalid = (2 - state.frames_out).clamp(min=0) * s
        x, _ = self.subsampling(mel[:, : int(need.max())], need, left_invalid)
        x = x[:, 2 : 2 + e]  # the first two frames lack left input context: drop them
        x, pos_emb = self._positions(x, left)
        valid = make_valid_mask(emit, e)
        q_pos = torch.arange(e, device=dev)
        k_pos = torch.arange(-left, e, device=dev)  # frames_out is a multiple of the chunk
        cached = torch.arange(left, device=dev)[None, :] >= (left - state.cache_len)[:, None]
        key_valid = torch.cat([cached, valid], dim=1)  # (B, left + E)
        allowed = key_valid[:, None, None, :] & chunked_limited_mask(q_pos, k_pos, left, right)
        allowed = allowed | ~allowed.any(-1, keepdim=True)
        attn_next, conv_next = [], []
        for i, layer in enumerate(self.layers):
            x, ac, cc = layer(
                x, pos_emb, allowed, valid, state.attn_cache[i], state.conv_cache[i], emit
            )
            attn_next.append(ac)
            conv_next.append(cc)
        # Keep input from frame s * (frames_out' - 2) on: drop s * emit frames per stream.
        rest = total - s * emit
        keep = max(int(rest.max()), 1)
        padded = F.pad(mel, (0, 0, 0, keep))
        mel_next = gather_time(padded.transpose(1, 2), s * emit, keep).transpose(1, 2)
        new_state = EncoderState(
            att_context=state.att_context,
            mel=mel_next,
            mel_len=rest,
            attn_cache=torch.stack(attn_next),
            conv_cache=torch.stack(conv_next),
            cache_len=torch.clamp(state.cache_len + emit, max=left),
            frames_out=state.frames_out + emit,
        )
        return x * valid[:, :, None].to(x.dtype), emit, new_state
