"""`audiokit data info`: counts, durations and vocabulary of a data dir."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from audiokit.data.data_dir import DataDir
from audiokit.errors import DataDirError

HIST_BINS = 10


@dataclass
class Summary:
    """What `summarize` found. Durations are seconds; `duration_source` says where they came
    from (utt2dur, segments or audio headers); text fields are None without a `text` file."""

    path: Path
    utterances: int
    speakers: int
    recordings: int
    durations: list[float] = field(default_factory=list)
    duration_source: str = ""
    words: int | None = None  # whitespace-separated tokens
    vocabulary: int | None = None  # distinct tokens
    characters: int | None = None  # non-space characters (useful for unsegmented scripts)
    char_vocabulary: int | None = None

    @property
    def total_hours(self) -> float:
        return sum(self.durations) / 3600.0

    @property
    def duration_stats(self) -> tuple[float, float, float] | None:
        """(min, mean, max) seconds, or None when no duration is known."""
        if not self.durations:
            return None
        return min(self.durations), sum(self.durations) / len(self.durations), max(self.durations)

    def histogram(self, bins: int = HIST_BINS) -> list[tuple[float, float, int]]:
        """Equal-width duration bins as (low, high, count); the last bin includes its high edge."""
        if not self.durations:
            return []
        lo, hi = min(self.durations), max(self.durations)
        if hi == lo:
            return [(lo, hi, len(self.durations))]
        width = (hi - lo) / bins
        counts = [0] * bins
        for d in self.durations:
            counts[min(int((d - lo) / width), bins - 1)] += 1
        return [(lo + i * width, lo + (i + 1) * width, c) for i, c in enumerate(counts)]


def summarize(
    data_dir: str | os.PathLike | DataDir, nj: int = 4, allow_pipes: bool = False
) -> Summary:
    """Summarise a data dir. Durations come from utt2dur, else segments, else audio headers
    (read in `nj` threads; raises DataDirError naming the first unreadable recording)."""
    data = data_dir if isinstance(data_dir, DataDir) else DataDir.load(data_dir)
    utts = data.utt_ids
    summary = Summary(
        path=Path(data.path or "."),
        utterances=len(utts),
        speakers=len({data.speaker(u) for u in utts}),
        recordings=len(data.wav_scp),
    )
    if data.utt2dur is not None and set(utts) <= set(data.utt2dur):
        summary.durations = [data.utt2dur[u] for u in utts]
        summary.duration_source = "utt2dur"
    elif data.segments is not None:
        summary.durations = [data.segments[u].end - data.segments[u].start for u in utts]
        summary.duration_source = "segments"
    else:
        infos = data.recording_infos(nj, allow_pipe=allow_pipes)
        bad = [r for r, i in infos.items() if isinstance(i, Exception)]
        if bad:
            raise DataDirError(
                f"{data.path}: cannot read the audio of {len(bad)} recording(s), first: "
                f"{infos[bad[0]]}; run `audiokit data validate` to list them"
            )
        summary.durations = [infos[u].num_frames / infos[u].sample_rate for u in utts]
        summary.duration_source = "audio headers"
    if data.text is not None:
        tokens = Counter(w for u in utts for w in data.text.get(u, "").split())
        chars = Counter(c for u in utts for c in data.text.get(u, "") if not c.isspace())
        summary.words, summary.vocabulary = sum(tokens.values()), len(tokens)
        summary.characters, summary.char_vocabulary = sum(chars.values()), len(chars)
    return summary


def render_summary(s: Summary):
    """A rich renderable: a table of the figures and a text histogram of durations."""
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"data dir {s.path}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("utterances", f"{s.utterances:,}")
    table.add_row("speakers", f"{s.speakers:,}")
    table.add_row("recordings", f"{s.recordings:,}")
    stats = s.duration_stats
    if stats is not None:
        table.add_row("total duration", f"{s.total_hours:.3f} h ({s.total_hours * 3600:.1f} s)")
        table.add_row("min / mean / max", " / ".join(f"{x:.2f} s" for x in stats))
        table.add_row("durations from", s.duration_source)
    if s.words is not None:
        table.add_row("words (tokens)", f"{s.words:,}")
        table.add_row("vocabulary", f"{s.vocabulary:,}")
        table.add_row("characters", f"{s.characters:,} ({s.char_vocabulary:,} distinct)")
    else:
        table.add_row("text", "absent")
    hist = Table(title="utterance durations", show_header=True, title_justify="left", box=None)
    hist.add_column("seconds", justify="right")
    hist.add_column("count", justify="right")
    hist.add_column("")
    rows = s.histogram()
    peak = max((c for _, _, c in rows), default=0) or 1
    for lo, hi, count in rows:
        hist.add_row(f"{lo:.2f}-{hi:.2f}", str(count), "█" * round(30 * count / peak))
    return Group(table, hist) if rows else table
