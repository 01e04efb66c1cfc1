"""SEANet encoder/decoder of EnCodec: padded/normalised 1-D convs, residual blocks, LSTM.

Module names mirror facebookresearch/encodec so its state dicts load with no renaming:
``model.{i}.conv.conv.weight_g`` (SConv1d -> NormConv1d -> conv), ``.convtr.convtr`` (transposed),
``.conv.norm.weight`` (GroupNorm of ``time_group_norm``), ``.block.{1,3}`` / ``.shortcut`` (residual
blocks), ``.lstm.weight_ih_l0`` (SLSTM).

Padding rules (EnCodec's): an ``SConv1d`` pads ``k_eff - stride`` samples (all on the left when
causal, else split with the extra one on the left) plus the "extra" right padding that makes the
last window full, so the output has ``ceil(T / stride)`` frames; reflect padding of inputs shorter
than the pad first zero-extends them (``pad1d``). ``SConvTranspose1d`` trims ``k - stride``
samples (from the right when causal, ``trim_right_ratio`` 1) and never the encoder's extra padding.

Speed (CPU): reflect padding is one concatenation; without autograd, ELU takes a cheaper
exp-based route and weight-normed convs use their cached weight and CPU fast paths
(:mod:`audiokit.nn.weight_norm`). Results equal the
plain modules' within float rounding (tests check both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.errors import ConfigError
from audiokit.nn.weight_norm import WNConv1d, WNConvTranspose1d

NORMS = ("none", "weight_norm", "time_group_norm")


def _check_norm(norm: str, causal: bool) -> None:
    if norm not in NORMS:
        raise ConfigError(f"SEANet norm={norm!r} is not supported; use one of {', '.join(NORMS)}")
    if norm == "time_group_norm" and causal:
        raise ConfigError("SEANet norm='time_group_norm' is not causal; set causal: false")


def extra_padding(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding that makes the last conv window full (``get_extra_padding_for_conv1d``)."""
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal - length


def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "reflect") -> torch.Tensor:
    """x (B, C, T) padded on time; reflect on an input no longer than the pad zero-extends it
    first, then drops those samples again (EnCodec's ``pad1d``)."""
    if mode != "reflect":
        return F.pad(x, (left, right), mode="constant" if mode in ("zero", "constant") else mode)
    length = x.shape[-1]
    extra = max(left, right) - length + 1 if length <= max(left, right) else 0
    if extra:
        x = F.pad(x, (0, extra))
    padded = _reflect(x, left, right)
    return padded[..., : padded.shape[-1] - extra]


def _reflect(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """F.pad(x, (left, right), "reflect") for left, right < T, as one concatenation: torch's
    reflection_pad1d kernel is several times slower on CPU for the few-channel, long inputs here."""
    n = x.shape[-1]
    parts = [x[..., 1 : left + 1].flip(-1)] if left else []
    parts.append(x)
    if right:
        parts.append(x[..., n - 1 - right : n - 1].flip(-1))
    return torch.cat(parts, dim=-1) if len(parts) > 1 else x


class ELU(nn.ELU):
    """``nn.ELU``; without autograd and with alpha 1 it takes a faster route (the ELU kernel is
    the largest single cost of a small SEANet on CPU): ``max(x, exp(min(x, 0)) - 1)``, equal
    to ELU within 1 ulp of exp (``e^x - 1 >= x`` makes the max pick the right branch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.alpha != 1.0 or (torch.is_grad_enabled() and x.requires_grad):
            return super().forward(x)
        y = x.clamp(max=0).exp_().sub_(1)
        return torch.maximum(x, y, out=y)


class NormConv1d(nn.Module):
    """Conv1d (``.conv``) followed by its norm (``.norm``: GroupNorm(1) or identity)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        norm: str = "none",
    ) -> None:
        super().__init__()
        conv_cls = WNConv1d if norm == "weight_norm" else nn.Conv1d
        self.conv = conv_cls(
            cin, cout, kernel_size, stride, dilation=dilation, groups=groups, bias=bias
        )
        self.norm = nn.GroupNorm(1, cout) if norm == "time_group_norm" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))  # WNConv1d: cached weight + CPU fast path without autograd


