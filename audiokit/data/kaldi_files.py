"""Reading and writing Kaldi's one-entry-per-line files (`wav.scp`, `text`, `utt2spk`, ...).

Each line is `KEY VALUE`: the key runs to the first whitespace, the value is the rest of the
line with surrounding whitespace stripped (it may contain spaces: a transcript, a piped
command, a list of utterance ids). Order is kept as in the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from audiokit.errors import DataDirError
from audiokit.utils.atomic import atomic_write


def read_kv_file(path: str | os.PathLike, allow_empty_value: bool = False) -> dict[str, str]:
    """Read a Kaldi key-value file into an ordered dict.

    Raises :class:`DataDirError` naming the file and line for a missing file, a duplicate
    key, or (unless `allow_empty_value`) a line with a key but no value. Blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataDirError(f"{path}: file not found; create it or check the data dir path")
    entries: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=1)
            key = parts[0]
            value = parts[1] if len(parts) > 1 else ""
            if not value and not allow_empty_value:
                raise DataDirError(
                    f"{path}:{lineno}: key '{key}' has no value; remove the line or add the value"
                )
            if key in entries:
                raise DataDirError(
                    f"{path}:{lineno}: duplicate key '{key}'; keep one entry per key "
                    "(`audiokit data fix` removes duplicates)"
                )
            entries[key] = value
    return entries


def write_kv_file(
    path: str | os.PathLike,
    entries: Mapping[str, object] | Iterable[tuple[str, object]],
    sort: bool = True,
) -> None:
    """Write `KEY VALUE` lines atomically; sorted by key (C locale byte order, as Kaldi wants)."""
    items = list(entries.items()) if isinstance(entries, Mapping) else list(entries)
    if sort:
        items.sort(key=lambda kv: kv[0].encode("utf-8"))
    with atomic_write(path) as f:
        for key, value in items:
            if isinstance(value, (list, tuple)):
                value = " ".join(str(v) for v in value)
            f.write(f"{key} {value}\n" if str(value) != "" else f"{key}\n")
