"""Import a NeMo cache-aware FastConformer ``.nemo`` (hybrid RNN-T + CTC, CTC-only or RNN-T-only).

    audiokit model import --from nemo stt_en_fastconformer_hybrid_large_streaming_multi.nemo DST

The ``.nemo`` is a tar of ``model_config.yaml``, ``model_weights.ckpt`` (a plain state dict) and
the sentencepiece tokenizer files. Members are read into memory (nothing is extracted, so no
path can escape), the YAML with ``yaml.safe_load`` and the weights with
``torch.load(weights_only=True)``. Every NeMo weight must map onto the
:class:`audiokit.asr.streaming.StreamingConformer` with the same shape, and every audiokit
weight must be filled. Tokens keep NeMo's ids (sentencepiece order, blank = last id).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import torch
import yaml

from audiokit.errors import ConfigError, ModelError
from audiokit.nn.causal_conv import SUBSAMPLING_KINDS
from audiokit.nn.streaming_layer import CONV_NORMS

ARCH = "streaming_conformer"
_CLASSES = {
    "EncDecHybridRNNTCTCBPEModel": "hybrid",
    "EncDecRNNTBPEModel": "rnnt",
    "EncDecCTCModelBPE": "ctc",
}
# encoder option -> the only value we implement (NeMo's cache-aware streaming layout).
_REQUIRED = {
    "causal_downsampling": True,
    "self_attention_model": "rel_pos",
    "att_context_style": "chunked_limited",
    "feat_out": -1,
    "reduction": None,
    "global_tokens": 0,
}
# encoder option -> (NeMo's default, the values we implement).
_CHOICES = {
    "subsampling": ("striding", SUBSAMPLING_KINDS),
    "conv_norm_type": ("batch_norm", CONV_NORMS),
}
# Encoder-layer weights whose bias NeMo drops with use_bias: false (zero biases are the same map).
_USE_BIAS_PARTS = (
    ".ff1.linear1.", ".ff1.linear2.", ".ff2.linear1.", ".ff2.linear2.",
    ".attn.linear_q.", ".attn.linear_k.", ".attn.linear_v.", ".attn.linear_out.",
    ".conv.pointwise1.", ".conv.depthwise.", ".conv.pointwise2.",
)  # fmt: skip
_MAX_MEMBER = 4 << 30  # bytes; a .nemo member larger than this is refused

# NeMo encoder name fragments -> ours (applied in order to "encoder.*" keys).
_ENCODER_NAMES = [
    ("pre_encode.", "subsampling."),
    ("norm_feed_forward1", "norm_ff1"),
    ("feed_forward1", "ff1"),
    ("norm_feed_forward2", "norm_ff2"),
    ("feed_forward2", "ff2"),
    ("norm_self_att", "norm_attn"),
    ("self_attn", "attn"),
    ("conv.pointwise_conv1", "conv.pointwise1"),
    ("conv.depthwise_conv", "conv.depthwise"),
    ("conv.batch_norm", "conv.norm"),
    ("conv.pointwise_conv2", "conv.pointwise2"),
]


def read_nemo_archive(src: Path) -> dict[str, bytes]:
    """Regular-file members of the ``.nemo`` tar by base name (``./a/b.yaml`` -> ``b.yaml``)."""
    try:
        tar = tarfile.open(src, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise ModelError(
            f"{src}: not a readable .nemo tar archive ({e}); pass a NeMo .nemo file"
        ) from None
    files: dict[str, bytes] = {}
    with tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue  # directories, links and devices are never followed
            name = PurePosixPath(m.name)
            if name.is_absolute() or ".." in name.parts or m.size > _MAX_MEMBER:
                raise ModelError(
                    f"{src}: suspicious member {m.name!r}; refusing to read this archive"
                )
            f = tar.extractfile(m)
            if f is not None:
                files[name.name] = f.read()
    for needed in ("model_config.yaml", "model_weights.ckpt"):
        if needed not in files:
            raise ModelError(f"{src}: no {needed} inside; re-save the model with NeMo's save_to()")
    return files


def _class_name(cfg: dict[str, Any]) -> str:
    target = str(cfg.get("target") or "")
    return target.rsplit(".", 1)[-1]


def check_encoder(enc: dict[str, Any]) -> None:
    """Refuse encoder options this importer does not implement (one-line ConfigError)."""
    target = str(enc.get("_target_", "ConformerEncoder")).rsplit(".", 1)[-1]
    if target != "ConformerEncoder":
        raise ConfigError(
            f"encoder {target} is not supported; only NeMo ConformerEncoder (FastConformer) is"
        )
    defaults = {
        "feat_out": -1,
        "reduction": None,
        "global_tokens": 0,
    }
    for key, want in _REQUIRED.items():
        got = enc.get(key, defaults.get(key))
        if got != want:
            raise ConfigError(
                f"encoder.{key}={got!r} is not supported (cache-aware streaming import needs {want!r})"
            )
    if int(enc.get("feat_in", 0)) <= 0:
        raise ConfigError("encoder.feat_in is missing from model_config.yaml")
    kernel = int(enc.get("conv_kernel_size", 31))
    conv_ctx = enc.get("conv_context_size")  # NeMo default None: symmetric, not streaming
    if conv_ctx != "causal" and list(conv_ctx or []) != [kernel - 1, 0]:
        raise ConfigError(
            f"encoder.conv_context_size={conv_ctx!r} is not supported (cache-aware streaming "
            f"import needs 'causal' or [{kernel - 1}, 0])"
        )
    for key, (default, allowed) in _CHOICES.items():
        if enc.get(key, default) not in allowed:
            raise ConfigError(
                f"encoder.{key}={enc.get(key, default)!r} is not supported "
                f"(use one of {', '.join(allowed)})"
            )


def model_args(cfg: dict[str, Any], heads: str, vocab: int) -> dict[str, Any]:
    """StreamingConformer constructor args from a NeMo config; ``vocab`` excludes blank."""
    enc = cfg["encoder"]
    check_encoder(enc)
    ctx = enc.get("att_context_size") or [[-1, -1]]
    if isinstance(ctx[0], int):
        ctx = [ctx]
    d = int(enc["d_model"])
    channels = int(enc.get("subsampling_conv_channels", -1))
    args: dict[str, Any] = {
        "input_dim": int(enc["feat_in"]),
        "vocab_size": vocab + 1,
        "blank_id": vocab,
        "heads": heads,
        "d_model": d,
        "num_heads": int(enc["n_heads"]),
        "ff_dim": d * int(enc.get("ff_expansion_factor", 4)),
        "num_layers": int(enc["n_layers"]),
        "conv_kernel": int(enc.get("conv_kernel_size", 31)),
        "subsampling_factor": int(enc.get("subsampling_factor", 4)),
        "subsampling_channels": d if channels == -1 else channels,
        "att_context_size": [[int(a), int(b)] for a, b in ctx],
        "att_context_probs": enc.get("att_context_probs"),
        "xscaling": bool(enc.get("xscaling", True)),
        "dropout": float(enc.get("dropout", 0.1)),
        "dropout_pre_encoder": float(enc.get("dropout_pre_encoder", 0.1)),
        "dropout_att": float(enc.get("dropout_att", 0.0)),
        "conv_norm": enc.get("conv_norm_type", _CHOICES["conv_norm_type"][0]),
        "subsampling_type": enc.get("subsampling", _CHOICES["subsampling"][0]),
    }
    if heads == "hybrid":
        args["ctc_weight"] = float(cfg.get("aux_ctc", {}).get("ctc_loss_weight", 0.3))
    if heads != "ctc":
        dec, joint = cfg["decoder"], cfg["joint"]
        if not dec.get("blank_as_pad", True):
            raise ConfigError(
                "decoder.blank_as_pad=false is not supported (audiokit's predictor pads with blank)"
            )
        pred = dec.get("prednet", {})
        if int(pred.get("rnn_hidden_size", -1)) not in (-1, int(pred["pred_hidden"])):
            raise ConfigError("decoder.prednet.rnn_hidden_size != pred_hidden is not supported")
        net = joint.get("jointnet", {})
        args.update(
            pred_hidden=int(pred["pred_hidden"]),
            pred_layers=int(pred.get("pred_rnn_layers", 1)),
            pred_dropout=float(pred.get("dropout", 0.0)),
            joint_hidden=int(net["joint_hidden"]),
            joint_activation=str(net.get("activation", "relu")),
            joint_dropout=float(net.get("dropout", 0.0)),
        )
        greedy = (cfg.get("decoding") or {}).get("greedy") or {}
        max_sym = greedy.get("max_symbols", greedy.get("max_symbols_per_step"))
        args["max_symbols"] = int(max_sym) if max_sym else 10
    return args


def map_state_dict(sd: dict[str, torch.Tensor], heads: str) -> dict[str, torch.Tensor]:
    """NeMo state-dict keys -> StreamingConformer keys (preprocessor buffers are dropped:
    the nemo_mel frontend recomputes its window and filterbank)."""
    out: dict[str, torch.Tensor] = {}
    joint_linears = sorted(
        {
            int(k.split(".")[2])
            for k in sd
            if k.startswith("joint.joint_net.") and k.endswith(".weight")
        }
    )
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")})
    for key, value in sd.items():
        if key.startswith("preprocessor."):
            continue
        if key in ("encoder.pos_bias_u", "encoder.pos_bias_v"):  # untie_biases: false, shared
            for i in layers:
                out.setdefault(f"encoder.layers.{i}.attn.{key.rsplit('.', 1)[1]}", value)
        elif key.startswith("encoder."):
            new = key[len("encoder.") :]
            for a, b in _ENCODER_NAMES:
                new = new.replace(a, b)
            out["encoder." + new] = value
        elif key.startswith("decoder.prediction.embed."):
            out["predictor.embed." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("decoder.prediction.dec_rnn.lstm."):
            out["predictor.lstm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("joint.enc."):
            out["joint.enc_proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("joint.pred."):
            out["joint.pred_proj." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("joint.joint_net.") and len(joint_linears) == 1:
            out["joint.out." + key.rsplit(".", 1)[1]] = value
        elif (
            key.startswith(("ctc_decoder.decoder_layers.0.", "decoder.decoder_layers.0."))
            and heads != "rnnt"
        ):
            out["ctc_out." + key.rsplit(".", 1)[1]] = (
                value.squeeze(-1) if value.dim() == 3 else value
            )
        else:
            raise ModelError(
                f"NeMo weight {key} has no audiokit counterpart; this checkpoint layout is unsupported"
            )
    return out


def load_weights_strict(model: torch.nn.Module, mapped: dict[str, torch.Tensor]) -> None:
    """Copy ``mapped`` into ``model``: every key used, every model weight filled, shapes equal."""
    own = model.state_dict()
    for key, value in mapped.items():
        if key not in own:
            raise ModelError(f"mapped NeMo weight {key} does not exist in the audiokit model")
        if tuple(own[key].shape) != tuple(value.shape):
            raise ModelError(
                f"NeMo weight for {key} has shape {tuple(value.shape)}, audiokit expects {tuple(own[key].shape)}"
            )
    missing = [k for k in own if k not in mapped and not k.startswith("cmvn.")]
    if missing:
        raise ModelError(f"the .nemo has no weight for {missing[0]} ({len(missing)} missing)")
    model.load_state_dict({**own, **mapped}, strict=True)


def _tokenizer(files: dict[str, bytes], cfg: dict[str, Any], vocab: int, src: Path):
    from audiokit.text.sentencepiece_tokenizer import SentencePieceTokenizer
    from audiokit.text.token_list import BLANK, TokenList

    tok = cfg.get("tokenizer") or {}
    name = str(tok.get("model_path", "")).removeprefix("nemo:")
    name = PurePosixPath(name).name
    if name not in files:
        models = [n for n in files if n.endswith(".model")]
        if len(models) != 1:
            raise ModelError(f"{src}: tokenizer model {name or '*.model'} not found in the archive")
        name = models[0]
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=files[name])
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    if len(pieces) != vocab:
        raise ModelError(
            f"{src}: tokenizer has {len(pieces)} pieces but the model outputs {vocab} (+ blank)"
        )
    return SentencePieceTokenizer(files[name], TokenList([*pieces, BLANK]), info={"type": "bpe"})


def build_from_nemo(src: Path):
    """``(model, args, frontend, sample_rate, tokenizer, meta)`` from a ``.nemo`` file."""
    from audiokit.asr.streaming import StreamingConformer

    files = read_nemo_archive(src)
    try:
        cfg = yaml.safe_load(files["model_config.yaml"].decode("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ModelError(f"{src}: model_config.yaml is not valid YAML ({e})") from None
    cls = _class_name(cfg)
    if cls not in _CLASSES:
        raise ConfigError(
            f"{src}: NeMo class {cls or 'unknown'} is not supported; import needs one of {', '.join(_CLASSES)}"
        )
    heads = _CLASSES[cls]
    try:
        sd = torch.load(
            io.BytesIO(files["model_weights.ckpt"]), map_location="cpu", weights_only=True
        )
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad/unsafe file
        raise ModelError(f"{src}: model_weights.ckpt cannot be read safely ({e})") from None
    if heads == "ctc":
        vocab = int(cfg["decoder"]["num_classes"])
    else:
        vocab = int(cfg["decoder"]["vocab_size"])
    args = model_args(cfg, heads, vocab)
    model = StreamingConformer(**args)
    mapped = map_state_dict(sd, heads)
    if not cfg["encoder"].get("use_bias", True):
        own = model.state_dict()
        for key in own:
            if key.endswith(".bias") and any(p in key for p in _USE_BIAS_PARTS):
                mapped.setdefault(key, torch.zeros_like(own[key]))
    load_weights_strict(model, mapped)
    pre = dict(cfg.get("preprocessor") or {})
    pre.pop("_target_", None)
    if str(pre.get("normalize", "NA")) not in ("NA", "None", "none"):
        raise ConfigError(
            f"preprocessor.normalize={pre.get('normalize')!r} is per-utterance and cannot stream; "
            "only cache-aware models with normalize NA are supported"
        )
    sample_rate = int(pre.get("sample_rate", cfg.get("sample_rate", 16000)))
    frontend = {"type": "nemo_mel", **pre}
    tokenizer = _tokenizer(files, cfg, vocab, src)
    meta = {"nemo_class": cls, "nemo_version": cfg.get("nemo_version")}
    return model, args, frontend, sample_rate, tokenizer, meta


def import_model(src: Path, dst: Path, overwrite: bool = False) -> Path:
    """Convert the NeMo ``.nemo`` ``src`` into the packed model dir ``dst``."""
    from audiokit.model_dir import write_model_dir

    src, dst = Path(src), Path(dst)
    if src.is_dir():
        raise ConfigError(f"{src}: is a folder; pass the .nemo file itself")
    model, args, frontend, sample_rate, tokenizer, meta = build_from_nemo(src)
    first = args["att_context_size"][0]
    decoding = {"method": model.decoders[0], "options": {"att_context": list(first)}}
    return write_model_dir(
        dst,
        model,
        ARCH,
        args,
        frontend,
        sample_rate,
        tokenizer,
        meta={"imported_from": "nemo", "source": str(src), **meta},
        decoding=decoding,
        overwrite=overwrite,
    )
