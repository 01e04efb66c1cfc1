"""SANM: self-attention with an FSMN memory block (Paraformer-large / FunASR ``SANMEncoder``).

SANM attention (Gao et al. 2020, "SAN-M: Memory equipped self-attention") adds to ordinary
multi-head self-attention a depthwise 1-D convolution over the *values* (the FSMN memory)::

    q, k, v = split(Linear(x))                 # one fused projection, (B, T, d) each
    memory  = v*valid + DepthwiseConv(v*valid) # zero padding, kernel k, no bias
    out     = Linear_out(MHA(q, k, v)) + memory*valid

Encoder layer (pre-norm; FunASR ``EncoderLayerSANM``)::

    x = x + SANM(LN(x))        # no residual in the first layer when in_dim != d
    x = x + FFN(LN(x))         # Linear -> ReLU -> Dropout -> Linear

The encoder input layer "pe" scales the features by sqrt(d) (d = model size, not the input
size) and adds a sinusoidal position encoding of the *input* size with positions counted
from 1 and ``[sin | cos]`` halves. All LayerNorms use eps 1e-12, as FunASR's do.

Masks: ``valid`` is ``(B, T)`` bool, True on real frames. Padding frames of every layer output
are zeroed, so an utterance gives the same result alone or padded in a batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.nn.masks import make_valid_mask

LN_EPS = 1e-12  # FunASR's LayerNorm


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


class SinusoidalPositionEncoder(nn.Module):
    """``x (B, T, D)`` -> ``x + PE`` with PE[t] = [sin(p*w) | cos(p*w)], p = t + 1.

    ``w_i = exp(-i * log(1e4) / (D/2 - 1))`` for ``i < D/2`` (FunASR's
    ``SinusoidalPositionEncoder``; computed in the input dtype like FunASR). No parameters.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, t, d = x.shape
        dtype = x.dtype
        increment = torch.log(torch.tensor([10000.0], dtype=dtype, device=x.device)) / (d / 2 - 1)
        inv = torch.exp(torch.arange(d // 2, device=x.device).to(dtype) * -increment)
        pos = torch.arange(1, t + 1, device=x.device).to(dtype)
        scaled = pos[:, None] * inv[None, :]
        return x + torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1)[None]


class FSMNMemory(nn.Module):
    """FSMN memory: ``y = (x + DepthwiseConv(x)) * valid`` over ``x*valid``; ``(B, T, d)``.

    Left padding ``(k-1)//2 + shift`` and right padding ``k-1-left`` (``shift`` > 0 looks
    further back, for streaming). Used over the values in SANM attention and as the decoder's
    self "attention" (FunASR ``MultiHeadedAttentionSANMDecoder``).
    """

    def __init__(self, d: int, kernel_size: int, shift: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, d, kernel_size, groups=d, bias=False)
        self.left = (kernel_size - 1) // 2 + max(shift, 0)
        self.right = kernel_size - 1 - self.left
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 0:  # no positions (an utterance with no tokens)
            return x
        keep = valid[:, :, None].to(x.dtype)
        x = x * keep
        y = self.conv(F.pad(x.transpose(1, 2), (self.left, self.right))).transpose(1, 2)
        return self.dropout(y + x) * keep


class SANMAttention(nn.Module):
    """Multi-head self-attention + FSMN memory over the values; ``(B, T, in_dim) -> (B, T, d)``.

    ``qkv`` is one ``Linear(in_dim, 3d)`` (q | k | v), as FunASR's ``linear_q_k_v``.
    """

    def __init__(
        self,
        in_dim: int,
        d: int,
        num_heads: int,
        kernel_size: int = 11,
        shift: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d % num_heads:
            raise ValueError(f"d_model {d} is not divisible by num_heads {num_heads}")
        self.h, self.d_k, self.dropout = num_heads, d // num_heads, dropout
        self.qkv = nn.Linear(in_dim, 3 * d)
        self.out = nn.Linear(d, d)
        self.fsmn = FSMNMemory(d, kernel_size, shift, dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``valid (B, T)`` True on real frames; padding keys are never attended."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        memory = self.fsmn(v, valid)
        q, k, vh = (z.view(b, t, self.h, self.d_k).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(
            q,
            k,
            vh,
            attn_mask=valid[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(att.transpose(1, 2).reshape(b, t, self.h * self.d_k)) + memory


class FeedForward(nn.Module):
    """``Linear(d, ff) -> ReLU -> Dropout -> Linear(ff, d)``; ``(B, T, d)``."""

    def __init__(self, d: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.w1 = nn.Linear(d, ff_dim)
        self.w2 = nn.Linear(ff_dim, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.dropout(torch.relu(self.w1(x))))


class SANMEncoderLayer(nn.Module):
    """Pre-norm SANM block ``(B, T, in_dim) -> (B, T, d)``; residual only when in_dim == d."""

    def __init__(
        self,
        in_dim: int,
        d: int,
        num_heads: int,
        ff_dim: int,
        kernel_size: int,
        shift: int,
        dropout: float,
        attn_dropout: float,
    ) -> None:
        super().__init__()
        self.residual = in_dim == d
        self.norm_attn = layer_norm(in_dim)
        self.attn = SANMAttention(in_dim, d, num_heads, kernel_size, shift, attn_dropout)
        self.norm_ff = layer_norm(d)
        self.ff = FeedForward(d, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.attn(self.norm_attn(x), valid))
        x = x + y if self.residual else y
        x = x + self.dropout(self.ff(self.norm_ff(x)))
        return x * valid[:, :, None].to(x.dtype)


class SANMEncoder(nn.Module):
    """Features ``(B, T, input_dim)`` + ``lengths (B,)`` -> ``(B, T, d_model)`` + ``lengths``.

    No subsampling (Paraformer stacks frames with LFR before the encoder). ``num_layers``
    counts the first (input_dim -> d_model) layer.
    """

    subsampling_factor = 1
    min_input_frames = 1

    def __init__(
        self,
        input_dim: int,
        d_model: int = 512,
        num_heads: int = 4,
        ff_dim: int = 2048,
        num_layers: int = 50,
        kernel_size: int = 11,
        sanm_shift: int = 0,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.pos_enc = SinusoidalPositionEncoder()
        dims = [input_dim] + [d_model] * (num_layers - 1)
        self.layers = nn.ModuleList(
            SANMEncoderLayer(
                i, d_model, num_heads, ff_dim, kernel_size, sanm_shift, dropout, attn_dropout
            )
            for i in dims
        )
        self.after_norm = layer_norm(d_model)

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """Input layer "pe": ``feats * sqrt(d_model) + PE``; ``(B, T, input_dim)``."""
        return self.pos_enc(feats * math.sqrt(self.d_model))

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, return_layers: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, list]:
        """With ``return_layers`` also the list of per-layer outputs (before ``after_norm``)."""
        valid = make_valid_mask(lengths, feats.shape[1])
        x = self.embed(feats)
        layers = []
        for layer in self.layers:
            x = layer(x, valid)
            layers.append(x)
        x = self.after_norm(x) * valid[:, :, None].to(x.dtype)
        if return_layers:
            return x, lengths, layers
        return x, lengths
