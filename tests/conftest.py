"""Shared test fixtures.

`shared` points at the project's reference material (`../shared` beside the checkout, or
$AUDIOKIT_SHARED). Tests that need it skip with a reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AUDIOKIT_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the calling test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (set AUDIOKIT_SHARED to the shared/ folder)")
    return path


@pytest.fixture
def shared() -> Path:
    return shared_path()


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: for tiny shapes extra threads only add overhead."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """Run `audiokit ARGS` in-process through main's error handling: (exit code, stdout, stderr)."""
    from audiokit.cli.main import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
