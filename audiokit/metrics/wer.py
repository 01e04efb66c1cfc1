"""Word/character error rates: per-utterance alignments, per-speaker and corpus totals.

Counts follow sclite: the number of reference words of an utterance is C + S + D of its
alignment (so with alternations it depends on the alternative chosen, and a dropped
optional word counts as a correct reference word). WER = (S + D + I) / (C + S + D).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from audiokit.metrics.align import AlignedPair, align_many
from audiokit.metrics.transcripts import speaker_of


@dataclass
class Counts:
    """Error counts; `n_ref` = correct + sub + dele (reference words or characters)."""

    correct: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    n_sent: int = 0
    n_sent_err: int = 0

    @property
    def n_ref(self) -> int:
        return self.correct + self.sub + self.dele

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def wer(self) -> float:
        """Error rate in percent (0 with no words at all; inf for errors without reference words)."""
        if self.n_ref == 0:
            return math.inf if self.errors else 0.0
        return 100.0 * self.errors / self.n_ref

    @property
    def ser(self) -> float:
        """Sentence error rate in percent."""
        return 100.0 * self.n_sent_err / self.n_sent if self.n_sent else 0.0

    def add(self, other: Counts) -> None:
        self.correct += other.correct
        self.sub += other.sub
        self.dele += other.dele
        self.ins += other.ins
        self.n_sent += other.n_sent
        self.n_sent_err += other.n_sent_err


@dataclass
class UttResult:
    """One scored utterance: its alignment and counts; `missing` if it had no hypothesis."""

    utt_id: str
    speaker: str
    alignment: list[AlignedPair]
    counts: Counts
    missing: bool = False


@dataclass
class ScoreResult:
    """A scored corpus. `utts` in reference order; `speakers` in order of first appearance."""

    utts: list[UttResult]
    speakers: dict[str, Counts]
    total: Counts
    cer: bool = False
    missing: list[str] = field(default_factory=list)  # refs without a hypothesis (all deletions)
    extra: list[str] = field(default_factory=list)  # hypotheses without a reference (not scored)

    # the documented API names, as shortcuts to the totals
    @property
    def n_ref_words(self) -> int:
        return self.total.n_ref

    @property
    def correct(self) -> int:
        return self.total.correct

    @property
    def sub(self) -> int:
        return self.total.sub

    @property
    def dele(self) -> int:
        return self.total.dele

    @property
    def ins(self) -> int:
        return self.total.ins

    @property
    def wer(self) -> float:
        return self.total.wer


def count_alignment(alignment: list[AlignedPair]) -> Counts:
    """C/S/D/I of one alignment, as one sentence."""
    c = Counts(n_sent=1)
    for p in alignment:
        if p.op == "C":
            c.correct += 1
        elif p.op == "S":
            c.sub += 1
        elif p.op == "D":
            c.dele += 1
        else:
            c.ins += 1
    c.n_sent_err = int(c.errors > 0)
    return c


def score_corpus(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    cer: bool = False,
    ignore_case: bool = False,
    id_format: str = "spu_id",
    utt2spk: Mapping[str, str] | Callable[[str], str] | None = None,
    fragments: bool = False,
) -> ScoreResult:
    """Score every reference utterance against its hypothesis.

    A reference without a hypothesis is scored against an empty one (all deletions) and
    listed in `missing`; hypotheses without a reference are listed in `extra` and skipped.
    `ignore_case` folds words and utterance ids to lower case (sclite's default behaviour).
    Speakers come from `utt2spk` when given, else from the id (`id_format`, see transcripts).
    `fragments` turns on sclite's -F fragment matching (see `align`).
    """
    if ignore_case:
        refs = {k.lower(): v for k, v in refs.items()}
        hyps = {k.lower(): v for k, v in hyps.items()}
    if utt2spk is None:

        def spk_of(u: str) -> str:
            return speaker_of(u, id_format)
    elif callable(utt2spk):
        spk_of = utt2spk
    else:
        # ids were folded above, so the mapping's keys must be folded the same way
        mapping = {k.lower(): v for k, v in utt2spk.items()} if ignore_case else utt2spk

        def spk_of(u: str) -> str:
            return mapping.get(u, speaker_of(u, id_format))

    utts: list[UttResult] = []
    speakers: dict[str, Counts] = {}
    total = Counts()
    missing = [u for u in refs if u not in hyps]
    extra = [u for u in hyps if u not in refs]
    pairs = [(ref, hyps.get(utt, "")) for utt, ref in refs.items()]
    alignments = align_many(pairs, cer=cer, ignore_case=ignore_case, fragments=fragments)
    for utt, alignment in zip(refs, alignments, strict=True):
        counts = count_alignment(alignment)
        spk = spk_of(utt)
        utts.append(UttResult(utt, spk, alignment, counts, missing=utt not in hyps))
        speakers.setdefault(spk, Counts()).add(counts)
        total.add(counts)
    return ScoreResult(utts, speakers, total, cer=cer, missing=missing, extra=extra)


def wer(ref: list[str] | str, hyp: list[str] | str, cer: bool = False) -> float:
    """Error rate (percent) of one or more reference/hypothesis pairs.

    `ref`/`hyp`: one transcript string each, or equal-length lists of transcript strings.
    """
    if isinstance(ref, str) != isinstance(hyp, str):
        raise TypeError("ref and hyp must both be strings or both be lists of strings")
    if isinstance(ref, str):
        ref, hyp = [ref], [hyp]
    if len(ref) != len(hyp):
        raise ValueError(
            f"{len(ref)} references but {len(hyp)} hypotheses; give one hypothesis per reference"
        )
    total = Counts()
    for alignment in align_many(list(zip(ref, hyp, strict=True)), cer=cer):
        total.add(count_alignment(alignment))
    return total.wer
