"""`audiokit data`: validate, fix, subset, combine and summarise Kaldi data dirs.

Heavy modules are imported inside the commands so `audiokit --help` stays fast.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import typer
from rich.text import Text

from audiokit.cli._console import console

app = typer.Typer(
    help="Kaldi data dirs: validate, fix, subset, combine, info.",
    add_completion=False,
    no_args_is_help=True,
)

SHOWN_PER_KIND = 20  # problems listed per kind unless --all

_DIR = typer.Argument(..., help="Kaldi data dir (wav.scp, text, utt2spk, ...).", show_default=False)
_NJ = typer.Option(4, "--nj", min=1, help="Parallel jobs for reading audio headers.")
_OVERWRITE = typer.Option(
    False, "--overwrite", help="Replace a data dir already at the destination."
)


@app.command()
def validate(
    data_dir: Path = _DIR,
    check_audio: bool = typer.Option(
        True, "--check-audio/--no-check-audio", help="Open every audio header (slower, thorough)."
    ),
    allow_pipes: bool = typer.Option(
        False, "--allow-pipes", help="Run piped wav.scp commands (only for data you trust)."
    ),
    show_all: bool = typer.Option(
        False, "--all", help=f"List every problem, not {SHOWN_PER_KIND} per kind."
    ),
    nj: int = _NJ,
) -> None:
    """Check a data dir; exit 1 if it has errors (warnings alone exit 0)."""
    from audiokit.data.validate import validate_data_dir

    problems = validate_data_dir(data_dir, check_audio=check_audio, allow_pipes=allow_pipes, nj=nj)
    _print_problems(problems, show_all)
    errors = [p for p in problems if p.level == "error"]
    warnings = len(problems) - len(errors)
    warn = f", {warnings} warning(s)" if warnings else ""
    if errors:
        fixable = sum(p.fixable for p in errors)
        hint = f"; {fixable} fixable with `audiokit data fix {data_dir}`" if fixable else ""
        console.print(Text(f"{data_dir}: {len(errors)} error(s){hint}{warn}", style="bold red"))
        raise typer.Exit(1)
    console.print(Text(f"OK: {data_dir} is a valid data dir{warn}", style="bold green"))


def _print_problems(problems, show_all: bool) -> None:
    by_kind = defaultdict(list)
    for p in problems:
        by_kind[p.level, p.kind].append(p)
    for (level, _kind), group in sorted(by_kind.items()):
        shown = group if show_all else group[:SHOWN_PER_KIND]
        for p in shown:
            line = Text(f"{level}: ", style="red" if level == "error" else "yellow")
            line.append(f"{p.file}: ", style="bold")
            line.append(p.message)
            console.print(line, soft_wrap=True)
        if len(group) > len(shown):
            console.print(f"  ... and {len(group) - len(shown)} more like this (--all lists them)")


@app.command()
def fix(
    data_dir: Path = _DIR,
    out: Path | None = typer.Option(
        None, "--out", help="Write the fixed dir here; default: fix in place (backup in .backup/)."
    ),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Sort, dedupe and drop inconsistent utterances (like Kaldi's fix_data_dir.sh)."""
    from audiokit.data.operations import fix_data_dir
    from audiokit.data.validate import validate_data_dir

    res = fix_data_dir(data_dir, out, overwrite=overwrite)
    kept = len(res.data)
    console.print(f"kept {kept} of {res.total} utterance(s) -> {res.path}", highlight=False)
    reasons = defaultdict(list)
    for utt, why in res.dropped.items():
        reasons[why].append(utt)
    for why, utts in sorted(reasons.items()):
        examples = ", ".join(sorted(utts)[:5]) + (", ..." if len(utts) > 5 else "")
        console.print(Text(f"  dropped {len(utts)}: {why} ({examples})"), soft_wrap=True)
    for note in res.notes:
        console.print(Text(f"  note: {note}"), soft_wrap=True)
    if out is None:
        changed = ", ".join(res.changed + [f"{r} (removed)" for r in res.removed]) or "nothing"
        console.print(Text(f"  changed: {changed}"))
        if res.backup is not None:
            console.print(Text(f"  originals kept in {res.backup}"))
    left = [p for p in validate_data_dir(res.path, check_audio=False) if p.level == "error"]
    if left:
        console.print(
            Text(
                f"{len(left)} error(s) need a manual fix; see `audiokit data validate {res.path}`",
                style="bold yellow",
            )  # fmt: skip
        )


