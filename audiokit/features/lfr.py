"""Low frame rate (LFR) stacking, as FunASR's Paraformer/SenseVoice front end does it.

Output frame ``i`` concatenates input frames ``i*lfr_n - (lfr_m-1)//2 ... + lfr_m - 1``, where
indices before the start repeat the first frame and indices past the end repeat the last frame
(FunASR's ``apply_lfr``: left padding by ``(lfr_m-1)//2`` copies of frame 0, ``ceil(T/lfr_n)``
output frames, the last windows padded with the last frame).
"""

from __future__ import annotations

import torch

from audiokit.errors import ConfigError


def lfr_lengths(lengths: torch.Tensor, lfr_n: int) -> torch.Tensor:
    """Output frames per utterance: ``ceil(T / lfr_n)`` for lengths ``(B,)``."""
    return torch.div(lengths + lfr_n - 1, lfr_n, rounding_mode="floor")


def apply_lfr(
    feats: torch.Tensor, lfr_m: int, lfr_n: int, lengths: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``lfr_m`` frames every ``lfr_n`` frames.

    Args:
        feats: ``(B, T, D)`` zero-padded features, or ``(T, D)`` for one utterance.
        lfr_m: frames stacked per output frame (FunASR default 7).
        lfr_n: input frames per output step (FunASR default 6).
        lengths: ``(B,)`` valid frames per utterance; ``None`` means all ``T`` are valid.

    Returns:
        ``(B, T_out, lfr_m * D)`` (or ``(T_out, lfr_m * D)``) with frames past each
        utterance's ``ceil(length / lfr_n)`` set to zero, and the output lengths ``(B,)``
        (a 0-dim tensor for unbatched input).
    """
    if lfr_m < 1 or lfr_n < 1:
        raise ConfigError(f"LFR needs lfr_m >= 1 and lfr_n >= 1, got m={lfr_m} n={lfr_n}")
    unbatched = feats.dim() == 2
    x = feats.unsqueeze(0) if unbatched else feats
    b, t, d = x.shape
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=x.device)
    lengths = lengths.to(device=x.device, dtype=torch.long)
    if t == 0 or int(lengths.min()) < 1:
        raise ConfigError("LFR needs at least one frame per utterance; drop empty utterances first")
    out_lengths = lfr_lengths(lengths, lfr_n)
    t_out = int(out_lengths.max())
    left = (lfr_m - 1) // 2
    steps = torch.arange(t_out, device=x.device) * lfr_n
    offsets = torch.arange(lfr_m, device=x.device) - left
    # (B, T_out, m) source indices, clamped into each utterance's valid range.
    src = steps[None, :, None] + offsets[None, None, :]
    src = torch.minimum(src.clamp(min=0), (lengths - 1)[:, None, None])
    gathered = torch.gather(x, 1, src.reshape(b, -1, 1).expand(-1, -1, d))
    out = gathered.reshape(b, t_out, lfr_m * d)
    valid = torch.arange(t_out, device=x.device)[None, :] < out_lengths[:, None]
    out = out * valid[:, :, None].to(out.dtype)
    if unbatched:
        return out[0], out_lengths[0]
    return out, out_lengths
