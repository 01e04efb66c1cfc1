"""Run a packed codec model dir: load it, fit input audio to it, encode/decode long audio.

Input audio of any rate and channel count is fitted to the model (:func:`fit_audio`): resampled
(soxr HQ) to its rate; mixed down to mono for a mono model, a mono input repeated for a
multi-channel model.

Long audio (more than ``chunk_seconds``) is encoded and decoded in windows so memory stays
bounded (:func:`encode`, :func:`decode`):

* a model with its own chunked ``compress(wav, win_duration, n_codebooks, normalize_db)`` (DAC's,
  :mod:`audiokit.codec.dac_chunked`) uses it, without loudness normalisation; its ``decode``
  reads the chunked encoding back (``extra["chunk_length"]``);
* other convolutional models are run window by window: each window of ``chunk_frames`` frames
  gets ``context_frames`` frames of real audio (codes) on each side, and only its own frames
  (samples) are kept. When the receptive field fits in the context this gives the codes of one
  pass, up to float rounding; with a smaller context the seams differ slightly;
* recurrent models (an LSTM/GRU inside, e.g. EnCodec's SEANet), self-segmenting ones
  (``segment_length`` set, e.g. EnCodec 48 kHz) and models with ``supports_chunking = False``
  run in one pass.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiokit.codec.base import CodecEncoding, bitrate_kbps
from audiokit.errors import ConfigError, ModelError


@dataclass
class LoadedCodec:
    """A codec model in eval mode with what the CLI needs to know about it."""

    model: Any
    path: Path
    architecture: str
    device: str

    @property
    def kind(self) -> str:
        return str(self.model.kind)

    @property
    def sample_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.model.channels)

    @property
    def hop_length(self) -> int:
        return int(self.model.hop_length)

    @property
    def n_codebooks(self) -> int:
        return int(getattr(self.model, "n_codebooks", 0)) if self.kind == "rvq" else 0

    @property
    def codebook_size(self) -> int:
        return int(getattr(self.model, "codebook_size", 0)) if self.kind == "rvq" else 0

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def bitrate_kbps(self, n_codebooks: int | None) -> float | None:
        """kbit/s of the codes at `n_codebooks` (None: all); None for latent codecs."""
        if self.kind != "rvq" or self.codebook_size < 2:
            return None
        k = n_codebooks or self.n_codebooks
        return bitrate_kbps(k, self.codebook_size, self.frame_rate)


_CODEC_ATTRS = ("kind", "sample_rate", "channels", "hop_length", "encode", "decode")


def load_codec(model_dir: str | os.PathLike, device: str = "cpu") -> LoadedCodec:
    """Load a packed model dir and check that it is a codec (base.AudioCodec)."""
    from audiokit.model_dir import load_model_dir

    model, cfg = load_model_dir(model_dir, device=device)
    missing = [a for a in _CODEC_ATTRS if not hasattr(model, a)]
    if missing or str(getattr(model, "kind", "")) not in ("rvq", "latent"):
        raise ModelError(
            f"{model_dir}: architecture '{cfg.architecture}' is not an audio codec "
            f"(no {', '.join(missing) or 'valid kind'}); pass a codec model dir"
        )
    return LoadedCodec(model, Path(model_dir), cfg.architecture, device)


def resolve_n_codebooks(
    codec: LoadedCodec, n_codebooks: int | None, bandwidth: float | None
) -> int | None:
    """Codebooks to use from --n-codebooks or --bandwidth (kbit/s); None = all (or latent)."""
    if n_codebooks is not None and bandwidth is not None:
        raise ConfigError("give --n-codebooks or --bandwidth, not both")
    if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
        raise ConfigError(f"--bandwidth {bandwidth} must be a positive number of kbit/s")
    if codec.kind != "rvq":
        if n_codebooks is not None or bandwidth is not None:
            raise ConfigError(
                f"{codec.path}: '{codec.architecture}' is a latent codec without codebooks; "
                "drop --n-codebooks/--bandwidth"
            )
        return None
    k_max = codec.n_codebooks
    if bandwidth is not None:
        if bandwidth <= 0:
            raise ConfigError(f"--bandwidth {bandwidth} must be positive (kbit/s)")
        rule = getattr(codec.model, "n_codebooks_for_bandwidth", None)
        if rule is not None:
            return int(rule(float(bandwidth)))
        per_q = bitrate_kbps(1, codec.codebook_size, codec.frame_rate)
        return max(1, min(k_max, int(math.floor(bandwidth / per_q + 1e-9))))
    if n_codebooks is not None and not 1 <= n_codebooks <= max(k_max, 1):
        raise ConfigError(
            f"--n-codebooks {n_codebooks} is out of range; {codec.path} has {k_max} codebooks"
        )
    return n_codebooks


def fit_audio(
    samples: np.ndarray, sample_rate: int, codec: LoadedCodec
) -> tuple[np.ndarray, str | None]:
    """(S,) or (C, S) audio at `sample_rate` -> ``((codec.channels, S'), note)`` at the codec's
    rate; `note` describes a conversion (None when none was needed)."""
    from audiokit.audio.resample import resample

    x = np.asarray(samples, dtype=np.float32)
    x = x[None] if x.ndim == 1 else x
    c_in, changes = x.shape[0], []
    if c_in != codec.channels:
        if codec.channels == 1:
            x = x.mean(axis=0, keepdims=True)
        elif c_in == 1:
            x = np.repeat(x, codec.channels, axis=0)
        else:
            raise ConfigError(
                f"audio has {c_in} channels but the codec takes {codec.channels}; "
                "mix or split the channels first (e.g. with sox)"
            )
        changes.append(f"{c_in} -> {codec.channels} channel(s)")
    if int(sample_rate) != codec.sample_rate:
        x = resample(x, int(sample_rate), codec.sample_rate)
        changes.append(f"{sample_rate} -> {codec.sample_rate} Hz")
    return np.ascontiguousarray(x, dtype=np.float32), (", ".join(changes) or None)


def load_audio(path: str | os.PathLike, codec: LoadedCodec) -> tuple[np.ndarray, str | None]:
    """Read an audio file fitted to the codec: ``((C, S) float32, note)``."""
    from audiokit.audio import load

    x, sr = load(path, channel="all")
    y, note = fit_audio(x, sr, codec)
    return y, (f"{path}: {note} (the model's)" if note else None)


def _windows(total: int, chunk: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk, total)) for a in range(0, total, chunk)]


def generic_chunking(model) -> bool:
    """Whether windowed encode/decode with context is safe for `model` (module docstring)."""
    flag = getattr(model, "supports_chunking", None)
    if flag is not None:
        return bool(flag)
    if getattr(model, "segment_length", None) is not None:
        return False
    return not any(isinstance(m, torch.nn.RNNBase) for m in model.modules())


@torch.inference_mode()
def encode(
    codec: LoadedCodec,
    wav: np.ndarray,
    n_codebooks: int | None = None,
    chunk_seconds: float | None = 60.0,
    context_seconds: float = 1.0,
) -> CodecEncoding:
    """(C, S) audio at the codec's rate -> batch-of-one encoding; windowed when longer than
    `chunk_seconds` (None: one pass). See the module docstring."""
    model, hop = codec.model, codec.hop_length
    x = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32)).to(codec.device)[None]
    s = x.shape[-1]
    total = -(-s // hop)
    chunk = None if chunk_seconds is None else max(1, int(chunk_seconds * codec.frame_rate))
    long = chunk is not None and total > chunk
    if long and callable(getattr(model, "compress", None)):
        enc = model.compress(
            x, win_duration=chunk_seconds, n_codebooks=n_codebooks, normalize_db=None
        )
        enc.num_samples = enc.num_samples or s
        return enc
    if not (long and generic_chunking(model)):
        enc = model.encode(x, n_codebooks=n_codebooks)
        if enc.num_samples is None:
            enc.num_samples = s
        return enc
    ctx = max(0, math.ceil(context_seconds * codec.frame_rate))
    parts, logvars = [], []
    for a, b in _windows(total, chunk):
        lo, hi = max(0, a - ctx), min(total, b + ctx)
        piece = model.encode(x[..., lo * hop : hi * hop], n_codebooks=n_codebooks)
        if piece.scales is not None or piece.extra:
            raise ModelError(
                f"{codec.path}: '{codec.architecture}' encodes in its own segments; set "
                "supports_chunking = False on the model or pass --chunk-seconds 0"
            )
        field = piece.codes if piece.codes is not None else piece.latents
        keep = slice(a - lo, a - lo + (b - a))
        parts.append(field[..., keep])
        if piece.logvar is not None:
            logvars.append(piece.logvar[..., keep])
    joined = torch.cat(parts, dim=-1)
    if codec.kind == "rvq":
        return CodecEncoding(codes=joined, num_samples=s)
    logvar = torch.cat(logvars, dim=-1) if logvars else None
    return CodecEncoding(latents=joined, logvar=logvar, num_samples=s)


@torch.inference_mode()
def decode(
    codec: LoadedCodec,
    enc: CodecEncoding,
    chunk_seconds: float | None = 60.0,
    context_seconds: float = 1.0,
) -> np.ndarray:
    """Batch-of-one encoding -> (C, S) float32 audio at the codec's rate (windowed like
    :func:`encode` for long inputs; one pass for segmented encodings with ``scales``)."""
    model, hop = codec.model, codec.hop_length
    dev = codec.device

    def on_device(t):
        return None if t is None else t.to(dev)

    enc = CodecEncoding(
        codes=on_device(enc.codes), latents=on_device(enc.latents),
        logvar=on_device(enc.logvar), scales=on_device(enc.scales),
        num_samples=enc.num_samples, extra=dict(enc.extra or {}),
    )  # fmt: skip
    field = enc.codes if enc.codes is not None else enc.latents
    total = field.shape[-1]
    chunk = None if chunk_seconds is None else max(1, int(chunk_seconds * codec.frame_rate))
    own_format = enc.scales is not None or bool(enc.extra)  # segments, DAC chunks: the model's
    if own_format or chunk is None or total <= chunk or not generic_chunking(model):
        return model.decode(enc)[0].float().cpu().numpy()
    ctx = max(0, math.ceil(context_seconds * codec.frame_rate))
    outs = []
    for a, b in _windows(total, chunk):
        lo, hi = max(0, a - ctx), min(total, b + ctx)
        sub = field[..., lo:hi]
        piece = CodecEncoding(
            codes=sub if enc.codes is not None else None,
            latents=sub if enc.latents is not None else None,
            num_samples=None,
        )  # fmt: skip
        y = model.decode(piece)
        outs.append(y[..., (a - lo) * hop : (b - lo) * hop])
    wav = torch.cat(outs, dim=-1)
    if enc.num_samples is not None:
        wav = wav[..., : enc.num_samples]
    return wav[0].float().cpu().numpy()


def match_length(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis of `y` to `n` samples."""
    if y.shape[-1] >= n:
        return y[..., :n]
    return np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])])


