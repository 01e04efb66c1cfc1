"""Read HTK binary parameter files (HCopy output), e.g. to compare against HTK references.

Layout (HTK book, section 5.10.1): a 12-byte header ``nSamples:int32 sampPeriod:int32
(100 ns units) sampSize:int16 (bytes per frame) parmKind:int16``, then frames. Files are
big-endian unless written with NATURALWRITEORDER; the byte order is picked by checking which
one makes the header agree with the file size. Compressed (``_C``) files store int16 values with
per-dimension scale A and offset B (value = (int16 + B) / A); a ``_K`` CRC trailer is ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiokit.errors import FeatureError

BASE_KINDS = {
    0: "WAVEFORM", 1: "LPC", 2: "LPREFC", 3: "LPCEPSTRA", 4: "LPDELCEP", 5: "IREFC",
    6: "MFCC", 7: "FBANK", 8: "MELSPEC", 9: "USER", 10: "DISCRETE", 11: "PLP",
}  # fmt: skip
QUALIFIERS = {  # bit -> suffix, in HTK's printing order
    0o100: "_E", 0o200: "_N", 0o400: "_D", 0o1000: "_A", 0o2000: "_C",
    0o4000: "_Z", 0o10000: "_K", 0o20000: "_0", 0o40000: "_V", 0o100000: "_T",
}  # fmt: skip
_COMPRESSED, _CRC = 0o2000, 0o10000


@dataclass
class HtkFeatures:
    """An HTK file's contents: feats (F, D) float32, frame period in seconds, parameter kind."""

    feats: np.ndarray
    sample_period_s: float
    parm_kind: int

    @property
    def kind_name(self) -> str:
        """E.g. ``MFCC_D_A_0``."""
        base = BASE_KINDS.get(self.parm_kind & 0o77, f"KIND{self.parm_kind & 0o77}")
        return base + "".join(s for bit, s in QUALIFIERS.items() if self.parm_kind & bit)


def _header(raw: bytes, order: str) -> tuple[int, int, int, int]:
    n, period = np.frombuffer(raw[:8], dtype=f"{order}i4")
    size, kind = np.frombuffer(raw[8:12], dtype=f"{order}i2")
    return int(n), int(period), int(size), int(kind) & 0xFFFF


def read_htk(path: str | os.PathLike) -> HtkFeatures:
    """Read an HTK parameter file; FeatureError (one line) if it is not one."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise FeatureError(f"{path}: cannot read HTK file ({e.strerror}); check the path") from e
    if len(raw) < 12:
        raise FeatureError(
            f"{path}: {len(raw)} bytes is too short for an HTK header; not an HTK file"
        )
    for order in (">", "<"):
        n, period, size, kind = _header(raw, order)
        body = n * size  # for _C files n also counts the 4 rows that hold A and B
        extra = len(raw) - 12 - body
        if n >= 0 and size > 0 and extra in (0, 2 if kind & _CRC else 0):
            break
    else:
        raise FeatureError(
            f"{path}: header does not match the file size in either byte order; "
            "the file is truncated or not an HTK parameter file"
        )
    data = raw[12 : 12 + body]
    if kind & 0o77 == 0:  # WAVEFORM: int16 samples, one per "frame" of 2 bytes
        feats = np.frombuffer(data, dtype=f"{order}i2").astype(np.float32).reshape(n, size // 2)
    elif kind & _COMPRESSED:
        dim = size // 2
        a = np.frombuffer(data[: 4 * dim], dtype=f"{order}f4")
        b = np.frombuffer(data[4 * dim : 8 * dim], dtype=f"{order}f4")
        values = np.frombuffer(data[8 * dim :], dtype=f"{order}i2").reshape(-1, dim)
        feats = ((values.astype(np.float32) + b) / a).astype(np.float32)
    else:
        if size % 4:
            raise FeatureError(f"{path}: sample size {size} is not a whole number of floats")
        feats = np.frombuffer(data, dtype=f"{order}f4").astype(np.float32).reshape(n, size // 4)
    return HtkFeatures(feats=feats, sample_period_s=period * 1e-7, parm_kind=kind)
