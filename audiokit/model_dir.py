"""The packed model directory: everything `--model DIR` needs, and nothing that runs code on load.

Layout (see DESIGN.md "The packed model directory")::

    model.yaml          architecture + constructor args, frontend (dither 0), sample_rate,
                        tokenizer files, cmvn file, decoding defaults
    model.safetensors   weights, CMVN buffers included (no pickle)
    tokens.txt, tokenizer.json[, bpe.model]   the tokenizer, loadable by audiokit.text.load_tokenizer
    cmvn.npz            the CMVN statistics the weights were trained with (informational copy)
    meta.json           provenance: source exp dir, weights, averaged checkpoints, git commit, date

:func:`write_model_dir` writes one from a live model; :func:`pack_model` from a training exp dir;
:func:`load_model_dir` reads one back as ``(model in eval mode, ModelDirConfig)``.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from audiokit import __version__
from audiokit.errors import ConfigError
from audiokit.registry import model_class

MODEL_YAML = "model.yaml"
WEIGHTS = "model.safetensors"
META = "meta.json"
CMVN = "cmvn.npz"
FORMAT_VERSION = 1
DEFAULT_DECODING: dict[str, Any] = {
    "method": "greedy",
    "beam_size": 10,
    "window_s": 30.0,
    "overlap_s": 2.0,
}
_HOW_TO_GET = "pack one with `audiokit model pack --exp-dir EXP --out DIR`"


@dataclass
class ModelDirConfig:
    """The contents of `model.yaml`, plus where it was read from."""

    architecture: str
    args: dict[str, Any]
    frontend: dict[str, Any] | None  # {"type": "fbank", <kaldi option snake_case>: value}
    sample_rate: int
    tokenizer: dict[str, Any] = field(default_factory=dict)  # {"type", "files"}
    cmvn: str | None = None
    decoding: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_DECODING))
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_yaml_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "args": self.args,
            "frontend": self.frontend,
            "sample_rate": self.sample_rate,
            "tokenizer": self.tokenizer,
            "cmvn": self.cmvn,
            "decoding": self.decoding,
        }

    def fbank_options(self):
        """Kaldi fbank options of the frontend, dither forced to 0 (inference is deterministic)."""
        return frontend_options(self.frontend, self.sample_rate, dither=0.0)


def frontend_options(frontend: dict[str, Any] | None, sample_rate: int, dither: float = 0.0):
    """FbankOptions from a `{type, snake_case options}` mapping (None: the model takes raw audio)."""
    if frontend is None:
        return None
    kind = frontend.get("type", "fbank")
    if kind != "fbank":
        raise ConfigError(
            f"frontend.type={kind!r}: only fbank frontends are supported; fix model.yaml"
        )
    from audiokit.features.extract import build_options

    options = {k.replace("_", "-"): v for k, v in frontend.items() if k != "type"}
    options.setdefault("sample-frequency", sample_rate)
    options["dither"] = dither
    try:
        return build_options("fbank", options)
    except ConfigError as e:
        raise ConfigError(f"frontend: {str(e).lstrip('-')}; fix model.yaml") from None


# ---- writing ---------------------------------------------------------------------------------


def _git_commit() -> str | None:
    """The audiokit checkout's commit (+"-dirty" with local changes), or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _state_for_safetensors(model) -> dict[str, Any]:
    # clone: safetensors refuses tensors that share storage (e.g. tied weights)
    drop = tuple(getattr(model, "training_only_prefixes", ()))
    return {
        k: v.detach().cpu().contiguous().clone()
        for k, v in model.state_dict().items()
        if not (drop and k.startswith(drop))
    }


def inference_args(model, args: dict[str, Any]) -> dict[str, Any]:
    """`args` with the constructor argument of each training-only submodule set to None.

    Models list submodules only training needs (a codec's ``discriminator.``) in the class
    attribute ``training_only_prefixes``; the packed dir holds neither their weights nor their
    configuration, so it rebuilds an inference-only model (``discriminator: None``).
    """
    prefixes = getattr(model, "training_only_prefixes", ())
    if not prefixes:
        return dict(args)
    import inspect

    params = inspect.signature(type(model)).parameters
    out = dict(args)
    for prefix in prefixes:
        name = prefix.rstrip(".")
        if name in out or name in params:
            out[name] = None
    return out


