"""Import an ESPnet OWSM-CTC model (``espnet_ctc`` S2T task) into a packed audiokit model dir.

    audiokit model import --from espnet owsm_ctc_v3.1_1B/ DST

``src`` is the released model folder (``meta.yaml`` naming ``exp/.../config.yaml`` and the
``.pth``; the layout of HF ``espnet/owsm_ctc_v3.1_1B``), an ``exp/...`` folder holding
``config.yaml`` and one ``.pth``, or that ``config.yaml`` itself. Paths inside config.yaml
(``bpemodel``) are relative to the model folder. The YAML is read with ``yaml.safe_load``,
the weights with ``torch.load(weights_only=True)``; every ESPnet tensor must map onto
:class:`audiokit.asr.owsm_ctc.OwsmCTC` with the same shape, and every audiokit tensor must
be filled. Token ids are ESPnet's (``config.yaml:token_list``).

The config decides the task: OWSM-CTC models (``model: espnet_ctc``, ``encoder:
e_branchformer_ctc`` with absolute positions) become ``owsm_ctc``; ESPnet ``asr`` task models
with a Conformer or E-Branchformer encoder and a CTC branch become ``espnet_asr_ctc``
(:mod:`audiokit.importers.espnet_asr`; CTC decoding only). ``meta.yaml`` may name either
``s2t_train_config``/``s2t_model_file`` or ``asr_train_config``/``asr_model_file``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import yaml

from audiokit.errors import ConfigError, ModelError

ARCH = "owsm_ctc"
_SUBSAMPLING = {"conv2d": "conv2d4", "conv2d6": "conv2d6", "conv2d8": "conv2d8"}
_TASK = re.compile(r"^<(asr|st_[A-Za-z_]+)>$")

# ESPnet E-Branchformer layer name fragments -> ours (in order).
_LAYER_NAMES = [
    ("cgmlp.channel_proj1.0.", "cgmlp.proj_in."),
    ("cgmlp.csgu.norm.", "cgmlp.gate_norm."),
    ("cgmlp.csgu.conv.", "cgmlp.gate_conv."),
    ("cgmlp.csgu.linear.", "cgmlp.gate_linear."),
    ("cgmlp.channel_proj2.", "cgmlp.proj_out."),
    ("feed_forward_macaron.", "ff_macaron."),
    ("feed_forward.", "ff."),
    ("norm_mha.", "norm_attn."),
    ("norm_cross_attn.", "norm_cross."),
    ("depthwise_conv_fusion.", "merge_conv."),
]
_PREFIXES = [
    ("encoder.embed.", "subsampling."),
    ("encoder.after_norm.", "encoder.after_norm."),
    ("encoder.conditioning_layer.", "condition."),
    ("prompt_encoder.after_norm.", "text.encoder.after_norm."),
    ("embed.", "text.embed."),
    ("embed_proj.", "text.embed_proj."),
    ("prompt_proj.", "text.prompt_proj."),
    ("ctc.ctc_lo.", "ctc_out."),
]


def map_key(key: str) -> str | None:
    """ESPnet state-dict key -> audiokit key (None: not a weight we keep)."""
    m = re.match(r"^encoder\.encoders\.(\d+)\.(.*)$", key)
    if m:
        rest = m.group(2)
        for a, b in _LAYER_NAMES:
            if rest.startswith(a):
                rest = rest.replace(a, b, 1)
                break
        return f"encoder.layers.{m.group(1)}.{rest}"
    m = re.match(r"^prompt_encoder\.encoders\.(\d+)\.(.*)$", key)
    if m:
        rest = m.group(2).replace("feed_forward.", "ff.", 1)
        return f"text.encoder.layers.{m.group(1)}.{rest}"
    for a, b in _PREFIXES:
        if key.startswith(a):
            return b + key[len(a) :]
    return None


def _find_files(src: Path) -> tuple[Path, Path, Path]:
    """(model root, config.yaml, weights .pth) of ``src``."""
    if src.is_file():
        if src.suffix not in (".yaml", ".yml"):
            raise ConfigError(f"{src}: pass the ESPnet model folder or its config.yaml")
        config, exp = src, src.parent
        root = None
    elif (src / "meta.yaml").is_file():
        meta = _read_yaml(src / "meta.yaml")
        yamls, files = meta.get("yaml_files") or {}, meta.get("files") or {}
        task = "s2t" if "s2t_train_config" in yamls else "asr"
        cfg_rel, pth_rel = yamls.get(f"{task}_train_config"), files.get(f"{task}_model_file")
        if not cfg_rel or not pth_rel:
            raise ConfigError(
                f"{src / 'meta.yaml'}: no yaml_files.s2t_train_config / asr_train_config with "
                "its model file; is this an ESPnet s2t or asr model folder?"
            )
        config, weights = src / cfg_rel, src / pth_rel
        for p in (config, weights):
            if not p.is_file():
                raise ConfigError(f"{p}: listed in meta.yaml but missing; re-download the model")
        return src, config, weights
    elif (src / "config.yaml").is_file():
        config, exp, root = src / "config.yaml", src, None
    else:
        raise ConfigError(
            f"{src}: no meta.yaml or config.yaml; pass an ESPnet model folder (as released on HF)"
        )
    pths = sorted(exp.glob("*.pth"))
    if len(pths) != 1:
        raise ConfigError(
            f"{exp}: found {len(pths)} .pth files; pass the model folder with meta.yaml "
            "naming one, or keep exactly one .pth beside config.yaml"
        )
    # config.yaml paths are relative to the model folder: exp/<name>/config.yaml -> ../..
    root = exp.parent.parent if exp.parent.name == "exp" else exp
    return root, config, pths[0]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}; re-download the model") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a YAML mapping; re-download the model")
    return data


def _resolve(root: Path, config: Path, value: str, key: str) -> Path:
    for cand in (Path(value), root / value, config.parent / value):
        if cand.is_file():
            return cand
    raise ConfigError(f"{config}: {key}={value} not found under {root}; re-download the model")


def check_config(cfg: dict[str, Any], where: Path) -> None:
    """Refuse options this importer does not implement (one-line ConfigError)."""
    want = {
        "model": "espnet_ctc",
        "encoder": "e_branchformer_ctc",
        "promptencoder": "transformer",
        "frontend": "default",
        "normalize": "global_mvn",
    }
    for key, value in want.items():
        if cfg.get(key) != value:
            raise ConfigError(
                f"{where}: {key}={cfg.get(key)!r} is not supported; only OWSM-CTC models "
                f"({key}: {value}) can be imported from ESPnet"
            )
    enc = cfg.get("encoder_conf") or {}
    checks = {
        "pos_enc_layer_type": ("abs_pos", "rel_pos"),
        "attention_layer_type": ("selfattn", "rel_selfattn"),
        "positionwise_layer_type": ("linear", "linear"),
    }
    for key, (ours, default) in checks.items():
        if enc.get(key, default) != ours:
            raise ConfigError(
                f"{where}: encoder_conf.{key}={enc.get(key, default)!r} is not supported (need {ours!r})"
            )
    layer = enc.get("input_layer", "conv2d8")
    if layer not in _SUBSAMPLING:
        raise ConfigError(
            f"{where}: encoder_conf.input_layer={layer!r} is not supported; use conv2d/conv2d6/conv2d8"
        )
    pconf = cfg.get("promptencoder_conf") or {}
    if pconf.get("input_layer") not in (None, "none") and "input_layer" in pconf:
        raise ConfigError(f"{where}: promptencoder_conf.input_layer must be null")
    if not pconf.get("normalize_before", True) or pconf.get("concat_after", False):
        raise ConfigError(
            f"{where}: only a pre-LN prompt encoder without concat_after is supported"
        )
    check_frontend(cfg, where)


def model_args(cfg: dict[str, Any], token_list: list[str], n_mels: int) -> dict[str, Any]:
    """OwsmCTC constructor args from an ESPnet s2t CTC config."""
    enc = cfg.get("encoder_conf") or {}
    pconf = cfg.get("promptencoder_conf") or {}
    mconf = cfg.get("model_conf") or {}
    index = {t: i for i, t in enumerate(token_list)}
    na, nolang = mconf.get("sym_na", "<na>"), "<nolang>"
    for sym in (na, nolang, "<blank>"):
        if sym not in index:
            raise ConfigError(f"token_list has no {sym}; not an OWSM token list")
    tasks = {t: i for t, i in index.items() if _TASK.match(t)}
    if not tasks:
        raise ConfigError(
            "token_list has no task symbols (<asr>, <st_xxx>); not an OWSM token list"
        )
    first_task = min(tasks.values())
    languages = {
        t: i
        for t, i in index.items()
        if index[nolang] < i < first_task and t.startswith("<") and t.endswith(">")
    }
    blocks = int(enc.get("num_blocks", 12))
    cross = enc.get("use_cross_attention", True)
    inter = [int(i) for i in enc.get("interctc_layer_idx") or []]
    return {
        "input_dim": n_mels,
        "vocab_size": len(token_list),
        "languages": languages,
        "tasks": tasks,
        "na_id": index[na],
        "nolang_id": index[nolang],
        "d_model": int(enc.get("output_size", 256)),
        "num_heads": int(enc.get("attention_heads", 4)),
        "num_layers": blocks,
        "ff_units": int(enc.get("linear_units", 2048)),
        "cgmlp_units": int(enc.get("cgmlp_linear_units", 2048)),
        "cgmlp_kernel": int(enc.get("cgmlp_conv_kernel", 31)),
        "merge_kernel": int(enc.get("merge_conv_kernel", 3)),
        "subsampling": _SUBSAMPLING[enc.get("input_layer", "conv2d8")],
        "dropout": float(enc.get("dropout_rate", 0.1)),
        "pos_dropout": float(enc.get("positional_dropout_rate", 0.1)),
        "attn_dropout": float(enc.get("attention_dropout_rate", 0.0)),
        "use_ffn": bool(enc.get("use_ffn", False)),
        "macaron_ffn": bool(enc.get("macaron_ffn", False)),
        "ffn_activation": str(enc.get("ffn_activation_type", "swish")),
        "gate_activation": str(enc.get("gate_activation", "identity")),
        "linear_after_conv": bool(enc.get("use_linear_after_conv", False)),
        "cross_attention": [bool(c) for c in cross]
        if isinstance(cross, list)
        else [bool(cross)] * blocks,
        "interctc_layers": inter,
        "interctc_conditioning": bool(enc.get("interctc_use_conditioning", False)),
        "interctc_weight": float(mconf.get("interctc_weight", 0.0)),
        "ctc_asr_only": [bool(x) for x in mconf.get("ctc_asr_only", [False] * (len(inter) + 1))],
        "prompt_d_model": int(pconf.get("output_size", 256)),
        "prompt_heads": int(pconf.get("attention_heads", 4)),
        "prompt_ff_units": int(pconf.get("linear_units", 2048)),
        "prompt_layers": int(pconf.get("num_blocks", 6)),
        "prompt_dropout": float(pconf.get("dropout_rate", 0.1)),
        "blank_id": index["<blank>"],
    }


def map_state_dict(
    sd: dict[str, torch.Tensor],
    melmat: torch.Tensor,
    norm_means: bool = True,
    norm_vars: bool = True,
) -> dict[str, torch.Tensor]:
    """ESPnet keys -> OwsmCTC keys; GlobalMVN std becomes istd (mean 0 / istd 1 where
    ``normalize_conf`` turns a part off); the stored mel matrix must equal the one the
    espnet_logmel frontend computes."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key == "frontend.logmel.melmat":
            if value.shape != melmat.shape or (value.float() - melmat).abs().max() > 1e-6:
                raise ModelError(
                    "frontend.logmel.melmat differs from librosa's Slaney mel for frontend_conf; "
                    "this model's frontend is not supported"
                )
            continue
        if key == "normalize.mean":
            out["cmvn.mean"] = value.float() if norm_means else torch.zeros_like(value.float())
            continue
        if key == "normalize.std":
            out["cmvn.istd"] = 1.0 / value.float() if norm_vars else torch.ones_like(value.float())
            continue
        new = map_key(key)
        if new is None:
            raise ModelError(
                f"checkpoint tensor {key} has no audiokit counterpart; unsupported model"
            )
        out[new] = value
    return out


