"""Import a FunASR Paraformer model folder into an audiokit model dir.

    audiokit model import --from funasr SRC_DIR DST_DIR

``SRC_DIR`` is a FunASR/ModelScope released-model folder: ``config.yaml`` (read with
``yaml.safe_load``), ``model.pt`` (``torch.load(weights_only=True)``: a plain state dict or a
``{"state_dict"|"model": ...}`` wrapper), ``am.mvn``, ``tokens.json`` and, when present,
``seg_dict``. Supported: ``model: Paraformer`` with ``SANMEncoder`` | ``ConformerEncoder``
(``rel_pos_type: legacy``, see :mod:`audiokit.importers.funasr_conformer`), ``CifPredictorV2`` |
``CifPredictor`` and ``ParaformerSANMDecoder`` | ``ParaformerSANDecoder`` (+ the optional CTC
head), ``WavFrontend``. Anything else is refused with a one-line :class:`ConfigError`.

Weights are mapped strictly (:func:`map_state_dict`): every FunASR key is used, shapes must fit,
and leftover or missing keys are an error (FunASR itself only logs them and keeps random
weights). ``decoder.embed`` is kept: unused at inference, the glancing sampler needs it when
the imported model is fine-tuned.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from audiokit.errors import ConfigError, ModelError
from audiokit.importers import funasr_conformer

SUPPORTED = {
    "model": ("Paraformer",),
    "encoder": ("SANMEncoder", "ConformerEncoder"),
    "predictor": ("CifPredictorV2", "CifPredictor"),
    "decoder": ("ParaformerSANMDecoder", "ParaformerSANDecoder"),
    "frontend": ("WavFrontend",),
}

# FunASR key (regex on the key without its top-level prefix) -> audiokit key template.
_ENCODER_LAYER = {
    r"self_attn\.linear_q_k_v\.(weight|bias)": "attn.qkv.{0}",
    r"self_attn\.linear_out\.(weight|bias)": "attn.out.{0}",
    r"self_attn\.fsmn_block\.weight": "attn.fsmn.conv.weight",
    r"feed_forward\.w_1\.(weight|bias)": "ff.w1.{0}",
    r"feed_forward\.w_2\.(weight|bias)": "ff.w2.{0}",
    r"norm1\.(weight|bias)": "norm_attn.{0}",
    r"norm2\.(weight|bias)": "norm_ff.{0}",
}
_SANM_DECODER_LAYER = {
    r"self_attn\.fsmn_block\.weight": "fsmn.conv.weight",
    r"src_attn\.linear_q\.(weight|bias)": "cross.q.{0}",
    r"src_attn\.linear_k_v\.(weight|bias)": "cross.kv.{0}",
    r"src_attn\.linear_out\.(weight|bias)": "cross.out.{0}",
    r"feed_forward\.w_1\.(weight|bias)": "ff.w1.{0}",
    r"feed_forward\.w_2\.weight": "ff.w2.weight",
    r"feed_forward\.norm\.(weight|bias)": "ff.norm.{0}",
    r"norm1\.(weight|bias)": "norm_ff.{0}",
    r"norm2\.(weight|bias)": "norm_fsmn.{0}",
    r"norm3\.(weight|bias)": "norm_cross.{0}",
}
_SAN_DECODER_LAYER = {  # q/k/v of the plain transformer are fused below
    r"self_attn\.linear_out\.(weight|bias)": "self_attn.out.{0}",
    r"src_attn\.linear_q\.(weight|bias)": "cross.q.{0}",
    r"src_attn\.linear_out\.(weight|bias)": "cross.out.{0}",
    r"feed_forward\.w_1\.(weight|bias)": "ff.w1.{0}",
    r"feed_forward\.w_2\.(weight|bias)": "ff.w2.{0}",
    r"norm1\.(weight|bias)": "norm_self.{0}",
    r"norm2\.(weight|bias)": "norm_cross.{0}",
    r"norm3\.(weight|bias)": "norm_ff.{0}",
}
_TOP = {
    r"encoder\.after_norm\.(weight|bias)": "encoder.after_norm.{0}",
    r"predictor\.cif_conv1d\.(weight|bias)": "predictor.conv.{0}",
    r"predictor\.cif_output\.(weight|bias)": "predictor.output.{0}",
    r"decoder\.embed\.0\.weight": "decoder.embed.weight",
    r"decoder\.after_norm\.(weight|bias)": "decoder.after_norm.{0}",
    r"decoder\.output_layer\.(weight|bias)": "decoder.output.{0}",
    r"decoder\.decoders3\.0\.feed_forward\.w_1\.(weight|bias)": "decoder.final_ff.w1.{0}",
    r"decoder\.decoders3\.0\.feed_forward\.w_2\.weight": "decoder.final_ff.w2.weight",
    r"decoder\.decoders3\.0\.feed_forward\.norm\.(weight|bias)": "decoder.final_ff.norm.{0}",
    r"decoder\.decoders3\.0\.norm1\.(weight|bias)": "decoder.final_norm.{0}",
    r"ctc\.ctc_lo\.(weight|bias)": "ctc.{0}",
}


def _rename(key: str, decoder_kind: str, encoder_kind: str = "sanm") -> str | None:
    """audiokit name of a FunASR key, or None when the key has no one-to-one counterpart."""
    for pattern, target in _TOP.items():
        m = re.fullmatch(pattern, key)
        if m:
            return target.format(*m.groups())
    if encoder_kind == "conformer" and key.startswith("encoder."):
        return funasr_conformer.rename(key)
    m = re.fullmatch(r"encoder\.encoders(0?)\.(\d+)\.(.+)", key)
    if m:
        index = int(m.group(2)) + (0 if m.group(1) else 1)  # encoders0.0 is our layer 0
        return _sub(_ENCODER_LAYER, m.group(3), f"encoder.layers.{index}.")
    m = re.fullmatch(r"decoder\.decoders(2?)\.(\d+)\.(.+)", key)
    if m:
        group = "fsmn_layers" if m.group(1) else "layers"
        prefix = f"decoder.{group}.{m.group(2)}."
        table = _SANM_DECODER_LAYER if decoder_kind == "sanm" else _SAN_DECODER_LAYER
        return _sub(table, m.group(3), prefix)
    return None


def _sub(table: dict[str, str], rest: str, prefix: str) -> str | None:
    for pattern, target in table.items():
        m = re.fullmatch(pattern, rest)
        if m:
            return prefix + target.format(*m.groups())
    return None


def map_state_dict(
    src: dict[str, torch.Tensor],
    model: torch.nn.Module,
    decoder_kind: str,
    encoder_kind: str = "sanm",
) -> dict[str, torch.Tensor]:
    """FunASR state dict -> the audiokit model's, strictly (ModelError listing any mismatch).

    The plain transformer decoder's separate q/k/v (self) and k/v (cross) projections are
    concatenated into our fused ``qkv`` / ``kv`` layers. Our CMVN buffers come from am.mvn and
    are taken from ``model`` as they are.
    """
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    if decoder_kind == "transformer":
        for key in src:
            m = re.fullmatch(
                r"decoder\.decoders\.(\d+)\.(self|src)_attn\.linear_q\.(weight|bias)", key
            )
            if not m:
                continue
            i, kind, part = m.groups()
            base = f"decoder.decoders.{i}.{kind}_attn"
            names = ["q", "k", "v"] if kind == "self" else ["k", "v"]
            keys = [f"{base}.linear_{n}.{part}" for n in names]
            missing = [k for k in keys if k not in src]
            if missing:
                raise ModelError(f"model.pt lacks {missing[0]}; the checkpoint is incomplete")
            ours = f"decoder.layers.{i}." + ("self_attn.qkv" if kind == "self" else "cross.kv")
            out[f"{ours}.{part}"] = torch.cat([src[k] for k in keys], dim=0)
            used.update(keys)
    leftovers = []
    for key, value in src.items():
        if key in used:
            continue
        name = _rename(key, decoder_kind, encoder_kind)
        if name is None or name not in target:
            leftovers.append(key)
            continue
        out[name] = value
    if leftovers:
        shown = ", ".join(leftovers[:5]) + (" ..." if len(leftovers) > 5 else "")
        raise ModelError(
            f"model.pt has {len(leftovers)} keys the config's model does not use ({shown}); "
            "check that config.yaml belongs to this checkpoint"
        )
    for name, value in target.items():
        if name.startswith("cmvn."):
            out[name] = value
    missing = [k for k in target if k not in out]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelError(
            f"model.pt lacks weights for {len(missing)} parameters ({shown}); "
            "check that config.yaml belongs to this checkpoint"
        )
    bad = [k for k in out if tuple(out[k].shape) != tuple(target[k].shape)]
    if bad:
        k = bad[0]
        raise ModelError(
            f"model.pt: {k} has shape {tuple(out[k].shape)}, the config gives "
            f"{tuple(target[k].shape)}; check that config.yaml belongs to this checkpoint"
        )
    return {k: v.to(target[k].dtype) for k, v in out.items()}


def _conf(cfg: dict[str, Any], part: str) -> tuple[str, dict[str, Any]]:
    name = cfg.get(part)
    conf = cfg.get(f"{part}_conf") or {}
    if name not in SUPPORTED[part]:
        raise ConfigError(
            f"config.yaml: {part} class {name!r} is not supported by the FunASR importer; "
            f"supported: {', '.join(SUPPORTED[part])}"
        )
    if not isinstance(conf, dict):
        raise ConfigError(f"config.yaml: {part}_conf is not a mapping; fix the file")
    return name, conf


def _require(conf: dict[str, Any], key: str, default: Any, allowed: tuple, where: str) -> None:
    value = conf.get(key, default)
    if value not in allowed:
        raise ConfigError(
            f"config.yaml: {where}.{key}={value!r} is not supported by the FunASR importer "
            f"(supported: {', '.join(map(repr, allowed))})"
        )


def model_args(cfg: dict[str, Any], vocab_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(Paraformer constructor args, model.yaml frontend)`` from a FunASR config.yaml dict.

    Defaults that apply when a key is absent are FunASR's class defaults.
    """
    _conf(cfg, "model")
    enc_name, enc = _conf(cfg, "encoder")
    pred_name, pred = _conf(cfg, "predictor")
    dec_name, dec = _conf(cfg, "decoder")
    _, front = _conf(cfg, "frontend")
    mc = cfg.get("model_conf") or {}
    for key, default, allowed in (
        ("input_layer", "conv2d", ("pe",)),
        ("normalize_before", True, (True,)),
        ("concat_after", False, (False,)),
        ("selfattention_layer_type", "sanm", ("sanm",)),
        ("positionwise_layer_type", "linear", ("linear",)),
        ("interctc_layer_idx", [], ([],)),
    ):
        if enc_name == "SANMEncoder":
            _require(enc, key, default, allowed, "encoder_conf")
    for key, default, allowed in (
        ("input_layer", "embed", ("embed",)),
        ("use_output_layer", True, (True,)),
        ("wo_input_layer", False, (False,)),
        ("normalize_before", True, (True,)),
        ("concat_after", False, (False,)),
    ):
        _require(dec, key, default, allowed, "decoder_conf")
    _require(front, "upsacle_samples", True, (True,), "frontend_conf")
    _require(mc, "ignore_id", -1, (-1,), "model_conf")
    _require(mc, "share_embedding", False, (False,), "model_conf")
    d = int(enc.get("output_size", 256))
    if int(pred.get("idim", d)) != d:
        raise ConfigError(
            f"config.yaml: predictor_conf.idim {pred.get('idim')} != encoder output_size {d}"
        )
    n_mels = int(front.get("n_mels", 80))
    args: dict[str, Any] = {
        "input_dim": n_mels,
        "vocab_size": vocab_size,
        "lfr_m": int(front.get("lfr_m", 1)),
        "lfr_n": int(front.get("lfr_n", 1)),
        "encoder": "sanm",
        "d_model": d,
        "num_heads": int(enc.get("attention_heads", 4)),
        "ff_dim": int(enc.get("linear_units", 2048)),
        "num_layers": int(enc.get("num_blocks", 6)),
        "sanm_kernel": int(enc.get("kernel_size", 11)),
        "sanm_shift": int(enc.get("sanm_shfit", 0)),
        "dropout": float(enc.get("dropout_rate", 0.1)),
        "attn_dropout": float(enc.get("attention_dropout_rate", 0.0)),
        "predictor": "v2" if pred_name == "CifPredictorV2" else "v1",
        "predictor_l_order": int(pred.get("l_order", 1)),
        "predictor_r_order": int(pred.get("r_order", 1)),
        "predictor_dropout": float(pred.get("dropout", 0.1)),
        "cif_threshold": float(pred.get("threshold", 1.0)),
        "smooth_factor": float(pred.get("smooth_factor", 1.0)),
        "noise_threshold": float(pred.get("noise_threshold", 0.0)),
        # class defaults differ: CifPredictorV2 0.0, CifPredictor 0.45
        "tail_threshold": float(
            pred.get("tail_threshold", 0.0 if pred_name == "CifPredictorV2" else 0.45)
        ),
        "decoder_heads": int(dec.get("attention_heads", 4)),
        "decoder_ff_dim": int(dec.get("linear_units", 2048)),
        "decoder_dropout": float(dec.get("dropout_rate", 0.1)),
        "decoder_self_attn_dropout": float(dec.get("self_attention_dropout_rate", 0.0)),
        "decoder_src_attn_dropout": float(dec.get("src_attention_dropout_rate", 0.0)),
        "ctc_weight": float(mc.get("ctc_weight", 0.5)),
        "lsm_weight": float(mc.get("lsm_weight", 0.0)),
        "length_normalized_loss": bool(mc.get("length_normalized_loss", False)),
        "predictor_weight": float(mc.get("predictor_weight", 0.0)),
        "predictor_bias": int(mc.get("predictor_bias", 0)),
        "sampling_ratio": float(mc.get("sampling_ratio", 0.2)),
        "blank_id": int(mc.get("blank_id", 0)),
        "sos_id": int(mc.get("sos", 1)),
        "eos_id": int(mc.get("eos", 2)),
    }
    if enc_name == "ConformerEncoder":
        for key in ("sanm_kernel", "sanm_shift"):
            del args[key]
        args.update(funasr_conformer.encoder_args(enc))
    if dec_name == "ParaformerSANMDecoder":
        kernel = int(dec.get("kernel_size", 21))
        shift = dec.get("sanm_shfit", 0)
        layers = int(dec.get("att_layer_num", 6))
        args.update(
            decoder="sanm",
            decoder_layers=layers,
            decoder_fsmn_layers=max(int(dec.get("num_blocks", 6)) - layers, 0),
            decoder_kernel=kernel,
            decoder_sanm_shift=(kernel - 1) // 2 if shift is None else int(shift),
        )
    else:
        args.update(decoder="transformer", decoder_layers=int(dec.get("num_blocks", 6)))
    frontend = {
        "type": "fbank",
        "window_type": str(front.get("window", "hamming")),
        "num_mel_bins": n_mels,
        "frame_length": float(front.get("frame_length", 25)),
        "frame_shift": float(front.get("frame_shift", 10)),
        "energy_floor": 0.0,
        "snip_edges": bool(front.get("snip_edges", True)),
        "dither": 0.0,
    }
    return args, frontend


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """``model.pt`` as a flat {name: tensor} dict (unwrapping ``state_dict``/``model``)."""
    if not path.is_file():
        raise ConfigError(f"{path}: not found; a FunASR model folder has model.pt")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(f"{path}: cannot be read as a weights-only checkpoint ({first})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: not a state dict of tensors; pass FunASR's model.pt")
    return dict(obj)


