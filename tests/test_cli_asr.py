"""`audiokit asr transcribe|decode` end to end on a tiny real model dir."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiokit.data.kaldi_files import read_kv_file, write_kv_file
from audiokit.data.synthetic import make_demo_data_dir
from tests.conftest import run_main
from tests.test_model_dir import make_model_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_asr")
    data = make_demo_data_dir(root / "data", num_utts=4)
    return {"model": make_model_dir(root, num_layers=1, data=data), "data": data, "root": root}


def cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """Run `audiokit ARGS` in-process (monkeypatch kept for the callers' environment edits)."""
    return run_main(capsys, *args)


def test_transcribe_text_output(setup, capsys, monkeypatch):
    wavs = sorted((setup["data"] / "wav").glob("*.wav"))[:2]
    code, out, err = cli(
        capsys, monkeypatch, "asr", "transcribe", "--model", str(setup["model"]), *map(str, wavs)
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    for line, wav in zip(lines, wavs, strict=True):
        path, _, text = line.partition("\t")
        assert path == str(wav) and text == text.strip()


def test_transcribe_json_contract_and_bad_file(setup, capsys, monkeypatch, tmp_path):
    good = sorted((setup["data"] / "wav").glob("*.wav"))[0]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    missing = tmp_path / "missing.flac"
    code, out, err = cli(
        capsys, monkeypatch, "asr", "transcribe", "--model", str(setup["model"]), "--output", "json",
        "--decoder", "prefix_beam", "--beam-size", "3", str(bad), str(good), str(missing),
    )  # fmt: skip
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(bad), str(good), str(missing)]
    assert set(rows[0]) == {"path", "error"} and "broken.wav" in rows[0]["error"]
    assert set(rows[2]) == {"path", "error"} and "missing.flac" in rows[2]["error"]
    ok = rows[1]
    assert {"path", "text", "token_ids", "tokens", "token_times", "duration"} <= set(ok)
    assert len(ok["token_ids"]) == len(ok["tokens"]) == len(ok["token_times"]) > 0
    assert "2 of 3 file(s) failed" in err and "Traceback" not in err


def test_no_model_says_how_to_get_one(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("AUDIOKIT_MODEL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    code, _, err = cli(capsys, monkeypatch, "asr", "transcribe", str(tmp_path / "a.wav"))
    assert code == 2
    assert "--model" in err and "egs/mini_en/asr1/run.sh" in err
    assert len(err.strip().splitlines()) == 1


def test_default_model_from_env_and_config(setup, capsys, monkeypatch, tmp_path):
    wav = str(sorted((setup["data"] / "wav").glob("*.wav"))[0])
    monkeypatch.setenv("AUDIOKIT_MODEL", str(setup["model"]))
    code, out_env, err = cli(capsys, monkeypatch, "asr", "transcribe", wav)
    assert code == 0, err
    monkeypatch.delenv("AUDIOKIT_MODEL")
    cfg = tmp_path / "cfg" / "audiokit" / "config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f"default_model: {setup['model']}\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    code, out_cfg, err = cli(capsys, monkeypatch, "asr", "transcribe", wav)
    assert code == 0, err
    assert out_env == out_cfg != ""


def test_decode_data_dir_writes_and_scores(setup, capsys, monkeypatch, tmp_path):
    # a copy of the data dir with one corrupt utterance: reported, skipped, scored as deletions
    import shutil

    data = Path(shutil.copytree(setup["data"], tmp_path / "data"))
    (data / "wav" / "bad.wav").write_bytes(b"not audio at all")
    scp = read_kv_file(data / "wav.scp")
    text = read_kv_file(data / "text")
    utt2spk = read_kv_file(data / "utt2spk")
    scp["spk9-bad"], text["spk9-bad"], utt2spk["spk9-bad"] = "wav/bad.wav", "A B", "spk9"
    for name, mapping in (("wav.scp", scp), ("text", text), ("utt2spk", utt2spk)):
        write_kv_file(data / name, mapping)
    (data / "spk2utt").unlink()
    out = tmp_path / "decode"
    code, stdout, err = cli(
        capsys, monkeypatch, "asr", "decode", "--model", str(setup["model"]), "--data", str(data),
        "--out", str(out), "--batch-size", "2",
    )  # fmt: skip
    assert code == 0, err
    hyp = read_kv_file(out / "text", allow_empty_value=True)
    assert set(hyp) == set(text) - {"spk9-bad"}
    ids = {
        line.split()[0]: line.split()[1:] for line in (out / "token_ids").read_text().splitlines()
    }
    assert set(ids) == set(hyp) and all(ids.values())
    assert "spk9-bad" in (out / "failed").read_text()
    assert "skipped spk9-bad" in err
    result = (out / "result.txt").read_text()
    assert "%WER" in result and "failed to decode" in result
    assert "%CER" in (out / "result_cer.txt").read_text()
    wer_line = (out / "wer").read_text().splitlines()[-1]
    assert wer_line.startswith("%WER") and wer_line in stdout
    assert (out / "cer").read_text().splitlines()[-1] in stdout
    # every reference word is counted, the failed utterance's as deletions
    n_words = sum(len(t.split()) for t in text.values())
    assert f"/ {n_words}," in wer_line


@pytest.mark.skipif(sys.platform == "win32", reason="spawn start-up")
def test_decode_nj2_equals_nj1(setup, tmp_path):
    from audiokit.asr.decode_data import decode_data_dir

    one = decode_data_dir(setup["model"], setup["data"], tmp_path / "one", nj=1)
    two = decode_data_dir(setup["model"], setup["data"], tmp_path / "two", nj=2)
    assert (tmp_path / "one" / "text").read_text() == (tmp_path / "two" / "text").read_text()
    assert (tmp_path / "one" / "token_ids").read_text() == (
        tmp_path / "two" / "token_ids"
    ).read_text()
    assert one.lines == two.lines and not two.failed


def test_decode_honours_segments(setup, tmp_path):
    """Two utterances cut from one recording by `segments` decode like the cut audio itself."""
    from audiokit.asr.decode_data import decode_data_dir
    from audiokit.asr.inference import Recognizer

    wav = sorted((setup["data"] / "wav").glob("*.wav"))[0]
    x, sr = sf.read(wav, dtype="float32")
    d = tmp_path / "seg"
    d.mkdir()
    write_kv_file(d / "wav.scp", {"rec1": str(wav)})
    half = len(x) / sr / 2
    write_kv_file(
        d / "segments", {"rec1-a": f"rec1 0.00 {half:.2f}", "rec1-b": f"rec1 {half:.2f} -1"}
    )
    write_kv_file(d / "utt2spk", {"rec1-a": "rec1", "rec1-b": "rec1"})
    summary = decode_data_dir(setup["model"], d, tmp_path / "out")
    assert summary.num_utts == 2 and not summary.lines  # no text: nothing to score
    ids = dict(
        line.split(maxsplit=1) for line in (tmp_path / "out" / "token_ids").read_text().splitlines()
    )
    rec = Recognizer(setup["model"])
    cut = int(round(half * 100) / 100 * sr)
    expect = rec.transcribe([x[:cut], x[cut:]])
    assert ids["rec1-a"].split() == [str(i) for i in expect[0].token_ids]
    assert ids["rec1-b"].split() == [str(i) for i in expect[1].token_ids]
    assert np.isfinite(expect[0].duration)