def load_tokenizer(cfg: dict[str, Any], root: Path, config: Path):
    """``(tokenizer, token_list)``: ``bpe`` (sentencepiece ``bpemodel``) or ``char`` tokens."""
    from audiokit.text import CharTokenizer, SentencePieceTokenizer, TokenList

    token_list = cfg.get("token_list")
    if isinstance(token_list, str):
        token_list = TokenList.read(_resolve(root, config, token_list, "token_list")).symbols_list
    if not isinstance(token_list, list) or not token_list:
        raise ConfigError(f"{config}: no token_list; re-download the model")
    kind = cfg.get("token_type")
    if kind == "bpe" and not cfg.get("bpemodel"):
        raise ConfigError(f"{config}: token_type is bpe but bpemodel is empty; re-download it")
    if kind == "bpe":
        bpe = _resolve(root, config, str(cfg["bpemodel"]), "bpemodel")
        return SentencePieceTokenizer(bpe, TokenList(token_list)), token_list
    if kind == "char":  # ESPnet char tokens: one per character, "<space>" between words
        tokens = TokenList(token_list)
        return CharTokenizer(tokens, latin="char", space="keep", space_symbol="<space>"), token_list
    raise ConfigError(
        f"{config}: token_type={kind!r} is not supported; use bpe (with a bpemodel) or char"
    )


