"""Schedulers, EMA, checkpoint files and averaging, RNG state, distributed env detection."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from audiokit.errors import ConfigError
from audiokit.train import distributed
from audiokit.train.checkpoint import (
    CheckpointManager,
    average_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from audiokit.train.ema import EMA
from audiokit.train.schedulers import build_scheduler


def lrs(name: str, steps: int, **kw) -> list[float]:
    """The lr of each of `steps` updates, then the lr after them."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(name, opt, total_steps=steps, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return [*out, opt.param_groups[0]["lr"]]


def test_noam_peaks_at_base_lr_after_warmup():
    values = lrs("noam", 40, warmup_steps=10)
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 9
    assert values[0] == pytest.approx(0.1)
    assert values[39] == pytest.approx(math.sqrt(10 / 40))  # the 40th update


def test_warmup_cosine_reaches_min_lr():
    values = lrs("warmup_cosine", 21, warmup_steps=5, min_lr=0.1)
    assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert values[13] == pytest.approx(0.55)  # half way through the decay
    assert values[21] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(values[4:], values[5:], strict=False))


def test_warmup_constant_and_errors():
    assert lrs("warmup_constant", 5, warmup_steps=2) == pytest.approx([0.5, 1, 1, 1, 1, 1])
    with pytest.raises(ConfigError, match="warmup_steps"):
        lrs("warmup_cosine", 5, warmup_steps=5)


def test_scheduler_state_round_trips_weights_only(tmp_path):
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler("warmup_cosine", opt, 3, 50, 0.0)
    for _ in range(7):
        opt.step()
        sched.step()
    save_checkpoint(tmp_path / "s.pt", {"s": sched.state_dict()})
    opt2 = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = build_scheduler("warmup_cosine", opt2, 3, 50, 0.0)
    sched2.load_state_dict(load_checkpoint(tmp_path / "s.pt")["s"])
    for _ in range(3):
        opt.step(), sched.step(), opt2.step(), sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_ema_follows_the_formula():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = EMA(model, decay=0.5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.state_dict()["1.num_batches_tracked"].fill_(7)
    ema.update(model)  # decay = min(0.5, 2/11) on the first update
    d = 2 / 11
    w = ema.module.state_dict()["0.weight"]
    assert torch.allclose(w, d * start["0.weight"] + (1 - d) * (start["0.weight"] + 1))
    assert int(ema.module.state_dict()["1.num_batches_tracked"]) == 7
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_average_checkpoints(tmp_path):
    paths = []
    for i in range(3):
        state = {"w": torch.full((2,), float(i), dtype=torch.float16), "n": torch.tensor(i)}
        save_checkpoint(tmp_path / f"epoch_{i}.pt", {"model": state})
        paths.append(tmp_path / f"epoch_{i}.pt")
    avg = average_checkpoints(paths)
    assert avg["w"].dtype == torch.float16 and torch.equal(
        avg["w"], torch.ones(2, dtype=torch.float16)
    )
    assert int(avg["n"]) == 2
    with pytest.raises(ConfigError, match="no checkpoints"):
        average_checkpoints([])


def test_corrupt_checkpoint_is_a_one_line_error(tmp_path):
    bad = tmp_path / "epoch_1.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable audiokit checkpoint") as exc:
        load_checkpoint(bad)
    assert "\n" not in str(exc.value)


def test_manager_keeps_best_and_latest(tmp_path):
    manager = CheckpointManager(tmp_path, keep_best=2, metric="cer")
    for epoch, cer in enumerate([0.5, 0.2, 0.4, 0.3, 0.6], start=1):
        manager.save(
            {"x": torch.zeros(1)}, f"epoch_{epoch}.pt", {"epoch": epoch, "step": epoch, "cer": cer}
        )
    manager.save({"x": torch.zeros(1)}, "step_6.pt")
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "epoch_2.pt",
        "epoch_4.pt",
        "step_6.pt",
    ]
    assert manager.latest().name == "step_6.pt"
    with pytest.raises(ConfigError, match="best_metric='cer' is not among"):
        manager.save({}, "epoch_7.pt", {"epoch": 7, "step": 7, "loss": 1.0})


def test_rng_state_round_trip_weights_only(tmp_path):
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    save_checkpoint(tmp_path / "r.pt", {"rng": rng_state()})
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(9), random.seed(9), np.random.seed(9)
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]


def test_distributed_detection(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert distributed.detect() == distributed.DistInfo()
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = distributed.detect()
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (3, 4, 1, False)
    assert not distributed.active() and distributed.any_true(True, torch.device("cpu"))
