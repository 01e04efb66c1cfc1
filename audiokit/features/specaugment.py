"""SpecAugment (Park et al., 2019): time warping, frequency masks and time masks, batched.

Time warping follows ESPnet's interpolation-based ``time_warp``: pick a centre ``c`` in
``[W, L - W)`` and a target ``w`` in ``[c - W + 1, c + W]``, then stretch frames ``[0, c)`` onto
``[0, w)`` and ``[c, L)`` onto ``[w, L)`` with ``F.interpolate`` (bicubic or linear,
``align_corners=False``). Here the two resamplings are done for the whole batch at once with
gathers, each utterance with its own ``c``, ``w`` and length; the result equals ESPnet's
per-utterance ``interpolate`` calls. All randomness comes from an optional ``torch.Generator``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from audiokit.errors import ConfigError

_CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic kernel parameter


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    # Draw on the CPU so a CPU generator gives the same numbers whatever the data's device.
    return torch.rand(shape, generator=generator).to(device)


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """Weights of taps at offsets -1, 0, 1, 2 for fractional position ``t``; ``(..., 4)``."""
    a = _CUBIC_A

    def near(x: torch.Tensor) -> torch.Tensor:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: torch.Tensor) -> torch.Tensor:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], dim=-1)


def _resample_rows(
    x: torch.Tensor,
    seg_start: torch.Tensor,
    in_size: torch.Tensor,
    dst: torch.Tensor,
    out_size: torch.Tensor,
    mode: str,
) -> torch.Tensor:
    """Interpolate along time: output frame ``dst`` of a segment of ``in_size`` frames at ``seg_start``
    resized to ``out_size`` frames (``F.interpolate`` semantics, align_corners=False).

    ``x`` is ``(B, T, D)``; the index tensors are ``(B, T)``; returns ``(B, T, D)``.
    """
    b, t, d = x.shape
    scale = in_size.to(x.dtype) / out_size.clamp(min=1).to(x.dtype)
    src = scale * (dst.to(x.dtype) + 0.5) - 0.5
    if mode == "linear":
        src = src.clamp(min=0.0)  # PyTorch clamps negative source positions for non-cubic modes
        offsets, base = torch.tensor([0, 1], device=x.device), torch.floor(src)
        frac = src - base
        weights = torch.stack([1 - frac, frac], dim=-1)
    else:
        base = torch.floor(src)
        offsets = torch.tensor([-1, 0, 1, 2], device=x.device)
        weights = _cubic_weights(src - base)
    local = base.long()[..., None] + offsets  # (B, T, taps), clamped at the segment's edges
    local = torch.minimum(local.clamp(min=0), (in_size - 1)[..., None])
    index = (seg_start[..., None] + local).reshape(b, -1, 1).expand(-1, -1, d)
    taps = torch.gather(x, 1, index).reshape(b, t, -1, d)
    return (taps * weights[..., None]).sum(dim=2)


def time_warp(
    feats: torch.Tensor,
    lengths: torch.Tensor | None = None,
    window: int = 5,
    mode: Literal["bicubic", "linear"] = "bicubic",
    generator: torch.Generator | None = None,
    centers: torch.Tensor | None = None,
    warped: torch.Tensor | None = None,
) -> torch.Tensor:
    """Warp each utterance of ``(B, T, D)`` in time; lengths ``(B,)`` are unchanged.

    Utterances with ``length <= 2 * window`` are returned unchanged, as are padding frames.
    ``centers``/``warped`` ``(B,)`` fix the warp points (for tests); otherwise they are drawn.
    """
    if mode not in ("bicubic", "linear"):
        raise ConfigError(f"time warp mode {mode!r} is not supported; use 'bicubic' or 'linear'")
    b, t, _ = feats.shape
    device = feats.device
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=device)
    lengths = lengths.to(device=device, dtype=torch.long)
    active = lengths > 2 * window
    if window <= 0 or not bool(active.any()):
        return feats
    if centers is None or warped is None:
        u = _uniform((2, b), generator, device)
        span = (lengths - 2 * window).clamp(min=1)
        centers = window + torch.floor(u[0] * span).long()
        warped = centers - window + 1 + torch.floor(u[1] * (2 * window)).long()
    centers = torch.where(active, centers.to(device), lengths)  # identity when inactive
    warped = torch.where(active, warped.to(device), lengths)
    pos = torch.arange(t, device=device)[None, :].expand(b, -1)
    left = pos < warped[:, None]
    zero = torch.zeros_like(pos)
    seg_start = torch.where(left, zero, centers[:, None])
    in_size = torch.where(left, centers[:, None], (lengths - centers)[:, None])
    out_size = torch.where(left, warped[:, None], (lengths - warped)[:, None])
    dst = torch.where(left, pos, pos - warped[:, None])
    out = _resample_rows(feats, seg_start, in_size.clamp(min=1), dst, out_size, mode)
    keep = (~active)[:, None] | (pos >= lengths[:, None])
    return torch.where(keep[..., None], feats, out.to(feats.dtype))


def _band_mask(
    size: torch.Tensor, max_width: torch.Tensor, num: int, total: int, generator, device
) -> torch.Tensor:
    """(B, total) bool, True inside ``num`` random bands of width ``U{0..max_width}`` within ``[0, size)``."""
    b = size.shape[0]
    u = _uniform((2, b, num), generator, device)
    width = torch.floor(u[0] * (max_width[:, None] + 1)).long()
    start = torch.floor(u[1] * (size[:, None] - width + 1).clamp(min=1)).long()
    pos = torch.arange(total, device=device)[None, None, :]
    inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return inside.any(dim=1)


def mask_freq(
    feats: torch.Tensor,
    num_masks: int,
    max_width: int,
    value: float = 0.0,
    generator=None,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Set ``num_masks`` random bands of up to ``max_width`` feature bins to ``value``; ``(B, T, D)``.

    With ``lengths (B,)`` only valid frames are masked (padding is left as it is).
    """
    b, t, d = feats.shape
    if num_masks <= 0 or max_width <= 0:
        return feats
    device = feats.device
    size = torch.full((b,), d, dtype=torch.long, device=device)
    width = torch.full((b,), min(max_width, d), dtype=torch.long, device=device)
    mask = _band_mask(size, width, num_masks, d, generator, device)[:, None, :]  # (B, 1, D)
    if lengths is not None:
        valid = torch.arange(t, device=device)[None, :] < lengths.to(device)[:, None]
        mask = mask & valid[:, :, None]
    return feats.masked_fill(mask, value)


