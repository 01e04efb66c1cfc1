"""Command-line interface: one typer sub-app per group; parsing and printing only."""
