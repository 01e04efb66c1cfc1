"""The training loop on toy data: exact resume, accumulation, skipping, GAN groups, AMP, keep-best.

Toy models here are also imported by the subprocess tests (`tests.test_train_loop:ToyCTC`).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from audiokit.data.collate import collate_asr
from audiokit.data.sampler import DynamicBucketSampler
from audiokit.errors import ConfigError
from audiokit.train.builders import build_optimizers, build_schedulers, seed_everything, total_steps
from audiokit.train.checkpoint import load_checkpoint, read_metrics
from audiokit.train.config import config_from_dict
from audiokit.train.trainer import TrainData, Trainer

DIM, VOCAB = 6, 5


class ToyCTC(nn.Module):
    """Linear + dropout + CTC: small, but uses the global RNG (dropout) like a real model."""

    def __init__(self, input_dim: int = DIM, vocab_size: int = VOCAB, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden), nn.Tanh(), nn.Dropout(0.3), nn.Linear(hidden, vocab_size)
        )
        self.nan_utts: set[str] = set()  # tests: utterances whose loss is NaN

    def _ctc(self, batch) -> torch.Tensor:
        logp = self.net(batch.feats).log_softmax(-1).transpose(0, 1)  # (T, B, V)
        loss = nn.functional.ctc_loss(
            logp,
            batch.targets.clamp(min=0),
            batch.feat_lengths,
            batch.target_lengths,
            reduction="sum",
            zero_infinity=True,
        )
        loss = loss / batch.num_items
        if self.nan_utts & set(batch.utt_ids):
            loss = loss * float("nan")
        return loss

    def training_losses(self, batch) -> dict[str, torch.Tensor]:
        loss = self._ctc(batch)
        return {"loss": loss, "ctc": loss.detach()}

    def validation_metrics(self, batch) -> dict[str, torch.Tensor]:
        loss = self._ctc(batch)
        frames = batch.feat_lengths.sum().to(torch.float32)
        return {"loss": loss, "frames": frames}


class ToyGAN(nn.Module):
    """Two optimiser groups: a generator maps feats to fakes, a discriminator scores them."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = nn.Linear(DIM, DIM)
        self.disc = nn.Linear(DIM, 1)
        self.calls: list[str] = []

    def optimizer_groups(self):
        return {"disc": self.disc.parameters(), "gen": self.gen.parameters()}

    def training_losses(self, batch, group: str) -> dict[str, torch.Tensor]:
        self.calls.append(group)
        real = batch.feats.mean(1)
        fake = self.gen(real)
        if group == "disc":
            loss = (
                nn.functional.softplus(-self.disc(real)).mean()
                + nn.functional.softplus(self.disc(fake.detach())).mean()
            )
        else:
            loss = nn.functional.softplus(-self.disc(fake)).mean()
        return {"loss": loss}

    def validation_metrics(self, batch) -> dict[str, torch.Tensor]:
        return {"loss": self.disc(batch.feats.mean(1)).mean()}


class ToyDataset(torch.utils.data.Dataset):
    """Items with features that depend on (seed, epoch, index) only, like AsrDataset."""

    def __init__(self, n: int = 24, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.lengths = [6 + (7 * i) % 11 for i in range(n)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch * 1009 + i)
        t = self.lengths[i]
        feats = torch.randn(t, DIM, generator=gen)
        targets = torch.randint(1, VOCAB, (1 + i % 3,), generator=gen)
        return {"utt_id": f"utt{i:03d}", "feats": feats, "targets": targets}


def toy_data(n: int = 24, max_frames: int = 40) -> TrainData:
    train, valid = ToyDataset(n), ToyDataset(8, seed=1)
    return TrainData(
        train,
        DynamicBucketSampler(train.lengths, max_frames, shuffle=True, seed=3, num_buckets=2),
        valid,
        DynamicBucketSampler(valid.lengths, max_frames, shuffle=False),
        collate_asr,
    )


def toy_config(**train):
    return config_from_dict(
        {
            "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.01},
            "scheduler": {"name": "warmup_cosine", "warmup_steps": 2},
            "train": {
                "epochs": 3,
                "log_interval": 2,
                "keep_best": 2,
                "device": "cpu",
                "grad_clip": 1.0,
                **train,
            },
        }
    )


def make_trainer(cfg, exp_dir, model_cls=ToyCTC, data=None, hook=None, model=None) -> Trainer:
    seed_everything(cfg.train.seed)
    data = data or toy_data()
    model = model or model_cls()
    opts = build_optimizers(cfg, model)
    data.train_sampler.set_epoch(0)
    steps = total_steps(cfg, len(data.train_sampler), len(opts) > 1)
    scheds = build_schedulers(cfg, opts, steps)
    return Trainer(model, data, cfg, exp_dir, opts, scheds, torch.device("cpu"), step_hook=hook)


class Interrupt(Exception):
    pass


def test_resume_mid_epoch_is_bitwise_identical(tmp_path):
    cfg = toy_config(accum_grad=2, save_interval_steps=2, ema_decay=0.9)
    full = make_trainer(cfg, tmp_path / "full")
    summary = full.fit()
    assert summary["step"] > 8

    def crash(trainer: Trainer) -> None:
        if trainer.step == 7:  # after the step-6 checkpoint, mid-epoch 2
            raise Interrupt

    first = make_trainer(cfg, tmp_path / "cut", hook=crash)
    with pytest.raises(Interrupt):
        first.fit()
    assert (tmp_path / "cut" / "latest").read_text().strip() == "step_6.pt"
    torch.manual_seed(12345)  # a resumed process starts from an unrelated RNG state
    resumed = make_trainer(cfg, tmp_path / "cut")
    assert resumed.resume() is not None and resumed.step == 6 and resumed.batches_consumed > 0
    resumed.fit()

    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in full.ema.module.state_dict().items():
        assert torch.equal(value, resumed.ema.module.state_dict()[name]), name
    a, b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "cut")
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    logged = [
        json.loads(x) for x in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()
    ]
    steps = [r["step"] for r in logged if r["kind"] == "train"]
    assert steps == sorted(set(steps))  # nothing logged twice across the interruption


