"""Token timestamps from CIF weights, with FunASR Paraformer's rules.

FunASR turns a Paraformer's CIF output into per-token times in
``funasr/utils/timestamp_tools.py: ts_prediction_lfr6_standard(us_alphas, us_peaks, char_list)``.
For N tokens:

1. Fire frames are the frames where ``us_peaks >= 1 - 1e-4``. When there are not exactly N + 1 of
   them (N token fires plus one closing fire), ``us_alphas`` is rescaled to sum to N + 1 and
   integrated again (``cif_wo_hidden``: add each frame's weight, fire when the sum reaches
   1 - 1e-4, subtract the threshold; at most one fire per frame, any excess carries over).
2. Every fire is shifted by -1.5 frames (``force_time_shift``).
3. Token i runs from fire i to fire i + 1, but at most 12 frames; the rest of a longer gap
   is silence.
4. The last token ends at the last frame, or halfway between its closing fire and the last
   frame when more than 5 frames are left (trailing silence).
5. Frames are 60 ms (10 ms x LFR 6, hard-coded) and milliseconds are ``int(seconds * 1000)``,
   which truncates: 449 rather than 450.

**The FunASR bug (issue #3723).** ``Paraformer.inference`` calls
``ts_prediction_lfr6_standard(peaks, alphas, ...)``, but the signature is
``(us_alphas, us_peaks, ...)``. The arguments are swapped (BiCifParaformer passes them in the
right order). So step 1 checks the real alphas, and no alpha ever reaches 0.9999. It therefore
always rescales and integrates the *peaks*, the predictor's running integrator values, which
FunASR also mutates in place. The resulting times look plausible, but they are not where the CIF
fired. :func:`cif_token_times` is called the right way: pass the CIF alphas as ``alphas`` (and,
if you have them, the CIF peaks as ``peaks``). To reproduce FunASR's published numbers, pass
the peaks as ``alphas`` and the alphas as ``peaks``, exactly the call FunASR makes.

Fire detection is vectorised over frames: with C the cumulative sum and a_t = floor(C_t / thr),
the fire count after frame t is n_t = min(n_{t-1} + 1, a_t) (one fire per frame, excess carried
over), so n_t = t + min(1, min_{s <= t}(a_s - s)). That is a running minimum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FIRE_THRESHOLD = 1.0 - 1e-4
FORCE_TIME_SHIFT = -1.5  # encoder frames
SILENCE_FRAMES = 5  # FunASR's START_END_THRESHOLD
MAX_TOKEN_FRAMES = 12  # FunASR's MAX_TOKEN_DURATION (upsample_rate 1)
FUNASR_FRAME_S = 10.0 * 6 / 1000  # FunASR's TIME_RATE: 10 ms x LFR 6, whatever the model

Times = tuple[list[float], list[float]]


def _as_2d(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (T,) or (B, T), got shape {arr.shape}")
    return arr


def integrate_and_fire(alphas: np.ndarray, threshold: float = FIRE_THRESHOLD) -> np.ndarray:
    """Fire frames of FunASR's ``cif_wo_hidden`` (sequential float32 loop), vectorised.

    alphas: (B, T) non-negative weights; padding must be 0 and its fires ignored by the caller.
    Returns (B, T) bool, True where the integrator fired at that frame.
    """
    thr = float(np.float32(threshold))  # FunASR compares float32 tensors with the threshold
    cum = np.cumsum(alphas.astype(np.float64), axis=1)
    reached = np.floor(cum / thr)  # fires the weights alone would allow by frame t
    t = np.arange(alphas.shape[1], dtype=np.float64)
    count = t + np.minimum(np.minimum.accumulate(reached - t, axis=1), 1.0)  # (B, T)
    return np.diff(count, axis=1, prepend=0.0) > 0


def _token_spans(
    fire_frames: np.ndarray,
    num_frames: int,
    num_tokens: int,
    shift: float,
    silence_frames: float,
    max_token_frames: float,
) -> Times:
    """(starts, ends) for `num_tokens` tokens from sorted fire frame indices (K,)."""
    if num_tokens == 0:
        return [], []
    fires = fire_frames[: num_tokens + 1].astype(np.float64) + shift
    starts, nxt = fires[:-1], fires[1:]
    split = nxt - starts > max_token_frames  # long gap: token, then silence
    ends = np.where(split, starts + max_token_frames, nxt)
    if ends.size and not split[-1]:  # FunASR edits the last entry, which is this token
        tail = num_frames - fires[-1]
        ends[-1] = (num_frames + fires[-1]) * 0.5 if tail > silence_frames else num_frames
    # Fewer than N + 1 fires (more tokens than frames can carry): FunASR returns fewer
    # timestamps; we give the untimed tokens zero-length spans at the last end.
    missing = num_tokens - starts.size
    if missing:
        pad = np.full(missing, ends[-1] if ends.size else 0.0)
        starts, ends = np.concatenate([starts, pad]), np.concatenate([ends, pad])
    return starts.tolist(), ends.tolist()


def cif_token_times(
    alphas: Any,
    num_tokens: int | Sequence[int] | np.ndarray,
    lengths: Sequence[int] | np.ndarray | None = None,
    *,
    peaks: Any | None = None,
    threshold: float = FIRE_THRESHOLD,
    force_time_shift: float = FORCE_TIME_SHIFT,
    silence_frames: float = SILENCE_FRAMES,
    max_token_frames: float = MAX_TOKEN_FRAMES,
) -> Times | list[Times]:
    """Per-token (starts, ends) in encoder frames (floats; may start below 0 by the shift).

    alphas:     (T,) or (B, T) CIF weights, numpy or torch, tail frame included (Paraformer
                appends one frame with weight `tail_threshold`).
    num_tokens: N per utterance (int, or (B,)): the tokens to time (specials already removed).
    lengths:    (B,) valid frames per row (tail included); default: all T. FunASR uses the
                padded T for every row of a batch; we use each row's own length.
    peaks:      optional (T,) or (B, T) CIF peaks. When exactly N + 1 of a row's frames have
                ``peaks >= threshold``, those are the fires (FunASR's first branch). Otherwise
                (always without `peaks`) the alphas are rescaled to sum N + 1 and integrated.

    Returns ``(starts, ends)`` for (T,) input, or a list of them, one per row, for (B, T).
    Each list has exactly N entries; multiply by the encoder frame period for seconds
    (:func:`funasr_ms` gives FunASR's millisecond integers).
    """
    single = np.ndim(alphas) == 1 if not hasattr(alphas, "dim") else alphas.dim() == 1
    a = _as_2d(alphas, "alphas")
    batch, frames = a.shape
    n_tok = np.broadcast_to(np.asarray(num_tokens, dtype=np.int64), (batch,))
    lens = np.full(batch, frames) if lengths is None else np.asarray(lengths, dtype=np.int64)
    if lens.shape != (batch,) or (lens > frames).any() or (lens < 0).any():
        raise ValueError(f"lengths must be (B,) = ({batch},) within [0, {frames}]")
    valid = np.arange(frames) < lens[:, None]  # (B, T), True on real frames
    a = np.where(valid, a, 0.0).astype(np.float32)

    direct = np.zeros((batch, frames), dtype=bool)
    use_direct = np.zeros(batch, dtype=bool)
    if peaks is not None:
        p = _as_2d(peaks, "peaks")
        if p.shape != a.shape:
            raise ValueError(f"peaks shape {p.shape} differs from alphas shape {a.shape}")
        direct = (p >= np.float32(threshold)) & valid
        use_direct = direct.sum(axis=1) == n_tok + 1

    # Rescale each row to sum N + 1 (FunASR divides by sum / (N + 1) in float32).
    total = a.sum(axis=1, dtype=np.float32)
    scale = np.where(total > 0, total / (n_tok + 1).astype(np.float32), np.float32(1.0))
    fires = integrate_and_fire(a / scale[:, None].astype(np.float32), threshold) & valid
    fires = np.where(use_direct[:, None], direct, fires)

    out = [
        _token_spans(
            np.flatnonzero(fires[b]),
            int(lens[b]),
            int(n_tok[b]),
            force_time_shift,
            silence_frames,
            max_token_frames,
        )
        for b in range(batch)
    ]
    return out[0] if single else out


def funasr_ms(
    starts: Sequence[float], ends: Sequence[float], frame_s: float = FUNASR_FRAME_S
) -> list[list[int]]:
    """FunASR's ``[[start_ms, end_ms], ...]``: ``int(frames * frame_s * 1000)`` (truncating).

    `frame_s` is the encoder frame period in seconds; FunASR always uses 0.06 (10 ms x LFR 6).
    """
    return [
        [int(s * frame_s * 1000), int(e * frame_s * 1000)]
        for s, e in zip(starts, ends, strict=True)
    ]
