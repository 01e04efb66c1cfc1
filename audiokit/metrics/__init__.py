"""Scoring: sclite-compatible WER/CER alignment, per-speaker totals and reports."""

from audiokit.metrics.align import AlignedPair, align, align_many
from audiokit.metrics.report import format_alignment, format_report, format_summary, kaldi_lines
from audiokit.metrics.transcripts import parse_transcript, read_transcripts, speaker_of
from audiokit.metrics.wer import Counts, ScoreResult, UttResult, count_alignment, score_corpus, wer

__all__ = [
    "AlignedPair",
    "Counts",
    "ScoreResult",
    "UttResult",
    "align",
    "align_many",
    "count_alignment",
    "format_alignment",
    "format_report",
    "format_summary",
    "kaldi_lines",
    "parse_transcript",
    "read_transcripts",
    "score_corpus",
    "speaker_of",
    "wer",
]
