"""What a model must offer to be trained by :mod:`audiokit.train`.

The training loop knows nothing model-specific: it moves a batch to the device, calls
`model.training_losses(batch)`, back-propagates `["loss"]`, and logs every other scalar.
Validation calls `model.validation_metrics(batch)` under `torch.no_grad()` and averages each
value over batches weighted by `batch.num_items` (utterances); the metric chosen to keep the N
best checkpoints (e.g. "loss", "cer") is one of those keys.

Models trained with several optimisers (GAN codecs: generator and discriminator) additionally
define `optimizer_groups() -> dict[str, Iterable[Parameter]]` and take `group=` in
`training_losses(batch, group=name)`; the loop then steps each group's optimiser on the loss
returned for it, in the order of the dict. Single-optimiser models define neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch


@dataclass
class Batch:
    """A padded mini-batch of utterances (ASR layout; other tasks add fields in `extra`).

    feats:          (B, T, D) float features (fbank) — or (B, T) waveforms when the model has
                    its own frontend; padding beyond `feat_lengths` is zero.
    feat_lengths:   (B,) int64 valid frames (or samples) per utterance.
    targets:        (B, U) int64 token ids padded with -1 (`IGNORE_ID`).
    target_lengths: (B,) int64 valid tokens per utterance.
    utt_ids:        the B utterance ids, in batch order.
    extra:          anything task-specific (e.g. {"text": [...], "lang": ...}).
    """

    feats: torch.Tensor
    feat_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    utt_ids: list[str]
    extra: dict = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.utt_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(
            move(self.feats),
            move(self.feat_lengths),
            move(self.targets),
            move(self.target_lengths),
            self.utt_ids,
            {k: move(v) if isinstance(v, torch.Tensor) else v for k, v in self.extra.items()},
        )


IGNORE_ID = -1


@runtime_checkable
class TrainableModel(Protocol):
    def training_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return {"loss": scalar to minimise, other scalar tensors to log (e.g. "ctc", "acc")}."""
        ...

    def validation_metrics(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Return scalar metrics for this batch (lower is better for the keep-best metric)."""
        ...
