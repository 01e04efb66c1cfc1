"""Shared console objects and small helpers for the CLI modules."""

from rich.console import Console

console = Console()
err_console = Console(stderr=True)
