"""`audiokit score` end to end: files in, result.txt and Kaldi's %WER line out."""

from __future__ import annotations

import re

import pytest

from audiokit.cli.main import main
from tests.conftest import shared_path


def run(capsys, ref: str, hyp: str, *args: str) -> tuple[int, str, str]:
    """`audiokit score --ref REF --hyp HYP ARGS...` (the command-line contract)."""
    with pytest.raises(SystemExit) as exc:
        main(["score", "--ref", ref, "--hyp", hyp, *args])
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_kaldi_text_end_to_end(tmp_path, capsys):
    ref = write(tmp_path / "ref.txt", "spk1-a the cat sat\nspk1-b on the mat\nspk2-a hello\n")
    (tmp_path / "hyp").mkdir()
    hyp = write(tmp_path / "hyp" / "text", "spk1-a the bat sat down\nspk1-b on mat\nspk2-a hello\n")
    before = (ref.read_text(), hyp.read_text())
    code, out, err = run(capsys, str(ref), str(hyp))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1] == "%WER 42.86 [ 3 / 7, 1 ins, 1 del, 1 sub ]"
    assert lines[-2] == "%SER 66.67 [ 2 / 3 ]"
    report = (tmp_path / "hyp" / "result.txt").read_text()  # default: beside the hypothesis
    # case-insensitive by default, so errors are shown in upper case as sclite does
    assert "REF:  the CAT sat ****" in report and "HYP:  the BAT sat DOWN" in report
    assert re.search(r"\| spk1 +\| +2 +6 \|", report) and report.rstrip().endswith(lines[-1])
    assert (ref.read_text(), hyp.read_text()) == before
    assert err == ""


def test_trn_cer_and_out_dir(tmp_path, capsys):
    ref = write(tmp_path / "ref.trn", "我爱北京 天安门 (s1-u1)\n")
    hyp = write(tmp_path / "hyp.trn", "我 爱 南 京 天 门 (s1-u1)\n")
    code, out, _ = run(capsys, str(ref), str(hyp), "--cer", "--out", str(tmp_path / "o"))
    assert code == 0
    assert out.strip().splitlines()[-1] == "%CER 28.57 [ 2 / 7, 0 ins, 1 del, 1 sub ]"
    assert "# Chr" in (tmp_path / "o" / "result.txt").read_text()


def test_missing_and_extra_hypotheses_warn_and_score_refs_only(tmp_path, capsys):
    ref = write(tmp_path / "ref", "s-1 a b\ns-2 c d\n")
    hyp = write(tmp_path / "hyp", "s-1 a b\nzz-9 q\n")
    code, out, err = run(capsys, str(ref), str(hyp), "--out", str(tmp_path))
    assert code == 0
    assert "1 reference utterance(s) without a hypothesis" in err and "s-2" in err
    assert "1 hypothesis utterance(s) without a reference, not scored: zz-9" in err
    assert out.strip().splitlines()[-1] == "%WER 50.00 [ 2 / 4, 0 ins, 2 del, 0 sub ]"
    report = (tmp_path / "result.txt").read_text()
    assert "scored as all deletions: s-2" in report and "not scored: zz-9" in report


def test_case_is_ignored_by_default_as_in_sclite(tmp_path, capsys):
    ref = write(tmp_path / "ref", "U-1 Hello World\n")
    hyp = write(tmp_path / "hyp", "u-1 hello world\n")
    code, out, err = run(capsys, str(ref), str(hyp))
    assert code == 0 and out.strip().endswith("%WER 0.00 [ 0 / 2, 0 ins, 0 del, 0 sub ]")


def test_case_sensitive_option(tmp_path, capsys):
    ref = write(tmp_path / "ref", "u-1 Hello World\n")
    hyp = write(tmp_path / "hyp", "u-1 hello World\n")
    code, out, err = run(capsys, str(ref), str(hyp), "--case-sensitive")
    assert code == 0 and out.strip().endswith("%WER 50.00 [ 1 / 2, 0 ins, 0 del, 1 sub ]")


def test_contract_command_reproduces_sclite_csrnab(tmp_path, capsys):
    """The issue's contract: `audiokit score --ref REF --hyp HYP` ends with compute-wer's line."""
    d = shared_path("data", "sclite")
    code, out, _ = run(capsys, str(d / "csrnab.ref"), str(d / "csrnab.hyp"), "--out", str(tmp_path))
    assert code == 0
    assert out.strip().splitlines()[-1] == "%WER 12.02 [ 169 / 1406, 26 ins, 12 del, 131 sub ]"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "ctm"], "--format ctm"),
        (["--id-format", "xyz"], "--id-format xyz"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message):
    ref = write(tmp_path / "ref", "s-1 a\n")
    hyp = write(tmp_path / "hyp", "s-1 a\n")
    code, _, err = run(capsys, str(ref), str(hyp), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_user_errors(tmp_path, capsys):
    ref = write(tmp_path / "ref", "s-1 a\n")
    # the report would land on the hypothesis itself
    hyp = write(tmp_path / "result.txt", "s-1 a\n")
    code, _, err = run(capsys, str(ref), str(hyp))
    assert code == 2 and "overwrite an input" in err
    # no id in common: almost surely the wrong pair of files
    other = write(tmp_path / "other", "x-1 a\n")
    code, _, err = run(capsys, str(ref), str(other), "--out", str(tmp_path / "o"))
    assert code == 2 and "no hypothesis id matches" in err
    code, _, err = run(capsys, str(tmp_path / "nope"), str(other))
    assert code == 2 and "file not found" in err


def test_sclite_csrnab_through_the_cli(tmp_path, capsys):
    d = shared_path("data", "sclite")
    code, out, _ = run(
        capsys,
        str(d / "csrnab.ref"),
        str(d / "csrnab.hyp"),
        "--ignore-case",
        "--id-format",
        "wsj",
        "--out",
        str(tmp_path),
    )
    assert code == 0
    assert out.strip().splitlines()[-1] == "%WER 12.02 [ 169 / 1406, 26 ins, 12 del, 131 sub ]"
    assert "| Sum/Avg|    51   1406 |  89.8    9.3    0.9    1.8   12.0   74.5 |" in out


def test_utt2spk_groups_speakers(tmp_path, capsys):
    ref = write(tmp_path / "ref", "u1 a b\nu2 c\nu3 d\n")
    hyp = write(tmp_path / "hyp", "u1 a b\nu2 x\nu3 d\n")
    spk = write(tmp_path / "utt2spk", "u1 alice\nu2 alice\nu3 bob\n")
    code, out, _ = run(capsys, str(ref), str(hyp), "--utt2spk", str(spk))
    assert code == 0
    assert re.search(r"\| alice +\| +2 +3 \|", out) and re.search(r"\| bob +\| +1 +1 \|", out)
