"""Audio-quality metrics for codecs: SI-SDR, multi-scale mel distance, STOI and (optional) PESQ.

Every function takes a reference and an estimate of the same shape: ``(S,)`` or ``(..., S)``
float arrays (numpy or torch) at one sample rate. Definitions:

* :func:`si_sdr` — scale-invariant SDR (Le Roux et al. 2019) in dB, both signals made
  zero-mean first: ``10 log10(|a r|^2 / |a r - e|^2)`` with ``a = <e, r> / |r|^2``.
* :func:`mel_distance` — DAC's multi-scale mel distance: the codec training loss
  :class:`audiokit.codec.losses.MultiScaleMelLoss` with DAC's defaults (7 STFT scales, windows
  32..2048 samples, hop = window/4, 5..320 Slaney mel bands on the magnitude, L1 between
  ``log10(max(mel, 1e-5))``, summed over the scales). Lower is better; 0 = identical.
* :func:`stoi` — short-time objective intelligibility (Taal et al. 2011), computed as pystoi
  0.4 does: Octave-compatible resampling to 10 kHz, removal of frames more than 40 dB below the
  loudest reference frame, 256-sample Hann frames (hop 128, 512-point FFT), 15 one-third-octave
  bands from 150 Hz, 30-frame (384 ms) segments, clipping at -15 dB SDR. Vectorised numpy.
* :func:`pesq` — ITU-T P.862 through the optional ``pesq`` package (wide-band at 16 kHz,
  narrow-band at 8 kHz, other rates resampled to 16 kHz); None when the package is absent.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

_EPS = np.finfo(np.float64).eps

# STOI constants (Taal et al. 2011; identical to pystoi).
STOI_FS = 10000
_N_FRAME = 256
_NFFT = 512
_NUM_BANDS = 15
_MIN_FREQ = 150.0
_SEGMENT = 30  # frames per intermediate-intelligibility segment (384 ms)
_BETA = -15.0  # lower SDR bound of the clipping, dB
_DYN_RANGE = 40.0  # frames this far below the loudest reference frame are silence, dB


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _same_shape(ref: np.ndarray, est: np.ndarray, what: str) -> None:
    if ref.shape != est.shape:
        raise ValueError(f"{what}: reference {ref.shape} and estimate {est.shape} differ in shape")


# ---- SI-SDR ----------------------------------------------------------------------------------


def si_sdr(ref: Any, est: Any, eps: float = 1e-8) -> np.ndarray | float:
    """Scale-invariant SDR in dB over the last axis: ``(..., S)`` -> ``(...)`` (float for 1-D)."""
    r, e = _np(ref), _np(est)
    _same_shape(r, e, "si_sdr")
    r = r - r.mean(axis=-1, keepdims=True)
    e = e - e.mean(axis=-1, keepdims=True)
    alpha = (e * r).sum(-1, keepdims=True) / ((r * r).sum(-1, keepdims=True) + eps)
    target = alpha * r
    noise = e - target
    out = 10.0 * np.log10(((target**2).sum(-1) + eps) / ((noise**2).sum(-1) + eps))
    return float(out) if out.ndim == 0 else out


# ---- mel distance ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _mel_loss(sample_rate: int):
    from audiokit.codec.losses import MultiScaleMelLoss

    return MultiScaleMelLoss(sample_rate).eval()


def mel_distance(ref: Any, est: Any, sample_rate: int) -> float:
    """DAC multi-scale log-mel L1 distance (module docstring) between ``(..., S)`` signals.

    Signals must be longer than 1024 samples (half the largest window: reflect padding).
    """
    import torch

    r, e = _np(ref), _np(est)
    _same_shape(r, e, "mel_distance")
    r2 = torch.from_numpy(r.reshape(-1, r.shape[-1]).astype(np.float32))
    e2 = torch.from_numpy(e.reshape(-1, e.shape[-1]).astype(np.float32))
    with torch.no_grad():
        return float(_mel_loss(int(sample_rate))(e2, r2))


# ---- STOI ------------------------------------------------------------------------------------


def _octave_resample(x: np.ndarray, p: int, q: int) -> np.ndarray:
    """Resample by p/q with Octave's `resample` anti-aliasing filter (as pystoi.resample_oct)."""
    from scipy.signal import resample_poly

    g = math.gcd(p, q)
    p, q = p // g, q // g
    rejection_db = 60.0  # log10 rejection of -3
    cutoff = 1.0 / (2 * max(p, q))
    half = math.ceil((rejection_db - 8) / (28.714 * cutoff / 10))
    t = np.arange(-half, half + 1)
    beta = 0.1102 * (rejection_db - 8.7)  # Kaiser beta for > 50 dB rejection
    h = np.kaiser(2 * half + 1, beta) * (2 * p * cutoff * np.sinc(2 * cutoff * t))
    return resample_poly(x, p, q, axis=-1, window=h / h.sum())


