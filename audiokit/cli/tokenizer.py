"""`audiokit tokenizer` commands (being built)."""

import typer

app = typer.Typer(help="tokenizer commands.", add_completion=False, no_args_is_help=True)


@app.command("placeholder-tokenizer", hidden=True)
def _placeholder() -> None:
    pass
