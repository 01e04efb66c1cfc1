"""The top-level command: groups, version, not-built groups and user-error handling."""

import subprocess
import sys

import pytest

from audiokit import __version__
from audiokit.cli.main import main
from tests.conftest import run_main

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


@pytest.mark.parametrize("group", ["tts", "generate"])
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


def test_error_messages_keep_square_brackets(capsys):
    """Rich markup must not eat brackets in a message (e.g. pip install 'audiokit[mic]')."""
    from audiokit.cli import main as main_module
    from audiokit.errors import ConfigError

    def boom(*args, **kwargs):
        raise ConfigError("install it with pip install 'audiokit[mic]'")

    original = main_module.app
    main_module.app = boom
    try:
        code, _, err = run_main(capsys, "asr")
    finally:
        main_module.app = original
    assert code == 2
    assert "'audiokit[mic]'" in err
