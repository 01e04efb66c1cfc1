"""Conformer encoder (Gulati et al. 2020), laid out as ESPnet/WeNet with pre-norm blocks.

Each layer (``x`` is ``(B, T, d)``)::

    x = x + 0.5 * drop(FFN_macaron(LN(x)))
    x = x + drop(RelPosMHSA(LN(x)))
    x = x + drop(Conv(LN(x)))
    x = x + 0.5 * drop(FFN(LN(x)))
    x = LN(x)

and the encoder is ``Conv2dSubsampling -> RelPositionalEncoding -> layers -> LayerNorm``.
``rel_pos="legacy"`` swaps in ESPnet's legacy relative positions
(:mod:`audiokit.nn.legacy_relpos`; FunASR's ConformerEncoder, with ``norm_eps=1e-12``).
Padding frames are zeroed before the depthwise convolution (after the GLU, whose bias would
otherwise leak into real frames), so an utterance's output is the same alone or padded in a
batch (eval mode; BatchNorm uses running statistics there).
"""

from __future__ import annotations

import torch
from torch import nn

from audiokit.nn.attention import RelPositionMultiHeadAttention
from audiokit.nn.legacy_relpos import (
    LegacyRelPositionalEncoding,
    LegacyRelPositionMultiHeadAttention,
)
from audiokit.nn.masks import attention_allowed_mask, make_valid_mask
from audiokit.nn.positional import RelPositionalEncoding
from audiokit.nn.subsampling import Conv2dSubsampling


class FeedForward(nn.Module):
    """Position-wise ``Linear(d, ff) -> Swish -> Dropout -> Linear(ff, d)``; ``(B, T, d)``."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.SiLU(), nn.Dropout(dropout), nn.Linear(ff_dim, d_model)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvolutionModule(nn.Module):
    """Pointwise(d -> 2d) -> GLU -> depthwise(k) -> BatchNorm|LayerNorm -> Swish -> pointwise.

    ``x (B, T, d)``, ``valid (B, T)`` bool (True on real frames) -> ``(B, T, d)``; padding
    frames are zero on the way in and out of the depthwise conv.
    """

    def __init__(self, d_model: int, kernel: int, norm: str = "batch_norm") -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd (symmetric context), got {kernel}")
        if norm not in ("batch_norm", "layer_norm"):
            raise ValueError(f"conv norm must be 'batch_norm' or 'layer_norm', got '{norm}'")
        self.pointwise1 = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, padding=kernel // 2, groups=d_model)
        self.use_layer_norm = norm == "layer_norm"
        self.norm = nn.LayerNorm(d_model) if self.use_layer_norm else nn.BatchNorm1d(d_model)
        self.act = nn.SiLU()
        self.pointwise2 = nn.Conv1d(d_model, d_model, 1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        keep = valid[:, None, :].to(x.dtype)  # (B, 1, T)
        x = x.transpose(1, 2) * keep  # (B, d, T)
        x = nn.functional.glu(self.pointwise1(x), dim=1) * keep
        x = self.depthwise(x)
        if self.use_layer_norm:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.norm(x)
        x = self.pointwise2(self.act(x)) * keep
        return x.transpose(1, 2)


_ATTENTION = {
    "latest": RelPositionMultiHeadAttention,
    "legacy": LegacyRelPositionMultiHeadAttention,
}
_POS_ENC = {"latest": RelPositionalEncoding, "legacy": LegacyRelPositionalEncoding}


def _check_rel_pos(rel_pos: str) -> str:
    if rel_pos not in _ATTENTION:
        raise ValueError(f"rel_pos must be 'latest' or 'legacy', got {rel_pos!r}")
    return rel_pos


class ConformerLayer(nn.Module):
    """One macaron Conformer block; ``x (B, T, d)`` -> ``(B, T, d)``."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        conv_kernel: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        conv_norm: str = "batch_norm",
        rel_pos: str = "latest",
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        attn_cls = _ATTENTION[_check_rel_pos(rel_pos)]
        self.ff_macaron = FeedForward(d_model, ff_dim, dropout)
        self.attn = attn_cls(d_model, num_heads, attn_dropout)
        self.conv = ConvolutionModule(d_model, conv_kernel, conv_norm)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.norm_ff_macaron = nn.LayerNorm(d_model, eps=norm_eps)
        self.norm_attn = nn.LayerNorm(d_model, eps=norm_eps)
        self.norm_conv = nn.LayerNorm(d_model, eps=norm_eps)
        self.norm_ff = nn.LayerNorm(d_model, eps=norm_eps)
        self.norm_final = nn.LayerNorm(d_model, eps=norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        pos_emb: torch.Tensor,
        valid: torch.Tensor,
        allowed: torch.Tensor,
    ) -> torch.Tensor:
        """``pos_emb (1, 2T-1, d)`` (``(B, T, d)`` with legacy rel_pos); ``valid (B, T)`` True on real frames; ``allowed`` as in
        :class:`RelPositionMultiHeadAttention` (True = may attend)."""
        x = x + 0.5 * self.dropout(self.ff_macaron(self.norm_ff_macaron(x)))
        h = self.norm_attn(x)
        if isinstance(self.attn, LegacyRelPositionMultiHeadAttention):  # per-utterance shift
            x = x + self.dropout(self.attn(h, pos_emb, allowed, valid))
        else:
            x = x + self.dropout(self.attn(h, pos_emb, allowed))
        x = x + self.dropout(self.conv(self.norm_conv(x), valid))
        x = x + 0.5 * self.dropout(self.ff(self.norm_ff(x)))
        return self.norm_final(x)


