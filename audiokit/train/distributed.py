"""Multi-process training under torchrun: environment detection, process group, rank-0 helpers.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them training is single-process and
every helper here is a no-op. The backend is gloo on CPU and nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, logs and plots (global rank 0)."""
        return self.rank == 0


def detect() -> DistInfo:
    """The torchrun layout from the environment (a single process when it is not set)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    return DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
    )


def init(info: DistInfo, device: torch.device) -> None:
    """Join the process group (once) when running under torchrun with more than one process."""
    if not info.is_distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs = {"device_id": device} if device.type == "cuda" else {}
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size, **kwargs)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if active():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over all processes in place (identity when single-process)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (e.g. BatchNorm running stats) to every process.

    DDP broadcasts them at the start of each forward, so after the last forward of a step each
    rank holds stats updated on its own batch; call this before validating or saving.
    """
    if active():
        for buf in module.buffers():
            dist.broadcast(buf, src=0)


def any_true(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true on any process (all processes must call this together)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def cleanup() -> None:
    if active():
        dist.destroy_process_group()
