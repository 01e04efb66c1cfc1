"""From a :class:`Config` to the objects the trainer runs: device, data, model, optimisers.

:func:`run_training` is what `audiokit train` calls: it joins the torchrun process group when
there is one, seeds, builds everything, writes `config.yaml`/`model.yaml`, resumes if asked and
trains.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from audiokit.errors import ConfigError
from audiokit.registry import model_class
from audiokit.train import distributed
from audiokit.train.config import Config, save_config
from audiokit.train.schedulers import build_scheduler
from audiokit.train.trainer import MAIN_GROUP, TrainData, Trainer
from audiokit.utils.atomic import atomic_write

CONFIG_NAME = "config.yaml"
MODEL_YAML = "model.yaml"


def resolve_device(name: str, info: distributed.DistInfo) -> torch.device:
    """`auto` -> cuda (this process's local rank under torchrun) if available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={name} but no CUDA device is visible; use cpu or auto")
        if name == "cuda":
            name = f"cuda:{info.local_rank if info.is_distributed else torch.cuda.current_device()}"
        device = torch.device(name)
        torch.cuda.set_device(device)
        return device
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def frontend_options(cfg: Config, dither: float | None = None):
    """The fbank options of `cfg.frontend` (Kaldi names in snake_case), or None without one."""
    if cfg.frontend is None or cfg.data.feats_scp is not None:
        return None
    if cfg.frontend.type != "fbank":
        raise ConfigError(f"frontend.type={cfg.frontend.type!r}: training supports fbank only")
    from audiokit.features.extract import build_options

    options = {k.replace("_", "-"): v for k, v in cfg.frontend.options.items()}
    options.setdefault("sample-frequency", cfg.data.sample_rate)
    if dither is not None:
        options["dither"] = dither
    try:
        return build_options("fbank", options)
    except ConfigError as e:
        raise ConfigError(f"frontend: {str(e).lstrip('-')}") from None


def feature_dim(cfg: Config, frontend) -> int | None:
    """Input feature size: from the fbank options, or the first matrix of `data.feats_scp`."""
    if frontend is not None:
        return frontend.mel.num_bins + int(frontend.use_energy)
    if cfg.data.feats_scp is not None:
        import kaldiio

        from audiokit.data.kaldi_files import read_kv_file
        from audiokit.features.extract import feats_scp_path

        scp = read_kv_file(feats_scp_path(cfg.data.feats_scp))
        if not scp:
            raise ConfigError(f"data.feats_scp={cfg.data.feats_scp} is empty; extract features")
        return int(kaldiio.load_mat(next(iter(scp.values()))).shape[1])
    return None  # raw waveforms: the model has its own frontend


def build_data(cfg: Config, info: distributed.DistInfo) -> tuple[TrainData, Any, int | None]:
    """Datasets, batch samplers (split across ranks), the tokenizer and the input size."""
    if cfg.data.task == "codec":
        return build_codec_data(cfg, info)
    return build_asr_data(cfg, info)


def _model_channels(cfg: Config) -> int:
    """Audio channels the codec takes: model.args.channels, else the constructor's default."""
    if "channels" in cfg.model.args:
        return int(cfg.model.args["channels"])
    cls = model_class(cfg.model.architecture)
    param = inspect.signature(cls).parameters.get("channels")
    if param is not None and isinstance(param.default, int):
        return param.default
    return int(getattr(cls, "channels", 1))


def build_codec_data(cfg: Config, info: distributed.DistInfo) -> tuple[TrainData, Any, None]:
    """Waveform segments in fixed-size batches (codec training); tokenizer only if given."""
    from audiokit.data.audio_segments import (
        AudioSegmentDataset,
        FixedBatchSampler,
        collate_segments,
    )
    from audiokit.text import load_tokenizer

    d, seed = cfg.data, cfg.train.seed
    if not d.train:
        raise ConfigError("data.train is not set; give it in the config or as data.train=PATH")
    tokenizer = load_tokenizer(d.tokenizer) if d.tokenizer else None
    channels = _model_channels(cfg)

    def dataset(path: str, training: bool) -> AudioSegmentDataset:
        ds = AudioSegmentDataset(
            path, d.sample_rate, d.segment_seconds, seed=seed, tokenizer=tokenizer,
            channels=channels, min_db=d.segment_min_db, allow_pipe=d.allow_pipe,
        )  # fmt: skip
        ds.training = training
        return ds

    def sampler(ds: AudioSegmentDataset, training: bool) -> FixedBatchSampler:
        return FixedBatchSampler(
            len(ds), d.batch_size, shuffle=training, seed=seed, drop_last=training,
            num_replicas=info.world_size, rank=info.rank,
        )  # fmt: skip

    train_set = dataset(d.train, True)
    valid_set = dataset(d.valid, False) if d.valid else None
    data = TrainData(
        train_set,
        sampler(train_set, True),
        valid_set,
        sampler(valid_set, False) if valid_set is not None else None,
        collate_segments,
        num_workers=d.num_workers,
        pin_memory=d.pin_memory,
    )
    return data, tokenizer, None


def build_asr_data(cfg: Config, info: distributed.DistInfo) -> tuple[TrainData, Any, int | None]:
    """Datasets, bucketing batch samplers (split across ranks) and the tokenizer."""
    from audiokit.data.collate import collate_asr
    from audiokit.data.dataset import AsrDataset
    from audiokit.data.sampler import DynamicBucketSampler
    from audiokit.text import load_tokenizer

    d = cfg.data
    for key in ("train", "tokenizer"):
        if not getattr(d, key):
            raise ConfigError(f"data.{key} is not set; give it in the config or as data.{key}=PATH")
    tokenizer = load_tokenizer(d.tokenizer)
    frontend = frontend_options(cfg)
    seed = cfg.train.seed

    def sampler(dataset: AsrDataset, shuffle: bool) -> DynamicBucketSampler:
        return DynamicBucketSampler(
            dataset.frame_lengths(),
            d.max_frames_per_batch,
            shuffle=shuffle,
            seed=seed,
            num_buckets=d.num_buckets,
            num_replicas=info.world_size,
            rank=info.rank,
        )

    train_set = AsrDataset(
        d.train,
        tokenizer,
        frontend=frontend,
        feats_scp=d.feats_scp,
        sample_rate=d.sample_rate,
        speed_perturb=d.speed_perturb,
        specaug=d.specaug,
        seed=seed,
        allow_pipe=d.allow_pipe,
    )
    valid_set = valid_sampler = None
    if d.valid:
        valid_set = AsrDataset(
            d.valid,
            tokenizer,
            frontend=frontend_options(cfg, dither=0.0) if frontend is not None else None,
            feats_scp=d.valid_feats_scp,
            sample_rate=d.sample_rate,
            seed=seed,
            allow_pipe=d.allow_pipe,
        )
        valid_set.training = False
        valid_sampler = sampler(valid_set, shuffle=False)
    data = TrainData(
        train_set,
        sampler(train_set, shuffle=True),
        valid_set,
        valid_sampler,
        collate_asr,
        num_workers=d.num_workers,
        pin_memory=d.pin_memory,
    )
    return data, tokenizer, feature_dim(cfg, frontend)


def build_model(
    cfg: Config,
    input_dim: int | None,
    vocab_size: int | None,
    special_ids: dict[str, int | None] | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model and its full constructor arguments (dims from the data, CMVN stats).

    `special_ids` (``blank_id``, ``sos_id``, ``eos_id`` of the tokenizer) fill the
    constructor arguments of those names that the config leaves out, so a model never
    defaults to another toolkit's id layout (FunASR's sos 1 / eos 2 are characters here).
    """
    cls = model_class(cfg.model.architecture)
    params = inspect.signature(cls).parameters
    args = dict(cfg.model.args)
    found = {"input_dim": input_dim, "vocab_size": vocab_size, **(special_ids or {})}
    if cfg.data.task == "codec":
        found["sample_rate"] = cfg.data.sample_rate
    for key, value in found.items():
        if key in params and key not in args and value is not None:
            args[key] = value
    stats = None
    if cfg.data.cmvn:
        from audiokit.features.cmvn import load_cmvn

        stats = load_cmvn(cfg.data.cmvn)
        # set_cmvn keeps model.yaml short (the stats live in the state dict); else pass them
        if not hasattr(cls, "set_cmvn") and "cmvn_mean" in params and "cmvn_istd" in params:
            args["cmvn_mean"], args["cmvn_istd"] = stats[0].tolist(), stats[1].tolist()
            stats = None
    try:
        model = cls(**args)
    except TypeError as e:
        raise ConfigError(
            f"model '{cfg.model.architecture}': bad constructor arguments ({e}); fix model.args"
        ) from None
    if stats is not None:
        if not hasattr(model, "set_cmvn"):
            raise ConfigError(
                f"data.cmvn is set but model '{cfg.model.architecture}' takes no CMVN stats; "
                "remove data.cmvn"
            )
        model.set_cmvn(*stats)
    rate = getattr(model, "sample_rate", None)
    if cfg.data.task == "codec" and rate is not None and rate != cfg.data.sample_rate:
        raise ConfigError(
            f"model '{cfg.model.architecture}' runs at {rate} Hz but data.sample_rate="
            f"{cfg.data.sample_rate}; set data.sample_rate={rate} (audio is resampled on load)"
        )
    return model, args


def load_init_weights(model: torch.nn.Module, path: Path) -> None:
    """Load `model.init` weights strictly: every parameter and buffer must match by name/shape.

    Training-only submodules (``training_only_prefixes``, e.g. a codec's discriminator) may be
    absent, as in packed or imported model dirs: they keep their fresh initialisation.
    """
    from audiokit.model_dir import WEIGHTS, read_weights

    if path.is_dir():
        path = path / WEIGHTS
    state, _ = read_weights(path)
    own = model.state_dict()
    fresh = tuple(getattr(model, "training_only_prefixes", ()))
    if fresh and not any(k.startswith(fresh) for k in state):
        state = {**{k: v for k, v in own.items() if k.startswith(fresh)}, **state}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise ConfigError(
            f"model.init {path}: weights do not fit this model ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} of another shape, e.g. {first}); "
            "use the model.args the weights were trained with"
        )
    model.load_state_dict(state)


def build_optimizers(cfg: Config, model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per group of `model.optimizer_groups()` (or one, "main"), same settings."""
    o = cfg.optim
    groups = (
        dict(model.optimizer_groups())
        if hasattr(model, "optimizer_groups")
        else {MAIN_GROUP: model.parameters()}
    )

    def make(params) -> torch.optim.Optimizer:
        params = [p for p in params if p.requires_grad]
        if o.name == "adamw":
            return torch.optim.AdamW(
                params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
            )
        if o.name == "adam":
            return torch.optim.Adam(
                params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay
            )
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    return {name: make(params) for name, params in groups.items()}


def total_steps(cfg: Config, batches_per_epoch: int, multi: bool) -> int:
    accum = 1 if multi else cfg.train.accum_grad
    steps = cfg.train.epochs * math.ceil(batches_per_epoch / accum)
    return min(steps, cfg.train.max_steps) if cfg.train.max_steps else steps


def build_schedulers(
    cfg: Config, optimizers: dict[str, torch.optim.Optimizer], steps: int
) -> dict[str, Any]:
    s = cfg.scheduler
    return {
        name: build_scheduler(s.name, opt, s.warmup_steps, steps, s.min_lr)
        for name, opt in optimizers.items()
    }


def _check_exp_dir(exp_dir: Path, resume: bool) -> None:
    has_ckpt = (exp_dir / "latest").is_file()
    if has_ckpt and not resume:
        raise ConfigError(
            f"{exp_dir} already holds a training run; pass --resume to continue it or choose "
            "another --exp-dir"
        )


def write_model_yaml(path: Path, architecture: str, args: dict[str, Any]) -> None:
    """`model.yaml`: what rebuilds the network (architecture + constructor arguments)."""
    with atomic_write(path) as f:
        yaml.safe_dump({"architecture": architecture, "args": args}, f, sort_keys=False)


def run_training(
    cfg: Config,
    exp_dir: str | os.PathLike,
    resume: bool = False,
    data: TrainData | None = None,
    step_hook: Callable[[Trainer], None] | None = None,
) -> dict[str, Any]:
    """Train as `cfg` says into `exp_dir` (under torchrun: one call per process)."""
    exp_dir = Path(exp_dir)
    info = distributed.detect()
    device = resolve_device(cfg.train.device, info)
    _check_exp_dir(exp_dir, resume)
    distributed.init(info, device)
    try:
        seed_everything(cfg.train.seed)
        tokenizer, input_dim = None, None
        if data is None:
            data, tokenizer, input_dim = build_data(cfg, info)
        vocab = tokenizer.vocab_size if tokenizer is not None else None
        specials = None
        if tokenizer is not None:
            tl = tokenizer.token_list
            specials = {"blank_id": tl.blank_id, "sos_id": tl.sos_id, "eos_id": tl.eos_id}
        seed_everything(cfg.train.seed)  # the same initial weights whatever the data took
        model, args = build_model(cfg, input_dim, vocab, specials)
        if cfg.model.init:  # a resumed checkpoint, when there is one, replaces these
            load_init_weights(model, Path(cfg.model.init))
        optimizers = build_optimizers(cfg, model)
        if hasattr(data.train_sampler, "set_epoch"):
            data.train_sampler.set_epoch(0)
        steps = total_steps(cfg, len(data.train_sampler), list(optimizers) != [MAIN_GROUP])
        schedulers = build_schedulers(cfg, optimizers, steps)
        if info.is_main:
            exp_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, exp_dir / CONFIG_NAME)
            resolved = dataclasses.replace(cfg.model, args=args)
            write_model_yaml(exp_dir / MODEL_YAML, resolved.architecture, resolved.args)
        distributed.barrier()
        trainer = Trainer(
            model, data, cfg, exp_dir, optimizers, schedulers, device, info, step_hook
        )
        if resume:
            trainer.resume()
        return trainer.fit()
    finally:
        distributed.cleanup()
