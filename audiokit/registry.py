"""Name -> class registry for models, so `model.yaml` can say `architecture: conformer_ctc`.

WeNet's style: a plain dict, filled by a decorator at import time; no metaclasses.
"""

from __future__ import annotations

import importlib
from typing import Any

from audiokit.errors import ConfigError

MODELS: dict[str, type] = {}

# Modules that register models when imported; import is deferred until a name is looked up.
MODEL_MODULES = [
    "audiokit.asr.ctc_model",
    "audiokit.asr.paraformer",
    "audiokit.asr.streaming",
    "audiokit.asr.owsm_ctc",
    "audiokit.asr.espnet_asr",
    "audiokit.codec.dac",
    "audiokit.codec.encodec",
    "audiokit.codec.vae",
    "audiokit.codec.qdac",
]


def register_model(name: str):
    """Class decorator: make `name` buildable by :func:`build_model`."""

    def wrap(cls: type) -> type:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name '{name}' registered twice ({MODELS[name]} and {cls})")
        MODELS[name] = cls
        return cls

    return wrap


def _import_all() -> None:
    for module in MODEL_MODULES:
        importlib.import_module(module)


def model_class(name: str) -> type:
    """The class registered under `name`, or `package.module:ClassName` for a custom model.

    One-line :class:`ConfigError` listing the known names (or the import failure) otherwise.
    """
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(
                f"model architecture {name!r}: cannot import it ({e}); check the module path "
                "and class name"
            ) from None
    _import_all()
    if name not in MODELS:
        known = ", ".join(sorted(MODELS)) or "none"
        raise ConfigError(f"unknown model architecture '{name}'; known: {known}")
    return MODELS[name]


def build_model(name: str, **kwargs: Any):
    """Instantiate the model registered under `name` with constructor arguments `kwargs`."""
    cls = model_class(name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(
            f"model '{name}': bad constructor arguments ({e}); check model.yaml / the config"
        ) from e
