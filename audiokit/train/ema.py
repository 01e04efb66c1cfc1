"""Exponential moving average of a model's weights (evaluated and saved beside the raw weights).

`shadow = decay * shadow + (1 - decay) * param` after every optimiser update, for floating
parameters and buffers; integer buffers (e.g. BatchNorm's `num_batches_tracked`) are copied.
The first updates use `min(decay, (1 + n) / (10 + n))` so the average is not dominated by the
random initialisation (as in TensorFlow's ExponentialMovingAverage with num_updates).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Holds `module`, a frozen copy of the model whose weights are the running average."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        src = model.state_dict()
        dst = self.module.state_dict()
        return [dst[k] for k in dst], [src[k] for k in dst]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        n = self.num_updates
        decay = min(self.decay, (1.0 + n) / (10.0 + n))
        shadow, current = self._pairs(model)
        floats = [(s, c) for s, c in zip(shadow, current, strict=True) if s.is_floating_point()]
        if floats:  # one fused kernel per dtype/device group instead of a loop of small ops
            torch._foreach_lerp_(
                [s for s, _ in floats], [c.detach().to(s.dtype) for s, c in floats], 1.0 - decay
            )
        for s, c in zip(shadow, current, strict=True):
            if not s.is_floating_point():
                s.copy_(c)

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "model": self.module.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.module.load_state_dict(state["model"])
