"""The training loop: AMP, accumulation, clipping, non-finite skipping, validation, checkpoints.

Exact resume: a checkpoint records the position `(epoch, batches_consumed)` plus every piece of
mutable state (weights, optimisers, schedulers, scaler, EMA, RNGs, counters). Batch order comes
only from the batch sampler, re-created per epoch from (seed, epoch), and the first
`batches_consumed` batches are skipped on resume; DataLoaders get their own generator, and
validation runs under `fork_rng`, so nothing else draws from the global RNG between a checkpoint
and the next training batch. The sampler's own `state_dict` is not used: a DataLoader prefetches,
so a sampler's counter runs ahead of the batches actually trained on.

Multi-optimiser models (GANs, see :mod:`audiokit.train.interface`) step each group in order on
every batch; they need `accum_grad == 1`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from audiokit.data.collate import seed_worker
from audiokit.errors import ConfigError
from audiokit.train import distributed
from audiokit.train.checkpoint import CheckpointManager, load_checkpoint, rng_state, set_rng_state
from audiokit.train.config import Config
from audiokit.train.ema import EMA
from audiokit.train.logging import TrainLogger, progress_bar

FORMAT_VERSION = 1
MAIN_GROUP = "main"


@dataclass
class TrainData:
    """What the loop iterates: datasets, batch samplers (lists of indices) and the collate."""

    train_set: Any
    train_sampler: Any  # iterable of index lists, len(), optional set_epoch(e)
    valid_set: Any | None
    valid_sampler: Any | None
    collate_fn: Callable
    num_workers: int = 0
    pin_memory: bool = False


class _EpochBatches:
    """Batch sampler for one epoch of the wrapped sampler, minus the first `skip` batches."""

    def __init__(self, sampler: Any, epoch: int, skip: int) -> None:
        self.sampler, self.epoch, self.skip = sampler, epoch, skip

    def _select(self) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def __len__(self) -> int:
        self._select()  # a bucketing sampler's batch count can change with the epoch
        return max(0, len(self.sampler) - self.skip)

    def __iter__(self) -> Iterator[list[int]]:
        self._select()
        return itertools.islice(iter(self.sampler), self.skip, None)


class _Forward(nn.Module):
    """Routes model methods through `forward`, so DistributedDataParallel sees every call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, group: str | None = None) -> dict[str, torch.Tensor]:
        if group is None:
            return self.model.training_losses(batch)
        return self.model.training_losses(batch, group=group)


