"""E-Branchformer encoder (Kim et al. 2022; ESPnet ``e_branchformer_ctc_encoder``, as in OWSM-CTC).

One block, ``x (B, T, d)``::

    x = x + 0.5 * FFN_mac(LN(x))                           (macaron FFN, Swish)
    x1 = MHA(LN_attn(x))                                   (global branch)
    x2 = cgMLP(LN_mlp(x))                                  (local branch, conv gating)
    x = x + merge_proj(c + DWConv(c)),  c = [x1; x2]       (depthwise-conv merge)
    x = x + 0.5 * FFN(LN_ff(x))
    x = x + MHA(LN_cross(x), memory, memory)               (blocks with cross-attention only)
    x = LN_final(x)

``cgMLP(x) = proj_out(x_r * act(DWConv(LN(x_g))))`` with ``[x_r; x_g] = GELU(proj_in(x))``.
Padding frames are zeroed before every depthwise convolution, so an utterance in a padded
batch gets the output it gets alone (ESPnet convolves across batch padding). All
LayerNorms use ``eps = 1e-12`` (ESPnet's ``LayerNorm``). Masks: ``valid (B, T)`` is True on
real frames; attention masks are True where attending is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.errors import ConfigError

LN_EPS = 1e-12

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ConfigError(f"activation '{name}' is unknown; use one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention ``query (B, Tq, d)`` over ``key/value (B, Tk, d)``.

    ``allowed``: bool, broadcastable to ``(B, heads, Tq, Tk)``, True where attending is
    allowed (every row needs one True).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ConfigError(f"d_model {d_model} is not divisible by {num_heads} heads")
        self.h = num_heads
        self.d_k = d_model // num_heads
        self.dropout = dropout
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` -> ``(B, h, T, d_k)``."""
        return x.view(x.shape[0], x.shape[1], self.h, self.d_k).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        b, t, d = query.shape
        out = F.scaled_dot_product_attention(
            self._heads(self.linear_q(query)),
            self._heads(self.linear_k(key)),
            self._heads(self.linear_v(value)),
            attn_mask=allowed,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.linear_out(out.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    """``w_2(dropout(act(w_1(x))))``, ``(B, T, d) -> (B, T, d)``."""

    def __init__(self, d_model: int, units: int, act: str = "swish", dropout: float = 0.0):
        super().__init__()
        self.w_1 = nn.Linear(d_model, units)
        self.w_2 = nn.Linear(units, d_model)
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.dropout(self.act(self.w_1(x))))


class ConvGatingMLP(nn.Module):
    """cgMLP: ``(B, T, d) -> (B, T, d)`` through ``units`` channels and a conv spatial gate."""

    def __init__(
        self,
        d_model: int,
        units: int,
        kernel: int,
        dropout: float = 0.0,
        gate_activation: str = "identity",
        linear_after_conv: bool = False,
    ) -> None:
        super().__init__()
        if units % 2:
            raise ConfigError(f"cgmlp units {units} must be even (split into two halves)")
        half = units // 2
        self.proj_in = nn.Linear(d_model, units)
        self.gate_norm = nn.LayerNorm(half, eps=LN_EPS)
        self.gate_conv = nn.Conv1d(half, half, kernel, padding=(kernel - 1) // 2, groups=half)
        self.gate_linear = nn.Linear(half, half) if linear_after_conv else None
        self.gate_act = activation(gate_activation)
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Linear(half, d_model)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x_r, x_g = F.gelu(self.proj_in(x)).chunk(2, dim=-1)
        x_g = self.gate_norm(x_g) * valid[:, :, None]  # padding must not enter the conv
        x_g = self.gate_conv(x_g.transpose(1, 2)).transpose(1, 2)
        if self.gate_linear is not None:
            x_g = self.gate_linear(x_g)
        return self.proj_out(self.dropout(x_r * self.gate_act(x_g)))


class EBranchformerLayer(nn.Module):
    """One E-Branchformer block; ``forward(x (B, T, d), valid (B, T), memory, memory_valid)``.

    ``memory (B, P, d)`` / ``memory_valid (B, P)`` (True on real prompt tokens) feed the
    cross-attention when the layer has one; without memory it is skipped (as in ESPnet).
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        ff_units: int,
        cgmlp_units: int,
        cgmlp_kernel: int,
        merge_kernel: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        use_ffn: bool = True,
        macaron_ffn: bool = True,
        ffn_activation: str = "swish",
        gate_activation: str = "identity",
        linear_after_conv: bool = False,
        cross_attention: bool = False,
    ) -> None:
        super().__init__()

        def norm() -> nn.LayerNorm:
            return nn.LayerNorm(d_model, eps=LN_EPS)

        ffn = lambda: FeedForward(d_model, ff_units, ffn_activation, dropout)  # noqa: E731
        self.ff_macaron = ffn() if use_ffn and macaron_ffn else None
        self.norm_ff_macaron = norm() if self.ff_macaron is not None else None
        self.ff = ffn() if use_ffn else None
        self.norm_ff = norm() if use_ffn else None
        self.ff_scale = 0.5 if self.ff_macaron is not None else 1.0
        self.norm_attn = norm()
        self.attn = MultiHeadAttention(d_model, num_heads, attn_dropout)
        self.norm_mlp = norm()
        self.cgmlp = ConvGatingMLP(
            d_model, cgmlp_units, cgmlp_kernel, dropout, gate_activation, linear_after_conv
        )
        two = 2 * d_model
        self.merge_conv = nn.Conv1d(
            two, two, merge_kernel, padding=(merge_kernel - 1) // 2, groups=two
        )
        self.merge_proj = nn.Linear(two, d_model)
        self.cross_attn = (
            MultiHeadAttention(d_model, num_heads, attn_dropout) if cross_attention else None
        )
        self.norm_cross = norm() if cross_attention else None
        self.norm_final = norm()
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.ff_macaron is not None:
            x = x + self.ff_scale * self.dropout(self.ff_macaron(self.norm_ff_macaron(x)))
        h = self.norm_attn(x)
        x1 = self.dropout(self.attn(h, h, h, valid[:, None, None, :]))
        x2 = self.dropout(self.cgmlp(self.norm_mlp(x), valid))
        c = torch.cat([x1, x2], dim=-1)
        mixed = self.merge_conv((c * valid[:, :, None]).transpose(1, 2)).transpose(1, 2)
        x = x + self.dropout(self.merge_proj(c + mixed))
        if self.ff is not None:
            x = x + self.ff_scale * self.dropout(self.ff(self.norm_ff(x)))
        if self.cross_attn is not None and memory is not None:
            if memory_valid is None:
                memory_valid = torch.ones(memory.shape[:2], dtype=torch.bool, device=x.device)
            h = self.norm_cross(x)
            x = x + self.dropout(self.cross_attn(h, memory, memory, memory_valid[:, None, None, :]))
        return self.norm_final(x)


class EBranchformerEncoder(nn.Module):
    """Stack of :class:`EBranchformerLayer` + final LayerNorm, with self-conditioned interCTC.

    ``forward(x (B, T, d), valid (B, T), memory, memory_valid, condition)`` ->
    ``(out (B, T, d), [(layer, h_layer (B, T, d)), ...])`` for each 1-based layer in
    ``interctc_layers``. ``condition(h) -> (B, T, d)`` (e.g. ``Linear(softmax(ctc(h)))``) is
    added to ``h`` before the next layer when given. The input is already embedded
    (subsampled, positionally encoded).
    """

    def __init__(
        self,
        d_model: int = 256,
        num_heads: int = 4,
        num_layers: int = 12,
        ff_units: int = 1024,
        cgmlp_units: int = 1024,
        cgmlp_kernel: int = 31,
        merge_kernel: int = 31,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        use_ffn: bool = True,
        macaron_ffn: bool = True,
        ffn_activation: str = "swish",
        gate_activation: str = "identity",
        linear_after_conv: bool = False,
        cross_attention: Sequence[bool] | bool = False,
        interctc_layers: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if isinstance(cross_attention, bool):
            cross_attention = [cross_attention] * num_layers
        if len(cross_attention) != num_layers:
            raise ConfigError(
                f"cross_attention has {len(cross_attention)} entries for {num_layers} layers; "
                "give one per layer"
            )
        bad = [i for i in interctc_layers if not 0 < i < num_layers]
        if bad:
            raise ConfigError(
                f"interctc layer {bad[0]} is outside 1..{num_layers - 1}; use 1-based layer "
                "numbers below the last layer"
            )
        self.interctc_layers = tuple(int(i) for i in interctc_layers)
        self.layers = nn.ModuleList(
            EBranchformerLayer(
                d_model,
                num_heads,
                ff_units,
                cgmlp_units,
                cgmlp_kernel,
                merge_kernel,
                dropout,
                attn_dropout,
                use_ffn,
                macaron_ffn,
                ffn_activation,
                gate_activation,
                linear_after_conv,
                bool(cross),
            )  # fmt: skip
            for cross in cross_attention
        )
        self.after_norm = nn.LayerNorm(d_model, eps=LN_EPS)

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor,
        memory: torch.Tensor | None = None,
        memory_valid: torch.Tensor | None = None,
        condition: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[tuple[int, torch.Tensor]]]:
        intermediates: list[tuple[int, torch.Tensor]] = []
        for i, layer in enumerate(self.layers, 1):
            x = layer(x, valid, memory, memory_valid)
            if i in self.interctc_layers:
                intermediates.append((i, x))
                if condition is not None:
                    x = x + condition(x)
        return self.after_norm(x), intermediates