@functools.cache
def third_octave_matrix(fs: int = STOI_FS, nfft: int = _NFFT) -> np.ndarray:
    """(15, nfft//2+1) 0/1 matrix summing FFT bins into one-third-octave bands (pystoi.thirdoct)."""
    f = np.linspace(0, fs, nfft + 1)[: nfft // 2 + 1]
    k = np.arange(_NUM_BANDS, dtype=np.float64)
    low = _MIN_FREQ * 2.0 ** ((2 * k - 1) / 6)
    high = _MIN_FREQ * 2.0 ** ((2 * k + 1) / 6)
    lo_bin = np.argmin((f[None, :] - low[:, None]) ** 2, axis=1)
    hi_bin = np.argmin((f[None, :] - high[:, None]) ** 2, axis=1)
    bins = np.arange(len(f))
    return ((bins >= lo_bin[:, None]) & (bins < hi_bin[:, None])).astype(np.float64)


def _frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(S,) -> (n, size) windows at 0, hop, ... < S - size (pystoi's range, last start excluded)."""
    n = max(0, -(-(len(x) - size) // hop))
    idx = np.arange(n)[:, None] * hop + np.arange(size)[None, :]
    return x[idx]


def _overlap_add(frames: np.ndarray, hop: int) -> np.ndarray:
    """(n, size) frames at `hop` spacing -> signal of (n-1)*hop + size samples."""
    n, size = frames.shape
    if n == 0:
        return np.zeros(0)
    k = -(-size // hop)
    padded = np.pad(frames, ((0, 0), (0, k * hop - size))).reshape(n, k, hop)
    out = np.zeros((n + k - 1) * hop)
    for j in range(k):  # k = 2 here: a loop over frame halves, not over frames
        out[j * hop : (j + n) * hop] += padded[:, j].reshape(-1)
    return out[: (n - 1) * hop + size]


def _hann(n: int) -> np.ndarray:
    return np.hanning(n + 2)[1:-1]  # Matlab's hanning(n): no zero end points


def stoi(ref: Any, est: Any, sample_rate: int) -> float:
    """STOI of `est` against the clean `ref`, 1-D signals of equal length (about 0..1, higher
    is better). Returns 1e-5 with a RuntimeWarning when fewer than 30 non-silent frames remain
    (as pystoi)."""
    x, y = _np(ref), _np(est)
    _same_shape(x, y, "stoi")
    if x.ndim != 1:
        raise ValueError(f"stoi: expected 1-D signals, got shape {x.shape}")
    if int(sample_rate) != STOI_FS:
        x = _octave_resample(x, STOI_FS, int(sample_rate))
        y = _octave_resample(y, STOI_FS, int(sample_rate))
    hop = _N_FRAME // 2
    w = _hann(_N_FRAME)
    xf, yf = _frames(x, _N_FRAME, hop) * w, _frames(y, _N_FRAME, hop) * w
    if len(xf) == 0:
        xf = yf = np.zeros((0, _N_FRAME))
    else:
        energy = 20 * np.log10(np.linalg.norm(xf, axis=1) + _EPS)
        keep = (energy.max() - _DYN_RANGE - energy) < 0
        xf, yf = xf[keep], yf[keep]
    x, y = _overlap_add(xf, hop), _overlap_add(yf, hop)
    xs = np.fft.rfft(_frames(x, _N_FRAME, hop) * w, n=_NFFT)  # (frames, bins)
    ys = np.fft.rfft(_frames(y, _N_FRAME, hop) * w, n=_NFFT)
    if xs.shape[0] < _SEGMENT:
        warnings.warn(
            "stoi: fewer than 30 non-silent STFT frames; returning 1e-5",
            RuntimeWarning,
            stacklevel=2,
        )
        return 1e-5
    obm = third_octave_matrix()
    x_tob = np.sqrt(obm @ (np.abs(xs) ** 2).T)  # (bands, frames)
    y_tob = np.sqrt(obm @ (np.abs(ys) ** 2).T)
    view = np.lib.stride_tricks.sliding_window_view
    xseg = view(x_tob, _SEGMENT, axis=1).transpose(1, 0, 2)  # (segments, bands, N)
    yseg = view(y_tob, _SEGMENT, axis=1).transpose(1, 0, 2)
    norm = np.linalg.norm(xseg, axis=2, keepdims=True) / (
        np.linalg.norm(yseg, axis=2, keepdims=True) + _EPS
    )
    clip = 10 ** (-_BETA / 20)
    yp = np.minimum(yseg * norm, xseg * (1 + clip))
    yp = yp - yp.mean(axis=2, keepdims=True)
    xc = xseg - xseg.mean(axis=2, keepdims=True)
    yp = yp / (np.linalg.norm(yp, axis=2, keepdims=True) + _EPS)
    xc = xc / (np.linalg.norm(xc, axis=2, keepdims=True) + _EPS)
    return float(np.sum(yp * xc) / (xc.shape[0] * xc.shape[1]))


# ---- PESQ (optional) -------------------------------------------------------------------------


def pesq_available() -> bool:
    try:
        import pesq  # noqa: F401
    except ImportError:
        return False
    return True


def pesq(ref: Any, est: Any, sample_rate: int) -> float | None:
    """PESQ MOS-LQO of 1-D signals (wide-band mode; narrow-band at 8 kHz); None when the
    optional ``pesq`` package is absent or it finds no speech in the reference."""
    try:
        from pesq import pesq as _pesq
    except ImportError:
        return None
    x, y = _np(ref), _np(est)
    _same_shape(x, y, "pesq")
    sr = int(sample_rate)
    if sr not in (8000, 16000):
        from audiokit.audio.resample import resample

        x, y, sr = resample(x, sr, 16000), resample(y, sr, 16000), 16000
    try:
        return float(_pesq(sr, x, y, "wb" if sr == 16000 else "nb"))
    except Exception:  # the package raises its own errors for silent / too short input
        return None
