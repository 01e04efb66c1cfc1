"""Speed perturbation (Ko et al., 2015), as Kaldi/ESPnet do it with ``sox speed``.

A signal sampled at ``sr`` is reinterpreted as sampled at ``sr * factor`` and resampled back
to ``sr``: tempo *and* pitch change, and the length becomes ``ceil(T / factor)``.
:func:`speed_perturb_data_dir` makes the usual 3-way perturbed copy of a Kaldi data dir.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from audiokit.errors import ConfigError, DataDirError


def _check_factor(factor: float) -> Fraction:
    if not 0.1 <= factor <= 10.0:
        raise ConfigError(f"speed factor {factor} is out of range; use values like 0.9, 1.0, 1.1")
    return Fraction(factor).limit_denominator(10000)


def perturb_speed(samples: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Play ``(T,)`` or ``(C, T)`` audio ``factor`` times faster (soxr HQ resampling).

    Returns float32 audio of length ``ceil(T / factor)`` at the same ``sample_rate``.
    """
    from audiokit.audio import resample

    f = _check_factor(factor)
    x = np.asarray(samples, dtype=np.float32)
    if f == 1:
        return x.copy()
    # Resample sr*factor -> sr; both scaled by a common integer when sr*factor is fractional.
    rate = sample_rate * f
    return resample(x, rate.numerator, sample_rate * rate.denominator)


def sp_prefix(factor: float) -> str:
    """Kaldi's id prefix for a speed factor: ``sp0.9-``; none for 1.0."""
    return "" if factor == 1.0 else f"sp{factor:g}-"


@dataclass
class SpeedPerturbResult:
    """What :func:`speed_perturb_data_dir` wrote."""

    path: Path
    num_utterances: int
    num_recordings: int
    dropped_files: list[str] = field(default_factory=list)


def _safe_name(reco: str) -> str:
    return reco.replace(os.sep, "_").replace("/", "_")


def speed_perturb_data_dir(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    factors: Sequence[float] = (0.9, 1.0, 1.1),
    allow_pipe: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> SpeedPerturbResult:
    """Write a speed-perturbed copy of data dir ``src`` to ``dst``.

    For each factor != 1 every recording is perturbed into ``dst/wav/sp{f}-{reco}.wav``
    (16-bit PCM, written atomically) and utterance, speaker and recording ids get the
    ``sp{f}-`` prefix; factor 1.0 keeps the original ids and audio (paths made absolute).
    ``segments`` times, ``utt2dur`` and ``reco2dur`` are divided by the factor; ``text``,
    ``utt2spk``/``spk2utt`` and ``spk2gender`` are carried over. Feature files (feats.scp,
    cmvn.scp, ...) are not: recompute them on the new dir.
    """
    from audiokit.audio import load_scp_entry, save, scp_entry_info
    from audiokit.data import DataDir, Segment
    from audiokit.data.data_dir import absolute_entry
    from audiokit.data.kaldi_files import read_kv_file

    if not factors or len(set(factors)) != len(factors):
        raise ConfigError(f"speed factors {list(factors)} must be non-empty and distinct")
    for f in factors:
        _check_factor(f)
    src, dst = Path(src), Path(dst)
    dd = DataDir.load(src)
    if dst.resolve() == src.resolve():
        raise DataDirError(
            f"{dst}: output must differ from the input data dir; choose a new folder"
        )
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise DataDirError(
            f"{dst}: output folder is not empty; choose a new folder or pass overwrite"
        )

    wav_scp: dict[str, str] = {}
    reco2dur: dict[str, float] = {}
    recos = dd.recording_ids
    jobs = [(f, r) for f in factors for r in recos]
    track = _progress(progress, len(jobs))
    for factor, reco in jobs:
        pre = sp_prefix(factor)
        entry = dd.wav_scp[reco]
        if factor == 1.0:
            wav_scp[reco] = absolute_entry(entry, dd.path)
            if dd.reco2dur is not None and reco in dd.reco2dur:
                reco2dur[reco] = dd.reco2dur[reco]
            else:  # a header read is enough
                reco2dur[reco] = scp_entry_info(entry, dd.base_dir, allow_pipe, key=reco).duration
        else:
            samples, sr = load_scp_entry(
                entry, dd.base_dir, channel="all", allow_pipe=allow_pipe, key=reco
            )
            out = perturb_speed(samples, sr, factor)
            wav_path = (dst / "wav" / f"{pre}{_safe_name(reco)}.wav").resolve()
            save(wav_path, np.clip(out, -1.0, 1.0), sr)
            wav_scp[pre + reco] = str(wav_path)
            reco2dur[pre + reco] = out.shape[-1] / sr
        track()

    segments = text = utt2spk = None
    utt2dur: dict[str, float] = {}
    if dd.segments is not None:
        segments = {
            sp_prefix(f) + u: Segment(sp_prefix(f) + s.recording, s.start / f, s.end / f)
            for f in factors
            for u, s in dd.segments.items()
        }
    if dd.text is not None:
        text = {sp_prefix(f) + u: t for f in factors for u, t in dd.text.items()}
    if dd.utt2spk is not None:
        utt2spk = {
            sp_prefix(f) + u: sp_prefix(f) + s for f in factors for u, s in dd.utt2spk.items()
        }
    for f in factors:
        for utt in dd.utt_ids:
            if dd.segments is None:  # utterance = recording: its new length is known exactly
                dur = reco2dur.get(sp_prefix(f) + utt)
            else:
                dur = dd.duration(utt)
                dur = None if dur is None else dur / f
            if dur is not None:
                utt2dur[sp_prefix(f) + utt] = dur
    extra_kv = {}
    if (src / "spk2gender").is_file():
        genders = read_kv_file(src / "spk2gender")
        extra_kv["spk2gender"] = {sp_prefix(f) + s: g for f in factors for s, g in genders.items()}
    out_dd = DataDir(
        path=None,
        wav_scp=wav_scp,
        text=text,
        utt2spk=utt2spk,
        segments=segments,
        utt2dur=utt2dur or None,
        reco2dur=reco2dur if len(reco2dur) == len(wav_scp) else None,
        extra_kv=extra_kv,
    )
    out_dd.write(dst, overwrite=True)
    carried = {
        "wav.scp",
        "segments",
        "text",
        "utt2spk",
        "spk2utt",
        "utt2dur",
        "reco2dur",
        "spk2gender",
    }
    present = {p.name for p in src.iterdir() if p.is_file() and not p.name.startswith(".")}
    return SpeedPerturbResult(dst, len(factors) * len(dd), len(wav_scp), sorted(present - carried))


def _progress(enabled: bool, total: int):
    """A callable that advances a rich progress bar (or does nothing)."""
    if not enabled:
        return lambda: None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    task = bar.add_task("speed perturbation", total=total)
    bar.start()

    def advance() -> None:
        bar.advance(task)
        if bar.finished:
            bar.stop()

    return advance
