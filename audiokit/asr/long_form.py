"""Long-form recognition: cut audio into overlapping windows, then merge the windows' tokens.

A file longer than `window` is cut into windows of exactly `window` samples whose starts are
`hop = window - 2 * overlap` apart (the last one is moved back to end at the file's end, so no
window is short). Each window *owns* the stretch between the midpoints of its overlaps with its
neighbours (for evenly spaced windows: its central region, `overlap` in from each side); the
first window owns from 0, the last to the end. Merging keeps the tokens whose start time falls
in the owning window, so every moment of audio is transcribed by the window that saw the most
context around it. Starts are rounded to whole model output frames (`align` samples), so
window frames line up with the frames of a single pass over the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    """Samples [start, end) of a file; tokens starting in [own_start, own_end) seconds are kept."""

    start: int
    end: int
    own_start: float
    own_end: float


def plan_windows(
    num_samples: int, sample_rate: int, window_s: float, overlap_s: float, align: int = 1
) -> list[Window]:
    """Windows covering `num_samples`; one window (the whole file) when it fits in `window_s`.

    `align`: window starts are multiples of it (samples per model output frame).
    """
    window = int(round(window_s * sample_rate))
    overlap = int(round(overlap_s * sample_rate))
    if num_samples <= window or window <= 0:
        return [Window(0, num_samples, 0.0, float("inf"))]
    hop = max(align, (window - 2 * overlap) // align * align)
    last = (num_samples - window) // align * align  # aligned start that still fits
    starts = list(range(0, last, hop))
    if not starts or starts[-1] < last:
        starts.append(last)
    ends = [s + window for s in starts]
    ends[-1] = num_samples  # the last takes the < `align` samples that alignment left over
    # ownership boundary between windows i and i+1: middle of their overlap [s_{i+1}, e_i)
    bounds = [(starts[i + 1] + ends[i]) / 2 / sample_rate for i in range(len(starts) - 1)]
    owns = [0.0, *bounds]
    owns_end = [*bounds, float("inf")]
    return [Window(s, e, a, b) for s, e, a, b in zip(starts, ends, owns, owns_end, strict=True)]


def merge_windows(
    pieces: list[tuple[list[int], list[float]]], windows: list[Window], frame_s: float
) -> tuple[list[int], list[float]]:
    """Join per-window (token ids, absolute start times) into one sequence.

    A token is kept by the window that owns its start time. The same token can be placed a
    frame earlier by one window and a frame later by the next, right at a boundary; a kept
    token equal to the one before it and less than 2 output frames (`frame_s` each) after it
    is such a duplicate and dropped (CTC needs a blank frame between real repeats).
    """
    ids: list[int] = []
    times: list[float] = []
    for (tok, tim), w in zip(pieces, windows, strict=True):
        t = np.asarray(tim, dtype=np.float64)
        keep = (t >= w.own_start) & (t < w.own_end)
        ids.extend(np.asarray(tok, dtype=np.int64)[keep].tolist())
        times.extend(t[keep].tolist())
    if len(ids) < 2:
        return ids, times
    a, t = np.asarray(ids), np.asarray(times)
    dup = (a[1:] == a[:-1]) & (t[1:] - t[:-1] < 1.5 * frame_s)
    keep = np.concatenate([[True], ~dup])
    return a[keep].tolist(), t[keep].tolist()
