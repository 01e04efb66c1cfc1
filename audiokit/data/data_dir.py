"""Kaldi data directories: load, inspect, read audio, and write back sorted and consistent.

A data dir holds one-entry-per-line files keyed by utterance id (`text`, `utt2spk`, `utt2dur`,
`utt2num_samples`, and `wav.scp` when there is no `segments`), by recording id (`wav.scp` and
`reco2dur` when `segments` exists) or by speaker id (`spk2utt`, always derived from `utt2spk`).
Relative paths in `wav.scp` resolve against the data dir itself.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from audiokit.data.kaldi_files import read_kv_file, write_kv_file
from audiokit.errors import AudiokitError, DataDirError
from audiokit.utils.atomic import atomic_path

# Files this module understands; anything else in the folder is an "extra" kept untouched.
KNOWN_FILES = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2dur", "utt2num_samples",
               "reco2dur")  # fmt: skip


def ckey(s: str) -> bytes:
    """Sort key giving C-locale byte order (what `LC_ALL=C sort` and Kaldi expect)."""
    return s.encode("utf-8")


def sorted_ids(ids) -> list[str]:
    return sorted(ids, key=ckey)


@dataclass(frozen=True)
class Segment:
    """A `segments` line: the utterance is [start, end) seconds of `recording`."""

    recording: str
    start: float
    end: float


def parse_segment(value: str) -> Segment | None:
    """Parse `RECO START END`; None when malformed (wrong field count or non-numeric times)."""
    parts = value.split()
    if len(parts) != 3:
        return None
    try:
        return Segment(parts[0], float(parts[1]), float(parts[2]))
    except ValueError:
        return None


def entry_kind(entry: str) -> str:
    """'pipe' for a shell command (`... |`), 'path' for a single token, else 'other'."""
    entry = entry.strip()
    if entry.endswith("|"):
        return "pipe"
    return "path" if len(entry.split()) == 1 else "other"


def entry_path(entry: str, base_dir: Path | None) -> Path | None:
    """The file a plain-path wav.scp entry names (resolved against `base_dir`), else None.

    Kaldi ark entries (`file.ark:1234`) name the archive file.
    """
    if entry_kind(entry) != "path":
        return None
    path = Path(entry.strip())
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if not path.exists() and ":" in path.name:
        stem, _, offset = str(path).rpartition(":")
        if offset.isdigit():
            return Path(stem)
    return path


def absolute_entry(entry: str, base_dir: Path | None) -> str:
    """Rewrite a relative plain-path entry as an absolute path (so it survives a move)."""
    if base_dir is None or entry_kind(entry) != "path" or os.path.isabs(entry.strip()):
        return entry
    return os.path.normpath(os.path.join(os.path.abspath(base_dir), entry.strip()))


@dataclass(frozen=True)
class Utterance:
    """One utterance; `end` None means the end of the recording, `duration` None means unknown."""

    utt_id: str
    speaker: str
    text: str | None
    recording: str
    entry: str
    start: float = 0.0
    end: float | None = None
    duration: float | None = None


def _numbers(path: Path, cast=float) -> dict | None:
    """A `KEY NUMBER` file (utt2dur, utt2num_samples, reco2dur) or None when absent."""
    if not path.is_file():
        return None
    out = {}
    for key, value in read_kv_file(path).items():
        try:
            out[key] = cast(value)
        except ValueError:
            raise DataDirError(
                f"{path}: value '{value}' for '{key}' is not a number; "
                f"delete {path.name} (it can be recomputed) or fix the line"
            ) from None
    return out


@dataclass
class DataDir:
    """A loaded Kaldi data dir. Use :meth:`load` to read one; :meth:`write` to save it.

    `path` is the folder relative `wav.scp` paths resolve against (None when every entry is
    absolute, e.g. after a combine). Only `wav_scp` is required; the other maps are None when
    their file is absent. `extra_files` are other files in `path` copied verbatim on write;
    `extra_kv` are extra key-value files (already filtered) written sorted.
    """

    path: Path | None
    wav_scp: dict[str, str]
    text: dict[str, str] | None = None
    utt2spk: dict[str, str] | None = None
    segments: dict[str, Segment] | None = None
    utt2dur: dict[str, float] | None = None
    utt2num_samples: dict[str, int] | None = None
    reco2dur: dict[str, float] | None = None
    extra_files: list[str] = field(default_factory=list)
    extra_kv: dict[str, dict[str, str]] = field(default_factory=dict)

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> DataDir:
        """Read a data dir strictly: duplicates or malformed lines raise :class:`DataDirError`.

        `audiokit data validate` lists every problem; `audiokit data fix` repairs the fixable ones.
        """
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(f"{path}: not a directory; give the path of a Kaldi data dir")
        if not (path / "wav.scp").is_file():
            raise DataDirError(
                f"{path}: no wav.scp; a data dir needs wav.scp ('UTT_OR_RECO_ID PATH' lines)"
            )

        def opt(name: str, allow_empty: bool = False) -> dict[str, str] | None:
            f = path / name
            return read_kv_file(f, allow_empty_value=allow_empty) if f.is_file() else None

        segments = None
        raw_segments = opt("segments")
        if raw_segments is not None:
            segments = {}
            for utt, value in raw_segments.items():
                seg = parse_segment(value)
                if seg is None:
                    raise DataDirError(
                        f"{path / 'segments'}: line for '{utt}' is not 'UTT RECO START END'; "
                        "fix or remove it (`audiokit data fix` drops malformed lines)"
                    )
                segments[utt] = seg
        return cls(
            path=path,
            wav_scp=read_kv_file(path / "wav.scp"),
            text=opt("text", allow_empty=True),
            utt2spk=opt("utt2spk"),
            segments=segments,
            utt2dur=_numbers(path / "utt2dur"),
            utt2num_samples=_numbers(path / "utt2num_samples", int),
            reco2dur=_numbers(path / "reco2dur"),
            extra_files=list_extra_files(path),
        )

    # ---- views ---------------------------------------------------------------------------
    @property
    def utt_ids(self) -> list[str]:
        """Utterance ids in C byte order: `segments` keys if present, else `wav.scp` keys."""
        return sorted_ids(self.segments if self.segments is not None else self.wav_scp)

    @property
    def recording_ids(self) -> list[str]:
        return sorted_ids(self.wav_scp)

    def speaker(self, utt_id: str) -> str:
        """The utterance's speaker; without utt2spk each utterance is its own speaker."""
        if self.utt2spk is None:
            return utt_id
        return self.utt2spk.get(utt_id, utt_id)

    @property
    def spk2utt(self) -> dict[str, list[str]]:
        """Speaker -> sorted utterance ids, derived from utt2spk (the primary file)."""
        out: dict[str, list[str]] = {}
        for utt in self.utt_ids:
            out.setdefault(self.speaker(utt), []).append(utt)
        return dict(sorted(out.items(), key=lambda kv: ckey(kv[0])))

    @property
    def base_dir(self) -> Path:
        """Where relative wav.scp paths resolve and piped commands run."""
        return self.path if self.path is not None else Path.cwd()

    def recording_of(self, utt_id: str) -> str:
        return self.segments[utt_id].recording if self.segments is not None else utt_id

    def duration(self, utt_id: str) -> float | None:
        """Known duration in seconds (utt2dur, then segments, then reco2dur), else None."""
        if self.utt2dur is not None and utt_id in self.utt2dur:
            return self.utt2dur[utt_id]
        if self.segments is not None:
            seg = self.segments[utt_id]
            return seg.end - seg.start
        if self.reco2dur is not None and utt_id in self.reco2dur:
            return self.reco2dur[utt_id]
        return None

    def utterance(self, utt_id: str) -> Utterance:
        if self.segments is not None:
            if utt_id not in self.segments:
                raise DataDirError(
                    f"{self.path}: no utterance '{utt_id}' in segments; check the id"
                )
            seg = self.segments[utt_id]
            reco, start, end = seg.recording, seg.start, seg.end
        else:
            reco, start, end = utt_id, 0.0, None
        if reco not in self.wav_scp:
            raise DataDirError(
                f"{self.path}: utterance '{utt_id}' has no wav.scp entry for '{reco}'; "
                "run `audiokit data validate` then `audiokit data fix`"
            )
        text = None if self.text is None else self.text.get(utt_id)
        return Utterance(
            utt_id, self.speaker(utt_id), text, reco, self.wav_scp[reco], start, end,
            self.duration(utt_id),
        )  # fmt: skip

    def utterances(self) -> Iterator[Utterance]:
        """Every utterance, in id order."""
        for utt in self.utt_ids:
            yield self.utterance(utt)

    def __len__(self) -> int:
        return len(self.segments if self.segments is not None else self.wav_scp)

    # ---- audio ---------------------------------------------------------------------------
    def load_audio(self, utt_id: str, sample_rate: int | None = None, allow_pipe: bool = False):
        """Samples of one utterance (its segment when `segments` exists), as (np.float32 (T,), sr).

        Multi-channel audio is mixed down; `sample_rate` resamples. Pipe entries run only with
        `allow_pipe=True`. Raises AudioError for unreadable audio.
        """
        from audiokit.audio import load_scp_entry

        utt = self.utterance(utt_id)
        return load_scp_entry(
            utt.entry, self.base_dir, sample_rate=sample_rate, start=utt.start, end=utt.end,
            allow_pipe=allow_pipe, key=utt.recording,
        )  # fmt: skip

    def recording_infos(self, nj: int = 4, allow_pipe: bool = False, progress: bool = True):
        """Audio headers of every recording, read in `nj` threads: {reco: AudioInfo | AudioError}."""
        from audiokit.audio import scp_entry_info

        def one(reco: str):
            try:
                return scp_entry_info(
                    self.wav_scp[reco], self.base_dir, allow_pipe=allow_pipe, key=reco
                )
            except AudiokitError as e:  # reported per recording by the caller
                return e

        recos = self.recording_ids
        results = _parallel_map(one, recos, nj, "reading audio headers", progress)
        return dict(zip(recos, results, strict=True))

    def compute_durations(
        self, nj: int = 4, allow_pipe: bool = False, progress: bool = True
    ) -> None:
        """Read audio headers and write `utt2dur` and `utt2num_samples` into this dir (atomically).

        With segments, durations are segment lengths clipped to the recording and `reco2dur`
        is written too. Raises DataDirError if any recording cannot be read.
        """
        if self.path is None:
            raise DataDirError("compute_durations needs a data dir on disk; write() it first")
        infos = self.recording_infos(nj, allow_pipe, progress)
        bad = {r: e for r, e in infos.items() if isinstance(e, Exception)}
        if bad:
            first = next(iter(bad.values()))
            raise DataDirError(
                f"{self.path}: {len(bad)} recording(s) unreadable, first: {first}; "
                "`audiokit data validate --check-audio` lists them all"
            )
        utt2dur: dict[str, float] = {}
        utt2num: dict[str, int] = {}
        for utt in self.utt_ids:
            info = infos[self.recording_of(utt)]
            sr, n = info.sample_rate, info.num_frames
            if self.segments is None:
                utt2num[utt] = n
                utt2dur[utt] = n / sr
            else:
                seg = self.segments[utt]
                # sample index = floor(t * sr), as Kaldi's extract-segments and audiokit.audio
                a, b = (min(math.floor(t * sr + 1e-4), n) for t in (seg.start, seg.end))
                utt2num[utt] = max(0, b - a)
                utt2dur[utt] = max(0.0, min(seg.end, n / sr) - seg.start)
        self.utt2dur, self.utt2num_samples = utt2dur, utt2num
        files = {
            "utt2dur": {k: fmt_seconds(v) for k, v in utt2dur.items()},
            "utt2num_samples": utt2num,
        }
        if self.segments is not None:
            self.reco2dur = {r: i.num_frames / i.sample_rate for r, i in infos.items()}
            files["reco2dur"] = {k: fmt_seconds(v) for k, v in self.reco2dur.items()}
        for name, content in files.items():
            try:
                write_kv_file(self.path / name, content)
            except OSError as e:
                raise DataDirError(
                    f"{self.path / name}: cannot write ({e.strerror}); copy the data dir somewhere "
                    "writable first (`audiokit data fix DIR --out NEW`)"
                ) from e

    # ---- subsetting & writing ------------------------------------------------------------
    def subset(self, utt_ids) -> DataDir:
        """A new DataDir with only `utt_ids` (unknown ids ignored); wav paths made absolute.

        Extra key-value files keyed by utterance id (e.g. `text.orig`) are filtered along;
        other extra files are not carried (they may describe utterances no longer present).
        """
        keep = set(utt_ids) & set(self.utt_ids)
        recos = {self.recording_of(u) for u in keep}

        def pick(m, keys):
            return None if m is None else {k: v for k, v in m.items() if k in keys}

        wav = {r: absolute_entry(e, self.path) for r, e in self.wav_scp.items() if r in recos}
        extra_kv = {
            name: {k: v for k, v in kv.items() if k in keep}
            for name, kv in self.utt_keyed_extras().items()
        }
        return DataDir(
            path=None, wav_scp=wav, text=pick(self.text, keep), utt2spk=pick(self.utt2spk, keep),
            segments=pick(self.segments, keep), utt2dur=pick(self.utt2dur, keep),
            utt2num_samples=pick(self.utt2num_samples, keep), reco2dur=pick(self.reco2dur, recos),
            extra_kv=extra_kv,
        )  # fmt: skip

    def utt_keyed_extras(self) -> dict[str, dict[str, str]]:
        """Extra files that read as key-value files whose keys are all utterance ids."""
        out = {}
        if self.path is None:
            return dict(self.extra_kv)
        utts = set(self.utt_ids)
        for name in self.extra_files:
            try:
                kv = read_kv_file(self.path / name, allow_empty_value=True)
            except (DataDirError, UnicodeDecodeError):
                continue
            if kv and set(kv) <= utts:
                out[name] = kv
        out.update(self.extra_kv)
        return out

    def file_maps(self, base_dir: Path | None = None) -> dict[str, dict]:
        """What :meth:`write` writes: file name -> {key: value}; relative wav.scp paths are
        made absolute against `base_dir` when given."""
        files: dict[str, dict] = {
            "wav.scp": {k: absolute_entry(v, base_dir) for k, v in self.wav_scp.items()}
        }
        if self.segments is not None:
            files["segments"] = {
                u: f"{s.recording} {fmt_seconds(s.start)} {fmt_seconds(s.end)}"
                for u, s in self.segments.items()
            }
        if self.text is not None:
            files["text"] = self.text
        if self.utt2spk is not None:
            files["utt2spk"] = self.utt2spk
            files["spk2utt"] = self.spk2utt
        if self.utt2dur is not None:
            files["utt2dur"] = {k: fmt_seconds(v) for k, v in self.utt2dur.items()}
        if self.utt2num_samples is not None:
            files["utt2num_samples"] = self.utt2num_samples
        if self.reco2dur is not None:
            files["reco2dur"] = {k: fmt_seconds(v) for k, v in self.reco2dur.items()}
        return files

    def write(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write every present file sorted (C order), each atomically; spk2utt from utt2spk.

        Writing to a different folder makes relative wav.scp paths absolute and copies the
        extra files. A different folder that already holds a data dir needs `overwrite=True`
        (then its known files that this DataDir lacks are removed).
        """
        path = Path(path)
        same = self.path is not None and path.exists() and _same_dir(path, self.path)
        if not same and path.is_dir() and any((path / n).exists() for n in KNOWN_FILES):
            if not overwrite:
                raise DataDirError(
                    f"{path}: already holds a data dir; choose a new folder, remove it, "
                    "or pass --overwrite"
                )
        path.mkdir(parents=True, exist_ok=True)
        files = self.file_maps(None if same else self.path)
        for name, content in files.items():
            write_kv_file(path / name, content)
        for name, kv in self.extra_kv.items():
            write_kv_file(path / name, kv)
        if not same:
            for name in KNOWN_FILES:
                if name not in files and (path / name).is_file():
                    (path / name).unlink()  # stale file from the overwritten dir
            if self.path is not None:
                for name in self.extra_files:
                    if name not in self.extra_kv:
                        with atomic_path(path / name) as tmp:
                            shutil.copyfile(self.path / name, tmp)
        return path


def list_extra_files(path: Path) -> list[str]:
    """Regular, non-hidden files in `path` that this module does not manage."""
    known = set(KNOWN_FILES)
    return sorted(
        p.name
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in known
    )


def fmt_seconds(x: float) -> str:
    """Shortest text that reads back as the same float (`1.5`, `2`, `0.023125`): no precision
    is lost when a data dir is rewritten."""
    s = repr(float(x))
    return s[:-2] if s.endswith(".0") else s


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _parallel_map(fn, items: list, nj: int, label: str, progress: bool) -> list:
    """`[fn(x) for x in items]` in `nj` threads (I/O bound: headers, pipes), with a progress bar."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        results = pool.map(fn, items)
        if not progress or len(items) < 50:
            return list(results)
        from rich.console import Console
        from rich.progress import Progress

        out = []
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(label, total=len(items))
            for r in results:
                out.append(r)
                bar.advance(task)
        return out
