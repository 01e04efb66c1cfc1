"""The `audiokit` command: global options, group registration and error handling."""

from __future__ import annotations

import sys

import typer

from audiokit import __version__
from audiokit.cli import asr, codec, data, feats, model, score, tokenizer, train
from audiokit.cli._console import err_console
from audiokit.cli._planned import add_planned
from audiokit.errors import AudiokitError

app = typer.Typer(
    name="audiokit",
    help="Speech and audio toolkit: recognition, codecs and generation.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        print(f"audiokit {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    _state["debug"] = debug


app.add_typer(asr.app, name="asr")
app.add_typer(codec.app, name="codec")
for _name in ("tts", "generate"):
    add_planned(app, _name)
app.add_typer(data.app, name="data")
app.add_typer(feats.app, name="feats")
app.add_typer(tokenizer.app, name="tokenizer")
app.command("train", help=train.HELP)(train.train)
app.command("score", help=score.HELP)(score.score)
app.add_typer(model.app, name="model")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; user errors print one line and exit 2."""
    if "--debug" in (argv if argv is not None else sys.argv[1:]):
        _state["debug"] = True
    try:
        app(args=argv, prog_name="audiokit")
    except AudiokitError as e:
        if _state["debug"]:
            raise
        from rich.markup import escape  # messages may hold brackets, e.g. 'audiokit[mic]'

        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
