"""Import an EnCodec checkpoint (facebookresearch/encodec ``.th``) into a packed model dir.

    audiokit model import --from encodec encodec_24khz-d7cc33bc.th DST
    audiokit model import --from encodec FOLDER DST      # FOLDER holds one .th (+ config.json)

The ``.th`` is a plain ``torch.save(model.state_dict())`` read with ``weights_only=True``; when
its name carries EnCodec's checksum (``<name>-<8 hex>.th``) the sha256 is verified. It holds no
configuration: a ``config.json`` of constructor arguments beside it (the fixture's layout:
``model`` / ``seanet`` / ``quantizer`` / ``target_bandwidths``, or :class:`EncodecCodec`'s own
flat arguments) is used when present; otherwise the state dict must have the layout of one of
the released models (``encodec_model_24khz`` / ``encodec_model_48khz`` in encodec's
``model.py``), else the import is refused. Keys and shapes map one to one (no renaming).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from audiokit.errors import ConfigError, ModelError

ARCH = "encodec"
_SEANET_COMMON = {
    "dimension": 128,
    "n_filters": 32,
    "n_residual_layers": 1,
    "ratios": [8, 5, 4, 2],
    "lstm": 2,
}
# encodec/model.py: encodec_model_24khz / encodec_model_48khz (n_q from _get_model's rule:
# 1000 * bw_max // (frame_rate * 10) = 32 at 75 Hz, 16 at 150 Hz; bins 1024).
RELEASED: dict[str, dict[str, Any]] = {
    "encodec_24khz": {
        "sample_rate": 24000,
        "channels": 1,
        "causal": True,
        "norm": "weight_norm",
        "audio_normalize": False,
        "segment": None,
        "overlap": 0.01,
        "seanet": _SEANET_COMMON,
        "n_q": 32,
        "bins": 1024,
        "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0],
    },
    "encodec_48khz": {
        "sample_rate": 48000,
        "channels": 2,
        "causal": False,
        "norm": "time_group_norm",
        "audio_normalize": True,
        "segment": 1.0,
        "overlap": 0.01,
        "seanet": _SEANET_COMMON,
        "n_q": 16,
        "bins": 1024,
        "target_bandwidths": [3.0, 6.0, 12.0, 24.0],
    },
}
_SEANET_OPTIONS = (
    "kernel_size",
    "last_kernel_size",
    "residual_kernel_size",
    "dilation_base",
    "pad_mode",
    "true_skip",
    "compress",
    "trim_right_ratio",
    "final_activation",
)
_QUANTIZER_OPTIONS = {
    "decay": "decay",
    "kmeans_init": "kmeans_init",
    "kmeans_iters": "kmeans_iters",
    "threshold_ema_dead_code": "dead_code_threshold",
}


def _find_checkpoint(src: Path) -> Path:
    if src.is_file():
        return src
    found = sorted(src.glob("*.th"))
    if len(found) != 1:
        raise ConfigError(
            f"{src}: expected exactly one EnCodec .th checkpoint in the folder, found "
            f"{len(found)}; "
            "pass the .th file itself"
        )
    return found[0]


def _verify_checksum(path: Path) -> str:
    """sha256 of the file; must start with the 8 hex digits in `<name>-<hex>.th` when present."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    m = re.search(r"-([0-9a-f]{8})$", path.stem)
    if m and not digest.startswith(m.group(1)):
        raise ModelError(
            f"{path}: sha256 {digest[:8]} does not match the {m.group(1)} in its name; the file is "
            "corrupt or renamed, download it again"
        )
    return digest


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ModelError(
            f"{path}: not a readable torch checkpoint ({type(e).__name__}); pass an EnCodec .th"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(
            f"{path}: not a plain state dict of tensors; pass an EnCodec .th "
            "(torch.save(model.state_dict()))"
        )
    return state


def args_from_config(cfg: dict[str, Any], where: Path) -> dict[str, Any]:
    """EncodecCodec arguments from a config.json: the fixture's nested layout or flat args."""
    if "model" not in cfg:
        return dict(cfg)  # already our constructor arguments
    m = cfg["model"]
    seanet = dict(cfg.get("seanet") or {})
    defaults = cfg.get("seanet_defaults_used") or {}
    if defaults.get("activation", "ELU") != "ELU":
        raise ConfigError(
            f"{where}: activation {defaults['activation']!r} is not supported (EnCodec uses ELU)"
        )
    alpha = (defaults.get("activation_params") or {}).get("alpha", 1.0)
    seanet.update({k: defaults[k] for k in _SEANET_OPTIONS if k in defaults}, alpha=alpha)
    args = {
        "sample_rate": m["sample_rate"],
        "channels": m["channels"],
        "causal": m["causal"],
        "norm": m.get("model_norm", "weight_norm"),
        "audio_normalize": m.get("audio_normalize", False),
        "segment": m.get("segment"),
        "overlap": m.get("overlap", 0.01),
        "seanet": seanet,
        "n_q": cfg["quantizer"]["n_q"],
        "bins": cfg["quantizer"]["bins"],
        "target_bandwidths": cfg["target_bandwidths"],
    }
    for theirs, ours in _QUANTIZER_OPTIONS.items():
        if theirs in (cfg.get("quantizer_defaults_used") or {}):
            args[ours] = cfg["quantizer_defaults_used"][theirs]
    return args


def describe_layout(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Structural facts of an EnCodec state dict: channels, norm, widths, ratios, LSTM, RVQ."""
    first = state.get(
        "encoder.model.0.conv.conv.weight_v", state.get("encoder.model.0.conv.conv.weight")
    )
    if first is None:
        raise ModelError(
            "state dict has no encoder.model.0.conv.conv weight; it is not an EnCodec model"
        )
    if any(k.endswith(".weight_g") for k in state):
        norm = "weight_norm"
    elif "encoder.model.0.conv.norm.weight" in state:
        norm = "time_group_norm"
    else:
        norm = "none"
    enc = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.model.")})
    strided = []  # downsampling convs: kernel 2r, in the encoder's (reversed) order
    for i in enc:
        w = state.get(
            f"encoder.model.{i}.conv.conv.weight_v",
            state.get(f"encoder.model.{i}.conv.conv.weight"),
        )
        if w is not None and i > 0 and w.shape[0] == 2 * w.shape[1] and w.shape[2] % 2 == 0:
            strided.append(w.shape[2] // 2)
    last = state.get(
        f"encoder.model.{enc[-1]}.conv.conv.weight_v",
        state.get(f"encoder.model.{enc[-1]}.conv.conv.weight"),
    )
    lstm = sum(1 for k in state if re.fullmatch(r"encoder\.model\.\d+\.lstm\.weight_ih_l\d+", k))
    embeds = [k for k in state if re.fullmatch(r"quantizer\.vq\.layers\.\d+\._codebook\.embed", k)]
    res_blocks = sum(
        1
        for k in state
        if re.fullmatch(r"encoder\.model\.\d+\.block\.1\.conv\.conv\.(weight_v|weight)", k)
    )
    return {
        "channels": int(first.shape[1]),
        "norm": norm,
        "n_filters": int(first.shape[0]),
        "dimension": int(last.shape[0]) if last is not None else None,
        "ratios": list(reversed(strided)),
        "n_residual_layers": res_blocks // max(1, len(strided)),
        "lstm": lstm,
        "n_q": len(embeds),
        "bins": int(state[embeds[0]].shape[0]) if embeds else None,
    }


def recognise(state: dict[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """(release name, EncodecCodec args) of a released EnCodec state dict, or a one-line error."""
    got = describe_layout(state)
    for name, args in RELEASED.items():
        want = {
            "channels": args["channels"],
            "norm": args["norm"],
            **args["seanet"],
            "n_q": args["n_q"],
            "bins": args["bins"],
        }
        if all(got[k] == v for k, v in want.items()):
            return name, json.loads(json.dumps(args))  # a deep copy
    facts = ", ".join(f"{k}={v}" for k, v in got.items())
    raise ModelError(
        f"EnCodec checkpoint with layout ({facts}) is neither released model (encodec_24khz, "
        "encodec_48khz); put a config.json of its constructor arguments beside it"
    )


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Strict one-to-one copy: same keys, same shapes, initialised codebooks."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    extra = [k for k in state if k not in ours]
    shapes = [k for k in ours if k in state and tuple(state[k].shape) != tuple(ours[k].shape)]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}")
        if shapes:
            k = shapes[0]
            parts.append(
                f"shape of {k} is {tuple(state[k].shape)}, expected {tuple(ours[k].shape)}"
            )
        raise ModelError(
            f"{path}: does not fit the EnCodec config ({'; '.join(parts)}); check config.json"
        )
    not_init = [k for k in state if k.endswith("._codebook.inited") and not bool(state[k].all())]
    if not_init:
        raise ModelError(
            f"{path}: codebook {not_init[0]} was never initialised (untrained checkpoint); "
            "import a trained one"
        )
    model.load_state_dict(state, strict=True)


def import_model(src: Path, dst: Path, overwrite: bool = False) -> Path:
    """Convert the EnCodec checkpoint `src` (a .th or a folder holding one) into model dir `dst`."""
    from audiokit.codec.encodec import EncodecCodec
    from audiokit.model_dir import write_model_dir

    src = Path(src)
    ckpt = _find_checkpoint(src)
    digest = _verify_checksum(ckpt)
    state = _load_state(ckpt)
    cfg_path = ckpt.parent / "config.json"
    if cfg_path.is_file():
        try:
            args = args_from_config(json.loads(cfg_path.read_text(encoding="utf-8")), cfg_path)
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(
                f"{cfg_path}: not a usable EnCodec config ({type(e).__name__}: {e}); "
                "fix or remove it"
            ) from None
        recognised = "config.json"
    else:
        recognised, args = recognise(state)
    try:
        model = EncodecCodec(**args)
    except TypeError as e:
        raise ConfigError(f"{cfg_path}: bad EnCodec arguments ({e}); fix config.json") from None
    load_into(model, state, ckpt)
    model.eval()
    meta = {
        "imported_from": "encodec",
        "source": str(src),
        "checkpoint": ckpt.name,
        "sha256": digest,
        "config": recognised,
    }
    return write_model_dir(
        dst,
        model,
        ARCH,
        args,
        None,
        model.sample_rate,
        None,
        meta=meta,
        overwrite=overwrite,
    )
