"""Check a Kaldi data dir the way Kaldi's `validate_data_dir.sh` does, but report every problem.

Each :class:`Problem` names the file and key, says what is wrong and how to fix it, and whether
`audiokit data fix` can repair it. Warnings (`level="warning"`) do not make a dir invalid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from audiokit.data.data_dir import KNOWN_FILES, DataDir, ckey, entry_kind, entry_path, parse_segment
from audiokit.errors import DataDirError

# Kaldi's extract-segments tolerates segments ending up to this far past the recording.
MAX_OVERSHOOT_S = 0.5
FIX = "`audiokit data fix` {}"
# What `audiokit data fix` does about a line with no value, per file.
_FIX_EMPTY_VALUE = {
    "spk2utt": "regenerates spk2utt",
    "utt2dur": "removes utt2dur",
    "utt2num_samples": "removes utt2num_samples",
    "reco2dur": "removes reco2dur",
}


@dataclass(frozen=True)
class RawLine:
    """One non-blank line of a Kaldi file; `value` may be empty (a malformed line)."""

    lineno: int
    key: str
    value: str


@dataclass
class RawFile:
    """A Kaldi file read without judging it: duplicates and bad lines are kept for reporting."""

    path: Path
    lines: list[RawLine]
    final_newline: bool = True
    crlf: bool = False


def read_raw(path: str | os.PathLike) -> RawFile:
    """Read every `KEY VALUE` line of `path`, keeping duplicates, order and empty values."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataDirError(
            f"{path}: cannot read ({e.strerror}); check the path and permissions"
        ) from e
    try:
        content = data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data[: e.start].count(b"\n") + 1
        raise DataDirError(
            f"{path}:{lineno}: not valid UTF-8; re-encode the file as UTF-8 (e.g. with iconv)"
        ) from e
    lines = []
    for lineno, line in enumerate(content.split("\n"), 1):
        parts = line.strip().split(maxsplit=1)
        if parts:
            lines.append(RawLine(lineno, parts[0], parts[1] if len(parts) > 1 else ""))
    return RawFile(
        path, lines, final_newline=not content or content.endswith("\n"), crlf="\r\n" in content
    )


@dataclass(frozen=True)
class Problem:
    """One finding: `kind` is a stable identifier, `key` the utterance/recording/speaker id
    (None for file-level problems), `fixable` whether `audiokit data fix` repairs it."""

    kind: str
    file: str
    key: str | None
    message: str
    fixable: bool
    level: str = "error"

    def __str__(self) -> str:
        return f"{self.level}: {self.file}: {self.message}"


class _Report(list):
    """A list of problems with a compact `add`."""

    def add(self, kind: str, file: str, key: str | None, message: str, fixable: bool = True,
            level: str = "error") -> None:  # fmt: skip
        self.append(Problem(kind, file, key, message, fixable, level))


