"""The codec `.npz` file: one encoded recording, readable with ``np.load(allow_pickle=False)``.

Keys (batch dimension dropped; a file holds one recording):

=============== ======================================================================
codes           int (K, T) RVQ codes (int16 when the codebook fits, else int32); absent
                for latent codecs. Segmented models concatenate segments along T.
latents         float32 (D, T) posterior mean (latent codecs only)
logvar          float32 (D, T) posterior log-variance (latent codecs, when given)
scales          float32 (n_segments,) per-segment input scale (segmented models only)
kind            "rvq" or "latent"
sample_rate     int, the codec's rate (the rate `decode` writes)
hop_length      int, samples per frame
channels        int, the codec's channels
num_samples     int, input length at `sample_rate` (-1: unknown, decode untrimmed)
n_codebooks     int, K (0 for latent codecs)
codebook_size   int (0 for latent codecs or when unknown)
extra           str, the encoding's `extra` dict as JSON
format_version  int, 1
=============== ======================================================================
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from audiokit.codec.base import CodecEncoding
from audiokit.errors import AudiokitError, ConfigError
from audiokit.utils.atomic import atomic_write

FORMAT_VERSION = 1


class CodecFileError(AudiokitError):
    """A codec .npz that cannot be read or does not fit the model."""


def _batch_of_one(t, name: str):
    if t is None:
        return None
    arr = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
    if arr.shape[0] != 1:
        raise ValueError(f"{name}: expected a batch of one, got shape {tuple(arr.shape)}")
    return arr[0]


def _int_codes(codes: np.ndarray) -> np.ndarray:
    lo, hi = (int(codes.min()), int(codes.max())) if codes.size else (0, 0)
    dtype = np.int16 if -(2**15) <= lo and hi < 2**15 else np.int32
    return codes.astype(dtype)


def encoding_arrays(
    enc: CodecEncoding,
    kind: str,
    sample_rate: int,
    hop_length: int,
    channels: int,
    codebook_size: int | None = None,
) -> dict[str, np.ndarray]:
    """The npz arrays of a batch-of-one encoding (see the module docstring)."""
    codes = _batch_of_one(enc.codes, "codes")
    latents = _batch_of_one(enc.latents, "latents")
    if (codes is None) == (latents is None):
        raise ValueError("encoding must hold exactly one of codes (rvq) or latents (latent)")
    out: dict[str, np.ndarray] = {}
    if codes is not None:
        out["codes"] = _int_codes(codes)
    else:
        out["latents"] = latents.astype(np.float32)
        logvar = _batch_of_one(enc.logvar, "logvar")
        if logvar is not None:
            out["logvar"] = logvar.astype(np.float32)
    scales = _batch_of_one(enc.scales, "scales")
    if scales is not None:
        out["scales"] = np.asarray(scales, dtype=np.float32).reshape(-1)
    out.update(
        kind=np.asarray(kind),
        sample_rate=np.asarray(int(sample_rate), dtype=np.int64),
        hop_length=np.asarray(int(hop_length), dtype=np.int64),
        channels=np.asarray(int(channels), dtype=np.int64),
        num_samples=np.asarray(-1 if enc.num_samples is None else int(enc.num_samples)),
        n_codebooks=np.asarray(0 if codes is None else int(codes.shape[0]), dtype=np.int64),
        codebook_size=np.asarray(int(codebook_size or 0), dtype=np.int64),
        extra=np.asarray(json.dumps(enc.extra or {}, sort_keys=True)),
        format_version=np.asarray(FORMAT_VERSION, dtype=np.int64),
    )
    return out


def save_encoding(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays of :func:`encoding_arrays` atomically as a (compressed) .npz."""
    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_encoding(path: str | os.PathLike) -> tuple[CodecEncoding, dict[str, Any]]:
    """Read a codec .npz: ``(CodecEncoding with a batch dim of one, header dict)``.

    The header holds kind, sample_rate, hop_length, channels, n_codebooks, codebook_size and
    format_version as plain Python values. Raises :class:`CodecFileError` for a bad file.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found; give an .npz written by `audiokit codec encode`")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, io.UnsupportedOperation) as e:
        raise CodecFileError(
            f"{p}: not a readable .npz ({e}); re-create it with `audiokit codec encode`"
        ) from None
    for key in ("kind", "sample_rate", "hop_length"):
        if key not in data:
            raise CodecFileError(
                f"{p}: no '{key}' entry, so not a codec file; re-create it with `audiokit codec encode`"
            )
    kind = str(data["kind"])
    field = "codes" if kind == "rvq" else "latents"
    if field not in data or data[field].ndim != 2:
        raise CodecFileError(
            f"{p}: kind '{kind}' needs a 2-D '{field}' array; re-create it with `audiokit codec encode`"
        )

    def bad(why: str) -> CodecFileError:
        return CodecFileError(f"{p}: {why}; re-create it with `audiokit codec encode`")

    for key in ("kind", "sample_rate", "hop_length", "channels", "n_codebooks", "codebook_size",
                "num_samples", "format_version", "extra"):  # fmt: skip
        if key in data and data[key].ndim != 0:
            raise bad(f"'{key}' must be a single value, not an array of shape {data[key].shape}")
    try:
        extra = json.loads(str(data.get("extra", "{}")))
    except json.JSONDecodeError:
        raise bad("'extra' is not valid JSON") from None
    if not isinstance(extra, dict):
        raise bad("'extra' must be a JSON object")
    try:
        num = int(data.get("num_samples", -1))
        hop = int(data["hop_length"])
        n_codebooks = int(data.get("n_codebooks", 0))
    except (TypeError, ValueError):
        raise bad("a header entry is not a number") from None
    frames = data[field].shape[1]
    if frames == 0 or hop <= 0:
        raise bad(f"no frames in '{field}' (or hop_length {hop})")
    if field == "codes":
        codes = data["codes"]
        if not np.issubdtype(codes.dtype, np.integer):
            raise bad(f"'codes' must be integers, not {codes.dtype}")
        if codes.min() < 0:
            raise bad("'codes' holds negative entries")
        if n_codebooks and codes.shape[0] != n_codebooks:
            raise bad(
                f"'codes' has {codes.shape[0]} rows but the header says {n_codebooks} codebooks"
            )
    # chunked/segmented encodings may hold a few more frames than num_samples / hop
    if num > frames * hop * 4 + hop:
        raise bad(f"num_samples {num} does not fit {frames} frames of {hop} samples")

    def tensor(key: str, dtype) -> torch.Tensor | None:
        return None if key not in data else torch.from_numpy(data[key].astype(dtype))[None]

    enc = CodecEncoding(
        codes=tensor("codes", np.int64),
        latents=tensor("latents", np.float32),
        logvar=tensor("logvar", np.float32),
        scales=tensor("scales", np.float32),
        num_samples=None if num < 0 else num,
        extra=extra,
    )
    header = {
        "kind": kind,
        "sample_rate": int(data["sample_rate"]),
        "hop_length": hop,
        "channels": int(data.get("channels", 1)),
        "n_codebooks": n_codebooks,
        "codebook_size": int(data.get("codebook_size", 0)),
        "format_version": int(data.get("format_version", FORMAT_VERSION)),
    }
    return enc, header
