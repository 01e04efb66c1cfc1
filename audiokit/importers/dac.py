"""Import a descript-audio-codec (DAC) checkpoint into a packed audiokit model dir.

    audiokit model import --from dac weights_16khz.pth DST_DIR

``src`` is DAC's own save format (audiotools ``BaseModel.save(path, package=False)``):
``{"state_dict": ..., "metadata": {"kwargs": {...DAC constructor args...}}}``, or a folder
holding exactly one such ``.pth``. The released weights use the same format:

* ``weights.pth``               (tag 0.0.1, the 44.1 kHz "8kbps" model)
* ``weights_24khz.pth``         (tag 0.0.4, 24 kHz)
* ``weights_16khz.pth``         (tag 0.0.5, 16 kHz)
* ``weights_44khz_16kbps.pth``  (tag 1.0.0, 44.1 kHz "16kbps")

from ``https://github.com/descriptinc/descript-audio-codec/releases/download/<tag>/<file>``.
The file is read with ``torch.load(weights_only=True)`` (no code runs); the model is
:class:`audiokit.codec.dac.RVQCodec` built from ``metadata.kwargs``, whose parameter names are
DAC's, so the mapping is the identity (torch's newer ``parametrizations.weight.original0/1``
weight-norm names are accepted too). Every checkpoint tensor must be used and every model
tensor filled, with equal shapes.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch

from audiokit.errors import ConfigError, ModelError

ARCH = "rvq_codec"
DAC_KWARGS = (
    "encoder_dim", "encoder_rates", "latent_dim", "decoder_dim", "decoder_rates", "n_codebooks",
    "codebook_size", "codebook_dim", "quantizer_dropout", "sample_rate",
)  # fmt: skip


def _find_checkpoint(src: Path) -> Path:
    if src.is_file():
        return src
    pths = sorted(src.glob("*.pth"))
    if len(pths) != 1:
        raise ConfigError(f"{src}: found {len(pths)} .pth files; pass the DAC weights file itself")
    return pths[0]


def _load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, constructor kwargs) of a DAC ``.pth``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(
            f"{path}: not loadable as a DAC checkpoint ({first[:160]}); pass a .pth written by "
            "DAC.save / the released weights"
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ModelError(
            f"{path}: no 'state_dict' in the checkpoint; pass a DAC .pth (DAC.save(path, "
            "package=False)), not a plain state dict"
        )
    metadata = ckpt.get("metadata")
    kwargs = metadata.get("kwargs") if isinstance(metadata, dict) else None
    if not isinstance(kwargs, dict):
        raise ModelError(
            f"{path}: no metadata.kwargs (the DAC constructor arguments); re-save it with "
            "DAC.save(path, package=False)"
        )
    return ckpt["state_dict"], kwargs


def model_args(kwargs: dict[str, Any], path: Path) -> dict[str, Any]:
    """DAC constructor kwargs -> RVQCodec args (plain JSON-able values)."""
    from audiokit.codec.dac import RVQCodec

    unknown = sorted(set(kwargs) - set(DAC_KWARGS))
    if unknown:
        raise ModelError(
            f"{path}: unknown DAC constructor argument(s) {', '.join(unknown)}; this importer "
            "supports descript-audio-codec 1.0.0 models"
        )
    defaults = {
        k: p.default for k, p in inspect.signature(RVQCodec).parameters.items() if k in DAC_KWARGS
    }
    args = {**defaults, **kwargs}
    for key in ("encoder_rates", "decoder_rates"):
        args[key] = [int(v) for v in args[key]]
    if not isinstance(args["codebook_dim"], int):
        args["codebook_dim"] = [int(v) for v in args["codebook_dim"]]
    args["quantizer_dropout"] = float(args["quantizer_dropout"])
    return args


def map_key(key: str) -> str:
    """DAC key -> audiokit key: identity, except torch's parametrised weight-norm names."""
    return key.replace(".parametrizations.weight.original0", ".weight_g").replace(
        ".parametrizations.weight.original1", ".weight_v"
    )


def convert_state(state: dict[str, torch.Tensor], model: torch.nn.Module, path: Path) -> dict:
    """Strictly map `state` onto `model`'s keys; one-line ModelError on any mismatch."""
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        ours = map_key(key)
        if ours not in target:
            raise ModelError(
                f"{path}: unexpected key '{key}' for the architecture in metadata.kwargs; "
                "the checkpoint and its kwargs do not match"
            )
        if tuple(value.shape) != tuple(target[ours].shape):
            raise ModelError(
                f"{path}: '{key}' has shape {tuple(value.shape)}, the model expects "
                f"{tuple(target[ours].shape)}; the checkpoint and its kwargs do not match"
            )
        out[ours] = value.to(target[ours].dtype)
    missing = [k for k in target if k not in out]
    if missing:
        raise ModelError(
            f"{path}: missing key '{missing[0]}' ({len(missing)} missing); the checkpoint is "
            "incomplete or not a DAC model"
        )
    return out


def import_model(src: Path, dst: Path, overwrite: bool = False) -> Path:
    """Convert the DAC checkpoint `src` (a .pth or a folder holding one) into model dir `dst`."""
    from audiokit.codec.dac import RVQCodec
    from audiokit.model_dir import write_model_dir

    path = _find_checkpoint(Path(src))
    state, kwargs = _load(path)
    args = model_args(kwargs, path)
    model = RVQCodec(**args)
    model.load_state_dict(convert_state(state, model, path), strict=True)
    meta = {"imported_from": "dac", "source": str(path), "dac_kwargs": kwargs}
    return write_model_dir(
        dst, model.eval(), ARCH, args, None, model.sample_rate, None, meta=meta,
        overwrite=overwrite,
    )  # fmt: skip
