"""NIST SPHERE (`NIST_1A`) reading: uncompressed PCM, mu-law and A-law.

A SPHERE file is an ASCII header (its size, normally 1024 bytes, is on the second line) of
`name -type value` lines ending with `end_head`, followed by interleaved samples. Shorten
compression (LDC corpora such as WSJ and Switchboard) is not decoded: the user is told to run
`sph2pipe` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from audiokit.errors import AudioError

MAGIC = b"NIST_1A"
_SHORTEN_MAGIC = b"ajkg"  # first bytes of a shorten stream (also caught when the header hides it)


def is_sphere(head: bytes) -> bool:
    """True when `head` (the first bytes of a file) starts with the SPHERE magic."""
    return head[:7] == MAGIC


@dataclass(frozen=True)
class SphereHeader:
    sample_rate: int
    num_channels: int
    num_frames: int
    sample_width: int  # bytes per sample
    coding: str  # "pcm", "ulaw" or "alaw"
    big_endian: bool
    data_offset: int  # = header size


def _shorten_advice(name: str) -> str:
    return (
        f"{name}: SPHERE file is shorten-compressed, which audiokit cannot decode; decompress it "
        "with `sph2pipe -f wav FILE OUT.wav`, or make its wav.scp entry `sph2pipe -f wav FILE |` "
        "and allow piped entries (`--allow-pipes` / allow_pipe=True)"
    )


def _parse_fields(text: str, name: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines()[2:]:
        line = line.strip()
        if line == "end_head":
            return fields
        if not line or line.startswith(";"):
            continue
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue  # tolerate malformed optional lines, as sox and sph2pipe do
        fields[parts[0]] = parts[2].strip()
    raise AudioError(
        f"{name}: SPHERE header has no 'end_head' line; the file is corrupt, re-create it"
    )


def _int_field(fields: dict[str, str], key: str, default: int | None, name: str) -> int:
    if key not in fields:
        if default is None:
            raise AudioError(
                f"{name}: SPHERE header lacks '{key}'; add it to the header or re-create the file"
            )
        return default
    try:
        return int(float(fields[key]))
    except ValueError:
        raise AudioError(
            f"{name}: SPHERE header field {key}='{fields[key]}' is not a number; fix the header"
        ) from None


def read_header(f: BinaryIO, size: int, name: str) -> SphereHeader:
    """Parse the header of the SPHERE stream `f` (positioned anywhere) of `size` bytes in total.

    Raises AudioError for shorten or other unsupported codings, a truncated data section
    (`sample_count` says more than is present) and malformed headers.
    """
    f.seek(0)
    first = f.read(16)
    try:
        header_size = int(first[8:16].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise AudioError(
            f"{name}: SPHERE header size on line 2 is unreadable; the file is corrupt"
        ) from None
    if header_size < 16 or header_size > size:
        raise AudioError(
            f"{name}: SPHERE header claims {header_size} bytes but the file has {size}; the file is truncated or corrupt"
        )
    f.seek(0)
    text = f.read(header_size).split(b"\0", 1)[0].decode("latin-1")
    fields = _parse_fields(text, name)

    coding_field = fields.get("sample_coding", "pcm").lower()
    if "shorten" in coding_field:
        raise AudioError(_shorten_advice(name))
    coding = coding_field.split(",")[0]
    coding = {"mu-law": "ulaw", "u-law": "ulaw", "a-law": "alaw"}.get(coding, coding)
    if coding not in ("pcm", "ulaw", "alaw"):
        raise AudioError(
            f"{name}: SPHERE sample_coding '{coding_field}' is not supported (pcm, ulaw, alaw are); "
            "convert it with `sph2pipe -f wav` or sox"
        )
    width = _int_field(fields, "sample_n_bytes", 2 if coding == "pcm" else 1, name)
    if (coding == "pcm" and width not in (1, 2, 3, 4)) or (coding != "pcm" and width != 1):
        raise AudioError(
            f"{name}: SPHERE {coding} with sample_n_bytes={width} is not supported; convert it with sox"
        )
    order = fields.get("sample_byte_format", "1" if width == 1 else "01")
    if width > 1 and order not in ("".join(sorted(order)), "".join(sorted(order, reverse=True))):
        raise AudioError(
            f"{name}: SPHERE sample_byte_format '{order}' is not supported; convert it with sox"
        )
    big_endian = width > 1 and len(order) > 1 and order[0] > order[-1]
    rate = _int_field(fields, "sample_rate", None, name)
    channels = _int_field(fields, "channel_count", 1, name)
    if rate <= 0 or channels <= 0:
        raise AudioError(
            f"{name}: SPHERE header has sample_rate={rate}, channel_count={channels}; fix the header"
        )

    f.seek(header_size)
    if f.read(4) == _SHORTEN_MAGIC:
        raise AudioError(_shorten_advice(name))
    frame_bytes = width * channels
    available = (size - header_size) // frame_bytes
    frames = _int_field(fields, "sample_count", available, name)
    if frames > available:
        raise AudioError(
            f"{name}: SPHERE file is truncated: header says {frames} samples per channel but only "
            f"{available} are present; re-copy or re-create the file"
        )
    return SphereHeader(rate, channels, frames, width, coding, big_endian, header_size)


def _g711_tables() -> tuple[np.ndarray, np.ndarray]:
    """16-bit linear values of all 256 mu-law and A-law codes (ITU-T G.711), as float32 / 2^15."""
    code = np.arange(256, dtype=np.int32)
    u = ~code & 0xFF
    mag = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 7)
    ulaw = np.where(u & 0x80, 0x84 - mag, mag - 0x84)
    a = code ^ 0x55
    exp = (a >> 4) & 7
    mant = (a & 0x0F) << 4
    amag = np.where(exp == 0, mant + 8, (mant + 0x108) << np.maximum(exp - 1, 0))
    alaw = np.where(a & 0x80, amag, -amag)
    return (ulaw / 32768.0).astype(np.float32), (alaw / 32768.0).astype(np.float32)


_ULAW, _ALAW = _g711_tables()


def read_frames(f: BinaryIO, hdr: SphereHeader, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) as float32 of shape (T, C), scaled to [-1, 1] like soundfile."""
    frame_bytes = hdr.sample_width * hdr.num_channels
    f.seek(hdr.data_offset + start * frame_bytes)
    raw = np.frombuffer(f.read((stop - start) * frame_bytes), dtype=np.uint8)
    if hdr.coding == "ulaw":
        out = _ULAW[raw]
    elif hdr.coding == "alaw":
        out = _ALAW[raw]
    elif hdr.sample_width == 3:
        b = raw.reshape(-1, 3).astype(np.uint32)
        if hdr.big_endian:
            b = b[:, ::-1]
        # put the 3 bytes at the top of a 32-bit word so the sign comes for free, then shift back
        val = ((b[:, 0] << 8) | (b[:, 1] << 16) | (b[:, 2] << 24)).view(np.int32)
        out = ((val >> 8) / 8388608.0).astype(np.float32)
    else:
        kind = (
            "i1"
            if hdr.sample_width == 1
            else ((">" if hdr.big_endian else "<") + f"i{hdr.sample_width}")
        )
        out = (raw.view(kind) / float(2 ** (8 * hdr.sample_width - 1))).astype(np.float32)
    return out.reshape(-1, hdr.num_channels)
