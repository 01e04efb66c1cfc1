"""Non-parametric shortcuts for strided down/up-sampling blocks (CLEAR's wav-VAE, after DC-AE).

A strided conv that changes both length and width is hard to train as a plain stack at high
compression; CLEAR adds a parameter-free path beside it so each block only learns a residual:

* down (``(B, C_in, T) -> (B, C_out, T / s)``): *space-to-channel* folds ``s`` consecutive
  samples into channels, ``(B, C_in * s, T / s)`` with channel ``c * s + i`` holding phase ``i``
  of input channel ``c``; then *channel averaging* averages each run of
  ``C_in * s / C_out`` consecutive channels down to ``C_out``.
* up (``(B, C_in, T) -> (B, C_out, T * s)``): the inverse: *channel repetition* repeats every
  channel ``C_out * s / C_in`` times (``repeat_interleave``), then *channel-to-space* unfolds
  ``(B, C_out * s, T)`` to ``(B, C_out, T * s)`` with the same ``c * s + i`` layout.

Both are pure reshapes/means (no loops); the group sizes must be whole numbers.
"""

from __future__ import annotations

import torch

from audiokit.errors import ConfigError


def space_to_channel(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, C, T) -> (B, C * factor, T // factor)``; out channel ``c * factor + i`` = ``x[:, c, i::factor]``.

    ``T`` must be a multiple of ``factor``.
    """
    b, c, t = x.shape
    if t % factor:
        raise ValueError(f"length {t} is not a multiple of the factor {factor}")
    return x.reshape(b, c, t // factor, factor).transpose(2, 3).reshape(b, c * factor, t // factor)


def channel_to_space(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of :func:`space_to_channel`: ``(B, C * factor, T) -> (B, C, T * factor)``."""
    b, cf, t = x.shape
    if cf % factor:
        raise ValueError(f"{cf} channels are not a multiple of the factor {factor}")
    c = cf // factor
    return x.reshape(b, c, factor, t).transpose(2, 3).reshape(b, c, t * factor)


def check_shortcut(in_channels: int, out_channels: int, stride: int, down: bool) -> None:
    """One-line ConfigError unless the channel groups of a shortcut are whole numbers."""
    folded = (in_channels if down else out_channels) * stride
    width = out_channels if down else in_channels
    if folded % width:
        kind = "down" if down else "up"
        raise ConfigError(
            f"{kind}sampling shortcut {in_channels}->{out_channels} channels with stride {stride}: "
            f"{folded} folded channels do not split into groups of {width}; use even strides "
            "and channel widths that halve/double per block"
        )


def down_shortcut(x: torch.Tensor, stride: int, out_channels: int) -> torch.Tensor:
    """``(B, C_in, T) -> (B, out_channels, T // stride)``: space-to-channel, then channel averaging."""
    y = space_to_channel(x, stride)
    b, cf, t = y.shape
    return y.reshape(b, out_channels, cf // out_channels, t).mean(dim=2)


def up_shortcut(x: torch.Tensor, stride: int, out_channels: int) -> torch.Tensor:
    """``(B, C_in, T) -> (B, out_channels, T * stride)``: channel repetition, then channel-to-space."""
    repeats = out_channels * stride // x.shape[1]
    return channel_to_space(x.repeat_interleave(repeats, dim=1), stride)
