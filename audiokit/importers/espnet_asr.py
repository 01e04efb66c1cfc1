"""ESPnet ``asr`` task models (Conformer / E-Branchformer encoder + CTC) for the ``espnet`` importer.

:mod:`audiokit.importers.espnet` reads the files (``config.yaml`` with ``yaml.safe_load``, the
``.pth`` with ``torch.load(weights_only=True)``, token list, ``bpemodel``) and sends ASR configs
here. The model becomes :class:`audiokit.asr.espnet_asr.EspnetASRCTC`: frontend ``default``
(our ``espnet_logmel``), ``normalize: global_mvn`` (the ``normalize.mean/std`` buffers, or
``normalize_conf.stats_file`` when the weights lack them) or none, the encoder, and the CTC
layer. A hybrid model's attention decoder (``decoder.*``) is left out: we decode CTC only.
Options the encoder does not reproduce exactly are refused with a one-line
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiokit.errors import ConfigError, ModelError
from audiokit.importers.funasr_conformer import rename as conformer_layer_key

ARCH = "espnet_asr_ctc"
SUBSAMPLING = {"conv2d": "conv2d4", "conv2d6": "conv2d6", "conv2d8": "conv2d8"}

# encoder_conf keys with no effect on inference (training-only regularisation and the like).
_INERT = {
    "dropout_rate", "positional_dropout_rate", "attention_dropout_rate", "stochastic_depth_rate",
    "layer_drop_rate", "interctc_layer_idx", "padding_idx", "max_pos_emb_len", "output_size",
    "attention_heads", "linear_units", "num_blocks", "input_layer", "pos_enc_layer_type",
    "selfattention_layer_type", "attention_layer_type", "rel_pos_type", "use_flash_attn",
    "positionwise_conv_kernel_size", "gradient_checkpoint_layers",
}  # fmt: skip
# key: (ESPnet default, the only values we reproduce) per encoder.
_FIXED = {
    "conformer": {
        "normalize_before": (True, (True,)),
        "concat_after": (False, (False,)),
        "positionwise_layer_type": ("linear", ("linear",)),
        "activation_type": ("swish", ("swish",)),
        "zero_triu": (False, (False,)),
        "interctc_use_conditioning": (False, (False,)),
        "ctc_trim": (False, (False,)),
        "qk_norm": (False, (False,)),
    },
    "e_branchformer": {
        "positionwise_layer_type": ("linear", ("linear",)),
        "zero_triu": (False, (False,)),
        "interctc_use_conditioning": (False, (False,)),
        "qk_norm": (False, (False,)),
    },
}
_SHAPE = {
    "conformer": {"macaron_style", "use_cnn_module", "cnn_module_kernel"},
    "e_branchformer": {
        "use_ffn", "macaron_ffn", "ffn_activation_type", "cgmlp_linear_units",
        "cgmlp_conv_kernel", "merge_conv_kernel", "gate_activation", "use_linear_after_conv",
    },
}  # fmt: skip
# ESPnet defaults of pos_enc_layer_type / attention type / rel_pos_type per encoder.
_POS_DEFAULTS = {
    "conformer": ("rel_pos", "rel_selfattn", "legacy", "selfattention_layer_type"),
    "e_branchformer": ("rel_pos", "rel_selfattn", "latest", "attention_layer_type"),
}


def is_asr_config(cfg: dict[str, Any]) -> bool:
    """True for an ESPnet ``asr`` task config (no s2t prompt encoder / ``espnet_ctc`` model)."""
    return (
        cfg.get("model", "espnet") in (None, "espnet")
        and "promptencoder" not in cfg
        and cfg.get("encoder") != "e_branchformer_ctc"
        and not str(cfg.get("preprocessor") or "").startswith("s2t")
    )


def _positions(enc: dict[str, Any], encoder: str, where: Path) -> str:
    """``rel_latest`` / ``rel_legacy`` / ``abs`` from the three ESPnet position options."""
    pos_default, att_default, rel_default, att_key = _POS_DEFAULTS[encoder]
    pos = enc.get("pos_enc_layer_type", pos_default)
    att = enc.get(att_key, att_default)
    rel = enc.get("rel_pos_type", rel_default)
    if pos == "abs_pos" and att == "selfattn":
        return "abs"
    if rel == "latest" and (pos, att) == ("rel_pos", "rel_selfattn"):
        return "rel_latest"
    if rel == "legacy" and pos in ("rel_pos", "legacy_rel_pos"):
        if att in ("rel_selfattn", "legacy_rel_selfattn"):
            return "rel_legacy"
    key = "pos_enc_layer_type" if pos not in ("rel_pos", "legacy_rel_pos", "abs_pos") else att_key
    value = pos if key == "pos_enc_layer_type" else att
    raise ConfigError(
        f"{where}: encoder_conf.{key}={value!r} (rel_pos_type {rel!r}) is not supported; use "
        "abs_pos+selfattn or rel_pos+rel_selfattn"
    )


def check_asr_config(cfg: dict[str, Any], where: Path) -> None:
    """Refuse options this importer does not reproduce (one-line ConfigError naming the key)."""
    encoder = cfg.get("encoder")
    if encoder not in _FIXED:
        raise ConfigError(
            f"{where}: encoder={encoder!r} is not supported; ESPnet ASR import takes conformer "
            "or e_branchformer encoders"
        )
    for key, want in (("frontend", "default"), ("preencoder", None), ("postencoder", None)):
        if cfg.get(key, want) != want:
            raise ConfigError(f"{where}: {key}={cfg.get(key)!r} is not supported (need {want!r})")
    if cfg.get("decoder") in ("transducer", "rnnt", "linear_decoder"):
        raise ConfigError(
            f"{where}: decoder={cfg['decoder']!r} is not supported; only CTC (or hybrid "
            "CTC/attention) ASR models can be imported"
        )
    if cfg.get("normalize") not in ("global_mvn", None):
        raise ConfigError(
            f"{where}: normalize={cfg['normalize']!r} is not supported; use global_mvn or none"
        )
    if float((cfg.get("model_conf") or {}).get("ctc_weight", 0.5)) <= 0.0:
        raise ConfigError(
            f"{where}: model_conf.ctc_weight=0 means no trained CTC branch; only CTC decoding "
            "is imported"
        )
    enc = cfg.get("encoder_conf") or {}
    known = _INERT | set(_FIXED[encoder]) | _SHAPE[encoder]
    extra = sorted(set(enc) - known)
    if extra:
        raise ConfigError(f"{where}: encoder_conf.{extra[0]} is not supported for {encoder}")
    for key, (default, allowed) in _FIXED[encoder].items():
        if enc.get(key, default) not in allowed:
            raise ConfigError(
                f"{where}: encoder_conf.{key}={enc.get(key, default)!r} is not supported "
                f"(need {allowed[0]!r})"
            )
    layer = enc.get("input_layer", "conv2d")
    if layer not in SUBSAMPLING:
        raise ConfigError(
            f"{where}: encoder_conf.input_layer={layer!r} is not supported; use conv2d/conv2d6/"
            "conv2d8"
        )
    _positions(enc, encoder, where)


def asr_model_args(
    cfg: dict[str, Any], where: Path, vocab_size: int, n_mels: int, blank_id: int
) -> dict[str, Any]:
    """:class:`EspnetASRCTC` constructor args from an ESPnet ASR config (ESPnet defaults)."""
    encoder = cfg["encoder"]
    enc = cfg.get("encoder_conf") or {}
    args: dict[str, Any] = {
        "input_dim": n_mels,
        "vocab_size": vocab_size,
        "blank_id": blank_id,
        "block": encoder,
        "d_model": int(enc.get("output_size", 256)),
        "num_heads": int(enc.get("attention_heads", 4)),
        "num_layers": int(enc.get("num_blocks", 6 if encoder == "conformer" else 12)),
        "ff_units": int(enc.get("linear_units", 2048)),
        "subsampling": SUBSAMPLING[enc.get("input_layer", "conv2d")],
        "positions": _positions(enc, encoder, where),
        "dropout": float(enc.get("dropout_rate", 0.1)),
        "pos_dropout": float(enc.get("positional_dropout_rate", 0.1)),
        "attn_dropout": float(enc.get("attention_dropout_rate", 0.0)),
    }
    if encoder == "conformer":
        args["macaron"] = bool(enc.get("macaron_style", False))
        args["use_conv"] = bool(enc.get("use_cnn_module", True))
        args["conv_kernel"] = int(enc.get("cnn_module_kernel", 31))
    else:
        args["use_ffn"] = bool(enc.get("use_ffn", False))
        args["macaron"] = bool(enc.get("macaron_ffn", False))
        args["ffn_activation"] = str(enc.get("ffn_activation_type", "swish"))
        args["cgmlp_units"] = int(enc.get("cgmlp_linear_units", 2048))
        args["cgmlp_kernel"] = int(enc.get("cgmlp_conv_kernel", 31))
        args["merge_kernel"] = int(enc.get("merge_conv_kernel", 3))
        args["gate_activation"] = str(enc.get("gate_activation", "identity"))
        args["linear_after_conv"] = bool(enc.get("use_linear_after_conv", False))
    return args


def _ebf_layer_key(rest: str) -> str:
    from audiokit.importers.espnet import _LAYER_NAMES  # E-Branchformer names, shared with s2t

    for a, b in _LAYER_NAMES:
        if rest.startswith(a):
            return rest.replace(a, b, 1)
    return rest


def map_asr_key(key: str, encoder: str) -> str | None:
    """ESPnet ASR state-dict key -> :class:`EspnetASRCTC` key (None: not ours)."""
    m = re.fullmatch(r"encoder\.embed\.conv\.(\d+)\.(weight|bias)", key)
    if m:
        return f"encoder.subsampling.conv.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"encoder\.embed\.out(?:\.0)?\.(weight|bias)", key)  # conv2d8: no .0
    if m:
        return f"encoder.subsampling.out.{m.group(1)}"
    if key.startswith("encoder.after_norm."):
        return key
    if key.startswith("ctc.ctc_lo."):
        return "ctc_out." + key[len("ctc.ctc_lo.") :]
    m = re.fullmatch(r"encoder\.encoders\.(\d+)\.(.+)", key)
    if not m:
        return None
    if encoder == "conformer":
        return conformer_layer_key(key)
    return f"encoder.layers.{m.group(1)}.{_ebf_layer_key(m.group(2))}"


def _mvn_from_stats(cfg: dict[str, Any], root: Path, config: Path) -> dict[str, torch.Tensor]:
    """``normalize.mean/std`` as ESPnet's GlobalMVN computes them from ``feats_stats.npz``."""
    from audiokit.importers.espnet import _resolve

    stats = (cfg.get("normalize_conf") or {}).get("stats_file")
    if not stats:
        raise ModelError(f"{config}: no normalize.mean/std in the weights and no stats_file")
    path = _resolve(root, config, str(stats), "normalize_conf.stats_file")
    with np.load(path) as z:
        count, total, squares = float(z["count"]), z["sum"], z["sum_square"]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 1.0e-20))
    return {"normalize.mean": torch.from_numpy(mean), "normalize.std": torch.from_numpy(std)}


