"""Reading and writing audio files: wav, flac, ogg/vorbis, mp3 (libsndfile) and NIST SPHERE.

Everything comes back as float32 scaled like soundfile's float reading (integer PCM divided by
2^(bits-1), so in [-1, 1]; float files are passed through unchanged). Every failure a user can
cause is an :class:`AudioError` whose one-line message names the file (and the utterance or
recording id, when the caller knows it).
"""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from audiokit.audio import sphere
from audiokit.audio.resample import resample
from audiokit.errors import AudioError, ConfigError
from audiokit.utils.atomic import atomic_path

# A segment whose end overshoots the audio by less than this is cut at the end of the audio
# (Kaldi's extract-segments --max-overshoot default); more is an error.
MAX_OVERSHOOT_S = 0.5
# Suffixes libsndfile (or our SPHERE reader) decodes: an undecodable file with one of these is
# corrupt; with any other suffix it is an unsupported format.
KNOWN_SUFFIXES = {
    ".wav",
    ".wave",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".sph",
    ".nist",
    ".wv1",
    ".wv2",
    ".aif",
    ".aiff",
    ".au",
}
_STREAM_SIZES = (0, 0xFFFFFFFF)  # WAV data sizes a streaming writer leaves: "read to end of file"


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, without decoding it. `format` is e.g. "WAV", "FLAC", "OGG", "MP3", "SPHERE"."""

    sample_rate: int
    num_frames: int
    num_channels: int
    format: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.sample_rate


class Opened(NamedTuple):
    """A probed source: its info and `read(start, stop)` -> frames [start, stop) as (T, C) float32."""

    info: AudioInfo
    read: Callable[[int, int], np.ndarray]
    exact_length: bool  # False where num_frames is only an estimate (mp3)


def describe(path: str | os.PathLike, key: str | None = None) -> str:
    """How error messages name an item: the path, plus the utterance/recording id if known."""
    return f"{path} (id {key})" if key else str(path)


def _stream(src: Path | bytes) -> BinaryIO:
    return io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")


def _sf_arg(src: Path | bytes) -> Any:
    return io.BytesIO(src) if isinstance(src, bytes) else str(src)


def _wav_layout(f: BinaryIO, size: int) -> tuple[int, int, int, int] | None:
    """(data offset, declared data size, block align, byte-order flag) of a RIFF/RIFX WAV, or None."""
    f.seek(0)
    head = f.read(12)
    endian = ">" if head[:4] == b"RIFX" else "<"
    pos, block_align = 12, 0
    while pos + 8 <= size:
        f.seek(pos)
        cid, csize = struct.unpack(endian + "4sI", f.read(8))
        if cid == b"fmt ":
            fmt = f.read(16)
            if len(fmt) == 16:
                block_align = struct.unpack(endian + "H", fmt[12:14])[0]
        elif cid == b"data":
            return pos + 8, csize, block_align, endian == ">"
        pos += 8 + csize + (csize & 1)
    return None


def _check_wav(src: Path | bytes, f: BinaryIO, size: int, name: str) -> Path | bytes:
    """Catch a truncated WAV (libsndfile silently shortens it) and fix streamed headers.

    A data size of 0 or 0xFFFFFFFF (a writer that could not seek back, as in pipes) means
    "samples run to the end", as Kaldi reads it; so does a too-large size in piped bytes,
    where tools write estimates. Returns the source to decode (patched bytes if needed).
    """
    layout = _wav_layout(f, size)
    if layout is None:
        return src
    offset, declared, block_align, big = layout
    available = size - offset
    streamed = declared in _STREAM_SIZES and available > 0
    if not streamed and declared > available and not isinstance(src, bytes):
        pct = 100.0 * available / declared
        raise AudioError(
            f"{name}: WAV file is truncated: header declares {declared} bytes of samples but only "
            f"{available} are present ({pct:.1f}%); re-copy or re-create the file"
        )
    if streamed or declared > available:
        n = available - available % max(block_align, 1)
        f.seek(0)
        buf = bytearray(f.read(size))
        fmt = ">I" if big else "<I"
        buf[4:8] = struct.pack(fmt, offset - 8 + n)
        buf[offset - 4 : offset] = struct.pack(fmt, n)
        return bytes(buf)
    return src


def _decode_error(name: str, suffix: str, exc: Exception, piped: bool) -> AudioError:
    reason = (
        str(exc).split(": ", 1)[-1].strip()
        if str(exc).startswith("Error opening")
        else str(exc).strip()
    )
    if "does not exist" in reason:  # libsndfile's wording when a decoder rejects the stream
        reason = "the decoder rejected the stream"
    reason = " ".join(reason.split()).rstrip(".")
    if piped:
        return AudioError(
            f"{name}: the command's output is not decodable audio ({reason}); make it write wav to stdout, e.g. `sox IN -t wav - |`"
        )
    if suffix.lower() in KNOWN_SUFFIXES:
        return AudioError(
            f"{name}: cannot decode audio ({reason}); the file is corrupt, truncated or not really {suffix or 'audio'}; re-create or re-encode it"
        )
    return AudioError(
        f"{name}: unsupported audio format '{suffix}' ({reason}); convert it to wav or flac "
        "(e.g. `ffmpeg -i FILE out.wav`) or use a piped wav.scp entry that writes wav"
    )


def open_source(src: Path | bytes, name: str) -> Opened:
    """Probe a file path or in-memory bytes (a pipe's output); raise AudioError if unusable."""
    piped = isinstance(src, bytes)
    suffix = "" if piped else src.suffix
    if piped:
        size = len(src)
    else:
        try:
            st = src.stat()
        except FileNotFoundError:
            raise AudioError(
                f"{name}: file not found; check the path (relative wav.scp paths resolve against the data dir)"
            ) from None
        except OSError as e:
            raise AudioError(
                f"{name}: cannot access the file ({e.strerror}); check the path and permissions"
            ) from None
        if src.is_dir():
            raise AudioError(
                f"{name}: is a directory, not an audio file; point the entry at a file"
            )
        size = st.st_size
    if size == 0:
        what = "the command wrote nothing to stdout" if piped else "file is empty (0 bytes)"
        raise AudioError(f"{name}: {what}; re-create the audio or remove the entry")
    try:
        with _stream(src) as f:
            head = f.read(12)
            if sphere.is_sphere(head):
                hdr = sphere.read_header(f, size, name)
                opened = Opened(
                    AudioInfo(hdr.sample_rate, hdr.num_frames, hdr.num_channels, "SPHERE"),
                    lambda a, b: _read_sphere(src, hdr, a, b),
                    True,
                )
                return _nonempty(opened, name)
            if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
                src = _check_wav(src, f, size, name)
    except OSError as e:
        raise AudioError(
            f"{name}: cannot read the file ({e.strerror}); check its permissions and the disk"
        ) from None
    except struct.error:
        raise AudioError(
            f"{name}: WAV header is cut short; the file is truncated or corrupt, re-create it"
        ) from None
    import soundfile as sf  # lazy: keeps `import audiokit.audio` light

    try:
        i = sf.info(_sf_arg(src))
    except (RuntimeError, ValueError, TypeError) as e:
        raise _decode_error(name, suffix, e, piped) from None
    fmt = "WAV" if i.format == "WAVEX" else i.format
    info = AudioInfo(int(i.samplerate), int(i.frames), int(i.channels), fmt)

    def read(a: int, b: int) -> np.ndarray:
        try:
            x, _ = sf.read(_sf_arg(src), start=a, stop=b, dtype="float32", always_2d=True)
        except (RuntimeError, ValueError) as e:
            raise _decode_error(name, suffix, e, piped) from None
        return x

    return _nonempty(Opened(info, read, fmt != "MP3"), name)


def _read_sphere(src: Path | bytes, hdr: sphere.SphereHeader, a: int, b: int) -> np.ndarray:
    with _stream(src) as f:
        return sphere.read_frames(f, hdr, a, b)


def _nonempty(opened: Opened, name: str) -> Opened:
    if opened.info.num_frames <= 0 or opened.info.sample_rate <= 0:
        raise AudioError(
            f"{name}: audio has no samples (valid header, 0 frames); re-create the audio or remove the entry"
        )
    return opened


def opened_from_array(x: np.ndarray, sample_rate: int, fmt: str) -> Opened:
    """Wrap in-memory (T, C) float32 audio (e.g. from a Kaldi ark) as an :class:`Opened`."""
    return Opened(
        AudioInfo(int(sample_rate), x.shape[0], x.shape[1], fmt), lambda a, b: x[a:b], True
    )


def _is_rate(x: Any) -> bool:
    """True for a positive whole number (not a bool); 16000.0 counts."""
    try:
        return not isinstance(x, (bool, str)) and int(x) == x and x > 0
    except (TypeError, ValueError, OverflowError):
        return False


def _check_options(sample_rate: int | None, channel: int | str) -> None:
    if sample_rate is not None and not _is_rate(sample_rate):
        raise ConfigError(
            f"sample_rate={sample_rate!r} is invalid; give a positive integer rate in Hz or None to keep the file's"
        )
    if isinstance(channel, str) and channel not in ("mix", "all"):
        raise ConfigError(
            f"channel={channel!r} is invalid; use a channel index (0 = first), 'mix' or 'all'"
        )
    if not isinstance(channel, str) and (
        isinstance(channel, bool) or not isinstance(channel, (int, np.integer))
    ):
        raise ConfigError(
            f"channel={channel!r} is invalid; use a channel index (0 = first), 'mix' or 'all'"
        )


def _frame_range(info: AudioInfo, start: float, end: float | None, name: str) -> tuple[int, int]:
    """Frames [a, b) for a segment in seconds; sample index = floor(t * rate) as Kaldi does."""
    sr, n = info.sample_rate, info.num_frames
    seg = f"segment {start}-{'end' if end is None else end} s"
    if not (math.isfinite(start) and start >= 0) or (
        end is not None and end != -1 and not (math.isfinite(end) and end > start)
    ):
        raise AudioError(
            f"{name}: {seg} is invalid (need 0 <= start < end); fix the segments entry"
        )
    a = math.floor(start * sr + 1e-4)  # tolerance: 0.29 * 100 must give 29, not 28
    if a >= n:
        raise AudioError(
            f"{name}: {seg} starts after the audio ends ({info.duration:.3f} s); fix the segments entry"
        )
    if end is None or end == -1:
        return a, n
    b = math.floor(end * sr + 1e-4)
    if b > n:
        if b - n >= int(MAX_OVERSHOOT_S * sr):
            raise AudioError(
                f"{name}: {seg} ends {end - info.duration:.3f} s after the audio ends ({info.duration:.3f} s); "
                "fix the segments entry"
            )
        b = n  # small overshoot from rounding in segments files: cut at the end, as Kaldi does
    return a, b


def _pick_channel(x: np.ndarray, channel: int | str, name: str) -> np.ndarray:
    """(T, C) -> (T,) for an index or "mix", (C, T) for "all"."""
    c = x.shape[1]
    if channel == "all":
        return x.T
    if channel == "mix":
        return x[:, 0] if c == 1 else x.mean(axis=1, dtype=np.float32)
    if not 0 <= int(channel) < c:
        raise AudioError(
            f"{name}: channel {channel} requested but the audio has {c} channel(s); use 0..{c - 1}, 'mix' or 'all'"
        )
    return x[:, int(channel)]


def decode(
    opened: Opened,
    name: str,
    sample_rate: int | None = None,
    channel: int | str = "mix",
    start: float = 0.0,
    end: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read a segment of an opened source, pick channels and resample; see :func:`load`."""
    _check_options(sample_rate, channel)
    a, b = _frame_range(opened.info, float(start), None if end is None else float(end), name)
    x = opened.read(a, b)
    if x.shape[0] == 0 or (opened.exact_length and x.shape[0] < b - a):
        raise AudioError(
            f"{name}: audio is truncated: expected {b - a} frames from frame {a} but decoded {x.shape[0]}; "
            "re-copy or re-create the file"
        )
    if not np.isfinite(x).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples; re-create the file")
    y = _pick_channel(x, channel, name)
    sr = opened.info.sample_rate
    if sample_rate is not None and int(sample_rate) != sr:
        y, sr = resample(y, sr, int(sample_rate)), int(sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32), sr


def info(path: str | os.PathLike) -> AudioInfo:
    """Rate, length, channels and format of an audio file (header only; a truncated WAV or SPHERE is caught)."""
    return open_source(Path(path), str(path)).info


def load(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channel: int | str = "mix",
    start: float = 0.0,
    end: float | None = None,
) -> tuple[np.ndarray, int]:
    """Load audio as float32: (T,) for an int `channel` or "mix" (mean of channels), (C, T) for "all".

    `sample_rate=None` keeps the file's rate, else the audio is resampled (soxr HQ).
    `start`/`end` (seconds; `end=None` or -1 = to the end) select a segment: frames
    floor(start*sr) .. floor(end*sr), an end overshooting by < 0.5 s is cut at the end.
    Returns (samples, rate of the returned samples).
    """
    return decode(open_source(Path(path), str(path)), str(path), sample_rate, channel, start, end)


_SAVE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


def save(path: str | os.PathLike, samples: Any, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write (T,) or (C, T) audio (numpy or torch) atomically; WAV or FLAC by the path's suffix.

    Floats are expected in [-1, 1]; libsndfile clips them for integer subtypes. Raises
    AudioError for non-finite or empty audio, ConfigError for a bad suffix/subtype/rate.
    """
    import soundfile as sf

    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: cannot save audio with suffix '{path.suffix}'; use .wav or .flac"
        )
    if not _is_rate(sample_rate):
        raise ConfigError(
            f"{path}: sample_rate={sample_rate!r} is invalid; give a positive integer"
        )
    if not sf.check_format(fmt, subtype):
        valid = ", ".join(sorted(sf.available_subtypes(fmt)))
        raise ConfigError(
            f"{path}: subtype '{subtype}' cannot be written as {fmt}; use one of {valid}"
        )
    if hasattr(samples, "detach"):  # torch.Tensor, without importing torch here
        samples = samples.detach().cpu().numpy()
    x = np.asarray(samples)
    if x.ndim not in (1, 2) or x.size == 0:
        raise AudioError(
            f"{path}: cannot save audio of shape {x.shape}; give non-empty (T,) or (C, T) samples"
        )
    if x.dtype not in (np.int16, np.int32):
        x = x.astype(np.float32 if x.dtype != np.float64 else np.float64)
        if not np.isfinite(x).all():
            raise AudioError(
                f"{path}: samples contain NaN or infinity; fix the signal before saving"
            )
    with atomic_path(path) as tmp:
        sf.write(str(tmp), x.T if x.ndim == 2 else x, int(sample_rate), subtype=subtype, format=fmt)