# ---- evaluation ------------------------------------------------------------------------------


class CodecSystem:
    """A codec at a fixed number of codebooks, as a round trip for :func:`evaluate_data`."""

    def __init__(self, codec: LoadedCodec, n_codebooks: int | None = None, **chunking: Any):
        self.codec, self.n_codebooks, self.chunking = codec, n_codebooks, chunking
        self.sample_rate, self.channels = codec.sample_rate, codec.channels
        self.kbps = codec.bitrate_kbps(n_codebooks)
        k = f" k={n_codebooks or codec.n_codebooks}" if codec.kind == "rvq" else ""
        self.name = f"{codec.architecture}{k}"

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        enc = encode(self.codec, x, self.n_codebooks, **self.chunking)
        return match_length(decode(self.codec, enc, **self.chunking), x.shape[-1])


class OpusSystem:
    """Opus at `kbps` (see :mod:`audiokit.codec.opus`), evaluated at `sample_rate` and mono."""

    def __init__(self, kbps: float, sample_rate: int = 16000, channels: int = 1):
        from audiokit.codec.opus import opus_backend

        self.kbps, self.sample_rate, self.channels = float(kbps), int(sample_rate), channels
        self.backend = opus_backend()
        self.name = f"opus {kbps:g}k"

    def roundtrip(self, x: np.ndarray) -> np.ndarray:
        from audiokit.codec.opus import opus_roundtrip

        return opus_roundtrip(x, self.sample_rate, self.kbps, backend=self.backend).audio


