"""ESPnet ASR encoders (``espnet2/asr/encoder``: ``conformer`` and ``e_branchformer``) as ESPnet
lays them out, for imported ESPnet ASR models (:mod:`audiokit.asr.espnet_asr`).

``feats (B, T, D) -> Conv2dSubsampling (4/6/8) -> positions -> blocks -> LayerNorm ->
(B, T', d)``. ``positions``:

- ``rel_latest``: ``x * sqrt(d)`` + relative sinusoids of the ``2T'-1`` distances,
  Transformer-XL attention (``rel_pos_type: latest``);
- ``rel_legacy``: ESPnet's legacy relative positions (``rel_pos_type: legacy``,
  :mod:`audiokit.nn.legacy_relpos`);
- ``abs``: ``x * sqrt(d) + PE`` and plain attention (``pos_enc_layer_type: abs_pos``).

Conformer block (ESPnet ``EncoderLayer``, pre-norm): optional macaron FFN (both FFNs then
scaled by 0.5), MHSA, optional conv module (BatchNorm, Swish), FFN, and a final LayerNorm
only when the conv module is there. E-Branchformer block: :class:`EBranchformerLayer` with
the attention above. All LayerNorms use ``eps = 1e-12`` (ESPnet's ``LayerNorm``). Masks:
``valid (B, T')`` True on real frames; ``allowed`` True where attending is allowed. Padding
is zeroed before every convolution, so an utterance's output does not depend on the batch
(ESPnet convolves across batch padding: equal for a batch of one).
"""

from __future__ import annotations

import torch
from torch import nn

from audiokit.asr.owsm_prompt import AbsPositionalEncoding
from audiokit.errors import ConfigError
from audiokit.nn.attention import RelPositionMultiHeadAttention
from audiokit.nn.conformer import ConformerLayer
from audiokit.nn.e_branchformer import LN_EPS, EBranchformerLayer, MultiHeadAttention
from audiokit.nn.legacy_relpos import (
    LegacyRelPositionalEncoding,
    LegacyRelPositionMultiHeadAttention,
)
from audiokit.nn.masks import attention_allowed_mask, make_valid_mask
from audiokit.nn.positional import RelPositionalEncoding
from audiokit.nn.subsampling import Conv2dSubsampling

POSITIONS = ("rel_latest", "rel_legacy", "abs")
BLOCKS = ("conformer", "e_branchformer")


def _attention(positions: str, d_model: int, heads: int, dropout: float) -> nn.Module:
    if positions == "rel_latest":
        return RelPositionMultiHeadAttention(d_model, heads, dropout)
    if positions == "rel_legacy":
        return LegacyRelPositionMultiHeadAttention(d_model, heads, dropout)
    return MultiHeadAttention(d_model, heads, dropout)


def _attend(
    attn: nn.Module, h: torch.Tensor, pos_emb, valid: torch.Tensor, allowed: torch.Tensor
) -> torch.Tensor:
    """Self-attention of ``h (B, T, d)`` with whichever position scheme ``attn`` uses."""
    if isinstance(attn, LegacyRelPositionMultiHeadAttention):  # per-utterance shift
        return attn(h, pos_emb, allowed, valid)
    if isinstance(attn, RelPositionMultiHeadAttention):
        return attn(h, pos_emb, allowed)
    return attn(h, h, h, allowed)


