"""Checkpoints: atomic save, safe load, keep-N-best bookkeeping and weight averaging.

A checkpoint is one `torch.save`d dict of tensors and plain Python values only (no numpy
objects, no pickled classes), so `torch.load(weights_only=True)` reads it. The trainer writes
`epoch_E.pt` after each epoch's validation and `step_S.pt` every `save_interval_steps`;
`exp_dir/latest` names the newest one. `exp_dir/valid_metrics.jsonl` has one line per
epoch: {"epoch", "step", "checkpoint", <metrics>}. After each save, only the `keep_best`
epoch checkpoints with the lowest metric and the latest checkpoint remain.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiokit.errors import ConfigError
from audiokit.utils.atomic import atomic_path, atomic_write

LATEST_NAME = "latest"
METRICS_NAME = "valid_metrics.jsonl"
_CKPT_RE = re.compile(r"^(epoch|step)_(\d+)\.pt$")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write `state` with torch.save through a temporary file renamed on success."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with `weights_only=True` (no arbitrary code runs on load)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found; check the path or the exp dir")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"{path}: not a readable audiokit checkpoint ({first}); delete it or pick another"
        ) from e


def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and every CUDA device), Python `random` and numpy, as plain data."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def read_metrics(exp_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of `valid_metrics.jsonl` (empty when absent)."""
    path = Path(exp_dir) / METRICS_NAME
    if not path.is_file():
        return []
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ConfigError(f"{path}:{n}: not a JSON line; fix or delete the line") from None
    return records


def best_records(
    records: list[dict[str, Any]], metric: str, num: int, exp_dir: Path | None = None
) -> list[dict[str, Any]]:
    """The `num` records with the lowest `metric` (ties: later epoch first), optionally only
    those whose checkpoint file still exists in `exp_dir`."""
    usable = [r for r in records if isinstance(r.get(metric), int | float)]
    if exp_dir is not None:
        usable = [r for r in usable if (exp_dir / r["checkpoint"]).is_file()]
    return sorted(usable, key=lambda r: (r[metric], -r["epoch"]))[:num]


class CheckpointManager:
    """Saves checkpoints into `exp_dir`, tracks validation records and prunes old files."""

    def __init__(self, exp_dir: str | os.PathLike, keep_best: int, metric: str) -> None:
        self.exp_dir = Path(exp_dir)
        self.keep_best = keep_best
        self.metric = metric
        self.records: list[dict[str, Any]] = read_metrics(self.exp_dir)

    def latest(self) -> Path | None:
        """The newest checkpoint, or None when the exp dir has none."""
        pointer = self.exp_dir / LATEST_NAME
        if not pointer.is_file():
            return None
        path = self.exp_dir / pointer.read_text(encoding="utf-8").strip()
        if not path.is_file():
            raise ConfigError(
                f"{pointer} names {path.name}, which is missing; point it at an existing "
                "epoch_*.pt/step_*.pt or start a new --exp-dir"
            )
        return path

    def truncate_after(self, step: int) -> None:
        """Forget validation records newer than a checkpoint being resumed from."""
        self.records = [r for r in self.records if r["step"] <= step]
        self._write_records()

    def save(self, state: dict[str, Any], name: str, record: dict[str, Any] | None = None) -> Path:
        """Write checkpoint `name`, point `latest` at it, add `record` and prune."""
        path = self.exp_dir / name
        save_checkpoint(path, state)
        with atomic_write(self.exp_dir / LATEST_NAME) as f:
            f.write(name + "\n")
        if record is not None:
            if self.metric not in record:
                raise ConfigError(
                    f"train.best_metric={self.metric!r} is not among the validation metrics "
                    f"({', '.join(k for k in record if k not in ('epoch', 'step', 'checkpoint'))})"
                    "; set it to one of them"
                )
            self.records.append({**record, "checkpoint": name})
            self._write_records()
        self.prune(keep=name)
        return path

    def _write_records(self) -> None:
        with atomic_write(self.exp_dir / METRICS_NAME) as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")

    def prune(self, keep: str) -> None:
        """Delete checkpoints other than `keep` and the `keep_best` best epoch checkpoints."""
        wanted = {keep} | {
            r["checkpoint"] for r in best_records(self.records, self.metric, self.keep_best)
        }
        for path in self.exp_dir.iterdir():
            if _CKPT_RE.match(path.name) and path.name not in wanted:
                path.unlink(missing_ok=True)


def average_checkpoints(
    paths: list[str | os.PathLike], key: str = "model"
) -> dict[str, torch.Tensor]:
    """Element-wise mean of the `key` state dicts in `paths` (float64 sums, original dtypes).

    Non-floating tensors (step counters, integer buffers) are taken from the last checkpoint.
    """
    if not paths:
        raise ConfigError("no checkpoints to average; train first or lower --num")
    sums: dict[str, torch.Tensor] = {}
    last: dict[str, torch.Tensor] = {}
    for path in paths:
        ckpt = load_checkpoint(path)
        if key not in ckpt or ckpt[key] is None:
            raise ConfigError(f"{path}: checkpoint has no '{key}' weights; use another key")
        state = ckpt[key]["model"] if key == "ema" else ckpt[key]
        if sums and state.keys() != last.keys():
            raise ConfigError(f"{path}: its parameters differ from {paths[0]}; average one run")
        for name, t in state.items():
            if t.is_floating_point():
                acc = t.to(torch.float64)
                sums[name] = acc if name not in sums else sums[name] + acc
        last = state
    return {
        name: (sums[name] / len(paths)).to(t.dtype) if name in sums else t.clone()
        for name, t in last.items()
    }
