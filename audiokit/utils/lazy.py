"""Lazy package exports: names resolve (and their modules import) on first attribute access.

Keeps `import audiokit.<package>` and the CLI light: torch, librosa and friends load only when a
name that needs them is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: dict[str, list[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """Return (`__all__`, `__getattr__`, `__dir__`) for `package` exporting `exports`.

    `exports` maps a module path to the names it provides; `namespace` is the package's
    `globals()`, where resolved names are cached so later lookups skip `__getattr__`.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return sorted(where), __getattr__, __dir__
