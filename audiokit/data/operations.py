"""Repair, subset and combine Kaldi data dirs (like Kaldi's fix_data_dir.sh, subset_data_dir.sh
and combine_data.sh), never losing user data: in-place fixes back the originals up first."""

from __future__ import annotations

import os
import random as _random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from audiokit.data.data_dir import (
    KNOWN_FILES,
    DataDir,
    Segment,
    ckey,
    list_extra_files,
    parse_segment,
    sorted_ids,
)
from audiokit.data.kaldi_files import write_kv_file
from audiokit.data.validate import read_raw
from audiokit.errors import ConfigError, DataDirError
from audiokit.utils.atomic import atomic_path

BACKUP_DIR = ".backup"


@dataclass
class OpResult:
    """Outcome of an operation: where the result is, its contents, and what the user should know."""

    path: Path
    data: DataDir
    notes: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # utterance id -> why it was dropped
    changed: list[str] = field(default_factory=list)  # files rewritten (in-place fix)
    removed: list[str] = field(default_factory=list)  # files moved to the backup (in-place fix)
    backup: Path | None = None
    total: int = 0  # utterance ids seen in the source(s)


# ---------------------------------------------------------------------------------- fix
def fix_data_dir(
    src: str | os.PathLike, dst: str | os.PathLike | None = None, overwrite: bool = False
) -> OpResult:
    """Sort, dedupe and make a data dir consistent; write it to `dst`, or in place with a backup.

    Drops utterances missing from wav.scp/segments, text or utt2spk (when those files exist),
    with empty text, or with malformed lines; drops unused recordings; regenerates spk2utt
    (and writes an identity utt2spk when absent); removes utt2dur/utt2num_samples/reco2dur if
    they no longer cover every utterance. In place, every changed or removed file is first
    copied to `SRC/.backup/` (an older backup of the same name is kept as `NAME.~N~`).
    """
    src = Path(src)
    if not src.is_dir():
        raise DataDirError(f"{src}: not a directory; give the path of a Kaldi data dir")
    if not (src / "wav.scp").is_file():
        raise DataDirError(
            f"{src}: no wav.scp, nothing to fix from; write 'UTT_ID PATH' lines first"
        )
    notes: list[str] = []
    maps = {n: _dedup(src / n, notes) for n in KNOWN_FILES if (src / n).is_file()}
    dropped: dict[str, str] = {}

    def drop(utt: str, why: str) -> None:
        dropped.setdefault(utt, why)

    wav = {k: v for k, v in maps["wav.scp"].items() if v}
    segments: dict[str, Segment] | None = None
    if "segments" in maps:
        segments = {}
        for utt, value in maps["segments"].items():
            seg = parse_segment(value)
            if seg is None:
                drop(utt, "malformed segments line")
            elif seg.start < 0 or seg.end <= seg.start:
                drop(utt, f"bad segment times {seg.start}..{seg.end}")
            elif seg.recording not in wav:
                drop(utt, f"recording '{seg.recording}' not in wav.scp")
            else:
                segments[utt] = seg
        utts = set(segments)
    else:
        for k, v in maps["wav.scp"].items():
            if not v:
                drop(k, "empty wav.scp entry")
        utts = set(wav)
    index = "segments" if segments is not None else "wav.scp"
    seen = set(utts) | set(dropped)
    for name in ("text", "utt2spk"):
        if name not in maps:
            continue
        m = maps[name]
        seen |= set(m)
        for utt in set(m) - utts:
            drop(utt, f"no {index} entry")
        for utt in utts - set(m):
            drop(utt, f"no {name} line")
    for utt, words in maps.get("text", {}).items():
        if utt in utts and not words.strip():
            drop(utt, "empty text")
    for utt, spk in maps.get("utt2spk", {}).items():
        if utt in utts and len(spk.split()) != 1:
            drop(utt, f"utt2spk speaker field '{spk}' is not one id")
    keep = utts - set(dropped)
    if not keep:
        raise DataDirError(
            f"{src}: no utterance would remain after fixing (e.g. ids in text and wav.scp never "
            "match); check the files by hand, nothing was changed"
        )

    if "utt2spk" in maps:
        utt2spk = {u: maps["utt2spk"][u] for u in keep}
    else:
        utt2spk = {u: u for u in keep}
        notes.append("utt2spk was missing: wrote one speaker per utterance")
    recos = {segments[u].recording for u in keep} if segments is not None else keep
    unused = set(wav) - recos
    if segments is not None and unused:
        notes.append(f"removed {len(unused)} recording(s) that no kept utterance uses from wav.scp")
    data = DataDir(
        path=src,
        wav_scp={r: wav[r] for r in recos},
        text=None if "text" not in maps else {u: maps["text"][u] for u in keep},
        utt2spk=utt2spk,
        segments=None if segments is None else {u: segments[u] for u in keep},
        utt2dur=_complete_numbers(maps, "utt2dur", keep, float, notes),
        utt2num_samples=_complete_numbers(maps, "utt2num_samples", keep, int, notes),
        reco2dur=_complete_numbers(maps, "reco2dur", recos, float, notes),
        extra_files=list_extra_files(src),
    )
    result = OpResult(src, data, notes, dropped, total=len(seen))
    if dst is not None:
        if Path(dst).exists() and os.path.samefile(dst, src):
            dst = None
        else:
            result.path = data.write(dst, overwrite=overwrite)
            return result
    _write_in_place(src, data, result)
    return result