@app.command()
def subset(
    src: Path = typer.Argument(..., help="Source data dir.", show_default=False),
    dst: Path = typer.Argument(..., help="Destination data dir (new).", show_default=False),
    first: int | None = typer.Option(None, "--first", help="The first N utterances (id order)."),
    last: int | None = typer.Option(None, "--last", help="The last N utterances (id order)."),
    utt_list: Path | None = typer.Option(None, "--utt-list", help="File of utterance ids to keep."),
    spk_list: Path | None = typer.Option(None, "--spk-list", help="File of speaker ids to keep."),
    random: int | None = typer.Option(None, "--random", help="N utterances drawn at random."),
    seed: int = typer.Option(0, "--seed", help="Random seed for --random."),
    overwrite: bool = _OVERWRITE,
) -> None:
    """Copy a subset of utterances to a new data dir (give exactly one selector)."""
    from audiokit.data.operations import subset_data_dir

    res = subset_data_dir(src, dst, first=first, last=last, utt_list=utt_list, spk_list=spk_list,
                          random=random, seed=seed, overwrite=overwrite)  # fmt: skip
    console.print(
        f"wrote {len(res.data)} of {res.total} utterance(s) to {res.path}", highlight=False
    )
    for note in res.notes:
        console.print(Text(f"  note: {note}"), soft_wrap=True)


@app.command()
def combine(
    dst: Path = typer.Argument(..., help="Destination data dir (new).", show_default=False),
    srcs: list[Path] = typer.Argument(..., help="Source data dirs.", show_default=False),
    overwrite: bool = _OVERWRITE,
    nj: int = _NJ,
) -> None:
    """Combine data dirs (like Kaldi's combine_data.sh); conflicting duplicate ids are an error."""
    from audiokit.data.operations import combine_data_dirs

    res = combine_data_dirs(dst, srcs, overwrite=overwrite, nj=nj)
    console.print(
        f"combined {len(srcs)} dir(s): {len(res.data)} utterance(s) in {res.path}", highlight=False
    )
    for note in res.notes:
        console.print(Text(f"  note: {note}"), soft_wrap=True)


@app.command()
def info(
    data_dir: Path = _DIR,
    nj: int = _NJ,
    allow_pipes: bool = typer.Option(False, "--allow-pipes", help="Run piped wav.scp commands."),
) -> None:
    """Utterances, speakers, hours, duration histogram and vocabulary of a data dir."""
    from audiokit.data.summary import render_summary, summarize

    console.print(render_summary(summarize(data_dir, nj=nj, allow_pipes=allow_pipes)))


@app.command("filter")
def filter_cmd(
    src: Path = typer.Argument(..., help="Source data dir.", show_default=False),
    dst: Path = typer.Argument(..., help="Destination data dir (new).", show_default=False),
    train_config: Path | None = typer.Option(
        None,
        "--train-config",
        help="Training YAML: subsampling, framing and speed factors are read from it.",
    ),
    subsampling: str | None = typer.Option(
        None, "--subsampling", help="conv2d4|conv2d6|conv2d8 (overrides --train-config)."
    ),
    min_frames: int = typer.Option(1, "--min-frames", min=1, help="Fewest feature frames."),
    min_duration: float = typer.Option(0.0, "--min-duration", help="Shortest kept, seconds."),
    max_duration: float | None = typer.Option(
        None, "--max-duration", help="Longest kept, seconds (default: no limit)."
    ),
    tokenizer: Path | None = typer.Option(
        None, "--tokenizer", help="Also drop utterances with more CTC labels than output frames."
    ),
    nj: int = _NJ,
    overwrite: bool = _OVERWRITE,
) -> None:
    """Drop utterances too short for the model's subsampling, too long, or without text."""
    from audiokit.data.filter import FilterRules, filter_data_dir, rules_from_config

    changes = {"min_frames": min_frames, "min_duration": min_duration}
    changes["max_duration"] = max_duration
    if subsampling is not None:
        changes["subsampling"] = subsampling
    if train_config is not None:
        rules = rules_from_config(train_config, **changes)
    else:
        rules = FilterRules(**changes)
    res = filter_data_dir(src, dst, rules, tokenizer=tokenizer, nj=nj, overwrite=overwrite)
    console.print(
        f"kept {res.kept} of {res.total} utterance(s) -> {res.path} (subsampling "
        f"{rules.subsampling or 'none'}: >= {rules.needed_frames()} frames at speed "
        f"{max(rules.speed_factors):g})",
        highlight=False,
        soft_wrap=True,
    )
    for why, utts in res.dropped.items():
        more = ", ..." if len(utts) > SHOWN_SKIPPED else ""
        shown = ", ".join(utts[:SHOWN_SKIPPED]) + more
        console.print(
            Text(f"  dropped {len(utts)}: {why} ({shown})", style="yellow"), soft_wrap=True
        )


# ---- corpus preparation -------------------------------------------------------------------
prepare_app = typer.Typer(
    help="Prepare corpora as Kaldi data dirs: mini-en, mini-zh (synthetic, offline), "
    "librispeech, aishell.",
    add_completion=False,
    no_args_is_help=True,
)
app.add_typer(prepare_app, name="prepare")