class Trainer:
    """Train `model` on `data` as `cfg` says, writing into `exp_dir`.

    `optimizers` / `schedulers` map group name -> object (one group, "main", for ordinary
    models). `step_hook(trainer)` runs after every optimiser step (tests use it to interrupt).
    """

    def __init__(
        self,
        model: nn.Module,
        data: TrainData,
        cfg: Config,
        exp_dir: str | os.PathLike,
        optimizers: dict[str, torch.optim.Optimizer],
        schedulers: dict[str, Any],
        device: torch.device,
        dist_info: distributed.DistInfo | None = None,
        step_hook: Callable[[Trainer], None] | None = None,
    ) -> None:
        self.cfg, self.tc = cfg, cfg.train
        self.exp_dir = Path(exp_dir)
        self.data = data
        self.device = device
        self.dist = dist_info or distributed.DistInfo()
        self.step_hook = step_hook
        self.model = model.to(device)
        self.optimizers, self.schedulers = optimizers, schedulers
        self.groups = list(optimizers)
        self.multi = self.groups != [MAIN_GROUP]
        if self.multi and self.tc.accum_grad != 1:
            raise ConfigError(
                f"train.accum_grad={self.tc.accum_grad}: models with several optimisers "
                "(optimizer_groups) need accum_grad 1; raise the batch size instead"
            )
        self._check_amp()
        self.scaler = torch.amp.GradScaler("cuda") if self.tc.amp == "fp16" else None
        self.ema = EMA(self.model, self.tc.ema_decay) if self.tc.ema_decay else None
        self.forward = _Forward(self.model)
        if self.dist.is_distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.forward = DDP(self.forward, device_ids=ids, find_unused_parameters=self.multi)
        self.manager = CheckpointManager(self.exp_dir, self.tc.keep_best, self.tc.best_metric)
        self.step = 0
        self.epoch = 0
        self.batches_consumed = 0
        self.skipped = 0
        self.logger: TrainLogger | None = None
        self._pending_rng: dict | None = None
        self._sums: dict[str, torch.Tensor] = {}
        self._window_loss: dict[str, torch.Tensor] = {}
        self._last_norm = float("nan")

    # ----------------------------------------------------------------- setup
    def _check_amp(self) -> None:
        amp, kind = self.tc.amp, self.device.type
        if amp == "fp16" and kind != "cuda":
            raise ConfigError(
                "train.amp=fp16 needs a CUDA device (GradScaler); use train.amp=bf16 or none"
            )
        if amp == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(
                f"train.amp=bf16: {torch.cuda.get_device_name(self.device)} has no bf16 support; "
                "use train.amp=fp16 or none"
            )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.tc.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.tc.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _loader(self, dataset: Any, batches: Any, epoch: int) -> torch.utils.data.DataLoader:
        gen = torch.Generator()
        gen.manual_seed(self.tc.seed * 1_000_003 + epoch * 1009 + self.dist.rank)
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.data.collate_fn,
            num_workers=self.data.num_workers,
            pin_memory=self.data.pin_memory and self.device.type == "cuda",
            worker_init_fn=seed_worker,
            generator=gen,  # keeps the global RNG untouched (exact resume)
        )

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "step": self.step,
            "epoch": self.epoch,
            "batches_consumed": self.batches_consumed,
            "skipped": self.skipped,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "sampler": self._sampler_state(),
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
        }

    def _sampler_state(self) -> dict[str, int]:
        """Position in the batch plan, and the plan's fingerprint (data + batching settings)."""
        state = {"epoch": self.epoch, "consumed": self.batches_consumed}
        fingerprint = getattr(self.data.train_sampler, "fingerprint", None)
        if fingerprint is not None:
            state["fingerprint"] = int(fingerprint())
        return state

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        if state.get("format") != FORMAT_VERSION:
            raise ConfigError(f"{source}: checkpoint format {state.get('format')} is not supported")
        saved = state["sampler"].get("fingerprint")
        if saved is not None and saved != self._sampler_state().get("fingerprint", saved):
            raise ConfigError(
                f"{source}: the training data, batching settings or number of processes differ "
                "from the run being resumed; resume with the same data, config and process count"
            )
        try:
            self.model.load_state_dict(state["model"])
            for k, o in self.optimizers.items():
                o.load_state_dict(state["optimizers"][k])
            for k, s in self.schedulers.items():
                s.load_state_dict(state["schedulers"][k])
        except (RuntimeError, KeyError, ValueError) as e:
            first = str(e).strip().splitlines()[0]
            raise ConfigError(
                f"{source}: does not match this model/optimiser config ({first}); "
                "resume with the config the run started with"
            ) from e
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.step, self.skipped = state["step"], state["skipped"]
        self.epoch, self.batches_consumed = state["epoch"], state["batches_consumed"]
        self._pending_rng = state["rng"]  # applied once the first loader exists

    def _sync_buffers(self) -> None:
        distributed.broadcast_buffers(self.model)
        if self.ema is not None:
            distributed.broadcast_buffers(self.ema.module)

    def _save(self, name: str, record: dict[str, Any] | None = None) -> None:
        self._sync_buffers()
        if self.dist.is_main:
            self.manager.save(self.state_dict(), name, record)
            self.logger.flush()
        distributed.barrier()

    # ----------------------------------------------------------------- steps
    def _forward_backward(self, batch: Any, group: str | None, sync: bool) -> None:
        no_sync = getattr(self.forward, "no_sync", None)
        ctx = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
        key = group or MAIN_GROUP
        with ctx:
            with self._autocast():
                losses = self.forward(batch, group)
            loss = losses["loss"]
            prefix = f"{group}_" if group else ""
            for name, value in losses.items():
                v = value.detach().float()
                self._sums[prefix + name] = self._sums.get(prefix + name, 0.0) + v
            self._window_loss[key] = self._window_loss.get(key, 0.0) + loss.detach().float()
            scaled = loss / (1 if self.multi else self.tc.accum_grad)
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            scaled.backward()

    def _group_params(self, group: str) -> list[torch.Tensor]:
        return [p for g in self.optimizers[group].param_groups for p in g["params"]]

    def _optimizer_step(self, group: str) -> bool:
        """Clip and step `group`'s optimiser; False (and grads dropped) when it was skipped."""
        opt = self.optimizers[group]
        window = self._window_loss.pop(group, torch.zeros((), device=self.device))
        if distributed.any_true(not bool(torch.isfinite(window)), self.device):
            warnings.warn(
                f"non-finite loss at step {self.step + 1} (epoch {self.epoch + 1}, group "
                f"{group}); skipping this update",
                stacklevel=2,
            )
            self.skipped += 1
            opt.zero_grad(set_to_none=True)
            return False
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        clip = self.tc.grad_clip if self.tc.grad_clip is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self._group_params(group), clip)
        self._last_norm = float(norm)
        stepped = True
        if self.scaler is not None:
            before = self.scaler.get_scale()
            self.scaler.step(opt)
            self.scaler.update()
            stepped = self.scaler.get_scale() >= before  # a lowered scale means a skipped step
        elif math.isfinite(self._last_norm):
            opt.step()
        else:
            warnings.warn(
                f"non-finite gradient norm at step {self.step + 1}; skipping this update",
                stacklevel=2,
            )
            self.skipped += 1
            stepped = False
        opt.zero_grad(set_to_none=True)
        if stepped:
            self.schedulers[group].step()
        return stepped

    def _train_batch(self, batch: Any, boundary: bool) -> bool:
        """One batch; True when it ended with an optimiser update (an accumulation boundary).

        `batch` is None when the collate dropped every item (unreadable audio with skip_bad).
        """
        if batch is None:
            if boundary and MAIN_GROUP in self._window_loss and not self.multi:
                self._optimizer_step(MAIN_GROUP)
                return True
            return False
        batch = batch.to(self.device, non_blocking=True)
        if self.multi:
            for group in self.groups:
                self.model.zero_grad(set_to_none=True)  # drop grads other groups' losses left
                self._forward_backward(batch, group, sync=True)
                self._optimizer_step(group)
            return True
        self._forward_backward(batch, None, sync=boundary or not self.dist.is_distributed)
        if not boundary:
            return False
        self._optimizer_step(MAIN_GROUP)
        return True

    def _log_train(self, n_batches: int) -> None:
        if not self._sums:
            return
        names = list(self._sums)
        values = torch.stack([torch.as_tensor(self._sums[k]) for k in names]).cpu().tolist()
        record = {"step": self.step, "epoch": self.epoch + 1}
        record.update({k: v / n_batches for k, v in zip(names, values, strict=True)})
        record["lr"] = self.optimizers[self.groups[-1]].param_groups[0]["lr"]
        record["grad_norm"] = self._last_norm
        record["skipped"] = self.skipped
        self._sums = {}
        if self.logger is not None:
            self.logger.log(record, "train")

    # ----------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Utterance-weighted mean of `validation_metrics` over the valid set (all ranks)."""
        if self.data.valid_set is None:
            return {}
        self._sync_buffers()
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        batches = _EpochBatches(self.data.valid_sampler, 0, 0)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # validation must not move the RNGs
            for batch in self._loader(self.data.valid_set, batches, 0):
                batch = batch.to(self.device, non_blocking=True)
                with self._autocast():
                    metrics = model.validation_metrics(batch)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().double() * batch.num_items
                count += batch.num_items
        self.model.train()
        names = sorted(sums)
        totals = torch.stack(
            [torch.as_tensor(sums[k], device=self.device) for k in names]
            + [torch.tensor(float(count), dtype=torch.float64, device=self.device)]
        )
        totals = distributed.all_reduce_sum(totals).cpu().tolist()
        return {k: totals[i] / max(totals[-1], 1.0) for i, k in enumerate(names)}

    # ----------------------------------------------------------------- loop
    def resume(self) -> Path | None:
        """Load the latest checkpoint of `exp_dir`, if any; returns its path."""
        latest = self.manager.latest()
        if latest is None:
            return None
        self.load_state_dict(load_checkpoint(latest), latest)  # CPU: RNG states must stay there
        if self.dist.is_main:
            self.manager.truncate_after(self.step)
        return latest

    def _finished(self) -> bool:
        return self.tc.max_steps is not None and self.step >= self.tc.max_steps

    def fit(self) -> dict[str, Any]:
        """Train until `train.epochs` (or `max_steps`); returns a summary of the run."""
        show_bar = self.dist.is_main and sys.stderr.isatty()
        self.logger = TrainLogger(
            self.exp_dir, self.dist.is_main, resume_step=self.step, echo=not show_bar
        )
        self.model.train()
        accum = 1 if self.multi else self.tc.accum_grad
        last_valid: dict[str, float] = {}
        with progress_bar(show_bar) as progress:
            while self.epoch < self.tc.epochs and not self._finished():
                epoch = self.epoch
                if hasattr(self.data.train_set, "set_epoch"):
                    self.data.train_set.set_epoch(epoch)
                batches = _EpochBatches(self.data.train_sampler, epoch, self.batches_consumed)
                n_total = len(batches) + self.batches_consumed
                it = iter(self._loader(self.data.train_set, batches, epoch))
                if self._pending_rng is not None:
                    set_rng_state(self._pending_rng)
                    self._pending_rng = None
                task = progress.add_task("", total=n_total, epoch=epoch + 1, info="")
                progress.update(task, completed=self.batches_consumed)
                since_log, t0 = 0, time.monotonic()
                for batch in it:
                    self.batches_consumed += 1
                    last = self.batches_consumed == n_total
                    boundary = self.batches_consumed % accum == 0 or last
                    since_log += 1
                    progress.advance(task)
                    if not self._train_batch(batch, boundary):
                        continue
                    self.step += 1
                    if self.ema is not None:
                        self.ema.update(self.model)
                    if self.step % self.tc.log_interval == 0:
                        self._log_train(since_log)
                        progress.update(
                            task, info=f"step {self.step} ({time.monotonic() - t0:.0f}s)"
                        )
                        since_log = 0
                    if self._finished() and not last:
                        last_valid = self.validate()
                        self._end_save(f"step_{self.step}.pt", last_valid)
                        break
                    every = self.tc.save_interval_steps
                    if every and self.step % every == 0 and not last:
                        self._save(f"step_{self.step}.pt")
                    if self.step_hook is not None:
                        self.step_hook(self)
                else:
                    if since_log:
                        self._log_train(since_log)
                    self.epoch, self.batches_consumed = epoch + 1, 0
                    last_valid = self.validate()
                    self._end_save(f"epoch_{self.epoch}.pt", last_valid)
                    if self.step_hook is not None:
                        self.step_hook(self)
                progress.remove_task(task)
        return self._finish(last_valid)

    def _end_save(self, name: str, metrics: dict[str, float]) -> None:
        record = {"epoch": self.epoch, "step": self.step, **metrics} if metrics else None
        if record is not None and self.logger is not None:
            self.logger.log(record, "valid")
        self._save(name, record)
        if self.dist.is_main:  # one line per epoch for logs of non-interactive jobs
            shown = " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            valid = f"; valid {shown}" if shown else ""
            print(f"epoch {self.epoch} step {self.step}: saved {name}{valid}", file=sys.stderr)

    def _finish(self, last_valid: dict[str, float]) -> dict[str, Any]:
        self._sync_buffers()
        dump = os.environ.get("AUDIOKIT_TRAIN_DUMP_STATE")  # tests: per-rank final weights
        if dump:
            Path(dump).mkdir(parents=True, exist_ok=True)
            torch.save(self.model.state_dict(), Path(dump) / f"rank{self.dist.rank}.pt")
        if self.logger is not None:
            self.logger.plot()
            self.logger.close()
        distributed.barrier()
        return {
            "step": self.step,
            "epoch": self.epoch,
            "skipped": self.skipped,
            "valid": last_valid,
            "latest": str(self.manager.latest()) if self.dist.is_main else None,
        }
