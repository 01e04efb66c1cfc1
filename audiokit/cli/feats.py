"""`audiokit feats` commands (being built)."""

import typer

app = typer.Typer(help="feats commands.", add_completion=False, no_args_is_help=True)


@app.command("placeholder-feats", hidden=True)
def _placeholder() -> None:
    pass
