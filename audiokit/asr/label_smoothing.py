"""Label-smoothed cross-entropy as ESPnet/FunASR's ``LabelSmoothingLoss`` computes it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from audiokit.train.interface import IGNORE_ID


def label_smoothing_loss(
    logits: torch.Tensor, targets: torch.Tensor, smoothing: float, normalize_length: bool
) -> torch.Tensor:
    """KL(smoothed one-hot || softmax(logits)) summed over real tokens (FunASR/ESPnet).

    ``logits (B, N, V)``, ``targets (B, N)`` padded with -1. The smoothed target puts
    ``1 - smoothing`` on the label and ``smoothing / (V - 1)`` elsewhere. Divided by the
    number of real tokens (``normalize_length``) or by the batch size.
    """
    v = logits.shape[-1]
    logp = F.log_softmax(logits.float(), dim=-1)
    real = targets != IGNORE_ID
    off, on = smoothing / (v - 1), 1.0 - smoothing
    gold = logp.gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)
    # sum_v t_v (log t_v - logp_v) with t = off everywhere and `on` at the label
    entropy = (v - 1) * off * np.log(off) if off > 0 else 0.0
    entropy = entropy + (on * np.log(on) if on > 0 else 0.0)
    kl = entropy - off * (logp.sum(-1) - gold) - on * gold
    total = kl.masked_fill(~real, 0.0).sum()
    denom = real.sum().clamp_min(1) if normalize_length else logits.shape[0]
    return total / denom
