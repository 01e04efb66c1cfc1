"""FunASR ``ConformerEncoder`` (ESPnet layout) -> :class:`audiokit.nn.conformer.ConformerEncoder`.

Used by :mod:`audiokit.importers.funasr` for Conformer Paraformers (FunASR's AISHELL recipe
``paraformer_conformer_12e_6d_2048_256.yaml``). Only the configuration our encoder reproduces
exactly is accepted: pre-norm macaron blocks with the conv module (BatchNorm, swish), Conv2d
subsampling (4/6/8), ``rel_pos_type: legacy`` relative positions and LayerNorm eps 1e-12.
"""

from __future__ import annotations

import re
from typing import Any

from audiokit.errors import ConfigError

SUBSAMPLING = {"conv2d": "conv2d4", "conv2d6": "conv2d6", "conv2d8": "conv2d8"}

# FunASR key inside ``encoder.encoders.N.`` -> ours inside ``encoder.layers.N.``.
LAYER = {
    r"self_attn\.(linear_q|linear_k|linear_v|linear_out)\.(weight|bias)": "attn.{0}.{1}",
    r"self_attn\.linear_pos\.weight": "attn.linear_pos.weight",
    r"self_attn\.(pos_bias_u|pos_bias_v)": "attn.{0}",
    r"feed_forward\.w_1\.(weight|bias)": "ff.net.0.{0}",
    r"feed_forward\.w_2\.(weight|bias)": "ff.net.3.{0}",
    r"feed_forward_macaron\.w_1\.(weight|bias)": "ff_macaron.net.0.{0}",
    r"feed_forward_macaron\.w_2\.(weight|bias)": "ff_macaron.net.3.{0}",
    r"conv_module\.pointwise_conv1\.(weight|bias)": "conv.pointwise1.{0}",
    r"conv_module\.depthwise_conv\.(weight|bias)": "conv.depthwise.{0}",
    r"conv_module\.pointwise_conv2\.(weight|bias)": "conv.pointwise2.{0}",
    r"conv_module\.norm\.(weight|bias|running_mean|running_var|num_batches_tracked)": (
        "conv.norm.{0}"
    ),
    r"norm_mha\.(weight|bias)": "norm_attn.{0}",
    r"(norm_ff|norm_ff_macaron|norm_conv|norm_final)\.(weight|bias)": "{0}.{1}",
}
EMBED = {
    r"encoder\.embed\.conv\.(\d+)\.(weight|bias)": "encoder.subsampling.conv.{0}.{1}",
    r"encoder\.embed\.out\.0\.(weight|bias)": "encoder.subsampling.out.{0}",
}


def rename(key: str) -> str | None:
    """audiokit name of a FunASR Conformer-encoder key (None: not one of them)."""
    for pattern, target in EMBED.items():
        m = re.fullmatch(pattern, key)
        if m:
            return target.format(*m.groups())
    m = re.fullmatch(r"encoder\.encoders\.(\d+)\.(.+)", key)
    if not m:
        return None
    for pattern, target in LAYER.items():
        mm = re.fullmatch(pattern, m.group(2))
        if mm:
            return f"encoder.layers.{m.group(1)}." + target.format(*mm.groups())
    return None


def _require(enc: dict[str, Any], key: str, default: Any, allowed: tuple) -> None:
    value = enc.get(key, default)
    if value not in allowed:
        raise ConfigError(
            f"config.yaml: encoder_conf.{key}={value!r} is not supported for ConformerEncoder "
            f"(supported: {', '.join(map(repr, allowed))})"
        )


def encoder_args(enc: dict[str, Any]) -> dict[str, Any]:
    """Paraformer constructor args for FunASR's ``encoder_conf`` (FunASR class defaults)."""
    rel_pos_type = enc.get("rel_pos_type", "legacy")
    if rel_pos_type != "legacy":
        raise ConfigError(
            f"config.yaml: encoder_conf.rel_pos_type={rel_pos_type!r} is not supported for "
            "ConformerEncoder (supported: 'legacy', FunASR's default)"
        )
    for key, default, allowed in (
        ("input_layer", "conv2d", tuple(SUBSAMPLING)),
        ("normalize_before", True, (True,)),
        ("concat_after", False, (False,)),
        ("positionwise_layer_type", "linear", ("linear",)),
        ("macaron_style", False, (True,)),
        ("use_cnn_module", True, (True,)),
        ("activation_type", "swish", ("swish",)),
        ("pos_enc_layer_type", "rel_pos", ("rel_pos", "legacy_rel_pos")),
        ("selfattention_layer_type", "rel_selfattn", ("rel_selfattn", "legacy_rel_selfattn")),
        ("zero_triu", False, (False,)),
        ("interctc_layer_idx", [], ([],)),
    ):
        _require(enc, key, default, allowed)
    return {
        "encoder": "conformer",
        "d_model": int(enc.get("output_size", 256)),
        "num_heads": int(enc.get("attention_heads", 4)),
        "ff_dim": int(enc.get("linear_units", 2048)),
        "num_layers": int(enc.get("num_blocks", 6)),
        "conv_kernel": int(enc.get("cnn_module_kernel", 31)),
        "subsampling": SUBSAMPLING[enc.get("input_layer", "conv2d")],
        "conv_norm": "batch_norm",
        "rel_pos": "legacy",
        "norm_eps": 1e-12,
        "dropout": float(enc.get("dropout_rate", 0.1)),
        "attn_dropout": float(enc.get("attention_dropout_rate", 0.0)),
    }
