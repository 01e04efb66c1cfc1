"""CTC greedy (best-path) decoding: per-frame argmax, merge repeats, drop blanks."""

from __future__ import annotations

import torch


def ctc_greedy_search(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    blank: int = 0,
    return_frames: bool = False,
) -> list[list[int]] | tuple[list[list[int]], list[list[int]]]:
    """Best-path decoding of a padded batch.

    ``log_probs (B, T, V)`` (any scores: only the argmax matters), ``lengths (B,)`` valid
    frames. Returns the B token-id lists; with ``return_frames`` also, per token, the index of
    the first frame of its run (multiply by the frame shift x subsampling for a time stamp).
    """
    best = log_probs.argmax(dim=-1)  # (B, T)
    valid = torch.arange(best.shape[1], device=best.device)[None, :] < lengths[:, None].to(
        best.device
    )
    prev = torch.nn.functional.pad(best[:, :-1], (1, 0), value=blank)
    # A token starts where it differs from the previous frame's argmax and is not blank.
    keep = valid & (best != blank) & (best != prev)
    counts = keep.sum(dim=1).tolist()
    tokens = [t.tolist() for t in best[keep].split(counts)]
    if not return_frames:
        return tokens
    frame_idx = keep.nonzero()[:, 1]  # row-major, so grouped by utterance in frame order
    return tokens, [f.tolist() for f in frame_idx.split(counts)]


def best_path_log_prob(log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B,)`` log-probability of the single best frame alignment (sum of per-frame maxima)."""
    valid = torch.arange(log_probs.shape[1], device=log_probs.device)[None, :] < lengths[
        :, None
    ].to(log_probs.device)
    best = log_probs.max(dim=-1).values
    return torch.where(valid, best, torch.zeros_like(best)).sum(dim=1)
