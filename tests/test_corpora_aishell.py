"""AISHELL-1 preparation on a fake corpus in the SLR33 layout (per-speaker tar.gz included)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from audiokit.audio import save
from audiokit.cli.main import main
from audiokit.data import DataDir, validate_data_dir
from audiokit.data.corpora import aishell
from audiokit.data.corpora.aishell import prepare_aishell
from tests.test_corpora_download import serve

TRANSCRIPT = [
    "BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购",
    "BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉",
    "BAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况",
    "BAC009S0764W0121 甚至 出现 交易 几乎 停滞",
    "BAC009S0002W0999 这 一 行 没有 音频",  # transcript line without audio
]
# split -> speaker -> utterances with audio; S0724W0150 has no transcript line
AUDIO = {
    "train": {"S0002": ["BAC009S0002W0122", "BAC009S0002W0123"]},
    "dev": {"S0724": ["BAC009S0724W0121", "BAC009S0724W0150"]},
    "test": {"S0764": ["BAC009S0764W0121"]},
}


def make_aishell(root: Path, tar_speakers: bool = True) -> Path:
    """data_aishell/{wav,transcript}; train and dev speakers shipped as wav/<spk>.tar.gz."""
    corpus = root / "data_aishell"
    (corpus / "transcript").mkdir(parents=True)
    (corpus / "wav").mkdir()
    (corpus / "transcript" / "aishell_transcript_v0.8.txt").write_text("\n".join(TRANSCRIPT) + "\n")
    stage = root / "stage"
    t = np.arange(3200) / 16000
    for split, speakers in AUDIO.items():
        for spk, utts in speakers.items():
            for i, utt in enumerate(utts):
                x = (0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t)).astype(np.float32)
                save(stage / split / spk / f"{utt}.wav", x, 16000)
            if tar_speakers and split != "test":
                with tarfile.open(corpus / "wav" / f"{spk}.tar.gz", "w:gz") as tar:
                    tar.add(stage / split / spk, arcname=f"{split}/{spk}")
            else:
                (corpus / "wav" / split).mkdir(parents=True, exist_ok=True)
                (stage / split / spk).rename(corpus / "wav" / split / spk)
    return root


def test_prepare_extracts_speakers_joins_words_and_skips(tmp_path):
    root = make_aishell(tmp_path / "corpus")
    res = {d.name: d for d in prepare_aishell(tmp_path / "data", data_root=root, progress=False)}
    assert {k: d.num_utts for k, d in res.items()} == {"train": 2, "dev": 1, "test": 1}
    assert (root / "data_aishell" / "wav" / "train" / "S0002" / "BAC009S0002W0122.wav").is_file()
    (no_text,) = res["dev"].skipped["audio without transcript"]
    assert no_text.endswith("BAC009S0724W0150.wav")
    assert res["train"].skipped["transcript line without audio"] == ["BAC009S0002W0999"]
    for split in ("train", "dev", "test"):
        dest = tmp_path / "data" / split
        assert [p for p in validate_data_dir(dest) if p.level == "error"] == []
    train = DataDir.load(tmp_path / "data" / "train")
    assert train.text["BAC009S0002W0122"] == "而对楼市成交抑制作用最大的限购"
    assert train.utt2spk == {"BAC009S0002W0122": "S0002", "BAC009S0002W0123": "S0002"}
    assert train.utt2dur["BAC009S0002W0123"] == pytest.approx(0.2)
    # idempotent
    again = prepare_aishell(tmp_path / "data", data_root=root, progress=False)
    assert all(d.reused for d in again)


def test_cli_download_both_archives(tmp_path, monkeypatch, capsys):
    make_aishell(tmp_path / "src", tar_speakers=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "data_aishell", arcname="data_aishell")
    data_tgz = buf.getvalue()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("resource_aishell/lexicon.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"a a"))
    res_tgz = buf.getvalue()
    monkeypatch.setitem(aishell.MD5, "data_aishell.tgz", hashlib.md5(data_tgz).hexdigest())
    monkeypatch.setitem(aishell.MD5, "resource_aishell.tgz", hashlib.md5(res_tgz).hexdigest())
    files = {"/data_aishell.tgz": data_tgz, "/resource_aishell.tgz": res_tgz}
    with serve(files) as (url, log):
        monkeypatch.setattr(aishell, "BASE_URL", url)
        with pytest.raises(SystemExit) as exc:
            main(["data", "prepare", "aishell", "--download-dir", str(tmp_path / "dl"),
                  str(tmp_path / "data")])  # fmt: skip
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    assert "train: 2 utterance(s)" in out and "dev: 1 utterance(s)" in out
    assert "skipped 1: transcript line without audio (BAC009S0002W0999)" in out
    assert len(log) == 2
    assert (tmp_path / "dl" / "resource_aishell" / "lexicon.txt").is_file()
    assert DataDir.load(tmp_path / "data" / "test").text == {
        "BAC009S0764W0121": "甚至出现交易几乎停滞"
    }
