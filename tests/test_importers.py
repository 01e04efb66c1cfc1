"""The importer dispatcher and `audiokit model import` error paths (each importer has its own tests)."""

from __future__ import annotations

import pytest

from audiokit.errors import ConfigError
from audiokit.importers import IMPORTERS, available, import_model
from tests.conftest import run_main


def test_unknown_importer_names_the_available_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"--from kaldi: no such importer; available: "):
        import_model("kaldi", tmp_path, tmp_path / "out")
    assert set(available()) <= set(IMPORTERS)


def test_missing_source_is_one_line_error(tmp_path, capsys):
    kind = next(iter(available()), None)
    if kind is None:
        pytest.skip("no importer module is installed yet")
    code, _, err = run_main(
        capsys, "model", "import", "--from", kind, str(tmp_path / "nope"), str(tmp_path / "o")
    )
    assert code == 2
    assert (
        err.strip().startswith("error: ")
        and "not found" in err
        and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "o").exists()