class NormConvTranspose1d(nn.Module):
    """ConvTranspose1d (``.convtr``) followed by its norm (``.norm``)."""

    def __init__(
        self, cin: int, cout: int, kernel_size: int, stride: int = 1, norm: str = "none"
    ) -> None:
        super().__init__()
        conv_cls = WNConvTranspose1d if norm == "weight_norm" else nn.ConvTranspose1d
        self.convtr = conv_cls(cin, cout, kernel_size, stride)
        self.norm = nn.GroupNorm(1, cout) if norm == "time_group_norm" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.convtr(x))


class SConv1d(nn.Module):
    """x (B, C_in, T) -> (B, C_out, ceil(T / stride)) with EnCodec's causal/asymmetric padding."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        causal: bool = False,
        norm: str = "none",
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        _check_norm(norm, causal)
        self.conv = NormConv1d(cin, cout, kernel_size, stride, dilation, groups, bias, norm)
        self.causal = causal
        self.pad_mode = pad_mode
        self.stride = stride
        self.kernel_eff = (kernel_size - 1) * dilation + 1
        self.padding_total = self.kernel_eff - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = extra_padding(x.shape[-1], self.kernel_eff, self.stride, self.padding_total)
        if self.causal:
            left, right = self.padding_total, extra
        else:
            right = self.padding_total // 2
            left, right = self.padding_total - right, right + extra
        if left or right:
            x = pad1d(x, left, right, self.pad_mode)
        return self.conv(x)


class SConvTranspose1d(nn.Module):
    """x (B, C_in, T) -> (B, C_out, T * stride): transposed conv, minus its fixed padding."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        norm: str = "none",
        trim_right_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        _check_norm(norm, causal)
        if not causal and trim_right_ratio != 1.0:
            raise ConfigError("trim_right_ratio != 1.0 needs causal: true")
        self.convtr = NormConvTranspose1d(cin, cout, kernel_size, stride, norm)
        total = kernel_size - stride
        right = math.ceil(total * trim_right_ratio) if causal else total // 2
        self.trim = (total - right, right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convtr(x)
        left, right = self.trim
        return y[..., left : y.shape[-1] - right]


class SLSTM(nn.Module):
    """x (B, C, T) -> (B, C, T): ``num_layers`` LSTM over time plus a skip connection."""

    def __init__(self, dimension: int, num_layers: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dimension, dimension, num_layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xt = x.transpose(1, 2)  # (B, T, C)
        y, _ = self.lstm(xt)
        if self.skip:
            y = y + xt
        return y.transpose(1, 2)


class SEANetResnetBlock(nn.Module):
    """x (B, C, T) -> shortcut(x) + block(x); block = [ELU, conv k, ELU, conv 1] via C/compress."""

    def __init__(
        self,
        dim: int,
        kernel_sizes: tuple[int, int] = (3, 1),
        dilations: tuple[int, int] = (1, 1),
        alpha: float = 1.0,
        norm: str = "weight_norm",
        causal: bool = False,
        pad_mode: str = "reflect",
        compress: int = 2,
        true_skip: bool = True,
    ) -> None:
        super().__init__()
        hidden = dim // compress
        layers: list[nn.Module] = []
        n = len(kernel_sizes)
        for i, (k, d) in enumerate(zip(kernel_sizes, dilations, strict=True)):
            cin = dim if i == 0 else hidden
            cout = dim if i == n - 1 else hidden
            layers += [
                ELU(alpha),
                SConv1d(cin, cout, k, dilation=d, norm=norm, causal=causal, pad_mode=pad_mode),
            ]
        self.block = nn.Sequential(*layers)
        self.shortcut = (
            nn.Identity()
            if true_skip
            else SConv1d(dim, dim, 1, norm=norm, causal=causal, pad_mode=pad_mode)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.shortcut(x) + self.block(x)
        return self.block(x).add_(self.shortcut(x))  # inference: no fresh buffer for the sum


class SEANetEncoder(nn.Module):
    """wav (B, channels, S) -> latent (B, dimension, ceil(S / hop)), hop = prod(ratios).

    ``ratios`` are given decoder-order (EnCodec's convention); the encoder applies them reversed.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        n_residual_layers: int = 1,
        ratios: list[int] = (8, 5, 4, 2),
        alpha: float = 1.0,
        norm: str = "weight_norm",
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        pad_mode: str = "reflect",
        true_skip: bool = False,
        compress: int = 2,
        lstm: int = 2,
    ) -> None:
        super().__init__()
        self.channels, self.dimension = channels, dimension
        self.ratios = list(reversed(list(ratios)))
        self.hop_length = math.prod(self.ratios)
        c = dict(norm=norm, causal=causal, pad_mode=pad_mode)
        mult = 1
        model: list[nn.Module] = [SConv1d(channels, n_filters, kernel_size, **c)]
        for ratio in self.ratios:
            for j in range(n_residual_layers):
                model.append(
                    SEANetResnetBlock(
                        mult * n_filters,
                        (residual_kernel_size, 1),
                        (dilation_base**j, 1),
                        alpha,
                        compress=compress,
                        true_skip=true_skip,
                        **c,
                    )
                )
            model += [
                ELU(alpha),
                SConv1d(mult * n_filters, mult * n_filters * 2, ratio * 2, stride=ratio, **c),
            ]
            mult *= 2
        if lstm:
            model.append(SLSTM(mult * n_filters, num_layers=lstm))
        model += [ELU(alpha), SConv1d(mult * n_filters, dimension, last_kernel_size, **c)]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """latent (B, dimension, F) -> wav (B, channels, F * hop) (the encoder's padding is kept)."""

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        n_residual_layers: int = 1,
        ratios: list[int] = (8, 5, 4, 2),
        alpha: float = 1.0,
        norm: str = "weight_norm",
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        pad_mode: str = "reflect",
        true_skip: bool = False,
        compress: int = 2,
        lstm: int = 2,
        trim_right_ratio: float = 1.0,
        final_activation: str | None = None,
    ) -> None:
        super().__init__()
        self.channels, self.dimension = channels, dimension
        self.ratios = list(ratios)
        self.hop_length = math.prod(self.ratios)
        c = dict(norm=norm, causal=causal, pad_mode=pad_mode)
        mult = 2 ** len(self.ratios)
        model: list[nn.Module] = [SConv1d(dimension, mult * n_filters, kernel_size, **c)]
        if lstm:
            model.append(SLSTM(mult * n_filters, num_layers=lstm))
        for ratio in self.ratios:
            model += [
                ELU(alpha),
                SConvTranspose1d(
                    mult * n_filters,
                    mult * n_filters // 2,
                    ratio * 2,
                    stride=ratio,
                    causal=causal,
                    norm=norm,
                    trim_right_ratio=trim_right_ratio,
                ),
            ]
            for j in range(n_residual_layers):
                model.append(
                    SEANetResnetBlock(
                        mult * n_filters // 2,
                        (residual_kernel_size, 1),
                        (dilation_base**j, 1),
                        alpha,
                        compress=compress,
                        true_skip=true_skip,
                        **c,
                    )
                )
            mult //= 2
        model += [ELU(alpha), SConv1d(n_filters, channels, last_kernel_size, **c)]
        if final_activation is not None:
            if final_activation not in ("Tanh", "Sigmoid", "ELU"):
                raise ConfigError(
                    f"final_activation={final_activation!r}: use Tanh, Sigmoid or ELU"
                )
            model.append(getattr(nn, final_activation)())
        self.model = nn.Sequential(*model)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)