class ConformerEncoder(nn.Module):
    """Features ``(B, T, input_dim)`` + ``lengths (B,)`` -> ``(B, T', d_model)`` + ``(B,)``.

    ``T'`` and the output lengths follow :mod:`audiokit.nn.subsampling`; output frames at or
    beyond an utterance's length are zero. ``dropout`` is used for the residual branches, the
    FFN hidden layer and the positional encoding; ``attn_dropout`` on attention weights.
    ``rel_pos``: "latest" (2T-1 distances) or "legacy" (ESPnet legacy); ``norm_eps``: of every
    LayerNorm (ESPnet/FunASR checkpoints use 1e-12).
    """

    def __init__(
        self,
        input_dim: int,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        num_layers: int = 12,
        conv_kernel: int = 15,
        subsampling: str = "conv2d4",
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        conv_norm: str = "batch_norm",
        rel_pos: str = "latest",
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.subsampling = Conv2dSubsampling(input_dim, d_model, subsampling)
        self.pos_enc = _POS_ENC[_check_rel_pos(rel_pos)](d_model, dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(
                d_model,
                num_heads,
                ff_dim,
                conv_kernel,
                dropout,
                attn_dropout,
                conv_norm,
                rel_pos,
                norm_eps,
            )  # fmt: skip
            for _ in range(num_layers)
        )
        self.after_norm = nn.LayerNorm(d_model, eps=norm_eps)

    @property
    def subsampling_factor(self) -> int:
        return self.subsampling.factor

    @property
    def min_input_frames(self) -> int:
        return self.subsampling.min_input_frames

    def forward(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        chunk_allowed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``chunk_allowed``: optional ``(T', T')`` bool from
        :func:`audiokit.nn.masks.chunk_attention_mask` (True = may attend), for chunked
        attention experiments; the convolutions stay full-context."""
        x, out_lengths = self.subsampling(feats, lengths)
        if isinstance(self.pos_enc, LegacyRelPositionalEncoding):  # per-utterance positions
            x, pos_emb = self.pos_enc(x, out_lengths)
        else:
            x, pos_emb = self.pos_enc(x)
        valid = make_valid_mask(out_lengths, x.shape[1])
        allowed = attention_allowed_mask(valid, chunk_allowed)
        for layer in self.layers:
            x = layer(x, pos_emb, valid, allowed)
        x = self.after_norm(x) * valid[:, :, None].to(x.dtype)
        return x, out_lengths
