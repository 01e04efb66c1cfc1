"""`audiokit score`: sclite-compatible WER/CER of hypotheses against references.

Heavy modules are imported inside the command so `audiokit --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

HELP = "Score hypotheses against references (WER/CER, sclite-compatible alignment)."

SHOWN_IDS = 10  # utterance ids listed on the console per warning (result.txt lists all)


def _listed(ids: list[str]) -> str:
    more = f" ... (+{len(ids) - SHOWN_IDS} more, see result.txt)" if len(ids) > SHOWN_IDS else ""
    return " ".join(ids[:SHOWN_IDS]) + more


def score(
    ref: Path = typer.Option(
        ..., "--ref", help="Reference transcripts: Kaldi text or sclite trn.", show_default=False
    ),
    hyp: Path = typer.Option(
        ..., "--hyp", help="Hypothesis transcripts, same formats.", show_default=False
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Directory for result.txt (default: the hypothesis file's directory)."
    ),
    fmt: str = typer.Option("auto", "--format", help="Transcript format: auto, kaldi or trn."),
    cer: bool = typer.Option(False, "--cer", help="Score characters (CER) instead of words."),
    ignore_case: bool = typer.Option(
        True,
        "--ignore-case/--case-sensitive",
        help="Compare words and utterance ids ignoring case, as sclite does by default; "
        "--case-sensitive compares exactly, as Kaldi's compute-wer does.",
    ),
    fragments: bool = typer.Option(
        False, "--fragments", help="sclite -F: a fragment like 'fi-' matches a word it begins."
    ),
    id_format: str = typer.Option(
        "spu_id",
        "--id-format",
        help="Speaker from utterance id: spu_id (before '-' or '_'), wsj (3 chars), utt.",
    ),
    utt2spk: Path | None = typer.Option(
        None, "--utt2spk", help="Kaldi utt2spk file giving each utterance's speaker."
    ),
) -> None:
    from audiokit.cli._console import err_console
    from audiokit.data.kaldi_files import read_kv_file
    from audiokit.errors import ConfigError, ScoringError
    from audiokit.metrics import (
        format_report,
        format_summary,
        kaldi_lines,
        read_transcripts,
        score_corpus,
    )
    from audiokit.metrics.transcripts import FORMATS, ID_FORMATS
    from audiokit.utils.atomic import atomic_write

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: unknown format; use one of {', '.join(FORMATS)}")
    if id_format not in ID_FORMATS:
        raise ConfigError(
            f"--id-format {id_format}: unknown id format; use one of {', '.join(ID_FORMATS)}"
        )
    refs = read_transcripts(ref, fmt)
    hyps = read_transcripts(hyp, fmt)
    if not refs:
        raise ScoringError(f"{ref}: no reference utterances; check the file and --format")
    spk_map = read_kv_file(utt2spk) if utt2spk is not None else None
    result = score_corpus(
        refs,
        hyps,
        cer=cer,
        ignore_case=ignore_case,
        id_format=id_format,
        utt2spk=spk_map,
        fragments=fragments,
    )
    if len(result.missing) == len(refs) and hyps:
        raise ScoringError(
            f"{hyp}: no hypothesis id matches a reference id in {ref}; "
            "check that the files belong together, --format and --ignore-case"
        )

    notes = []
    if result.missing:
        notes.append(
            f"WARNING: {len(result.missing)} reference utterance(s) have no hypothesis and are scored "
            f"as all deletions: {' '.join(result.missing)}"
        )
    if result.extra:
        notes.append(
            f"WARNING: {len(result.extra)} hypothesis utterance(s) have no reference and are not scored: "
            f"{' '.join(result.extra)}"
        )
    unit = "characters" if cer else "words"
    case = "case-insensitive" if ignore_case else "case-sensitive"
    title = f"{hyp.name} vs {ref.name} ({unit}, {case})"

    out_dir = out if out is not None else hyp.resolve().parent
    target = (out_dir / "result.txt").resolve()
    if target in (ref.resolve(), hyp.resolve()):
        raise ScoringError(
            f"{target}: would overwrite an input file; pass --out with another directory"
        )
    report = format_report(result, title, upper_errors=ignore_case, notes=notes)
    try:
        with atomic_write(target) as f:
            f.write(report)
    except OSError as e:
        raise ScoringError(
            f"{target}: cannot write the report ({e.strerror}); pass --out with a writable directory"
        ) from e

    if result.missing:
        err_console.print(
            f"warning: {len(result.missing)} reference utterance(s) without a hypothesis, "
            f"scored as all deletions: {_listed(result.missing)}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    if result.extra:
        err_console.print(
            f"warning: {len(result.extra)} hypothesis utterance(s) without a reference, "
            f"not scored: {_listed(result.extra)}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    typer.echo(format_summary(result, title))
    typer.echo(f"Wrote {target}")
    for line in kaldi_lines(result):
        typer.echo(line)
