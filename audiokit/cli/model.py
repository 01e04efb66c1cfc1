"""`audiokit model`: checkpoint averaging, packing and inspecting model directories.

Heavy modules (torch, safetensors) are imported inside the commands to keep `--help` fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from audiokit.cli import model_commands

app = typer.Typer(
    help="Average checkpoints, pack a training run into a model dir, inspect one.",
    add_completion=False,
    no_args_is_help=True,
)


@app.command("average")
def average(
    exp_dir: Path = typer.Option(
        ...,
        "--exp-dir",
        help="A training directory (audiokit train --exp-dir).",
        show_default=False,
    ),
    num: int = typer.Option(
        ..., "--num", help="How many of the best checkpoints to average.", show_default=False
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Validation metric to rank by, lower is better (default: train.best_metric).",
    ),
    key: str = typer.Option("model", "--weights", help="model (raw weights) or ema."),
    out: Path | None = typer.Option(
        None, "--out", help="Output .safetensors (default: EXP_DIR/avg_NUM.safetensors)."
    ),
) -> None:
    """Average the NUM best checkpoints (by a validation metric) into one safetensors file."""
    from audiokit.errors import ConfigError
    from audiokit.train.checkpoint import average_checkpoints, best_records, read_metrics
    from audiokit.utils.atomic import atomic_path

    if num < 1:
        raise ConfigError(f"--num {num} must be at least 1")
    if key not in ("model", "ema"):
        raise ConfigError(f"--weights {key}: use model or ema")
    if metric is None:
        metric = _best_metric(exp_dir)
    records = read_metrics(exp_dir)
    if not records:
        raise ConfigError(
            f"{exp_dir}: no valid_metrics.jsonl records; train at least one epoch with a valid set"
        )
    chosen = best_records(records, metric, num, exp_dir)
    if len(chosen) < num:
        raise ConfigError(
            f"{exp_dir}: only {len(chosen)} checkpoint(s) with metric '{metric}' are kept; lower "
            "--num or raise train.keep_best for the next run"
        )
    chosen.sort(key=lambda r: r["step"])  # oldest first: integer buffers come from the newest
    paths = [exp_dir / r["checkpoint"] for r in chosen]
    state = average_checkpoints(paths, key)
    out = out if out is not None else exp_dir / f"avg_{num}.safetensors"
    from safetensors.torch import save_file

    metadata = {"averaged": " ".join(p.name for p in paths), "metric": metric, "weights": key}
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    summary = ", ".join(f"{r['checkpoint']} ({metric} {r[metric]:.4g})" for r in chosen)
    typer.echo(f"averaged {summary}")
    typer.echo(f"wrote {out}")


def _best_metric(exp_dir: Path) -> str:
    """train.best_metric from the run's config.yaml, else "loss"."""
    import yaml

    path = exp_dir / "config.yaml"
    if path.is_file():
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return str((cfg.get("train") or {}).get("best_metric", "loss"))
    return "loss"


app.command("pack")(model_commands.pack)
app.command("info")(model_commands.info)


@app.command("import")
def import_(
    source: str = typer.Option(
        ..., "--from", help="Toolkit the checkpoint comes from: funasr, nemo, espnet, dac, encodec.",
        show_default=False,
    ),
    src: Path = typer.Argument(..., help="The checkpoint: a model folder or file.", show_default=False),
    dst: Path = typer.Argument(..., help="The audiokit model dir to write.", show_default=False),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it is a model dir."),
) -> None:  # fmt: skip
    """Convert another toolkit's checkpoint into an audiokit model dir (no code from it runs)."""
    from audiokit.importers import import_model
    from audiokit.model_dir import count_parameters, load_model_dir

    out = import_model(source, src, dst, overwrite=overwrite)
    model, cfg = load_model_dir(out)
    typer.echo(
        f"wrote {out} ({cfg.architecture}, {count_parameters(model):,} parameters, "
        f"imported from {source})"
    )
