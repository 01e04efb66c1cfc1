"""Corpus preparation: the synthetic `mini_en` corpus (espeak-ng voices, offline), LibriSpeech
(SLR12) and AISHELL-1 (SLR33), each turned into Kaldi data dirs.

Light to import; the preparers import numpy/audio code inside. Shared here: how a prepared
dir is written and recognised, and the per-corpus result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from audiokit.errors import ConfigError, DataDirError

STAMP = ".audiokit_prepared"  # hidden, so data-dir tools do not treat it as an extra file


@dataclass
class PreparedDir:
    """One prepared data dir: `skipped` maps a reason to the ids (or files) left out."""

    name: str
    path: Path
    num_utts: int
    skipped: dict[str, list[str]] = field(default_factory=dict)
    reused: bool = False  # True when it was already prepared and left as it was


def is_prepared(path: str | os.PathLike) -> bool:
    """True when `path` is a data dir a preparer finished writing."""
    path = Path(path)
    return (path / STAMP).is_file() and (path / "wav.scp").is_file()


def check_corpus_config(out_dir: Path, cfg_path: Path, config: dict, corpus: str) -> None:
    """Refuse to add to `out_dir` when its `cfg_path` records another (version, size, seed)."""
    import json

    if not cfg_path.is_file():
        return
    try:
        old = json.loads(cfg_path.read_text())
    except ValueError:
        old = "an unreadable config"
    if old != config:
        raise ConfigError(
            f"{out_dir}: holds {corpus} made with {old}, not {config}; use another output "
            "folder or delete this one"
        )


def check_replaceable(dest: Path, overwrite: bool) -> None:
    """Raise unless `dest` is free, ours (stamped), or `overwrite` allows replacing it."""
    if not overwrite and not is_prepared(dest) and (Path(dest) / "wav.scp").exists():
        raise DataDirError(
            f"{dest}: already holds a data dir this preparer did not write; choose another "
            "output folder, remove it, or pass --overwrite"
        )


def write_prepared(
    dest: Path,
    wav_scp: dict[str, str],
    text: dict[str, str],
    utt2spk: dict[str, str],
    lengths: dict[str, tuple[int, int]],
    overwrite: bool = False,
) -> Path:
    """Write a data dir (sorted, atomic files; spk2utt derived) and stamp it as complete.

    `lengths` maps each utterance to (num_samples, sample_rate) for utt2dur/utt2num_samples.
    A folder holding a data dir some other tool wrote is only replaced with `overwrite`.
    """
    from audiokit.data import DataDir

    dest = Path(dest)
    check_replaceable(dest, overwrite)
    if (dest / STAMP).exists():
        (dest / STAMP).unlink()  # being rewritten: incomplete until stamped again
    data = DataDir(path=None, wav_scp=wav_scp, text=text, utt2spk=utt2spk)
    data.utt2num_samples = {u: n for u, (n, _) in lengths.items()}
    data.utt2dur = {u: n / sr for u, (n, sr) in lengths.items()}
    data.write(dest, overwrite=True)
    (dest / STAMP).write_text("complete\n")
    return dest


def read_lengths(
    paths: dict[str, Path], nj: int = 8, progress: bool = True
) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Audio headers of many files in `nj` threads: ({id: (num_samples, rate)}, {id: error})."""
    from audiokit.audio import info
    from audiokit.data.data_dir import _parallel_map
    from audiokit.errors import AudiokitError

    def one(key: str):
        try:
            i = info(paths[key])
        except AudiokitError as e:
            return str(e)
        return (i.num_frames, i.sample_rate) if i.num_frames > 0 else f"{paths[key]}: empty audio"

    keys = list(paths)
    results = _parallel_map(one, keys, nj, "reading audio headers", progress)
    good = {k: r for k, r in zip(keys, results, strict=True) if isinstance(r, tuple)}
    bad = {k: r for k, r in zip(keys, results, strict=True) if isinstance(r, str)}
    return good, bad