def _dedup(path: Path, notes: list[str]) -> dict[str, str]:
    """First value per key; counts the duplicate lines dropped."""
    out: dict[str, str] = {}
    dups = 0
    for line in read_raw(path).lines:
        if line.key in out:
            dups += 1
        else:
            out[line.key] = line.value
    if dups:
        notes.append(f"{path.name}: removed {dups} duplicate line(s), keeping the first of each id")
    return out


def _complete_numbers(maps, name: str, keys: set[str], cast, notes: list[str]):
    """`name` restricted to `keys` when it covers them all with positive numbers; else None."""
    if name not in maps:
        return None
    m = maps[name]
    try:
        out = {k: cast(m[k]) for k in keys}
        if all(v > 0 for v in out.values()):
            return out
    except (KeyError, ValueError):
        pass
    notes.append(
        f"{name} did not cover every kept id with a valid number: removed it (recompute it)"
    )
    return None


def _render(mapping: dict) -> str:
    items = sorted(mapping.items(), key=lambda kv: ckey(kv[0]))
    lines = []
    for k, v in items:
        v = " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        lines.append(f"{k} {v}\n" if v else f"{k}\n")
    return "".join(lines)


def _write_in_place(src: Path, data: DataDir, result: OpResult) -> None:
    """Back up then atomically rewrite each changed file; back up then remove obsolete ones."""
    files = data.file_maps(None)
    backup = src / BACKUP_DIR
    for name in KNOWN_FILES:
        target = src / name
        old = target.read_bytes() if target.is_file() else None
        if name in files:
            new = _render(files[name]).encode("utf-8")
            if old == new:
                continue
            if old is not None:
                _backup(target, backup)
            write_kv_file(target, files[name])
            result.changed.append(name)
        elif old is not None:
            _backup(target, backup)
            target.unlink()
            result.removed.append(name)
    if result.changed or result.removed:
        result.backup = backup


def _backup(path: Path, backup: Path) -> None:
    """Copy `path` into `backup/`; an existing different backup is kept as `NAME.~N~`."""
    backup.mkdir(exist_ok=True)
    dest = backup / path.name
    if dest.exists():
        if dest.read_bytes() == path.read_bytes():
            return
        n = 1
        while (backup / f"{path.name}.~{n}~").exists():
            n += 1
        os.replace(dest, backup / f"{path.name}.~{n}~")
    with atomic_path(dest) as tmp:
        shutil.copy2(path, tmp)


# ---------------------------------------------------------------------------------- subset
def _read_id_list(path: str | os.PathLike, what: str) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: {what} list not found; give a file with one id per line")
    return [line.key for line in read_raw(path).lines]


