"""`audiokit data` commands (being built)."""

import typer

app = typer.Typer(help="data commands.", add_completion=False, no_args_is_help=True)


@app.command("placeholder-data", hidden=True)
def _placeholder() -> None:
    pass