def load_frontend(cfg: dict[str, Any]):
    """``(frontend dict for model.yaml, EspnetLogMelFrontend, sample_rate)`` of ``frontend_conf``
    (ESPnet ``DefaultFrontend`` defaults: n_fft 512, win_length = n_fft, hop 128, 80 mels)."""
    from audiokit.features.espnet_logmel import _parse_rate, build_espnet_logmel_frontend

    front = dict(cfg.get("frontend_conf") or {})
    sample_rate = _parse_rate(front.pop("fs", 16000))
    frontend: dict[str, Any] = {
        "type": "espnet_logmel",
        "n_fft": int(front.get("n_fft", 512)),
        "win_length": int(front.get("win_length") or front.get("n_fft", 512)),
        "hop_length": int(front.get("hop_length", 128)),
        "n_mels": int(front.get("n_mels", 80)),
    }
    for key in ("fmin", "fmax", "htk"):
        if front.get(key) is not None:
            frontend[key] = front[key]
    fe = build_espnet_logmel_frontend(
        {k: v for k, v in frontend.items() if k != "type"}, sample_rate
    )
    return frontend, fe, sample_rate


def load_state_dict(weights: Path) -> dict[str, torch.Tensor]:
    try:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ModelError(f"{weights}: not a loadable state dict ({e}); re-download it") from None
    if not isinstance(sd, dict):
        raise ModelError(f"{weights}: not a state dict; re-download it")
    return sd


