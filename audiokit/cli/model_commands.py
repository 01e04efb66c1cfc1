"""`audiokit model pack` and `audiokit model info` (registered into the `model` group).

Heavy modules (torch, safetensors) are imported inside the commands to keep `--help` fast.
"""

from __future__ import annotations

from pathlib import Path

import typer


def pack(
    exp_dir: Path = typer.Option(
        ...,
        "--exp-dir",
        help="A training directory (audiokit train --exp-dir).",
        show_default=False,
    ),
    out: Path = typer.Option(
        ..., "--out", help="The packed model dir to write.", show_default=False
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="Weights to pack: .safetensors or a checkpoint .pt (default: the newest "
        "avg_*.safetensors, else the best checkpoint).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out dir."),
) -> None:
    """Pack a training run into a model dir: model.yaml, model.safetensors, tokenizer, CMVN, meta."""
    from audiokit.model_dir import WEIGHTS, pack_model, read_model_config

    out_dir = pack_model(exp_dir, out, weights=weights, overwrite=overwrite)
    cfg = read_model_config(out_dir)
    typer.echo(f"packed {cfg.meta.get('weights')} from {exp_dir} ({cfg.architecture})")
    size = (out_dir / WEIGHTS).stat().st_size
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    typer.echo(f"wrote {out_dir} ({shown} of weights)")


def info(
    model_dir: Path = typer.Argument(..., help="A packed model dir.", show_default=False),
) -> None:
    """Show a packed model: architecture, parameters, frontend, vocabulary and provenance."""
    from rich.table import Table

    from audiokit.cli._console import console
    from audiokit.model_dir import count_parameters, load_model_dir, load_model_tokenizer

    model, cfg = load_model_dir(model_dir)
    tokenizer = load_model_tokenizer(cfg)
    table = Table(title=str(model_dir), show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    n = count_parameters(model)
    table.add_row("architecture", cfg.architecture)
    table.add_row("parameters", f"{n:,} ({n / 1e6:.2f} M)")
    keys = ("d_model", "num_layers", "num_heads", "ff_dim", "subsampling")
    shape = ", ".join(f"{k}={cfg.args[k]}" for k in keys if k in cfg.args)
    if shape:
        table.add_row("size", shape)
    fe = cfg.frontend or {}
    fe_text = ", ".join(f"{k}={v}" for k, v in fe.items()) or "none (raw audio)"
    table.add_row("frontend", fe_text)
    table.add_row("sample rate", f"{cfg.sample_rate} Hz")
    table.add_row("cmvn", cfg.cmvn or "none")
    table.add_row("tokenizer", f"{tokenizer.type}, {tokenizer.vocab_size} tokens")
    table.add_row("decoding", ", ".join(f"{k}={v}" for k, v in cfg.decoding.items()))
    meta = cfg.meta
    for key in (
        "source",
        "exp_dir",
        "weights",
        "averaged",
        "git_commit",
        "date",
        "audiokit_version",
    ):
        if meta.get(key) not in (None, "", []):
            value = meta[key]
            table.add_row(
                key.replace("_", " "), " ".join(value) if isinstance(value, list) else str(value)
            )
    console.print(table)
