"""Import checkpoints from other toolkits into packed audiokit model dirs.

    audiokit model import --from funasr SRC_DIR DST_DIR

Each importer module defines ``import_model(src: Path, dst: Path, overwrite: bool = False)
-> Path``: it reads the other toolkit's files without running any of its code (YAML via
``safe_load``, weights via ``torch.load(weights_only=True)``), maps the weights strictly onto
an audiokit model and writes ``dst`` with :func:`audiokit.model_dir.write_model_dir`.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from audiokit.errors import ConfigError

IMPORTERS: dict[str, str] = {
    "funasr": "audiokit.importers.funasr",
    "nemo": "audiokit.importers.nemo",
    "espnet": "audiokit.importers.espnet",
    "dac": "audiokit.importers.dac",
    "encodec": "audiokit.importers.encodec",
}


def available() -> list[str]:
    """Importer names whose module is present in this installation."""
    return [k for k, mod in IMPORTERS.items() if importlib.util.find_spec(mod) is not None]


def import_model(kind: str, src: str | Path, dst: str | Path, overwrite: bool = False) -> Path:
    """Convert the checkpoint `src` of toolkit `kind` into the audiokit model dir `dst`."""
    if kind not in IMPORTERS or importlib.util.find_spec(IMPORTERS[kind]) is None:
        raise ConfigError(
            f"--from {kind}: no such importer; available: {', '.join(available()) or 'none'}"
        )
    src = Path(src)
    if not src.exists():
        raise ConfigError(f"{src}: not found; pass the {kind} model folder or file to import")
    module = importlib.import_module(IMPORTERS[kind])
    return module.import_model(src, Path(dst), overwrite=overwrite)
