"""Training logs: tensorboard scalars, `train_log.jsonl`, and loss/metric curves as a PNG.

Only the main process (rank 0) writes. Records are kept in memory and `train_log.jsonl` is
rewritten atomically whenever a checkpoint is saved, so the log always matches the latest
checkpoint; tensorboard (`exp_dir/tensorboard`) is the live view and is purged back to the
resumed step on `--resume`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from audiokit.utils.atomic import atomic_path, atomic_write

LOG_NAME = "train_log.jsonl"
CURVES_NAME = "train_curves.png"


def progress_bar(enabled: bool):
    """A rich progress bar for the epoch's batches (a no-op when disabled)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not enabled,
        transient=True,
    )


def format_record(prefix: str, record: dict[str, Any]) -> str:
    """One log line: `train step 25 epoch 1: loss 81.2 ctc 81.2 lr 3.3e-04 ...`."""
    head = f"{prefix} step {record['step']}" + (
        f" epoch {record['epoch']}" if "epoch" in record else ""
    )
    parts = [
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in record.items()
        if k not in ("step", "epoch")
    ]
    return f"{head}: " + " ".join(parts)


class TrainLogger:
    """Collects `{"step", ...}` training records and per-epoch validation records."""

    def __init__(
        self, exp_dir: str | os.PathLike, enabled: bool, resume_step: int = 0, echo: bool = False
    ) -> None:
        self.exp_dir = Path(exp_dir)
        self.enabled = enabled
        # Without a progress bar (logs, batch jobs) each record is also printed as one line.
        self.echo = echo
        self.records: list[dict[str, Any]] = []
        self._writer = None
        if not enabled:
            return
        path = self.exp_dir / LOG_NAME
        if resume_step > 0 and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            self.records = [json.loads(x) for x in lines if x.strip()]
            self.records = [r for r in self.records if r["step"] <= resume_step]
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a killed run logged after the checkpoint being resumed.
        self._writer = SummaryWriter(
            str(self.exp_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
        )

    def log(self, record: dict[str, Any], prefix: str = "train") -> None:
        """Add a record (needs "step"); numbers go to tensorboard as `prefix/name`."""
        if not self.enabled:
            return
        self.records.append({"kind": prefix, **record})
        if self.echo:
            print(format_record(prefix, record), file=sys.stderr, flush=True)
        step = int(record["step"])
        for name, value in record.items():
            if name != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                self._writer.add_scalar(f"{prefix}/{name}", value, step)

    def flush(self) -> None:
        """Rewrite `train_log.jsonl` (atomically) and flush tensorboard."""
        if not self.enabled:
            return
        with atomic_write(self.exp_dir / LOG_NAME) as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self.flush()
            self._writer.close()
            self._writer = None

    def plot(self) -> Path | None:
        """Draw training loss and validation metrics against the step to `train_curves.png`."""
        if not self.enabled or not self.records:
            return None
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt

        train = [r for r in self.records if r["kind"] == "train"]
        valid = [r for r in self.records if r["kind"] == "valid"]
        skip = {"kind", "step", "epoch", "lr", "grad_norm", "skipped", "time"}
        valid_keys = sorted({k for r in valid for k in r if k not in skip})
        panels = 1 + len(valid_keys)
        fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.5), squeeze=False)
        ax = axes[0][0]
        for key in sorted({k for r in train for k in r if k not in skip}):
            pts = [(r["step"], r[key]) for r in train if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key)
        if any("loss" in r for r in valid):
            pts = [(r["step"], r["loss"]) for r in valid if "loss" in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label="valid loss")
        ax.set_title("training")
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
        for ax, key in zip(axes[0][1:], valid_keys, strict=True):
            pts = [(r["step"], r[key]) for r in valid if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
            ax.set_title(f"valid {key}")
            ax.set_xlabel("step")
        fig.tight_layout()
        out = self.exp_dir / CURVES_NAME
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
        return out
