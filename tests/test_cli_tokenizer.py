"""`audiokit tokenizer train|encode|decode` end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run_main
from tests.test_tokenizers import CHINESE, english_sentences


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run `audiokit ARGS` in-process; (exit code, stdout, stderr)."""
    return run_main(capsys, *args)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "train"
    d.mkdir()
    lines = [f"utt{i:04d} {s}" for i, s in enumerate(english_sentences(200))]
    (d / "text").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


def test_train_encode_decode_bpe_from_data_dir(capsys, data_dir, tmp_path):
    out_dir = tmp_path / "tok"
    code, out, err = cli(
        capsys, "tokenizer", "train", "--vocab-size", "80", str(data_dir), str(out_dir)
    )
    assert code == 0, err
    assert "82 tokens" in out
    assert {p.name for p in out_dir.iterdir()} == {"bpe.model", "tokens.txt", "tokenizer.json"}
    # Utterance ids were stripped: no piece contains them.
    assert "utt" not in (out_dir / "tokens.txt").read_text(encoding="utf-8").lower()

    text = "THE WORLD IS GOOD"
    code, out, _ = cli(capsys, "tokenizer", "encode", "-t", str(out_dir), "--ids", text)
    assert code == 0
    ids = out.split()
    assert ids and all(i.isdigit() for i in ids)
    code, pieces, _ = cli(capsys, "tokenizer", "encode", "-t", str(out_dir), text)
    assert code == 0 and len(pieces.split()) == len(ids) and "\u2581" in pieces
    code, out, _ = cli(capsys, "tokenizer", "decode", "-t", str(out_dir), "0", *ids)
    assert code == 0 and out == text + "\n"


def test_encode_decode_files_with_keys(capsys, data_dir, tmp_path):
    out_dir = tmp_path / "tok"
    assert (
        cli(
            capsys,
            "tokenizer",
            "train",
            "--type",
            "unigram",
            "--vocab-size",
            "60",
            str(data_dir),
            str(out_dir),
        )[0]
        == 0
    )
    src = tmp_path / "in.txt"
    src.write_text("a1 THE MAN\na2 GOOD WORK\n", encoding="utf-8")
    ids_file = tmp_path / "ids.txt"
    code, _, err = cli(
        capsys,
        "tokenizer",
        "encode",
        "-t",
        str(out_dir),
        "--ids",
        "--has-keys",
        "-i",
        str(src),
        "-o",
        str(ids_file),
    )
    assert code == 0, err
    lines = ids_file.read_text(encoding="utf-8").splitlines()
    assert [line.split()[0] for line in lines] == ["a1", "a2"]
    code, out, _ = cli(
        capsys, "tokenizer", "decode", "-t", str(out_dir), "--has-keys", "-i", str(ids_file)
    )
    assert code == 0 and out == "a1 THE MAN\na2 GOOD WORK\n"


def test_train_char_chinese_mixed(capsys, tmp_path):
    src = tmp_path / "zh.txt"
    src.write_text("\n".join([*CHINESE, "我爱 New York 的秋天"]) + "\n", encoding="utf-8")
    out_dir = tmp_path / "char"
    code, out, err = cli(
        capsys, "tokenizer", "train", "--type", "char", "--case", "upper", str(src), str(out_dir)
    )
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["tokenizer.json", "tokens.txt"]
    code, out, _ = cli(capsys, "tokenizer", "encode", "-t", str(out_dir), "我爱new york")
    assert out.split() == ["我", "爱", "NEW", "YORK"]
    code, ids, _ = cli(
        capsys, "tokenizer", "encode", "-t", str(out_dir), "--ids", "今天 New York 天气很好"
    )
    code, out, _ = cli(capsys, "tokenizer", "decode", "-t", str(out_dir), *ids.split())
    assert out == "今天NEW YORK天气很好\n"


def test_train_char_latin_char_drop_prints_a_note(capsys, tmp_path):
    src = tmp_path / "zh.txt"
    src.write_text("我爱 New York\n", encoding="utf-8")
    code, out, _ = cli(
        capsys,
        "tokenizer",
        "train",
        "--type",
        "char",
        "--latin",
        "char",
        str(src),
        str(tmp_path / "o"),
    )
    assert code == 0 and "note:" in out and "--space keep" in out


def assert_user_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    line = err.strip()
    assert line.startswith("error:") and "\n" not in line and "Traceback" not in err
    for needle in needles:
        assert needle in line, line


def test_vocab_too_large_is_a_clear_error(capsys, tmp_path):
    src = tmp_path / "small.txt"
    src.write_text("HELLO WORLD\nHELLO THERE\n", encoding="utf-8")
    code, _, err = cli(
        capsys, "tokenizer", "train", "--vocab-size", "5000", str(src), str(tmp_path / "o")
    )
    assert_user_error(
        code, err, "small.txt", "--vocab-size 5000 is too large", "lower --vocab-size to"
    )
    assert not (tmp_path / "o" / "bpe.model").exists()


def test_train_input_errors(capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    code, _, err = cli(
        capsys, "tokenizer", "train", "--vocab-size", "50", str(empty), str(tmp_path / "o")
    )
    assert_user_error(code, err, "empty.txt", "no text to train on")
    code, _, err = cli(capsys, "tokenizer", "train", str(empty), str(tmp_path / "o"))
    assert_user_error(code, err, "--vocab-size is required")
    code, _, err = cli(
        capsys,
        "tokenizer",
        "train",
        "--vocab-size",
        "50",
        str(tmp_path / "nope"),
        str(tmp_path / "o"),
    )
    assert_user_error(code, err, "input not found")


def test_encode_decode_errors(capsys, data_dir, tmp_path):
    code, _, err = cli(capsys, "tokenizer", "encode", "-t", str(tmp_path / "none"), "HI")
    assert_user_error(code, err, "tokenizer not found")
    out_dir = tmp_path / "tok"
    assert (
        cli(capsys, "tokenizer", "train", "--vocab-size", "60", str(data_dir), str(out_dir))[0] == 0
    )
    code, _, err = cli(capsys, "tokenizer", "decode", "-t", str(out_dir), "3", "9999")
    assert_user_error(code, err, "9999", "out of range")
    code, _, err = cli(capsys, "tokenizer", "decode", "-t", str(out_dir), "3", "x")
    assert_user_error(code, err, "integers")
    code, _, err = cli(capsys, "tokenizer", "encode", "-t", str(out_dir))
    assert_user_error(code, err, "either TEXT or --input")


def test_cli_module_does_not_import_heavy_modules():
    code = (
        "import sys, audiokit.cli.tokenizer; "
        "print([m for m in ('torch', 'sentencepiece', 'numpy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_tokenizer_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "audiokit", "tokenizer", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    for command in ("train", "encode", "decode"):
        assert command in out.stdout


def test_training_is_identical_across_processes(data_dir, tmp_path):
    """Sentencepiece 0.2's own sampling differs per process; ours must not."""
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        args = ["tokenizer", "train", "--vocab-size", "70", "--input-sentence-size", "120"]
        done = subprocess.run(
            [sys.executable, "-m", "audiokit", *args, str(data_dir), str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    for name in ("bpe.model", "tokens.txt", "tokenizer.json"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