METRICS = ("mel_distance", "si_sdr", "stoi", "pesq")
MIN_SAMPLES = 1024  # half the largest mel window: the reflect padding needs more


def quality_metrics(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> dict[str, float | None]:
    """Metrics of (C, S) `est` against `ref`: SI-SDR averaged over channels, mel distance over
    all channels, STOI and PESQ on the channel mean (PESQ None without the `pesq` package)."""
    import warnings

    from audiokit.metrics import audio_quality as aq

    mono_r, mono_e = ref.mean(axis=0), est.mean(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:  # fewer than 30 speech frames: STOI is undefined (pystoi's 1e-5 would skew means)
            stoi = aq.stoi(mono_r, mono_e, sample_rate)
        except RuntimeWarning:
            stoi = None
    return {
        "mel_distance": aq.mel_distance(ref, est, sample_rate),
        "si_sdr": float(np.mean(aq.si_sdr(ref, est))),
        "stoi": stoi,
        "pesq": aq.pesq(mono_r, mono_e, sample_rate),
    }


@dataclass
class EvalResult:
    """Per-utterance metrics, their means, and the utterances that failed ({utt: message})."""

    system: str
    kbps: float | None
    sample_rate: int
    utterances: dict[str, dict[str, float | None]]
    failed: dict[str, str]

    @property
    def mean(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for m in METRICS:
            vals = [u[m] for u in self.utterances.values() if u.get(m) is not None]
            out[m] = float(np.mean(vals)) if vals else None
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system, "kbps": self.kbps, "sample_rate": self.sample_rate,
            "num_utts": len(self.utterances), "mean": self.mean,
            "utterances": self.utterances, "failed": self.failed,
        }  # fmt: skip


def evaluate_data(system, data_dir: str | os.PathLike, progress=None) -> EvalResult:
    """Round-trip every utterance of a Kaldi data dir through `system` (CodecSystem or
    OpusSystem) and score it against the input at the system's rate; an utterance that fails
    (unreadable, too short, ...) is recorded in `failed` and skipped. `progress(n)` is called
    after each utterance."""
    from audiokit.data.data_dir import DataDir
    from audiokit.errors import AudioError, AudiokitError

    data = DataDir.load(data_dir)
    results: dict[str, dict[str, float | None]] = {}
    failed: dict[str, str] = {}
    for utt in data.utt_ids:
        try:
            x, sr = data.load_audio(utt)
            ref = x[None].astype(np.float32)
            if sr != system.sample_rate or system.channels != 1:
                from audiokit.audio.resample import resample

                ref = resample(ref, sr, system.sample_rate) if sr != system.sample_rate else ref
                ref = np.repeat(ref, system.channels, axis=0) if system.channels > 1 else ref
            if ref.shape[-1] <= MIN_SAMPLES:
                raise AudioError(
                    f"{utt}: {ref.shape[-1]} samples at {system.sample_rate} Hz is too short to "
                    f"score (the mel distance needs more than {MIN_SAMPLES}); drop it"
                )
            est = system.roundtrip(ref)
            row: dict[str, float | None] = {"seconds": ref.shape[-1] / system.sample_rate}
            row.update(quality_metrics(ref, est, system.sample_rate))
            results[utt] = row
        except (AudiokitError, ValueError, RuntimeError) as e:
            failed[utt] = str(e).splitlines()[0] if str(e) else type(e).__name__
        if progress is not None:
            progress(1)
    return EvalResult(system.name, system.kbps, system.sample_rate, results, failed)
