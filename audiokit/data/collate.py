"""Padding ASR items into a :class:`Batch`, and a DataLoader that resumes mid-epoch exactly."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from audiokit.train.interface import IGNORE_ID, Batch


class PinnableBatch(Batch):
    """A :class:`Batch` that DataLoader's ``pin_memory=True`` can pin (it looks for this method)."""

    def pin_memory(self) -> PinnableBatch:
        pin = lambda t: t.pin_memory() if isinstance(t, torch.Tensor) else t  # noqa: E731
        return PinnableBatch(
            pin(self.feats), pin(self.feat_lengths), pin(self.targets), pin(self.target_lengths),
            self.utt_ids, {k: pin(v) for k, v in self.extra.items()},
        )  # fmt: skip


def collate_asr(items: Sequence[dict[str, Any] | None]) -> Batch | None:
    """Pad dataset items into a Batch; None items (skipped bad utterances) are dropped.

    Items hold ``feats`` (T, D) (or (T,) waveforms) and ``targets`` (U,). Returns feats
    (B, T_max, D) zero-padded, feat_lengths (B,) int64, targets (B, U_max) padded with
    IGNORE_ID (-1), target_lengths (B,) int64, in item order. None if every item was None.
    Items with an ``extra`` dict of 1-D int tensors (every item the same keys) give
    ``Batch.extra[name]`` (B, L_max) padded with IGNORE_ID plus its lengths (B,), named like
    ``target_lengths``: ``prompt`` -> ``prompt_lengths``, ``targets_asr`` -> ``target_asr_lengths``.
    """
    items = [x for x in items if x is not None]
    if not items:
        return None
    feats = [x["feats"] for x in items]
    targets = [x["targets"].to(torch.int64) for x in items]
    extra: dict[str, torch.Tensor] = {}
    for name in items[0].get("extra", {}):
        seqs = [x["extra"][name].to(torch.int64) for x in items]
        extra[name] = pad_sequence(seqs, batch_first=True, padding_value=IGNORE_ID)
        lengths = name.replace("targets", "target", 1) + "_lengths"
        extra[lengths] = torch.tensor([s.shape[0] for s in seqs], dtype=torch.int64)
    return PinnableBatch(
        feats=pad_sequence(feats, batch_first=True, padding_value=0.0),
        feat_lengths=torch.tensor([f.shape[0] for f in feats], dtype=torch.int64),
        targets=pad_sequence(targets, batch_first=True, padding_value=IGNORE_ID),
        target_lengths=torch.tensor([t.shape[0] for t in targets], dtype=torch.int64),
        utt_ids=[x["utt_id"] for x in items],
        extra=extra,
    )


def seed_worker(worker_id: int) -> None:
    """Seed numpy and `random` in a worker from torch's per-worker seed (for third-party code:
    audiokit's own augmentation uses per-item generators and no global RNG)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class _EpochTagged:
    """Batch sampler view yielding ``(epoch, index)`` pairs, so workers never need set_epoch."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.sampler:
            epoch = self.sampler.epoch
            yield [(epoch, i) for i in batch]


class ResumableDataLoader(DataLoader):
    """DataLoader over a :class:`DynamicBucketSampler` that counts batches *delivered* to the
    training loop, so ``state_dict()`` is exact even while workers prefetch batches ahead.

    Batches that are None (every item skipped as bad) count as consumed but are not yielded.
    """

    def __init__(self, dataset, batch_sampler, **kwargs: Any) -> None:
        self.bucket_sampler = batch_sampler
        if hasattr(batch_sampler, "external_count"):
            batch_sampler.external_count = True
        tagged = getattr(dataset, "accepts_epoch_index", False)
        super().__init__(
            dataset, batch_sampler=_EpochTagged(batch_sampler) if tagged else batch_sampler,
            **kwargs,
        )  # fmt: skip

    def __iter__(self) -> Iterator[Batch]:
        sampler = self.bucket_sampler
        sampler.consumed = getattr(sampler, "resume_at", 0)
        for batch in super().__iter__():
            sampler.consumed += 1
            if batch is not None:
                yield batch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch on the sampler and the dataset (keeps a restored position)."""
        self.bucket_sampler.set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.bucket_sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.bucket_sampler.load_state_dict(state)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(state["epoch"]))


def make_dataloader(
    dataset, sampler, num_workers: int = 0, pin_memory: bool = False, prefetch_factor: int = 2
) -> ResumableDataLoader:
    """A :class:`ResumableDataLoader` yielding padded :class:`Batch` es (see :func:`collate_asr`).

    Worker RNGs are seeded from a generator made from ``sampler.seed``, so creating the loader
    never draws from (and shifts) the global torch RNG; batches are identical for any
    `num_workers` because every item's randomness is its own.
    """
    seed = int(getattr(sampler, "seed", 0))
    extra = {"prefetch_factor": prefetch_factor} if num_workers > 0 else {}
    return ResumableDataLoader(
        dataset, sampler, num_workers=num_workers, pin_memory=pin_memory,
        collate_fn=collate_asr, worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed), **extra,
    )  # fmt: skip
