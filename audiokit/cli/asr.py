"""`audiokit asr`: transcribe files and decode data dirs with a packed model dir.

Heavy modules (torch, the model) are imported inside the commands to keep `--help` fast.
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path

import typer

from audiokit.cli import asr_stream
from audiokit.errors import ConfigError

app = typer.Typer(
    help="Speech recognition with a packed model dir (audiokit model pack).",
    add_completion=False,
    no_args_is_help=True,
)

MODEL_ENV = "AUDIOKIT_MODEL"
_NO_MODEL = (
    "no model given: pass --model DIR (a packed model dir), set AUDIOKIT_MODEL or "
    "'default_model:' in ~/.config/audiokit/config.yaml; to get one, train with "
    "egs/mini_en/asr1/run.sh and pass --model exp/.../packed"
)


class Output(str, Enum):
    text = "text"
    json = "json"


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "audiokit" / "config.yaml"


def resolve_model(model: Path | None) -> Path:
    """--model, else $AUDIOKIT_MODEL, else `default_model:` of the user config file."""
    if model is not None:
        return model
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    path = user_config_path()
    if path.is_file():
        import yaml

        try:
            cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{path}: invalid YAML; fix it or pass --model DIR") from None
        if isinstance(cfg, dict) and cfg.get("default_model"):
            return Path(str(cfg["default_model"])).expanduser()
    raise ConfigError(_NO_MODEL)


_DECODER_HELP = (
    "Decoding method the model offers (default: the model's): CTC models greedy|prefix_beam, "
    "Paraformer greedy|beam, streaming models rnnt|ctc."
)
_MODEL_HELP = "Packed model dir (default: $AUDIOKIT_MODEL or default_model in the user config)."


@app.command("transcribe")
def transcribe(
    files: list[Path] = typer.Argument(..., help="Audio files (wav, flac, ogg, mp3, sph).", show_default=False),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP, show_default=False),
    output: Output = typer.Option(Output.text, "--output", help="text: 'PATH<TAB>TEXT' lines; json: one object per line."),
    decoder: str | None = typer.Option(None, "--decoder", help=_DECODER_HELP, show_default=False),
    beam_size: int | None = typer.Option(None, "--beam-size", help="Beam width for beam decoders (default: the model's, 10)."),
    att_context: str | None = typer.Option(None, "--att-context", help="Streaming models: attention context L,R (default: the model's first).", show_default=False),
    lang: str | None = typer.Option(None, "--lang", help="OWSM-CTC: language of the speech (eng, zho, ...; auto: identify it first).", show_default=False),
    task: str | None = typer.Option(None, "--task", help="OWSM-CTC: asr, or st_<lang> to translate into <lang>, e.g. st_zho (default asr).", show_default=False),
    prompt: str | None = typer.Option(None, "--prompt", help="OWSM-CTC: text prompt (e.g. the previous utterance's text).", show_default=False),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    window: float | None = typer.Option(None, "--window", help="Seconds per window for long files (default 30)."),
    overlap: float | None = typer.Option(None, "--overlap", help="Seconds of context each side of a window (default 2)."),
) -> None:  # fmt: skip
    """Transcribe audio files; a file that fails gets an error line, the others still run.

    Exit status 1 when any file failed.
    """
    from audiokit.asr.inference import Recognizer
    from audiokit.cli._console import err_console

    if beam_size is not None and beam_size < 1:
        raise ConfigError(f"--beam-size {beam_size} must be at least 1")
    given = {"att_context": att_context, "lang": lang, "task": task, "prompt": prompt}
    options = {k: v for k, v in given.items() if v is not None}  # only what was given
    rec = Recognizer(
        resolve_model(model),
        device=device,
        decoder=decoder,
        beam_size=beam_size,
        window_s=window,
        overlap_s=overlap,
        options=options or None,
    )
    with err_console.status(f"transcribing {len(files)} file(s)"):
        results = rec.transcribe(files, on_error="keep")
    failed = 0
    for r in results:
        if r.error is not None:
            failed += 1
        if output is Output.json:
            typer.echo(json.dumps(r.to_dict(), ensure_ascii=False))
        elif r.error is not None:
            err_console.print(f"error: {r.error}", markup=False, highlight=False, soft_wrap=True)
        else:
            typer.echo(f"{r.path}\t{r.text}")
    if failed:
        err_console.print(f"{failed} of {len(results)} file(s) failed", highlight=False)
        raise typer.Exit(1)


app.command("stream")(asr_stream.stream)


@app.command("align")
def align(
    files: list[Path] = typer.Argument(..., help="Audio files (wav, flac, ogg, mp3, sph).", show_default=False),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP, show_default=False),
    text: str | None = typer.Option(None, "--text", help="Transcript to align (one file only; default: the model's own greedy transcript).", show_default=False),
    lang: str | None = typer.Option(None, "--lang", help="OWSM-CTC: language of the speech (eng, zho, ...; auto: identify it first).", show_default=False),
    task: str | None = typer.Option(None, "--task", help="OWSM-CTC: asr or st_<lang>, e.g. st_zho (default asr).", show_default=False),
    prompt: str | None = typer.Option(None, "--prompt", help="OWSM-CTC: text prompt.", show_default=False),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
) -> None:  # fmt: skip
    """Word start/end times by CTC forced alignment: one JSON object per file with `path`,
    `text` and `words` ([{word, start, end, score}], seconds). CTC models only (conformer_ctc,
    owsm_ctc); each file is aligned in one pass. Exit status 1 when any file failed."""
    from audiokit.asr.ctc_align import Alignment, align_audio
    from audiokit.asr.inference import Recognizer
    from audiokit.cli._console import err_console
    from audiokit.errors import AudiokitError

    if text is not None and len(files) != 1:
        raise ConfigError(
            f"--text applies to one file but {len(files)} were given; align them one by one"
        )
    given = {"lang": lang, "task": task, "prompt": prompt}
    options = {k: v for k, v in given.items() if v is not None}
    rec = Recognizer(resolve_model(model), device=device, options=options or None)
    failed = 0
    for f in files:
        try:
            result = align_audio(rec, f, text)
        except (AudiokitError, OSError) as e:
            failed += 1
            result = Alignment(
                str(f), error=str(e) if isinstance(e, AudiokitError) else f"{f}: {e}"
            )
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    if failed:
        err_console.print(f"{failed} of {len(files)} file(s) failed", highlight=False)
        raise typer.Exit(1)


@app.command("decode")
def decode(
    data: Path = typer.Option(..., "--data", help="Kaldi data dir (wav.scp[, segments, text]).", show_default=False),
    out: Path = typer.Option(..., "--out", help="Output dir for text, token_ids and the scores.", show_default=False),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP, show_default=False),
    nj: int = typer.Option(1, "--nj", help="Parallel decoding processes."),
    batch_size: int = typer.Option(16, "--batch-size", help="Utterances loaded and decoded together."),
    decoder: str | None = typer.Option(None, "--decoder", help=_DECODER_HELP, show_default=False),
    beam_size: int | None = typer.Option(None, "--beam-size", help="Beam width for beam decoders."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
) -> None:  # fmt: skip
    """Decode every utterance of a data dir; write OUT/text and OUT/token_ids, and score them
    against DATA/text when it exists (OUT/result.txt, OUT/wer, OUT/cer)."""
    from rich.progress import Progress

    from audiokit.asr.decode_data import decode_data_dir
    from audiokit.cli._console import err_console
    from audiokit.data.data_dir import DataDir

    total = len(DataDir.load(data).utt_ids)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("decoding", total=total)
        summary = decode_data_dir(
            resolve_model(model), data, out, nj=nj, batch_size=batch_size,
            decoder=decoder, beam_size=beam_size, device=device,
            progress=lambda n: bar.advance(task, n),
        )  # fmt: skip
    if summary.failed:
        shown = list(summary.failed.items())[:5]
        for utt, msg in shown:
            err_console.print(
                f"warning: skipped {utt}: {msg}", markup=False, highlight=False, soft_wrap=True
            )
        more = len(summary.failed) - len(shown)
        err_console.print(
            f"warning: {len(summary.failed)} of {summary.num_utts} utterance(s) failed"
            + (f" (+{more} more)" if more > 0 else "")
            + f"; see {out / 'failed'}",
            markup=False,
            highlight=False,
        )
    typer.echo(f"decoded {summary.num_utts - len(summary.failed)} utterance(s) into {out}/text")
    for line in summary.lines:
        typer.echo(line)
    if summary.lines:
        typer.echo(f"Wrote {out / 'result.txt'}")
