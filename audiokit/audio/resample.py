"""Sample-rate conversion with soxr's "HQ" quality, matching `librosa.resample` (res_type="soxr_hq")."""

from __future__ import annotations

import numpy as np
import soxr

from audiokit.errors import ConfigError


def _check_rate(name: str, rate: int) -> int:
    if isinstance(rate, bool) or int(rate) != rate or rate <= 0:
        raise ConfigError(
            f"resample: {name}={rate!r} is invalid; give a positive integer rate in Hz"
        )
    return int(rate)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis: (..., T) at `orig_sr` -> (..., T') at `target_sr`.

    T' = ceil(T * target_sr / orig_sr), as librosa (and torchaudio) give: soxr's own output
    is trimmed or zero-padded to that length. float64 input stays float64, anything else
    comes back float32. Channels are independent.
    """
    orig_sr, target_sr = _check_rate("orig_sr", orig_sr), _check_rate("target_sr", target_sr)
    x = np.asarray(samples)
    if x.dtype != np.float64:
        x = x.astype(np.float32, copy=False)
    if orig_sr == target_sr:
        return x.copy()
    t = x.shape[-1]
    n_out = -(-t * target_sr // orig_sr)  # exact integer ceil
    lead = x.shape[:-1]
    if t == 0:
        return np.zeros((*lead, 0), dtype=x.dtype)
    # soxr wants (frames, channels): fold all leading axes into channels
    frames = np.ascontiguousarray(x.reshape(-1, t).T)
    y = soxr.resample(frames, orig_sr, target_sr, quality="HQ")
    y = y.reshape(y.shape[0], -1).T
    if y.shape[-1] >= n_out:
        y = y[:, :n_out]
    else:
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[-1])))
    return np.ascontiguousarray(y.reshape(*lead, n_out), dtype=x.dtype)