def mask_time(
    feats: torch.Tensor,
    lengths: torch.Tensor | None,
    num_masks: int,
    max_width: int,
    max_ratio: float | None = None,
    value: float = 0.0,
    generator=None,
) -> torch.Tensor:
    """Mask ``num_masks`` random spans of frames inside each utterance's valid frames; ``(B, T, D)``.

    Span width is uniform in ``0..min(max_width, floor(max_ratio * length), length)``.
    """
    b, t, _ = feats.shape
    if num_masks <= 0 or max_width <= 0:
        return feats
    device = feats.device
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=device)
    lengths = lengths.to(device=device, dtype=torch.long)
    width = lengths.clamp(max=max_width)
    if max_ratio is not None:
        width = torch.minimum(width, torch.floor(lengths * max_ratio).long())
    mask = _band_mask(lengths, width, num_masks, t, generator, device)  # (B, T)
    return feats.masked_fill(mask[:, :, None], value)


class SpecAugment(nn.Module):
    """Batched SpecAugment on ``(B, T, D)`` features with ``lengths (B,)``; identity in eval mode.

    Order: time warp, frequency masks, time masks. Masks never touch padding frames.
    Pass ``generator`` to ``forward`` for reproducible augmentation.
    """

    def __init__(
        self,
        time_warp_window: int = 5,
        time_warp_mode: Literal["bicubic", "linear"] = "bicubic",
        num_freq_masks: int = 2,
        freq_mask_width: int = 27,
        num_time_masks: int = 2,
        time_mask_width: int = 40,
        time_mask_ratio: float | None = None,
        mask_value: float = 0.0,
    ) -> None:
        super().__init__()
        if time_warp_mode not in ("bicubic", "linear"):
            raise ConfigError(
                f"time_warp_mode {time_warp_mode!r} is not supported; use 'bicubic' or 'linear'"
            )
        if time_mask_ratio is not None and not 0.0 < time_mask_ratio <= 1.0:
            raise ConfigError(f"time_mask_ratio {time_mask_ratio} must be in (0, 1]")
        self.time_warp_window = time_warp_window
        self.time_warp_mode = time_warp_mode
        self.num_freq_masks = num_freq_masks
        self.freq_mask_width = freq_mask_width
        self.num_time_masks = num_time_masks
        self.time_mask_width = time_mask_width
        self.time_mask_ratio = time_mask_ratio
        self.mask_value = mask_value

    def forward(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        if not self.training:
            return feats
        x = time_warp(feats, lengths, self.time_warp_window, self.time_warp_mode, generator)
        x = mask_freq(
            x, self.num_freq_masks, self.freq_mask_width, self.mask_value, generator, lengths
        )
        return mask_time(
            x,
            lengths,
            self.num_time_masks,
            self.time_mask_width,
            self.time_mask_ratio,
            self.mask_value,
            generator,
        )