def validate_data_dir(
    path: str | os.PathLike, check_audio: bool = True, allow_pipes: bool = False, nj: int = 4
) -> list[Problem]:
    """All problems found in the data dir at `path` (no errors: valid; warnings may remain).

    Missing audio files are always reported; `check_audio` also opens each recording's header
    (unreadable audio, segments past the end). Pipe entries run only with `allow_pipes`.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataDirError(f"{path}: not a directory; give the path of a Kaldi data dir")
    rep = _Report()
    if not (path / "wav.scp").is_file():
        msg = "missing; it is required: write 'UTT_ID PATH' lines (or 'RECO_ID PATH' + segments)"
        rep.add("missing_file", "wav.scp", None, msg, fixable=False)
        return list(rep)
    maps = {n: _check_file(read_raw(path / n), n, rep) for n in KNOWN_FILES if (path / n).is_file()}
    wav = maps["wav.scp"]
    segments = _check_segments(maps.get("segments"), wav, rep)
    # A malformed segments line still declares an utterance: don't cascade into unknown_id.
    utts = set(maps["segments"] if segments is not None else wav)
    recos = {s.recording for s in segments.values()} if segments is not None else set(wav)
    for reco in sorted(set(wav) - recos, key=ckey):
        msg = f"recording '{reco}' has no segments; add some or remove it ({FIX.format('removes it')})"
        rep.add("unused_recording", "wav.scp", reco, msg)
    index = "segments" if segments is not None else "wav.scp"
    for name in ("text", "utt2spk", "utt2dur", "utt2num_samples"):
        if name in maps:
            _check_ids(maps[name], utts, name, index, rep)
    if "reco2dur" in maps:
        _check_ids(maps["reco2dur"], recos & set(wav), "reco2dur", "wav.scp", rep)
    for utt, words in maps.get("text", {}).items():
        if utt in utts and not words.strip():
            msg = f"utterance '{utt}' has an empty transcript; write it ({FIX.format('drops it')})"
            rep.add("empty_text", "text", utt, msg)
    _check_speakers(maps, utts, rep)
    _check_audio(path, wav, segments, check_audio, allow_pipes, nj, rep)
    return list(rep)


def _check_file(rf: RawFile, name: str, rep: _Report) -> dict[str, str]:
    """Newline, format, duplicate and sort-order checks; returns key -> first value."""
    if not rf.final_newline:
        msg = f"the last line has no newline; Kaldi tools reject it ({FIX.format('adds it')})"
        rep.add("no_final_newline", name, None, msg)
    if rf.crlf:
        msg = f"Windows (CRLF) line endings; use '\\n' ({FIX.format('rewrites the file')})"
        rep.add("crlf", name, None, msg)
    first: dict[str, str] = {}
    for line in rf.lines:
        where = f"line {line.lineno}: '{line.key}'"
        if line.key in first:
            same = "the same" if first[line.key] == line.value else "a different"
            msg = f"{where} is a duplicate id with {same} value ({FIX.format('keeps the first')})"
            rep.add("duplicate", name, line.key, msg)
            continue
        first[line.key] = line.value
        if not line.value and name != "text":  # empty text is reported as empty_text
            fix = FIX.format(_FIX_EMPTY_VALUE.get(name, "drops the utterance"))
            rep.add("bad_line", name, line.key, f"{where} has no value; add it ({fix})")
        elif name == "utt2spk" and len(line.value.split()) != 1:
            msg = f"{where} has speaker '{line.value}'; speaker ids cannot contain spaces"
            rep.add("bad_line", name, line.key, f"{msg} ({FIX.format('drops it')})")
        elif name in _FIX_EMPTY_VALUE and name != "spk2utt" and not _positive(line.value, name):
            msg = f"{where} has '{line.value}', not a positive number"
            rep.add("bad_line", name, line.key, f"{msg} ({FIX.format(_FIX_EMPTY_VALUE[name])})")
    keys = [line.key for line in rf.lines]
    if any(ckey(a) > ckey(b) for a, b in zip(keys[:-1], keys[1:], strict=True)):
        msg = f"not sorted by id in C byte order (LC_ALL=C sort) ({FIX.format('sorts it')})"
        rep.add("unsorted", name, None, msg)
    return first


def _positive(value: str, name: str) -> bool:
    try:
        return (int(value) if name == "utt2num_samples" else float(value)) > 0
    except ValueError:
        return False


def _check_segments(seg_map: dict[str, str] | None, wav: dict[str, str], rep: _Report):
    """Parse segments, reporting malformed lines, bad times and unknown recordings."""
    if seg_map is None:
        return None
    segments = {}
    drop = FIX.format("drops it")
    for utt, value in seg_map.items():
        seg = parse_segment(value)
        if seg is None:
            if value:  # an empty value was already reported as bad_line
                msg = f"'{utt} {value}' is not 'UTT RECO START END' with numeric times ({drop})"
                rep.add("bad_segment", "segments", utt, msg)
            continue
        segments[utt] = seg
        if seg.recording not in wav:
            msg = f"utterance '{utt}' is in recording '{seg.recording}', which is not in wav.scp"
            rep.add("unknown_recording", "segments", utt, f"{msg}; add it ({drop})")
        if seg.start < 0:
            msg = f"utterance '{utt}' starts at {seg.start} s < 0; correct it ({drop})"
            rep.add("bad_segment", "segments", utt, msg)
        if seg.end <= seg.start:
            msg = f"utterance '{utt}' ends at {seg.end} s, not after its start {seg.start} s"
            rep.add("bad_segment", "segments", utt, f"{msg}; correct it ({drop})")
    return segments


def _check_ids(mapping: dict[str, str], expected: set[str], name: str, index: str, rep: _Report):
    """Keys of `mapping` must equal `expected`, the ids listed in the `index` file."""
    what = "recording" if name == "reco2dur" else "utterance"
    for key in sorted(set(mapping) - expected, key=ckey):
        msg = f"{what} '{key}' is not in {index}; add it there or remove the line"
        rep.add("unknown_id", name, key, f"{msg} ({FIX.format('removes it')})")
    for key in sorted(expected - set(mapping), key=ckey):
        if name in ("text", "utt2spk"):
            hint = f"add it ({FIX.format('drops the utterance')})"
        else:
            hint = f"recompute {name} ({FIX.format(f'removes the incomplete {name}')})"
        rep.add("missing_id", name, key, f"{what} '{key}' has no line in {name}; {hint}")


def _check_speakers(maps: dict, utts: set[str], rep: _Report) -> None:
    utt2spk = maps.get("utt2spk")
    if utt2spk is None:
        msg = "missing: each utterance is its own speaker; " + FIX.format("writes that down")
        rep.add("missing_file", "utt2spk", None, msg, level="warning")
        return
    if "spk2utt" not in maps:
        msg = f"missing; {FIX.format('derives it from utt2spk')}"
        rep.add("missing_file", "spk2utt", None, msg, level="warning")
    else:
        from_spk = {u: spk for spk, us in maps["spk2utt"].items() for u in us.split()}
        for utt in sorted(set(utt2spk) | set(from_spk), key=ckey):
            if utt2spk.get(utt) != from_spk.get(utt):
                msg = (
                    f"utterance '{utt}' has speaker '{utt2spk.get(utt)}' in utt2spk but "
                    f"'{from_spk.get(utt)}' here; utt2spk wins ({FIX.format('regenerates spk2utt')})"
                )
                rep.add("spk2utt_mismatch", "spk2utt", utt, msg)
    for utt, spk in utt2spk.items():
        if utt in utts and spk and not utt.startswith(spk):
            msg = (
                f"utterance id '{utt}' does not start with its speaker id '{spk}'; Kaldi wants "
                "utt2spk sorted by speaker too: name utterances 'SPEAKER-...'"
            )
            rep.add("speaker_prefix", "utt2spk", utt, msg, fixable=False, level="warning")


def _check_audio(path: Path, wav: dict[str, str], segments, check_audio: bool, allow_pipes: bool,
                 nj: int, rep: _Report) -> None:  # fmt: skip
    """Missing audio files always; with `check_audio`, unreadable headers and segment overruns."""
    readable = {}
    for reco, entry in wav.items():
        kind = entry_kind(entry) if entry else "empty"
        if kind == "path" and not entry_path(entry, path).is_file():
            msg = (
                f"recording '{reco}': audio file {entry_path(entry, path)} does not exist; "
                "fix the path (relative paths resolve against the data dir)"
            )
            rep.add("missing_audio", "wav.scp", reco, msg, fixable=False)
        elif kind == "pipe" and check_audio and not allow_pipes:
            msg = (
                f"recording '{reco}' is a command pipe, not run; --allow-pipes runs it (if trusted)"
            )
            rep.add("pipe_not_checked", "wav.scp", reco, msg, fixable=False, level="warning")
        elif kind != "empty":
            readable[reco] = entry
    if not check_audio or not readable:
        return
    infos = DataDir(path=path, wav_scp=readable).recording_infos(nj, allow_pipes)
    for reco, info in infos.items():
        if isinstance(info, Exception):
            rep.add("unreadable_audio", "wav.scp", reco, f"recording '{reco}': {info}", False)
    for utt, seg in (segments or {}).items():
        info = infos.get(seg.recording)
        if info is None or isinstance(info, Exception):
            continue
        dur = info.num_frames / info.sample_rate
        msg = (
            f"utterance '{utt}' ends at {seg.end:g} s, past the end of recording "
            f"'{seg.recording}' ({dur:.3f} s)"
        )
        if seg.end > dur + MAX_OVERSHOOT_S:
            rep.add("segment_past_end", "segments", utt, f"{msg}; correct the times", False)
        elif seg.end > dur:
            msg += f" by {seg.end - dur:.3f} s; it will be cut there"
            rep.add("segment_past_end", "segments", utt, msg, False, "warning")
