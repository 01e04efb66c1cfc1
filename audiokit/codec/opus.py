"""Opus baseline: round-trip audio through the Opus codec at a bitrate, for codec comparisons.

Uses ``opusenc``/``opusdec`` (Debian/Ubuntu package ``opus-tools``) when present, else
``ffmpeg`` with libopus. Encoding is hard CBR by default, so the nominal bitrate is the bitrate
of the Opus packets (the Ogg container adds a few hundred bytes of headers, reported apart as
the file bitrate). libopus accepts 6..256 kbit/s per channel; it runs internally at 48 kHz and
``opusdec`` resamples back to the input rate, removing the encoder's pre-skip, so the output
lines up with the input (it is trimmed/padded to the input length).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiokit.errors import AudioError, ConfigError

MIN_KBPS, MAX_KBPS = 6.0, 256.0
_INSTALL = "install opus-tools (apt-get install opus-tools) or ffmpeg"


@dataclass
class OpusResult:
    """audio: (C, S) float32 at the input rate, input length; file_kbps: Ogg file size over
    the duration (headers included); backend: "opus-tools" or "ffmpeg"."""

    audio: np.ndarray
    kbps: float
    file_kbps: float
    backend: str


def opus_backend() -> str | None:
    """'opus-tools' or 'ffmpeg' (whichever is installed, in that order), else None."""
    if shutil.which("opusenc") and shutil.which("opusdec"):
        return "opus-tools"
    if shutil.which("ffmpeg"):
        return "ffmpeg"
    return None


def _run(cmd: list[str], what: str) -> None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except OSError as e:
        raise ConfigError(f"opus: cannot run {cmd[0]} ({e}); {_INSTALL}") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        raise AudioError(f"opus: {cmd[0]} failed on {what}: {tail[0]}; check the input audio")


def opus_roundtrip(
    wav: np.ndarray,
    sample_rate: int,
    kbps: float,
    vbr: bool = False,
    backend: str | None = None,
    name: str = "audio",
) -> OpusResult:
    """Encode (S,) or (C, S) float audio at `sample_rate` with Opus at `kbps` kbit/s (total,
    all channels) and decode it back: see :class:`OpusResult`."""
    import soundfile as sf

    x = np.asarray(wav, dtype=np.float32)
    x = x[None] if x.ndim == 1 else x
    c, n = x.shape
    lo, hi = MIN_KBPS * c, MAX_KBPS * c
    if not lo <= kbps <= hi:
        raise ConfigError(
            f"Opus bitrate {kbps} kbit/s is outside libopus's {lo:g}..{hi:g} for {c} channel(s); "
            "pick another bitrate"
        )
    backend = backend or opus_backend()
    if backend is None:
        raise ConfigError(f"the Opus baseline needs opusenc/opusdec or ffmpeg; {_INSTALL}")
    with tempfile.TemporaryDirectory(prefix="audiokit-opus-") as tmp:
        src, ogg, dec = Path(tmp, "in.wav"), Path(tmp, "enc.opus"), Path(tmp, "dec.wav")
        # float WAV: no 16-bit quantisation before Opus; opusenc reads it
        sf.write(str(src), np.clip(x, -1.0, 1.0).T, int(sample_rate), subtype="FLOAT")
        if backend == "opus-tools":
            mode = "--vbr" if vbr else "--hard-cbr"
            _run(["opusenc", "--quiet", "--bitrate", f"{kbps:g}", mode, str(src), str(ogg)], name)
            _run(["opusdec", "--quiet", "--rate", str(int(sample_rate)), "--float", str(ogg), str(dec)], name)  # fmt: skip
        elif backend == "ffmpeg":
            _run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(src), "-c:a",
                  "libopus", "-b:a", f"{kbps:g}k", "-vbr", "on" if vbr else "off", str(ogg)], name)  # fmt: skip
            _run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(ogg), "-ar",
                  str(int(sample_rate)), "-c:a", "pcm_f32le", str(dec)], name)  # fmt: skip
        else:
            raise ConfigError(f"opus backend {backend!r} is unknown; use opus-tools or ffmpeg")
        y, _ = sf.read(str(dec), dtype="float32", always_2d=True)
        size = ogg.stat().st_size
    y = y.T
    if y.shape[0] != c:  # decoders may upmix; keep the input's channel count
        y = y.mean(axis=0, keepdims=True) if c == 1 else y[:c]
    y = y[:, :n] if y.shape[1] >= n else np.pad(y, ((0, 0), (0, n - y.shape[1])))
    file_kbps = size * 8 / (n / sample_rate) / 1000.0
    return OpusResult(np.ascontiguousarray(y, dtype=np.float32), float(kbps), file_kbps, backend)