def subset_data_dir(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    first: int | None = None,
    last: int | None = None,
    utt_list: str | os.PathLike | None = None,
    spk_list: str | os.PathLike | None = None,
    random: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> OpResult:
    """Write to `dst` the utterances of `src` chosen by exactly one selector.

    `first`/`last`: the first/last N in id order; `random`: N drawn without replacement with
    `seed`; `utt_list`/`spk_list`: files whose first column lists utterance/speaker ids
    (ids not in `src` are ignored and counted in the notes).
    """
    chosen = {
        k: v
        for k, v in dict(
            first=first, last=last, utt_list=utt_list, spk_list=spk_list, random=random
        ).items()
        if v is not None
    }
    if len(chosen) != 1:
        raise ConfigError(
            "subset needs exactly one of --first, --last, --utt-list, --spk-list, --random "
            f"(got {', '.join(chosen) or 'none'})"
        )
    data = DataDir.load(src)
    utts = data.utt_ids
    notes: list[str] = []
    ((how, arg),) = chosen.items()
    if how in ("first", "last", "random"):
        if arg <= 0 or arg > len(utts):
            raise ConfigError(
                f"--{how} {arg}: {src} has {len(utts)} utterances; give a number from 1 to {len(utts)}"
            )
        if how == "first":
            keep = utts[:arg]
        elif how == "last":
            keep = utts[-arg:]
        else:
            keep = _random.Random(seed).sample(utts, arg)
    else:
        ids = _read_id_list(arg, "utterance" if how == "utt_list" else "speaker")
        pool = set(utts) if how == "utt_list" else {data.speaker(u) for u in utts}
        unknown = [i for i in ids if i not in pool]
        if unknown:
            notes.append(f"{len(unknown)} id(s) in {arg} are not in {src}, e.g. '{unknown[0]}'")
        wanted = set(ids)
        keep = [u for u in utts if (u if how == "utt_list" else data.speaker(u)) in wanted]
        if not keep:
            raise DataDirError(f"{arg}: none of its ids are in {src}; check the list")
    sub = data.subset(keep)
    out = sub.write(dst, overwrite=overwrite)
    return OpResult(out, sub, notes, total=len(utts))


# ---------------------------------------------------------------------------------- combine
def combine_data_dirs(
    dst: str | os.PathLike, srcs: list[str | os.PathLike], overwrite: bool = False, nj: int = 4
) -> OpResult:
    """Combine data dirs into `dst` (as Kaldi's combine_data.sh).

    An id present in several sources must have identical entries (then it is kept once);
    differing ones raise :class:`DataDirError`. If some sources have `segments`, the others
    get whole-recording segments (`UTT UTT 0 DURATION`, durations from utt2dur or audio
    headers). text/utt2dur/utt2num_samples/reco2dur and utterance-keyed extra files are
    combined only when every source has them; utt2spk when any has it (others: one speaker
    per utterance).
    """
    if not srcs:
        raise ConfigError("combine needs at least one source data dir")
    for s in srcs:
        if Path(dst).exists() and Path(s).exists() and os.path.samefile(dst, s):
            raise ConfigError(f"{dst}: the destination is also a source; choose a new folder")
    dirs = [DataDir.load(s) for s in srcs]
    parts = [d.subset(d.utt_ids) for d in dirs]
    notes: list[str] = []
    if any(p.segments is not None for p in parts):
        for d, p, s in zip(dirs, parts, srcs, strict=True):
            if p.segments is None:
                p.segments = _whole_segments(d, nj)
                notes.append(f"{s}: no segments, made whole-recording segments")
    merged: dict[str, dict] = {}
    origin: dict[tuple[str, str], str] = {}
    all_have = {n: all(getattr(p, n) is not None for p in parts) for n in
                ("text", "utt2dur", "utt2num_samples", "reco2dur")}  # fmt: skip
    any_spk = any(p.utt2spk is not None for p in parts)
    extra_names = set.intersection(*(set(p.extra_kv) for p in parts))
    for name, ok in all_have.items():
        if not ok and any(getattr(p, name) is not None for p in parts):
            notes.append(f"not combining {name}: not every source has it")
    dropped_extra = set().union(*(set(p.extra_kv) for p in parts)) - extra_names
    if dropped_extra:
        notes.append(f"not combining {', '.join(sorted(dropped_extra))}: not in every source")
    for p, s in zip(parts, srcs, strict=True):
        fields = {"wav.scp": p.wav_scp, "segments": p.segments}
        fields.update({n: getattr(p, n) for n, ok in all_have.items() if ok})
        if any_spk:
            fields["utt2spk"] = p.utt2spk if p.utt2spk is not None else {u: u for u in p.utt_ids}
        fields.update({n: p.extra_kv[n] for n in extra_names})
        for name, m in fields.items():
            if m is None:
                continue
            target = merged.setdefault(name, {})
            for k, v in m.items():
                if k in target and target[k] != v:
                    raise DataDirError(
                        f"id '{k}' is in both {origin[name, k]} and {s} with different {name} "
                        "entries; make ids unique (e.g. prefix them with the corpus name) "
                        "before combining"
                    )
                target[k] = v
                origin.setdefault((name, k), str(s))
    total = sum(len(p) for p in parts)
    data = DataDir(
        path=None, wav_scp=merged["wav.scp"], segments=merged.get("segments"),
        text=merged.get("text"), utt2spk=merged.get("utt2spk"), utt2dur=merged.get("utt2dur"),
        utt2num_samples=merged.get("utt2num_samples"), reco2dur=merged.get("reco2dur"),
        extra_kv={n: merged.get(n, {}) for n in extra_names},
    )  # fmt: skip
    if len(data) < total:
        notes.append(
            f"{total - len(data)} utterance(s) were identical in several sources: kept once"
        )
    out = data.write(dst, overwrite=overwrite)
    return OpResult(out, data, notes, total=total)


def _whole_segments(d: DataDir, nj: int) -> dict[str, Segment]:
    """`UTT UTT 0 DUR` for a dir without segments (durations from utt2dur or audio headers)."""
    if d.utt2dur is not None and set(d.utt2dur) >= set(d.wav_scp):
        durs = {u: d.utt2dur[u] for u in d.wav_scp}
    else:
        infos = d.recording_infos(nj)
        bad = [r for r, i in infos.items() if isinstance(i, Exception)]
        if bad:
            raise DataDirError(
                f"{d.path}: cannot read the duration of '{bad[0]}' ({infos[bad[0]]}) to make "
                f"whole-recording segments; fix the audio or run `audiokit data validate {d.path}`"
            )
        durs = {r: i.num_frames / i.sample_rate for r, i in infos.items()}
    return {u: Segment(u, 0.0, durs[u]) for u in sorted_ids(durs)}
