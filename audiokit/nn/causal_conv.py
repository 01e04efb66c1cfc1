"""Causal convolutions with explicit left padding and streaming caches (NeMo ``causal_convs``).

- :class:`CausalConv1d`: stride-1 conv over time that only sees the past. Offline it pads
  ``kernel - 1`` zeros on the left; streaming, the left context comes from a cache of the last
  ``kernel - 1`` input frames, so chunk-by-chunk output equals the offline output exactly.
- :class:`CausalConv2d`: ``(time, freq)`` conv padded ``kernel - 1`` before and ``stride - 1``
  after on both axes, as NeMo's ``CausalConv2D``.
- :class:`CausalConvSubsampling`: NeMo's ``dw_striding`` front end with ``causal_downsampling``:
  one causal (3, stride 2) conv, then ``log2(factor) - 1`` blocks of causal depthwise (3, stride 2)
  + pointwise 1x1, ReLU after each; or NeMo's ``striding``: ``log2(factor)`` full causal
  (3, stride 2) convs, ReLU after each. Output frame ``t`` sees input frames ``factor*t - 2*(factor-1)
  .. factor*t``; ``T' = f(T)`` with ``f(n) = n // 2 + 1`` applied ``log2(factor)`` times.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.errors import ConfigError


def gather_time(x: torch.Tensor, start: torch.Tensor, size: int) -> torch.Tensor:
    """Per-row window ``x[b, ..., start[b] : start[b] + size]`` of ``x (B, ..., T)``.

    Used to cut the next cache out of ``cat(cache, chunk)`` at each stream's own length.
    """
    idx = start[:, None] + torch.arange(size, device=x.device)  # (B, size)
    idx = idx.view(x.shape[0], *([1] * (x.dim() - 2)), size).expand(*x.shape[:-1], size)
    return x.gather(-1, idx)


class CausalConv1d(nn.Conv1d):
    """``x (B, C, T)`` -> ``(B, C_out, T)``; output ``t`` sees inputs ``t - kernel + 1 .. t``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, groups=groups, bias=bias)
        self.cache_size = kernel_size - 1

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        cache: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``cache (B, C, kernel-1)``: the previous input frames (zeros at stream start).

        Returns the output and, when ``cache`` is given, the next cache: the last ``kernel - 1``
        frames of ``cat(cache, x[..., :lengths[b]])`` per stream (``lengths`` default: all of ``x``).
        """
        if cache is None:
            return super().forward(F.pad(x, (self.cache_size, 0))), None
        full = torch.cat([cache, x], dim=-1)
        if lengths is None:  # every stream used all of x: the tail, a view (no gather)
            nxt = full[..., full.shape[-1] - self.cache_size :]
        else:
            nxt = gather_time(full, lengths, self.cache_size)
        if self.groups == self.in_channels == self.out_channels and self.bias is not None:
            # Depthwise on a short chunk: windows x taps beats the generic grouped conv (a
            # slow path on CPU for small inputs); (B, C, T, k) stays small in streaming.
            w = self.weight[:, 0, None, :]  # (C, 1, k)
            return (full.unfold(-1, self.kernel_size[0], 1) * w).sum(-1) + self.bias[:, None], nxt
        return super().forward(full), nxt


class CausalConv2d(nn.Conv2d):
    """``x (B, C, T, F)``; padded ``(kernel-1, stride-1)`` on time and frequency."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int = 1
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, groups=groups)
        self.pads = (kernel_size - 1, stride - 1, kernel_size - 1, stride - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(F.pad(x, self.pads))


def causal_subsampled_length(lengths: torch.Tensor | int, factor: int) -> torch.Tensor | int:
    """Output frames of :class:`CausalConvSubsampling` for ``lengths`` input frames."""
    for _ in range(int(math.log2(factor))):
        lengths = lengths // 2 + 1
    return lengths


SUBSAMPLING_KINDS = ("dw_striding", "striding")


class CausalConvSubsampling(nn.Module):
    """``(B, T, input_dim)`` -> ``(B, T', d_model)`` (NeMo ``dw_striding`` or ``striding``, causal).

    ``conv`` keeps NeMo's ``nn.Sequential`` layout (conv, ReLU, [dw, pw, ReLU]... or
    [conv, ReLU]...) and ``out`` is
    the Linear over ``channels x freq'``. Before every time-mixing conv, frames outside
    ``[left_invalid, length)`` (at that layer's resolution) are zeroed, as NeMo's masked conv
    stack does on the right; on the left this stands in for the conv's own zero padding when a
    streaming buffer starts before the utterance.
    """

    def __init__(
        self,
        input_dim: int,
        d_model: int,
        factor: int = 8,
        channels: int = 256,
        kind: str = "dw_striding",
    ) -> None:
        super().__init__()
        if factor < 2 or factor & (factor - 1):
            raise ConfigError(f"subsampling_factor must be a power of 2 (>= 2), got {factor}")
        if kind not in SUBSAMPLING_KINDS:
            raise ConfigError(
                f"subsampling_type={kind!r}: use one of {', '.join(SUBSAMPLING_KINDS)}"
            )
        self.factor = factor
        self.kind = kind
        self.num_stages = int(math.log2(factor))
        layers: list[nn.Module] = [CausalConv2d(1, channels, 3, 2), nn.ReLU()]
        for _ in range(self.num_stages - 1):
            if kind == "striding":
                layers += [CausalConv2d(channels, channels, 3, 2), nn.ReLU()]
                continue
            layers += [
                CausalConv2d(channels, channels, 3, 2, groups=channels),
                nn.Conv2d(channels, channels, 1),
                nn.ReLU(),
            ]
        self.conv = nn.Sequential(*layers)
        self.freq_out = causal_subsampled_length(input_dim, factor)
        self.out = nn.Linear(channels * self.freq_out, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal conv weights and zero biases (training-only: imported weights replace them).

        Why not PyTorch's / NeMo's uniform ``1/sqrt(fan_in)`` init: through the 3 causal stages
        it shrinks the time-varying part of the output to ~0.2 of the constant bias, so the
        encoder first sees an almost constant input (measured on mini_en: 200 steps of a 5 x 128
        streaming CTC model reach dev TER 0.835 with this init vs 0.909 with the uniform one).
        """
        for layer in self.conv:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def _mask(x: torch.Tensor, lengths: torch.Tensor, left: torch.Tensor | None) -> torch.Tensor:
        """Zero time frames ``t >= lengths[b]`` and ``t < left[b]`` of ``x (B, C, T, F)``."""
        t = torch.arange(x.shape[2], device=x.device)[None, :]
        keep = t < lengths[:, None]
        if left is not None:
            keep = keep & (t >= left[:, None])
        return x * keep[:, None, :, None].to(x.dtype)

    def forward(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor,
        left_invalid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, T, D)``, ``lengths (B,)``; ``left_invalid (B,)``: leading input frames that lie
        before the utterance start (a multiple of ``factor``). Returns ``(B, T', d)``, ``(B,)``."""
        x = x.unsqueeze(1)  # (B, 1, T, D)
        lengths = lengths.long()
        left = None if left_invalid is None else left_invalid.long()
        # Every frame real (the usual streaming step): the masks are identities at every stage.
        masked = bool((lengths != x.shape[2]).any()) or (left is not None and bool(left.any()))
        for layer in self.conv:
            if isinstance(layer, CausalConv2d):
                x = layer(self._mask(x, lengths, left) if masked else x)
                lengths = lengths // 2 + 1
                left = None if left is None else left // 2
            else:
                x = layer(x)
        if masked:
            x = self._mask(x, lengths, left)
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f)), lengths