_OUT = typer.Argument(..., help="Output folder for the data dirs.", show_default=False)
_DATA_ROOT = typer.Option(None, "--data-root", help="An existing copy of the corpus.")
_DOWNLOAD_DIR = typer.Option(
    None, "--download-dir", help="Download (resumable, md5-checked) and extract here."
)
_PREP_NJ = typer.Option(8, "--nj", min=1, help="Parallel jobs for reading audio headers.")
_PREP_OVERWRITE = typer.Option(
    False, "--overwrite", help="Redo data dirs that already exist in OUT_DIR."
)
SHOWN_SKIPPED = 5  # skipped items listed per reason


def _report_prepared(dirs) -> None:
    for d in dirs:
        state = "already prepared, kept" if d.reused else "written"
        console.print(f"{d.name}: {d.num_utts} utterance(s) -> {d.path} ({state})", highlight=False)
        for why, items in sorted(d.skipped.items()):
            more = ", ..." if len(items) > SHOWN_SKIPPED else ""
            shown = ", ".join(items[:SHOWN_SKIPPED]) + more
            console.print(
                Text(f"  skipped {len(items)}: {why} ({shown})", style="yellow"), soft_wrap=True
            )


@prepare_app.command("mini-en")
def prepare_mini_en_cmd(
    out_dir: Path = _OUT,
    num_utts: int = typer.Option(
        3400, "--num-utts", min=3, help="Utterances in all (3400 = 3000 train, 200 dev, 200 test)."
    ),
    nj: int = typer.Option(2, "--nj", min=1, help="Parallel synthesis processes."),
    seed: int = typer.Option(0, "--seed", help="Seed for text, voices, prosody and noise."),
) -> None:
    """Synthesise the mini_en corpus with espeak-ng voices (offline; about a minute)."""
    from audiokit.data.corpora.mini_en import prepare_mini_en

    res = prepare_mini_en(out_dir, num_utts=num_utts, nj=nj, seed=seed)
    _report_prepared(res.dirs)
    console.print(
        f"synthesised {res.synthesised} utterance(s) in {res.seconds:.1f} s", highlight=False
    )


@prepare_app.command("mini-zh")
def prepare_mini_zh_cmd(
    out_dir: Path = _OUT,
    num_utts: int = typer.Option(
        3400, "--num-utts", min=3, help="Utterances in all (3400 = 3000 train, 200 dev, 200 test)."
    ),
    nj: int = typer.Option(2, "--nj", min=1, help="Parallel synthesis processes."),
    seed: int = typer.Option(0, "--seed", help="Seed for text, voices, prosody and noise."),
) -> None:
    """Synthesise the mini_zh Mandarin corpus with espeak-ng's cmn voice (offline; ~2 minutes)."""
    from audiokit.data.corpora.mini_zh import prepare_mini_zh

    res = prepare_mini_zh(out_dir, num_utts=num_utts, nj=nj, seed=seed)
    _report_prepared(res.dirs)
    console.print(
        f"synthesised {res.synthesised} utterance(s) in {res.seconds:.1f} s", highlight=False
    )


def _parts(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


@prepare_app.command("librispeech")
def prepare_librispeech_cmd(
    out_dir: Path = _OUT,
    parts: str = typer.Option(
        "train-clean-100,dev-clean,test-clean", "--parts", help="Comma-separated parts."
    ),
    data_root: Path | None = _DATA_ROOT,
    download_dir: Path | None = _DOWNLOAD_DIR,
    nj: int = _PREP_NJ,
    overwrite: bool = _PREP_OVERWRITE,
) -> None:
    """LibriSpeech (SLR12): one data dir per part, e.g. OUT_DIR/dev_clean."""
    from audiokit.data.corpora.librispeech import prepare_librispeech

    dirs = prepare_librispeech(out_dir, _parts(parts), data_root=data_root,
                               download_dir=download_dir, nj=nj, overwrite=overwrite)  # fmt: skip
    _report_prepared(dirs)


@prepare_app.command("aishell")
def prepare_aishell_cmd(
    out_dir: Path = _OUT,
    data_root: Path | None = _DATA_ROOT,
    download_dir: Path | None = _DOWNLOAD_DIR,
    nj: int = _PREP_NJ,
    overwrite: bool = _PREP_OVERWRITE,
) -> None:
    """AISHELL-1 (SLR33): OUT_DIR/{train,dev,test}, transcripts as characters."""
    from audiokit.data.corpora.aishell import prepare_aishell

    dirs = prepare_aishell(out_dir, data_root=data_root, download_dir=download_dir, nj=nj,
                           overwrite=overwrite)  # fmt: skip
    _report_prepared(dirs)
