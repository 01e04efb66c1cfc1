"""Training configuration: typed dataclasses loaded from YAML, `key=value` overrides, validation.

Every problem (unknown section or key, wrong type, out-of-range value) is a one-line
:class:`ConfigError` naming the dotted key. The resolved config (file + overrides + defaults)
is saved as `exp_dir/config.yaml`, so `--resume` and later tools see exactly what ran.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audiokit.errors import ConfigError
from audiokit.utils.atomic import atomic_write

AMP_MODES = ("none", "bf16", "fp16")
SCHEDULERS = ("noam", "warmup_cosine", "warmup_constant")
OPTIMIZERS = ("adamw", "adam", "sgd")
TASKS = ("asr", "codec")


@dataclass
class ModelConfig:
    architecture: str = "conformer_ctc"
    # Constructor arguments; input_dim / vocab_size are filled from the data when absent.
    args: dict[str, Any] = field(default_factory=dict)
    # Start from these weights (a packed model dir, .safetensors or trainer checkpoint .pt),
    # e.g. MWER fine-tuning of a CE-trained Paraformer; None: random initialisation.
    init: str | None = None


@dataclass
class FrontendConfig:
    type: str = "fbank"
    # Kaldi option names in snake_case (num_mel_bins, dither, ...), as `audiokit feats extract`.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    # asr: (features, token ids), length-bucketed batches; codec: fixed-length waveform
    # segments (segment_seconds) in batches of batch_size, tokenizer optional (QDAC's text)
    task: str = "asr"
    train: str = ""
    valid: str = ""
    tokenizer: str = ""
    cmvn: str | None = None
    feats_scp: str | None = None  # precomputed train features (valid_feats_scp for the dev set)
    valid_feats_scp: str | None = None
    sample_rate: int = 16000
    max_frames_per_batch: int = 20000
    num_buckets: int = 10
    num_workers: int = 2
    pin_memory: bool = True
    speed_perturb: list[float] | None = None
    specaug: dict[str, Any] | None = None
    allow_pipe: bool = False
    segment_seconds: float | None = None  # codec only: training crop length
    batch_size: int | None = None  # codec only: segments per batch
    segment_min_db: float | None = -40.0  # codec only: crops quieter than this are not drawn


@dataclass
class OptimConfig:
    name: str = "adamw"
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1.0e-8
    momentum: float = 0.9  # sgd only


@dataclass
class SchedulerConfig:
    name: str = "warmup_constant"
    warmup_steps: int = 1000
    min_lr: float = 0.0  # warmup_cosine: the lr reached at the last step


@dataclass
class TrainSection:
    epochs: int = 30
    accum_grad: int = 1
    grad_clip: float | None = 5.0
    amp: str = "none"
    ema_decay: float | None = None
    keep_best: int = 5
    best_metric: str = "loss"
    seed: int = 0
    log_interval: int = 50
    save_interval_steps: int = 0  # 0: checkpoint at epoch ends only
    device: str = "auto"
    max_steps: int | None = None


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    frontend: FrontendConfig | None = field(default_factory=FrontendConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.frontend is not None:  # options sit beside `type` in the YAML, as written
            out["frontend"] = {"type": self.frontend.type, **self.frontend.options}
        return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """`value` checked against the annotation `tp` (ints are accepted where floats are)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}={value!r} must be a list (e.g. [1, 2]); fix the config")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} must be a mapping (key: value); fix the config")
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}={value!r} must be a number; fix the config")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={value!r} must be an integer; fix the config")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false; fix the config")
        return value
    if tp is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} must be a string; fix the config")
        return value
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"section '{prefix}' must be a mapping, got {raw!r}; fix the config")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(
                f"unknown config key '{prefix}.{key}'; known keys: {', '.join(sorted(names))}"
            )
        kwargs[key] = _coerce(value, hints[key], f"{prefix}.{key}")
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a :class:`Config` from the plain mapping a YAML file holds."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a YAML mapping with sections model, data, optim, ...")
    sections = {f.name for f in dataclasses.fields(Config)}
    for key in raw:
        if key not in sections:
            raise ConfigError(
                f"unknown config section '{key}'; known sections: {', '.join(sorted(sections))}"
            )
    frontend_raw = raw.get("frontend", {})
    data_raw = raw.get("data")
    codec = isinstance(data_raw, dict) and data_raw.get("task") == "codec"
    if codec and "frontend" not in raw:
        frontend_raw = None  # codecs take waveforms
    if codec and frontend_raw is not None:
        raise ConfigError(
            "frontend: codecs (data.task=codec) take raw waveforms; set frontend: null"
        )
    if frontend_raw is None:
        frontend = None
    elif isinstance(frontend_raw, dict):
        options = {k: v for k, v in frontend_raw.items() if k != "type"}
        frontend = FrontendConfig(
            type=_coerce(frontend_raw.get("type", "fbank"), str, "frontend.type"), options=options
        )
    else:
        raise ConfigError(f"section 'frontend' must be a mapping, got {frontend_raw!r}")
    cfg = Config(
        model=_build(ModelConfig, raw.get("model"), "model"),
        frontend=frontend,
        data=_build(DataConfig, raw.get("data"), "data"),
        optim=_build(OptimConfig, raw.get("optim"), "optim"),
        scheduler=_build(SchedulerConfig, raw.get("scheduler"), "scheduler"),
        train=_build(TrainSection, raw.get("train"), "train"),
    )
    validate(cfg)
    return cfg


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Range and choice checks; each failure names the key and a valid value."""
    t, o, s, d = cfg.train, cfg.optim, cfg.scheduler, cfg.data
    _check(t.epochs >= 1, f"train.epochs={t.epochs} must be >= 1")
    _check(t.accum_grad >= 1, f"train.accum_grad={t.accum_grad} must be >= 1")
    _check(
        t.grad_clip is None or t.grad_clip > 0,
        f"train.grad_clip={t.grad_clip} must be > 0 (or null to disable clipping)",
    )
    _check(t.amp in AMP_MODES, f"train.amp={t.amp!r} is unknown; use one of {', '.join(AMP_MODES)}")
    _check(
        t.ema_decay is None or 0.0 < t.ema_decay < 1.0,
        f"train.ema_decay={t.ema_decay} must be in (0, 1), e.g. 0.999 (or null)",
    )
    _check(t.keep_best >= 1, f"train.keep_best={t.keep_best} must be >= 1")
    _check(t.log_interval >= 1, f"train.log_interval={t.log_interval} must be >= 1")
    _check(t.save_interval_steps >= 0, f"train.save_interval_steps={t.save_interval_steps} < 0")
    _check(
        t.max_steps is None or t.max_steps >= 1,
        f"train.max_steps={t.max_steps} must be >= 1 (or null)",
    )
    _check(
        t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
        f"train.device={t.device!r} is unknown; use auto, cpu, cuda or cuda:N",
    )
    _check(
        o.name in OPTIMIZERS,
        f"optim.name={o.name!r} is unknown; use one of {', '.join(OPTIMIZERS)}",
    )
    _check(o.lr > 0, f"optim.lr={o.lr} must be > 0")
    _check(o.weight_decay >= 0, f"optim.weight_decay={o.weight_decay} must be >= 0")
    _check(
        len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas),
        f"optim.betas={o.betas} must be two numbers in [0, 1), e.g. [0.9, 0.98]",
    )
    _check(
        s.name in SCHEDULERS,
        f"scheduler.name={s.name!r} is unknown; use one of {', '.join(SCHEDULERS)}",
    )
    _check(s.warmup_steps >= 0, f"scheduler.warmup_steps={s.warmup_steps} must be >= 0")
    _check(
        s.name != "noam" or s.warmup_steps >= 1,
        "scheduler.warmup_steps must be >= 1 for noam (its peak is at warmup_steps)",
    )
    _check(s.min_lr >= 0, f"scheduler.min_lr={s.min_lr} must be >= 0")
    _check(d.max_frames_per_batch >= 1, f"data.max_frames_per_batch={d.max_frames_per_batch} < 1")
    _check(d.num_workers >= 0, f"data.num_workers={d.num_workers} must be >= 0")
    _check(d.sample_rate > 0, f"data.sample_rate={d.sample_rate} must be > 0")
    _check(
        d.speed_perturb is None or all(f > 0 for f in d.speed_perturb),
        f"data.speed_perturb={d.speed_perturb} must list positive factors, e.g. [0.9, 1.0, 1.1]",
    )
    _check(d.task in TASKS, f"data.task={d.task!r} is unknown; use one of {', '.join(TASKS)}")
    if d.task == "codec":
        _check(
            d.segment_seconds is not None and d.segment_seconds > 0,
            f"data.segment_seconds={d.segment_seconds}: codec training needs a crop length "
            "> 0, e.g. data.segment_seconds=0.5",
        )
        _check(
            d.batch_size is not None and d.batch_size >= 1,
            f"data.batch_size={d.batch_size}: codec training needs segments per batch >= 1, "
            "e.g. data.batch_size=16",
        )
        for key in ("feats_scp", "valid_feats_scp", "cmvn", "speed_perturb", "specaug"):
            _check(
                getattr(d, key) is None,
                f"data.{key} does not apply to codec training (data.task=codec); remove it",
            )
    else:
        for key in ("segment_seconds", "batch_size"):
            _check(
                getattr(d, key) is None,
                f"data.{key} applies to data.task=codec only; remove it (asr batches by "
                "data.max_frames_per_batch)",
            )


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"train.epochs=3"` -> (["train", "epochs"], 3); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"override {text!r} is not key=value; write e.g. train.epochs=3 or model.args.d_model=144"
        )
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value  # an unparsable value is a plain string
    return key.strip().split("."), parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted key in a copy of `raw`, creating intermediate mappings."""
    out = yaml.safe_load(yaml.safe_dump(raw))  # deep copy of plain data
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for i, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {text!r}: '{'.'.join(keys[: i + 1])}' is not a section"
                )
            node = child
        node[keys[-1]] = value
    return out


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; check --config") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{line}: {problem}; fix the YAML syntax") from None
    return raw if raw is not None else {}


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply `key=value` overrides, fill defaults and validate."""
    raw = apply_overrides(read_yaml(path), overrides or [])
    try:
        return config_from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def save_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically); :func:`load_config` reads it back."""
    with atomic_write(path) as f:
        yaml.safe_dump(cfg.to_dict(), f, sort_keys=False, default_flow_style=None)
