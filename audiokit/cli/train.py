"""`audiokit train`: train a model from a YAML config (single process or under torchrun).

Registered by audiokit/cli/main.py as `app.command("train", help=HELP)(train)`. Heavy modules
(torch) are imported inside the command to keep `audiokit --help` fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

HELP = "Train a model from a YAML config (resumable; multi-GPU under torchrun)."


def train(
    config: Path | None = typer.Option(
        None,
        "--config",
        help="YAML config (model, frontend, data, optim, scheduler, train). With --resume it "
        "defaults to EXP_DIR/config.yaml.",
        show_default=False,
    ),
    exp_dir: Path = typer.Option(
        ..., "--exp-dir", help="Where checkpoints, logs and config.yaml go.", show_default=False
    ),
    resume: bool = typer.Option(
        False,
        "--resume/--no-resume",
        help="Continue exactly from EXP_DIR's latest checkpoint (starts fresh if it has none).",
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto, cpu, cuda or cuda:N (overrides train.device)."
    ),
    overrides: list[str] | None = typer.Argument(
        None,
        help="key=value settings applied on top of the config, e.g. train.epochs=3 "
        "model.args.num_layers=2 (values are parsed as YAML).",
        show_default=False,
    ),
) -> None:
    """Train a model from a YAML config (resumable; multi-GPU under torchrun)."""
    from audiokit.errors import ConfigError
    from audiokit.train.builders import CONFIG_NAME, run_training
    from audiokit.train.config import load_config

    if config is None:
        if not resume:
            raise ConfigError("--config is required unless --resume continues an existing run")
        config = exp_dir / CONFIG_NAME
        if not config.is_file():
            raise ConfigError(f"{config} not found; pass --config to start a run in {exp_dir}")
    settings = list(overrides or [])
    if device is not None:
        settings.append(f"train.device={device}")
    cfg = load_config(config, settings)
    if resume and not (exp_dir / "latest").is_file():
        typer.echo(f"no checkpoint in {exp_dir}; starting a new run", err=True)
    summary = run_training(cfg, exp_dir, resume=resume)
    if summary["latest"] is not None:
        valid = ", ".join(f"{k} {v:.4g}" for k, v in summary["valid"].items())
        typer.echo(
            f"trained to step {summary['step']} (epoch {summary['epoch']}); "
            f"skipped updates: {summary['skipped']}" + (f"; valid: {valid}" if valid else "")
        )
        typer.echo(f"latest checkpoint: {summary['latest']}")