class EspnetConformerLayer(ConformerLayer):
    """ESPnet Conformer block; parameter names as :class:`ConformerLayer` (absent parts None)."""

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        conv_kernel: int,
        dropout: float,
        attn_dropout: float,
        positions: str,
        macaron: bool,
        use_conv: bool,
    ) -> None:
        rel = "legacy" if positions == "rel_legacy" else "latest"
        super().__init__(
            d_model, num_heads, ff_dim, conv_kernel, dropout, attn_dropout, "batch_norm", rel,
            LN_EPS,
        )  # fmt: skip
        if positions == "abs":
            self.attn = MultiHeadAttention(d_model, num_heads, attn_dropout)
        if not macaron:
            self.ff_macaron = self.norm_ff_macaron = None
        if not use_conv:
            self.conv = self.norm_conv = self.norm_final = None
        self.ff_scale = 0.5 if macaron else 1.0

    def forward(
        self, x: torch.Tensor, pos_emb, valid: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        if self.ff_macaron is not None:
            x = x + self.ff_scale * self.dropout(self.ff_macaron(self.norm_ff_macaron(x)))
        x = x + self.dropout(_attend(self.attn, self.norm_attn(x), pos_emb, valid, allowed))
        if self.conv is not None:
            x = x + self.dropout(self.conv(self.norm_conv(x), valid))
        x = x + self.ff_scale * self.dropout(self.ff(self.norm_ff(x)))
        return self.norm_final(x) if self.norm_final is not None else x


class EspnetEBranchformerLayer(EBranchformerLayer):
    """:class:`EBranchformerLayer` (no cross-attention) whose attention uses ``positions``."""

    def __init__(self, positions: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        d_model, heads = self.attn.linear_q.in_features, self.attn.h
        if positions != "abs":
            self.attn = _attention(positions, d_model, heads, self.attn.dropout)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, pos_emb, valid: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        if self.ff_macaron is not None:
            x = x + self.ff_scale * self.dropout(self.ff_macaron(self.norm_ff_macaron(x)))
        x1 = self.dropout(_attend(self.attn, self.norm_attn(x), pos_emb, valid, allowed))
        x2 = self.dropout(self.cgmlp(self.norm_mlp(x), valid))
        c = torch.cat([x1, x2], dim=-1)
        mixed = self.merge_conv((c * valid[:, :, None]).transpose(1, 2)).transpose(1, 2)
        x = x + self.dropout(self.merge_proj(c + mixed))
        if self.ff is not None:
            x = x + self.ff_scale * self.dropout(self.ff(self.norm_ff(x)))
        return self.norm_final(x)


class EspnetEncoder(nn.Module):
    """``feats (B, T, input_dim)``, ``lengths (B,)`` -> ``(B, T', d_model)``, ``(B,)``.

    ``block``: ``conformer`` (uses ``macaron``, ``use_conv``, ``conv_kernel``; FFN Swish) or
    ``e_branchformer`` (uses ``use_ffn``, ``macaron``, ``cgmlp_*``, ``merge_kernel``,
    ``gate_activation``, ``linear_after_conv``, ``ffn_activation``). Output frames at or
    beyond an utterance's length are zero.
    """

    def __init__(
        self,
        input_dim: int,
        block: str = "conformer",
        d_model: int = 256,
        num_heads: int = 4,
        num_layers: int = 12,
        ff_units: int = 2048,
        subsampling: str = "conv2d4",
        positions: str = "rel_latest",
        dropout: float = 0.1,
        pos_dropout: float = 0.1,
        attn_dropout: float = 0.0,
        macaron: bool = True,
        use_conv: bool = True,
        conv_kernel: int = 31,
        use_ffn: bool = True,
        cgmlp_units: int = 2048,
        cgmlp_kernel: int = 31,
        merge_kernel: int = 3,
        gate_activation: str = "identity",
        linear_after_conv: bool = False,
        ffn_activation: str = "swish",
    ) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ConfigError(f"encoder block '{block}' is unknown; use one of {BLOCKS}")
        if positions not in POSITIONS:
            raise ConfigError(f"positions '{positions}' is unknown; use one of {POSITIONS}")
        self.subsampling = Conv2dSubsampling(input_dim, d_model, subsampling)
        if positions == "rel_latest":
            self.pos_enc: nn.Module = RelPositionalEncoding(d_model, pos_dropout)
        elif positions == "rel_legacy":
            self.pos_enc = LegacyRelPositionalEncoding(d_model, pos_dropout)
        else:
            self.pos_enc = AbsPositionalEncoding(d_model, pos_dropout)
        conformer = (d_model, num_heads, ff_units, conv_kernel, dropout, attn_dropout)
        ebf = (d_model, num_heads, ff_units, cgmlp_units, cgmlp_kernel, merge_kernel, dropout)
        ebf_flags = (attn_dropout, use_ffn, macaron, ffn_activation, gate_activation)
        layers: list[nn.Module] = []
        for _ in range(num_layers):
            if block == "conformer":
                layers.append(EspnetConformerLayer(*conformer, positions, macaron, use_conv))
            else:
                layers.append(
                    EspnetEBranchformerLayer(positions, *ebf, *ebf_flags, linear_after_conv, False)
                )
        self.layers = nn.ModuleList(layers)
        self.after_norm = nn.LayerNorm(d_model, eps=LN_EPS)

    @property
    def subsampling_factor(self) -> int:
        return self.subsampling.factor

    @property
    def min_input_frames(self) -> int:
        return self.subsampling.min_input_frames

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, out_lengths = self.subsampling(feats, lengths)
        if isinstance(self.pos_enc, LegacyRelPositionalEncoding):  # per-utterance positions
            x, pos_emb = self.pos_enc(x, out_lengths)
        elif isinstance(self.pos_enc, RelPositionalEncoding):
            x, pos_emb = self.pos_enc(x)
        else:
            x, pos_emb = self.pos_enc(x), None
        valid = make_valid_mask(out_lengths, x.shape[1])
        allowed = attention_allowed_mask(valid)
        for layer in self.layers:
            x = layer(x, pos_emb, valid, allowed)
        return self.after_norm(x) * valid[:, :, None].to(x.dtype), out_lengths
