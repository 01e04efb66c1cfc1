"""The top-level command: groups, version, not-built groups and user-error handling."""

import subprocess
import sys

import pytest

from audiokit import __version__
from audiokit.cli.main import main

GROUPS = [
    "asr",
    "tts",
    "codec",
    "generate",
    "data",
    "feats",
    "tokenizer",
    "train",
    "score",
    "model",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "audiokit", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_group():
    out = run_cli("--help")
    assert out.returncode == 0
    for group in GROUPS:
        assert f" {group} " in out.stdout, group


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"audiokit {__version__}"


@pytest.mark.parametrize("group", ["tts", "codec", "generate"])
def test_not_built_group_says_so_and_exits_2(group):
    out = run_cli(group, "anything", "--flag")
    assert out.returncode == 2
    assert "not built yet" in out.stderr
    assert "Traceback" not in out.stderr


def test_user_error_is_one_line_without_traceback(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["tts", "synthesize", "x.txt"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err


def test_debug_shows_traceback():
    out = run_cli("--debug", "tts", "synthesize")
    assert out.returncode != 0
    assert "Traceback" in out.stderr and "NotBuiltError" in out.stderr
