"""`audiokit data ...`: exit codes and output of validate, fix, subset, combine and info."""

from __future__ import annotations

import pytest

from audiokit.cli.main import main
from audiokit.data import DataDir, validate_data_dir
from tests.conftest import shared_path
from tests.test_data_dir import make_dir, make_segmented_dir, write_lines


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process (fast); returns (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main(["data", *map(str, args)])
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def test_validate_ok_and_errors(capsys, tmp_path):
    root = make_dir(tmp_path / "d")
    code, out, _ = run(capsys, "validate", root)
    assert code == 0 and "OK" in out
    write_lines(root / "text", ["spkB-u1 X", "spkA-u1 A", "spkA-u2 B"])
    code, out, _ = run(capsys, "validate", root, "--no-check-audio")
    assert code == 1
    assert "text: not sorted" in out and "spkB-u2" in out
    assert "fixable with `audiokit data fix" in out


def test_validate_warnings_only_exit_0(capsys, tmp_path):
    root = make_dir(tmp_path / "d")
    (root / "spk2utt").unlink()
    code, out, _ = run(capsys, "validate", root)
    assert code == 0 and "1 warning" in out and "spk2utt" in out


def test_validate_lists_at_most_20_per_kind_unless_all(capsys, tmp_path):
    utts = {f"s-{i:03d}": ("s", "W", 0.05) for i in range(60)}  # >= 50: progress bar path
    root = make_dir(tmp_path / "d", utts)
    write_lines(root / "text", ["s-000 W"])
    code, out, _ = run(capsys, "validate", root)
    assert code == 1 and out.count("has no line in text") == 20 and "39 more" in out
    code, out, _ = run(capsys, "validate", root, "--no-check-audio", "--all")
    assert out.count("has no line in text") == 59


def test_user_errors_exit_2_with_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "validate", tmp_path / "nope")
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1
    root = make_dir(tmp_path / "d")
    code, _, err = run(capsys, "subset", root, tmp_path / "o", "--first", "1", "--last", "1")
    assert code == 2 and "exactly one" in err and "Traceback" not in err


def test_fix_then_validate(capsys, tmp_path):
    root = make_dir(tmp_path / "d")
    write_lines(
        root / "text", ["spkB-u2 SO LONG", "spkA-u1 HI", "spkA-u1 HI", "spkA-u2", "spkB-u1 X"]
    )
    code, out, _ = run(capsys, "fix", root)
    assert code == 0
    assert "kept 3 of 4" in out and "dropped 1: empty text (spkA-u2)" in out
    assert ".backup" in out
    assert run(capsys, "validate", root)[0] == 0


def test_fix_out(capsys, tmp_path):
    root = make_segmented_dir(tmp_path / "d")
    write_lines(root / "text", ["s1-a ONE", "s1-b TWO"])
    code, out, _ = run(capsys, "fix", root, "--out", tmp_path / "fixed")
    assert code == 0 and "kept 2 of 3" in out
    assert validate_data_dir(tmp_path / "fixed") == []
    assert len(DataDir.load(root).wav_scp) == 2  # source untouched


def test_subset_and_combine(capsys, tmp_path):
    src = make_dir(tmp_path / "src")
    code, out, _ = run(capsys, "subset", src, tmp_path / "a", "--first", "2")
    assert code == 0 and "wrote 2 of 4" in out
    code, out, _ = run(capsys, "subset", src, tmp_path / "b", "--random", "2", "--seed", "3")
    assert code == 0
    b_ids = DataDir.load(tmp_path / "b").utt_ids
    code, out, _ = run(capsys, "combine", tmp_path / "ab", tmp_path / "a", tmp_path / "b")
    assert code == 0 and "combined 2 dir(s)" in out
    assert DataDir.load(tmp_path / "ab").utt_ids == sorted({"spkA-u1", "spkA-u2", *b_ids})
    code, _, err = run(capsys, "combine", tmp_path / "ab", tmp_path / "a")
    assert code == 2 and "--overwrite" in err
    assert run(capsys, "combine", tmp_path / "ab", tmp_path / "a", "--overwrite")[0] == 0


def test_combine_conflict_exit_2(capsys, tmp_path):
    a, b = make_dir(tmp_path / "a"), make_dir(tmp_path / "b")
    code, _, err = run(capsys, "combine", tmp_path / "ab", a, b)
    assert code == 2 and "make ids unique" in err and err.count("\n") == 1


def test_info(capsys, tmp_path):
    code, out, _ = run(capsys, "info", make_dir(tmp_path / "d"))
    assert code == 0
    assert "utterances" in out and "vocabulary" in out and "utterance durations" in out
    assert "0.25 s / 0.62 s / 1.00 s" in out


@pytest.mark.parametrize("name", ["speech_en_dev", "speech_zh_dev"])
def test_real_dirs(capsys, name):
    root = shared_path("data", name)
    code, out, _ = run(capsys, "validate", root)
    assert code == 0 and "OK" in out
    code, out, _ = run(capsys, "info", root)
    assert code == 0 and "utterances" in out
