"""sclite-style reports: aligned utterances (.pra), the per-speaker table (.sys), Kaldi's lines.

The per-utterance blocks reproduce sclite's `.pra` lines (REF/HYP/Eval columns padded to the
wider word, `*` filling the missing side, errors' ASCII letters upper-cased when scoring
ignores case). The
summary table has sclite's `.sys` columns and rows; its box drawing is close to, not byte-equal
with, sclite's. The Kaldi lines match `compute-wer`.
"""

from __future__ import annotations

import math

import numpy as np

from audiokit.metrics.wer import Counts, ScoreResult, UttResult

# sclite upper-cases only ASCII letters of errors (Unicode case maps can lose letters: ı -> I)
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _round(x: float, places: int = 1) -> float:
    """sclite's F_ROUND: round half away from zero."""
    scale = 10.0**places
    return math.trunc(x * scale + (0.5 if x > 0 else -0.5)) / scale


def format_alignment(utt: UttResult, upper_errors: bool = False) -> str:
    """One utterance as sclite prints it in a .pra file (without a trailing blank line)."""
    c = utt.counts
    head = f"id: ({utt.utt_id})"
    if utt.missing:
        head += "  [no hypothesis: scored as all deletions]"
    ref_line, hyp_line, eval_line = ["REF: "], ["HYP: "], ["Eval:"]
    for op, ref, hyp in utt.alignment:
        r = "*" * len(hyp) if ref is None else ref
        h = "*" * len(ref) if hyp is None else hyp
        if upper_errors and op != "C":
            r = r if ref is None else r.translate(_ASCII_UPPER)
            h = h if hyp is None else h.translate(_ASCII_UPPER)
        width = max(len(r) if ref is not None else 1, len(h) if hyp is not None else 1)
        ref_line.append(r.ljust(width))
        hyp_line.append(h.ljust(width))
        eval_line.append(("" if op == "C" else op).ljust(width))
    lines = [
        head,
        f"Scores: (#C #S #D #I) {c.correct} {c.sub} {c.dele} {c.ins}",
        " ".join(ref_line) + " ",
        " ".join(hyp_line) + " ",
        " ".join(eval_line) + " ",
    ]
    return "\n".join(lines)


def _cells(c: Counts) -> list[str]:
    """Corr Sub Del Ins Err S.Err, 6 characters each, as sclite formats them."""
    vals = [c.correct, c.sub, c.dele, c.ins, c.errors]
    if c.n_ref == 0:  # sclite prints starred raw counts when there are no reference words
        cells = [f"{v:5d}*" for v in vals]
    else:
        cells = [f"{_round(100.0 * v / c.n_ref):5.1f} " for v in vals]
    return cells + [f"{_round(c.ser):5.1f} "]


def _sd(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def format_summary(result: ScoreResult, title: str = "") -> str:
    """The sclite .sys table: one row per speaker, Sum/Avg, then Mean, S.D. and Median."""
    name_w = max([7] + [len(s) + 1 for s in result.speakers])

    def row(name: str, snt: str, wrd: str, cells: list[str]) -> str:
        return f"| {name:<{name_w}}| {snt:>5} {wrd:>6} | " + " ".join(cells) + "|"

    unit = "# Chr" if result.cer else "# Wrd"
    header = row(
        "SPKR", "# Snt", unit, [f"{h:>5} " for h in ("Corr", "Sub", "Del", "Ins", "Err", "S.Err")]
    )
    inner = len(header) - 2
    lines = [
        " ," + "-" * inner + ".",
        " |" + title.center(inner) + "|",
        " |" + "-" * inner + "|",
        " " + header,
    ]
    for spk, c in result.speakers.items():
        lines += [" |" + "-" * inner + "|", " " + row(spk, str(c.n_sent), str(c.n_ref), _cells(c))]
    t = result.total
    lines += [
        " |" + "=" * inner + "|",
        " " + row("Sum/Avg", str(t.n_sent), str(t.n_ref), _cells(t)),
    ]
    lines.append(" |" + "=" * inner + "|")
    # Mean/S.D./Median over speakers; those without reference words are left out of the rates
    spk = list(result.speakers.values())
    snt = np.array([c.n_sent for c in spk], dtype=float)
    wrd = np.array([c.n_ref for c in spk], dtype=float)
    rated = [c for c in spk if c.n_ref > 0]
    rates = np.array(
        [[100.0 * v / c.n_ref for v in (c.correct, c.sub, c.dele, c.ins, c.errors)] for c in rated]
    ).reshape(len(rated), 5)
    ser = np.array([c.ser for c in spk])
    for name, fn in (("Mean", np.mean), ("S.D.", _sd), ("Median", np.median)):
        cells = [f"{_round(float(fn(rates[:, i]))) if rated else 0.0:5.1f} " for i in range(5)]
        cells.append(f"{_round(float(fn(ser))):5.1f} ")
        lines.append(
            " " + row(name, f"{_round(float(fn(snt))):.1f}", f"{_round(float(fn(wrd))):.1f}", cells)
        )
    lines.append(" `" + "-" * inner + "'")
    return "\n".join(lines)


def kaldi_lines(result: ScoreResult) -> list[str]:
    """`%SER ...` then `%WER ...` (or `%CER`) exactly as Kaldi's compute-wer prints them."""
    t = result.total
    name = "%CER" if result.cer else "%WER"
    return [
        f"%SER {t.ser:.2f} [ {t.n_sent_err} / {t.n_sent} ]",
        f"{name} {t.wer:.2f} [ {t.errors} / {t.n_ref}, {t.ins} ins, {t.dele} del, {t.sub} sub ]",
    ]


def format_report(
    result: ScoreResult, title: str = "", upper_errors: bool = False, notes: list[str] | None = None
) -> str:
    """The whole result.txt: notes, aligned utterances grouped by speaker, summary, Kaldi lines."""
    out = [f"audiokit score: {title}", ""]
    for note in notes or []:
        out.append(note)
    if notes:
        out.append("")
    by_spk: dict[str, list[UttResult]] = {}
    for u in result.utts:
        by_spk.setdefault(u.speaker, []).append(u)
    for i, (spk, utts) in enumerate(by_spk.items()):
        out.append(f"Speaker sentences {i:3d}:  {spk}   #utts: {len(utts)}")
        for u in utts:
            out += [format_alignment(u, upper_errors), ""]
    out += ["", format_summary(result, title), ""]
    out += kaldi_lines(result)
    return "\n".join(out) + "\n"