def write_model_dir(
    out_dir: str | os.PathLike,
    model,
    architecture: str,
    args: dict[str, Any],
    frontend: dict[str, Any] | None,
    sample_rate: int,
    tokenizer,
    cmvn_path: str | os.PathLike | None = None,
    meta: dict[str, Any] | None = None,
    decoding: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a packed model dir atomically: built in a temp dir beside `out_dir`, then renamed.

    `tokenizer` is a loaded :class:`audiokit.text.Tokenizer` (saved as tokens.txt,
    tokenizer.json and, for sentencepiece, bpe.model), or None for models without text (codecs).
    Submodules named by the model's ``training_only_prefixes`` (a codec's discriminator) are
    left out, weights and constructor arguments (see :func:`inference_args`). Refuses an
    existing `out_dir` unless `overwrite`. Returns `out_dir`.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ConfigError(
            f"{out} already exists; pass --overwrite to replace it or choose another --out"
        )
    if out.exists() and not (
        out.is_dir() and ((out / MODEL_YAML).is_file() or not any(out.iterdir()))
    ):
        # --overwrite replaces a packed model, never an unrelated file or folder
        raise ConfigError(f"{out} exists and is not a packed model dir; choose another --out")
    args = inference_args(model, args)
    vocab = args.get("vocab_size")
    if tokenizer is not None and vocab is not None and vocab != tokenizer.vocab_size:
        raise ConfigError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is {vocab}; "
            "pack with the tokenizer the model was trained with"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tok_info: dict[str, Any] = {}
        if tokenizer is not None:
            tokenizer.save(tmp)
            tok_info = {"type": tokenizer.type, "files": sorted(p.name for p in tmp.iterdir())}
        cmvn_name = None
        if cmvn_path is not None:
            from audiokit.features.cmvn import load_cmvn, save_cmvn_npz

            save_cmvn_npz(tmp / CMVN, *load_cmvn(cmvn_path))  # Kaldi/am.mvn stats become npz
            cmvn_name = CMVN
        if frontend is not None:
            frontend = {**frontend, "dither": 0.0}
        cfg = ModelDirConfig(
            architecture=architecture,
            args=dict(args),
            frontend=frontend,
            sample_rate=int(sample_rate),
            tokenizer=tok_info,
            cmvn=cmvn_name,
            decoding={**DEFAULT_DECODING, **(decoding or {})},
        )
        with open(tmp / MODEL_YAML, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg.to_yaml_dict(), f, sort_keys=False, default_flow_style=None)
        save_file(_state_for_safetensors(model), str(tmp / WEIGHTS), metadata={"format": "pt"})
        provenance = {
            "audiokit_version": __version__,
            "git_commit": _git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(meta or {}),
        }
        with open(tmp / META, "w", encoding="utf-8") as f:
            json.dump(provenance, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():  # overwrite: move the old dir aside first so a failure keeps one
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---- packing a training run -----------------------------------------------------------------


def _resolve_path(value: str, exp_dir: Path, key: str) -> Path:
    """A path from config.yaml: as written (relative to the working dir), else beside the exp dir."""
    for candidate in (Path(value), exp_dir / value, exp_dir.parent / value):
        if candidate.exists():
            return candidate
    raise ConfigError(
        f"{exp_dir / 'config.yaml'}: {key}={value} not found (tried the working dir and beside the "
        "exp dir); run pack from the recipe dir the training ran in"
    )


def default_weights(exp_dir: Path) -> Path:
    """Newest `avg_*.safetensors`, else the best epoch checkpoint, else the latest checkpoint."""
    from audiokit.train.checkpoint import LATEST_NAME, best_records, read_metrics

    averaged = sorted(exp_dir.glob("avg_*.safetensors"), key=lambda p: p.stat().st_mtime)
    if averaged:
        return averaged[-1]
    metric = "loss"
    cfg_path = exp_dir / "config.yaml"
    if cfg_path.is_file():
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        metric = str((raw.get("train") or {}).get("best_metric", "loss"))
    best = best_records(read_metrics(exp_dir), metric, 1, exp_dir)
    if best:
        return exp_dir / best[0]["checkpoint"]
    if (exp_dir / LATEST_NAME).is_file():
        return exp_dir / (exp_dir / LATEST_NAME).read_text(encoding="utf-8").strip()
    raise ConfigError(
        f"{exp_dir}: no avg_*.safetensors and no checkpoint; train first "
        "(`audiokit train`) or pass --weights FILE"
    )


def read_weights(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, provenance) from `.safetensors` (averaged) or a trainer checkpoint `.pt`."""
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found; check --weights")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                info = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError) as e:
            raise ConfigError(f"{path}: unreadable safetensors ({e}); re-create it") from None
        averaged = info.get("averaged", "").split()
        return state, {
            "weights": path.name,
            "averaged": averaged,
            "weights_kind": info.get("weights"),
        }
    from audiokit.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ConfigError(f"{path}: no 'model' weights in this checkpoint; pick another file")
    return ckpt["model"], {"weights": path.name, "averaged": [], "epoch": ckpt.get("epoch")}


def pack_model(
    exp_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Pack a training run (`exp_dir` with config.yaml, model.yaml, checkpoints) into `out_dir`.

    `weights`: a `.safetensors` (e.g. from `audiokit model average`) or a checkpoint `.pt`;
    default :func:`default_weights`.
    """
    from audiokit.text import load_tokenizer
    from audiokit.train.config import config_from_dict

    exp = Path(exp_dir)
    if not (exp / "config.yaml").is_file():
        raise ConfigError(
            f"{exp}: no config.yaml, so not a training dir; pass the --exp-dir given to `audiokit train`"
        )
    try:
        cfg = config_from_dict(
            yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8")) or {}
        )
    except ConfigError as e:
        raise ConfigError(f"{exp / 'config.yaml'}: {e}") from None
    args = dict(cfg.model.args)
    if (exp / MODEL_YAML).is_file():  # the trainer's resolved args (input_dim, vocab_size filled)
        resolved = yaml.safe_load((exp / MODEL_YAML).read_text(encoding="utf-8")) or {}
        args = dict(resolved.get("args") or args)
    if cfg.data.feats_scp is not None:
        raise ConfigError(
            f"{exp}: trained on precomputed features (data.feats_scp), so the frontend is unknown; "
            "train with a frontend to pack a model that reads audio"
        )
    codec = cfg.data.task == "codec"  # codecs need no tokenizer (QDAC's is kept if set)
    if not cfg.data.tokenizer and not codec:
        raise ConfigError(f"{exp / 'config.yaml'}: data.tokenizer is not set; cannot pack")
    tokenizer = None
    if cfg.data.tokenizer:
        tokenizer = load_tokenizer(_resolve_path(cfg.data.tokenizer, exp, "data.tokenizer"))
    cmvn = _resolve_path(cfg.data.cmvn, exp, "data.cmvn") if cfg.data.cmvn else None
    wpath = Path(weights) if weights is not None else default_weights(exp)
    state, provenance = read_weights(wpath)
    model = model_class(cfg.model.architecture)(**args)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys + result.unexpected_keys)[:3]
        raise ConfigError(
            f"{wpath}: weights do not match {exp / MODEL_YAML} (e.g. {', '.join(bad)}); "
            "pass --weights from this run"
        )
    frontend = cfg.to_dict()["frontend"]
    meta = {"source": "audiokit train", "exp_dir": str(exp.resolve()), **provenance}
    return write_model_dir(
        out_dir, model, cfg.model.architecture, args, frontend, cfg.data.sample_rate,
        tokenizer, cmvn, meta, overwrite=overwrite,
    )  # fmt: skip