def build_asr(root: Path, config: Path, weights: Path, cfg: dict[str, Any]):
    """``(model, args, frontend, sample_rate, tokenizer, meta)`` for an ESPnet ASR model."""
    from audiokit.asr.espnet_asr import EspnetASRCTC
    from audiokit.importers.espnet import load_frontend, load_state_dict, load_tokenizer

    check_asr_config(cfg, config)
    tokenizer, token_list = load_tokenizer(cfg, root, config)
    if "<blank>" not in token_list:
        raise ConfigError(f"{config}: token_list has no <blank>; not an ESPnet CTC token list")
    frontend, fe, sample_rate = load_frontend(cfg)
    args = asr_model_args(
        cfg, config, len(token_list), frontend["n_mels"], token_list.index("<blank>")
    )
    sd = load_state_dict(weights)
    if cfg.get("normalize") == "global_mvn" and "normalize.mean" not in sd:
        sd.update(_mvn_from_stats(cfg, root, config))
    norm = cfg.get("normalize_conf") or {}
    means, variances = bool(norm.get("norm_means", True)), bool(norm.get("norm_vars", True))
    mapped: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("decoder.") or key.startswith("criterion_att."):
            continue  # hybrid model: the attention decoder is not used (CTC decoding only)
        if key == "frontend.logmel.melmat":
            if value.shape != fe.melmat.shape or (value.float() - fe.melmat).abs().max() > 1e-6:
                raise ModelError(
                    f"{weights}: frontend.logmel.melmat differs from librosa's Slaney mel for "
                    "frontend_conf; this frontend is not supported"
                )
            continue
        if key == "normalize.mean":
            mapped["cmvn.mean"] = value.float() if means else torch.zeros_like(value.float())
            continue
        if key == "normalize.std":
            mapped["cmvn.istd"] = 1.0 / value.float() if variances else torch.ones_like(value)
            continue
        new = map_asr_key(key, args["block"])
        if new is None:
            raise ModelError(f"{weights}: tensor {key} has no audiokit counterpart; unsupported")
        mapped[new] = value
    model = EspnetASRCTC(**args)
    own = model.state_dict()
    if cfg.get("normalize") is None:  # no MVN: identity statistics
        mapped.setdefault("cmvn.mean", own["cmvn.mean"])
        mapped.setdefault("cmvn.istd", own["cmvn.istd"])
    missing, unexpected = sorted(set(own) - set(mapped)), sorted(set(mapped) - set(own))
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise ModelError(f"{weights}: weights do not fit config.yaml ({what}); unsupported model")
    for k, v in mapped.items():
        if v.shape != own[k].shape:
            raise ModelError(
                f"{weights}: {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
            )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=True)
    meta = {
        "espnet_task": "asr",
        "espnet_version": str(cfg.get("version", "")),
        "config": str(config.relative_to(root)) if config.is_relative_to(root) else str(config),
        "weights": weights.name,
        "decoding_note": "CTC only (an attention decoder, if any, is not imported)",
    }
    return model.eval(), args, frontend, sample_rate, tokenizer, meta