def test_checkpoint_is_weights_only_and_complete(tmp_path):
    cfg = toy_config(epochs=1, ema_decay=0.5)
    make_trainer(cfg, tmp_path).fit()
    state = torch.load(tmp_path / "epoch_1.pt", weights_only=True)
    for key in ("model", "optimizers", "schedulers", "ema", "rng", "sampler", "step", "epoch"):
        assert key in state
    assert set(state["rng"]) == {"torch", "cuda", "python", "numpy"}
    assert state["sampler"]["epoch"] == 1 and state["sampler"]["consumed"] == 0
    assert (tmp_path / "train_curves.png").stat().st_size > 1000
    assert list((tmp_path / "tensorboard").iterdir())


def test_keep_best_and_metrics_file(tmp_path):
    cfg = toy_config(epochs=4, keep_best=2)
    make_trainer(cfg, tmp_path).fit()
    records = read_metrics(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    best = sorted(records, key=lambda r: r["loss"])[:2]
    kept = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert kept == sorted({r["checkpoint"] for r in best} | {"epoch_4.pt"})
    # utterance-weighted mean: "frames" is the mean over utterances of the batch frame sums
    assert all(r["frames"] > 0 for r in records)


def test_accumulation_counts_updates(tmp_path):
    data = toy_data()
    data.train_sampler.set_epoch(0)
    n = len(data.train_sampler)
    trainer = make_trainer(toy_config(epochs=1, accum_grad=3), tmp_path, data=data)
    assert trainer.fit()["step"] == -(-n // 3)


def test_non_finite_loss_skips_update(tmp_path):
    model = ToyCTC()
    model.nan_utts = {"utt005"}
    trainer = make_trainer(toy_config(epochs=1), tmp_path, model=model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = trainer.fit()
    assert summary["skipped"] == 1
    assert any("non-finite loss" in str(w.message) for w in caught)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_gan_groups_step_in_order(tmp_path):
    cfg = toy_config(epochs=1, max_steps=1, grad_clip=None)
    cfg.optim.name = "sgd"
    cfg.optim.momentum = 0.0
    cfg.optim.weight_decay = 0.0
    cfg.scheduler.name = "warmup_constant"
    cfg.scheduler.warmup_steps = 0
    seed_everything(0)
    model = ToyGAN()
    ref = ToyGAN()
    ref.load_state_dict(model.state_dict())
    trainer = make_trainer(cfg, tmp_path, model=model)
    assert set(trainer.optimizers) == {"disc", "gen"}
    batch = next(iter(trainer._loader(trainer.data.train_set, _first_batch(trainer), 0)))
    trainer.fit()
    assert model.calls[:2] == ["disc", "gen"]

    # reference: D step on its loss, then G step on its loss through the updated D
    lr = cfg.optim.lr
    for group, params in (("disc", ref.disc.parameters()), ("gen", ref.gen.parameters())):
        ref.zero_grad()
        ref.training_losses(batch, group)["loss"].backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
    for name, value in ref.state_dict().items():
        assert torch.allclose(value, model.state_dict()[name], atol=1e-7), name


def _first_batch(trainer: Trainer):
    from audiokit.train.trainer import _EpochBatches

    return _EpochBatches(trainer.data.train_sampler, 0, 0)


def test_gan_needs_accum_1(tmp_path):
    with pytest.raises(ConfigError, match="accum_grad"):
        make_trainer(toy_config(accum_grad=2), tmp_path, model_cls=ToyGAN)


def test_bf16_autocast_on_cpu_trains(tmp_path):
    summary = make_trainer(toy_config(epochs=1, amp="bf16"), tmp_path).fit()
    assert summary["step"] > 0 and summary["skipped"] == 0


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        make_trainer(toy_config(amp="fp16"), tmp_path)


def test_resume_refuses_other_data(tmp_path):
    cfg = toy_config(epochs=1)
    make_trainer(cfg, tmp_path).fit()
    other = make_trainer(cfg, tmp_path, data=toy_data(n=20))
    with pytest.raises(ConfigError, match="differ"):
        other.resume()


def test_max_steps_stops_mid_epoch_with_validation(tmp_path):
    summary = make_trainer(toy_config(max_steps=3), tmp_path).fit()
    assert summary["step"] == 3
    assert (tmp_path / "latest").read_text().strip() == "step_3.pt"
    assert read_metrics(tmp_path)[-1]["checkpoint"] == "step_3.pt"
    state = load_checkpoint(tmp_path / "step_3.pt")
    assert state["batches_consumed"] == 3 and state["epoch"] == 0