# ---- reading ---------------------------------------------------------------------------------


def read_model_config(model_dir: str | os.PathLike) -> ModelDirConfig:
    """Parse `model.yaml` (and `meta.json` when present) of a packed model dir."""
    d = Path(model_dir)
    if not d.is_dir():
        raise ConfigError(f"{d}: model directory not found; {_HOW_TO_GET}")
    path = d / MODEL_YAML
    if not path.is_file():
        raise ConfigError(f"{path}: missing, so {d} is not a packed model dir; {_HOW_TO_GET}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}; fix it or re-pack the model") from None
    if not isinstance(raw, dict) or "architecture" not in raw:
        raise ConfigError(f"{path}: no 'architecture' key; re-pack the model")
    meta: dict[str, Any] = {}
    if (d / META).is_file():
        try:
            meta = json.loads((d / META).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            meta = {"error": f"{META} is not valid JSON"}
    return ModelDirConfig(
        architecture=str(raw["architecture"]),
        args=dict(raw.get("args") or {}),
        frontend=raw.get("frontend"),
        sample_rate=int(raw.get("sample_rate", 16000)),
        tokenizer=dict(raw.get("tokenizer") or {}),
        cmvn=raw.get("cmvn"),
        decoding={**DEFAULT_DECODING, **(raw.get("decoding") or {})},
        path=d,
        meta=meta,
    )


def load_model_dir(model_dir: str | os.PathLike, device: str = "cpu"):
    """``(model, ModelDirConfig)``: the network rebuilt from model.yaml, weights from
    model.safetensors (strict: every parameter and buffer must match), in eval mode on `device`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg = read_model_config(model_dir)
    weights = cfg.path / WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{weights}: missing; re-pack the model ({_HOW_TO_GET})")
    cls = model_class(cfg.architecture)
    try:
        model = cls(**cfg.args)
    except TypeError as e:
        raise ConfigError(
            f"{cfg.path / MODEL_YAML}: bad args for '{cfg.architecture}' ({e}); re-pack the model"
        ) from None
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{weights}: unreadable ({e}); re-pack the model") from None
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {', '.join(result.missing_keys[:3])}")
        if result.unexpected_keys:
            parts.append(f"unexpected {', '.join(result.unexpected_keys[:3])}")
        raise ConfigError(
            f"{weights}: weights do not fit model.yaml ({'; '.join(parts)}); re-pack the model"
        )
    return model.to(device).eval(), cfg


def load_model_tokenizer(cfg: ModelDirConfig):
    """The tokenizer stored in the model dir."""
    from audiokit.errors import TokenizerError
    from audiokit.text import load_tokenizer

    missing = [f for f in cfg.tokenizer.get("files", []) if not (cfg.path / f).is_file()]
    if missing:
        raise TokenizerError(f"{cfg.path / missing[0]}: tokenizer file missing; re-pack the model")
    return load_tokenizer(cfg.path)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
