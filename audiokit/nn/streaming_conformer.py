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

Layers, attention and masks: :mod:`audiokit.nn.streaming_layer`.

Streaming state (:class:`EncoderState`, batched over streams):

- ``mel``/``mel_len``: input frames not yet fully used; the buffer starts at input frame
  ``factor * (frames_out - 2)`` (the pre-encode cache: ``factor + 1`` frames already used plus the
  pending ones). At stream start it holds ``2 * factor`` left frames that are masked as padding.
- the attention cache, in one of two representations (``init_state(cache=...)``):
  ``"input"``: ``attn_cache (L, B, left, d)``, the last ``left`` normalised attention inputs of
  each layer (NeMo ``cache_last_channel``; keys/values are re-projected every step), or
  ``"kv"`` (fast): ``k_cache`` / ``v_cache``, per layer ``(B, left, d)`` already projected keys
  and values, so a step projects only its new frames, plus ``pos_proj``, the relative positional
  projection of the fixed ``left + chunk`` window, computed once per stream start. Both give the
  same outputs; ``cache_len (B,)`` counts the valid (right-aligned) entries;
- ``conv_cache (L, B, d, kernel - 1)``: the last depthwise-conv inputs (``cache_last_time``);
- ``frames_out (B,)``: output frames emitted so far.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.errors import ConfigError
from audiokit.nn.causal_conv import (
    CausalConvSubsampling,
    causal_subsampled_length,
    gather_time,
)
from audiokit.nn.masks import chunk_attention_mask, make_valid_mask
from audiokit.nn.positional import RelPositionalEncoding
from audiokit.nn.streaming_layer import (
    CachedRelPositionAttention,
    FastConformerLayer,
    chunked_limited_mask,
    rel_shift_cached,
)

__all__ = [
    "CachedRelPositionAttention",
    "EncoderState",
    "FastConformerLayer",
    "StreamingConformerEncoder",
    "chunked_limited_mask",
    "rel_shift_cached",
]


CACHE_KINDS = ("input", "kv")


@dataclass
class EncoderState:
    """Per-stream streaming state of :class:`StreamingConformerEncoder` (see the module doc).

    ``cache`` ``"input"``: ``attn_cache`` is set (NeMo layout), ``k_cache`` / ``v_cache`` /
    ``pos_proj`` are None; ``"kv"``: the reverse. ``pos_proj`` is derived from the weights when
    the state is made (shared by the streams): make a new state after changing the weights.
    """

    att_context: tuple[int, int]
    mel: torch.Tensor  # (B, P, F) buffered input frames, starting at factor * (frames_out - 2)
    mel_len: torch.Tensor  # (B,) real frames in mel
    attn_cache: torch.Tensor | None  # (L, B, left, d) normalised attention inputs ("input")
    conv_cache: torch.Tensor  # (L, B, d, kernel - 1)
    cache_len: torch.Tensor  # (B,) valid (right-aligned) entries of the attention cache
    frames_out: torch.Tensor  # (B,) output frames emitted so far
    k_cache: tuple[torch.Tensor, ...] | None = None  # L x (B, left, d) projected keys ("kv")
    v_cache: tuple[torch.Tensor, ...] | None = None  # L x (B, left, d) projected values
    pos_proj: tuple[torch.Tensor, ...] | None = None  # L x (h, d_k, left + 2 chunk - 1)

    @property
    def cache(self) -> str:
        return "input" if self.attn_cache is not None else "kv"


