"""Learning-rate schedules stepped once per optimiser update.

Each is an `LRScheduler` whose lr is `base_lr * factor(step)`; the state (`last_epoch` = steps
taken, base lrs, schedule constants) is plain numbers, so it round-trips through
`torch.load(weights_only=True)` and a resumed run gets the same lr at the same step.

- `noam`: ESPnet's WarmupLR. Linear rise to `base_lr` at `warmup_steps`, then
  `base_lr * sqrt(warmup / step)` (the Transformer schedule with its peak set to `optim.lr`).
- `warmup_cosine`: linear warmup to `base_lr`, cosine decay to `min_lr` at `total_steps`.
- `warmup_constant`: linear warmup to `base_lr`, then constant.
"""

from __future__ import annotations

import abc
import math

import torch
from torch.optim.lr_scheduler import LRScheduler

from audiokit.errors import ConfigError


class _StepScheduler(LRScheduler, metaclass=abc.ABCMeta):
    """lr_i = lr_at(base_lr_i, n), n = number of `step()` calls made after construction."""

    @abc.abstractmethod
    def lr_at(self, base: float, step: int) -> float:
        """The learning rate after `step` steps for a group whose base rate is `base`."""

    def get_lr(self) -> list[float]:
        return [self.lr_at(base, self.last_epoch) for base in self.base_lrs]


class NoamScheduler(_StepScheduler):
    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
        self.warmup_steps = max(1, int(warmup_steps))
        super().__init__(optimizer)

    def lr_at(self, base: float, step: int) -> float:
        n = step + 1  # ESPnet counts from 1 so the first update has a non-zero lr
        return base * self.warmup_steps**0.5 * min(n**-0.5, n * self.warmup_steps**-1.5)


class WarmupConstantScheduler(_StepScheduler):
    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int) -> None:
        self.warmup_steps = int(warmup_steps)
        super().__init__(optimizer)

    def lr_at(self, base: float, step: int) -> float:
        if self.warmup_steps <= 0:
            return base
        return base * min(1.0, (step + 1) / self.warmup_steps)


class WarmupCosineScheduler(_StepScheduler):
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int,
        total_steps: int,
        min_lr: float = 0.0,
    ) -> None:
        if total_steps <= warmup_steps:
            raise ConfigError(
                f"scheduler.warmup_steps={warmup_steps} >= the {total_steps} training steps; "
                "lower warmup_steps or train longer"
            )
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.min_lr = float(min_lr)
        super().__init__(optimizer)

    def lr_at(self, base: float, step: int) -> float:
        if step < self.warmup_steps:
            return base * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    min_lr: float = 0.0,
) -> LRScheduler:
    """The schedule called `name` (see the module docstring) over `total_steps` updates."""
    if name == "noam":
        return NoamScheduler(optimizer, warmup_steps)
    if name == "warmup_constant":
        return WarmupConstantScheduler(optimizer, warmup_steps)
    if name == "warmup_cosine":
        return WarmupCosineScheduler(optimizer, warmup_steps, total_steps, min_lr)
    raise ConfigError(
        f"scheduler.name={name!r} is unknown; use noam, warmup_cosine or warmup_constant"
    )