# DefaultFrontend options espnet_logmel reproduces only at ESPnet's default value.
_FRONTEND_DEFAULTS = {
    "window": "hann", "center": True, "normalized": False, "onesided": True, "apply_stft": True,
}  # fmt: skip


def check_frontend(cfg: dict[str, Any], where: Path) -> None:
    """Only frontend_conf options the espnet_logmel frontend reproduces."""
    front = cfg.get("frontend_conf") or {}
    for key, value in front.items():
        if key in ("n_fft", "win_length", "hop_length", "fs", "n_mels", "fmin", "fmax", "htk"):
            continue
        if key not in _FRONTEND_DEFAULTS or value != _FRONTEND_DEFAULTS[key]:
            raise ConfigError(
                f"{where}: frontend_conf.{key}={value!r} is not supported by the espnet_logmel "
                "frontend"
            )


def build_from_espnet(src: Path):
    """``(model, args, frontend, sample_rate, tokenizer, meta)`` from an ESPnet model folder;
    ``model.config`` / the architecture follow the task (see the module doc)."""
    from audiokit.asr.owsm_ctc import OwsmCTC
    from audiokit.importers.espnet_asr import build_asr, is_asr_config

    root, config, weights = _find_files(src)
    cfg = _read_yaml(config)
    if is_asr_config(cfg):
        check_frontend(cfg, config)
        return build_asr(root, config, weights, cfg)
    check_config(cfg, config)
    tokenizer, token_list = load_tokenizer(cfg, root, config)
    if cfg.get("token_type") != "bpe":
        raise ConfigError(f"{config}: token_type must be bpe with a bpemodel; unsupported model")
    frontend, fe, sample_rate = load_frontend(cfg)
    args = model_args(cfg, token_list, frontend["n_mels"])
    sd = load_state_dict(weights)
    norm = cfg.get("normalize_conf") or {}
    mapped = map_state_dict(
        sd, fe.melmat, bool(norm.get("norm_means", True)), bool(norm.get("norm_vars", True))
    )
    model = OwsmCTC(**args)
    own = model.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ModelError(f"{weights}: weights do not fit config.yaml ({what}); unsupported model")
    for k, v in mapped.items():
        if v.shape != own[k].shape:
            raise ModelError(
                f"{weights}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
            )
    model.load_state_dict(mapped, strict=True)
    meta = {
        "espnet_version": str(cfg.get("version", "")),
        "config": str(config.relative_to(root)) if config.is_relative_to(root) else str(config),
        "weights": weights.name,
    }
    return model.eval(), args, frontend, sample_rate, tokenizer, meta


def import_model(src: Path, dst: Path, overwrite: bool = False) -> Path:
    """Convert the ESPnet model folder ``src`` (OWSM-CTC s2t or ASR CTC) into the packed
    model dir ``dst``."""
    from audiokit.importers.espnet_asr import ARCH as ASR_ARCH
    from audiokit.model_dir import write_model_dir

    src, dst = Path(src), Path(dst)
    model, args, frontend, sample_rate, tokenizer, meta = build_from_espnet(src)
    if meta.get("espnet_task") == "asr":
        arch, decoding = ASR_ARCH, {"method": "greedy"}
    else:
        arch = ARCH
        decoding = {"method": "greedy", "options": {"lang": "<nolang>", "task": "<asr>"}}
    return write_model_dir(
        dst, model, arch, args, frontend, sample_rate, tokenizer,
        meta={"imported_from": "espnet", "source": str(src), **meta},
        decoding=decoding, overwrite=overwrite,
    )  # fmt: skip