@lru_cache(maxsize=64)
def _window_mask(left: int, right: int, e: int, device: str) -> torch.Tensor:
    """``(E, left + E)`` chunked_limited mask of ``E`` new frames (a whole number of chunks
    from the stream start) against ``left`` cached + the new frames; one per shape."""
    q_pos = torch.arange(e, device=device)
    k_pos = torch.arange(-left, e, device=device)
    return chunked_limited_mask(q_pos, k_pos, left, right)


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
        conv_norm: str = "layer_norm",
        subsampling_type: str = "dw_striding",
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
            input_dim, d_model, subsampling_factor, subsampling_channels, subsampling_type
        )
        self.xscale = math.sqrt(d_model) if xscaling else 1.0
        self.pos_enc = RelPositionalEncoding(d_model, 0.0)  # scaling and dropout done here
        self.dropout_pre = nn.Dropout(dropout_pre_encoder)
        self.layers = nn.ModuleList(
            FastConformerLayer(
                d_model, num_heads, ff_dim, conv_kernel, dropout, dropout_att, conv_norm
            )
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
        cache: str = "input",
    ) -> EncoderState:
        """Zero caches for ``batch_size`` new streams at ``att_context`` (default: first).

        ``cache``: ``"input"`` keeps NeMo's attention-input cache (``attn_cache``), ``"kv"`` the
        projected keys/values and the window's positional projection (fast; same outputs).
        """
        left, right = self.resolve_context(att_context)
        if left < 0 or right < 0:
            raise ConfigError(
                f"att_context {left},{right} is unlimited; streaming needs left >= 0 and right >= 0"
            )
        if cache not in CACHE_KINDS:
            raise ConfigError(f"cache={cache!r}: use one of {', '.join(CACHE_KINDS)}")
        n, s = len(self.layers), self.subsampling_factor
        zeros = torch.zeros
        state = EncoderState(
            att_context=(left, right),
            mel=zeros(batch_size, 2 * s, self.input_dim, device=device, dtype=dtype),
            mel_len=torch.full((batch_size,), 2 * s, dtype=torch.long, device=device),
            attn_cache=None,
            conv_cache=zeros(
                n, batch_size, self.d_model, self.conv_kernel - 1, device=device, dtype=dtype
            ),
            cache_len=torch.zeros(batch_size, dtype=torch.long, device=device),
            frames_out=torch.zeros(batch_size, dtype=torch.long, device=device),
        )
        if cache == "input":
            return replace(
                state,
                attn_cache=zeros(n, batch_size, left, self.d_model, device=device, dtype=dtype),
            )
        kv = zeros(batch_size, left, self.d_model, device=device, dtype=dtype)
        with torch.no_grad():
            pos = self._pos_proj(left, right + 1, state.mel)
        return replace(state, k_cache=(kv,) * n, v_cache=(kv,) * n, pos_proj=pos)

    def _pos_proj(self, left: int, e: int, ref: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per layer ``(h, d_k, left + 2e - 1)``: projected relative positions of distances
        ``left+e-1 .. -(e-1)`` (``e`` queries after ``left`` cached keys)."""
        pos = self.pos_enc._positions(left + e, ref)[0, : left + 2 * e - 1]
        return tuple(layer.attn.project_positions(pos) for layer in self.layers)

    def _step_pos_proj(
        self, state: EncoderState, e: int, ref: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The state's window projection for ``e`` new frames: a slice when ``e`` fits the
        precomputed chunk (the final partial chunk), else computed (several chunks at once)."""
        assert state.pos_proj is not None
        left, chunk = state.att_context[0], state.att_context[1] + 1
        if e > chunk:
            return self._pos_proj(left, e, ref)
        return tuple(p[:, :, chunk - e : chunk + left + e - 1] for p in state.pos_proj)

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
        Returns ``out (B, E, d)`` (zero past ``out_lengths``), ``out_lengths (B,)``, the new state
        (with the same cache representation as ``state``).
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
        x = self.dropout_pre(x[:, 2 : 2 + e] * self.xscale)  # first 2 frames lack left input
        # Masks only where some key or query is not real: the steady state needs none.
        uniform = bool((emit == e).all())
        valid = None if uniform else make_valid_mask(emit, e)
        allowed = None
        if not uniform or e > chunk or not bool((state.cache_len == left).all()):
            cached = torch.arange(left, device=dev)[None, :] >= (left - state.cache_len)[:, None]
            new = make_valid_mask(emit, e)
            key_valid = torch.cat([cached, new], dim=1)  # (B, left + E)
            allowed = key_valid[:, None, None, :] & _window_mask(left, right, e, str(dev))
            allowed = allowed | ~allowed.any(-1, keepdim=True)  # padding rows: avoid all -inf
        cut = None if uniform else emit  # frames per stream that enter the caches
        conv_next = []
        if state.attn_cache is None:  # projected key/value caches
            assert state.k_cache is not None and state.v_cache is not None
            pos = self._step_pos_proj(state, e, x)
            k_next, v_next = [], []
            for i, layer in enumerate(self.layers):
                kv = (state.k_cache[i], state.v_cache[i])
                x, (k, v), cc = layer.forward_kv(
                    x, pos[i], allowed, valid, kv, state.conv_cache[i], cut
                )
                k_next.append(k)
                v_next.append(v)
                conv_next.append(cc)
            caches = {"k_cache": tuple(k_next), "v_cache": tuple(v_next)}
        else:  # NeMo's attention-input cache: keys/values re-projected every step
            pos_emb = self.pos_enc._positions(left + e, x)
            attn_next = []
            for i, layer in enumerate(self.layers):
                x, ac, cc = layer(
                    x, pos_emb, allowed, valid, state.attn_cache[i], state.conv_cache[i], cut
                )
                attn_next.append(ac)
                conv_next.append(cc)
            caches = {"attn_cache": torch.stack(attn_next)}
        # Keep input from frame s * (frames_out' - 2) on: drop s * emit frames per stream.
        rest = total - s * emit
        keep = max(int(rest.max()), 1)
        padded = F.pad(mel, (0, 0, 0, keep))
        mel_next = gather_time(padded.transpose(1, 2), s * emit, keep).transpose(1, 2)
        new_state = replace(
            state,
            mel=mel_next,
            mel_len=rest,
            conv_cache=torch.stack(conv_next),
            cache_len=torch.clamp(state.cache_len + emit, max=left),
            frames_out=state.frames_out + emit,
            **caches,
        )
        if valid is not None:
            x = x * valid[:, :, None].to(x.dtype)
        return x, emit, new_state