def _read_config(src: Path) -> dict[str, Any]:
    path = src / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{path}: not found; pass a FunASR model folder (config.yaml, model.pt, ...)"
        )
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}; fix or re-download the file") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: not a YAML mapping; fix or re-download the file")
    return cfg


def _read_tokenizer(src: Path):
    from audiokit.text.funasr_tokenizer import FunasrTokenizer, read_seg_dict

    path = src / "tokens.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; a FunASR model folder has tokens.json")
    try:
        tokens = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise ConfigError(f"{path}: expected a JSON list of token strings")
    seg_path = src / "seg_dict"
    return FunasrTokenizer(tokens, read_seg_dict(seg_path) if seg_path.is_file() else None)


def import_model(src: Path, dst: Path, overwrite: bool = False) -> Path:
    """Convert the FunASR model folder ``src`` into the audiokit model dir ``dst``."""
    from audiokit.asr.paraformer import Paraformer
    from audiokit.features.cmvn import read_am_mvn
    from audiokit.model_dir import write_model_dir

    src = Path(src)
    if not src.is_dir():
        raise ConfigError(f"{src}: not a folder; pass the FunASR model folder")
    cfg = _read_config(src)
    tokenizer = _read_tokenizer(src)
    args, frontend = model_args(cfg, tokenizer.vocab_size)
    model = Paraformer(**args)
    cmvn_name = (cfg.get("frontend_conf") or {}).get("cmvn_file") or "am.mvn"
    cmvn_path = src / Path(str(cmvn_name)).name
    if not cmvn_path.is_file():
        raise ConfigError(f"{cmvn_path}: not found; the FunASR model folder needs its am.mvn")
    mean, istd = read_am_mvn(cmvn_path)
    dim = model.input_dim * model.lfr_m
    # FunASR slices longer CMVN vectors to the feature dim; shorter ones cannot be used.
    if mean.shape[0] < dim:
        raise ConfigError(f"{cmvn_path}: has {mean.shape[0]} dims, the model needs {dim}")
    model.set_cmvn(mean[:dim], istd[:dim])
    state = map_state_dict(
        load_state_dict(src / "model.pt"), model, args["decoder"], args["encoder"]
    )
    model.load_state_dict(state, strict=True)
    meta = {
        "imported_from": "funasr",
        "source": str(src.resolve()),
        "funasr_classes": {p: cfg.get(p) for p in ("model", "encoder", "predictor", "decoder")},
    }
    return write_model_dir(
        dst,
        model,
        "paraformer",
        model.config,
        frontend,
        int((cfg.get("frontend_conf") or {}).get("fs", 16000)),
        tokenizer,
        cmvn_path=cmvn_path,
        meta=meta,
        overwrite=overwrite,
    )
