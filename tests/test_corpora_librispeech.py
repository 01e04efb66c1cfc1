"""LibriSpeech preparation on a fake corpus in the real layout, from disk and via download."""

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
from audiokit.data.corpora import librispeech
from audiokit.data.corpora.librispeech import prepare_librispeech
from audiokit.errors import ConfigError, DataDirError
from tests.test_corpora_download import serve

# speaker -> chapter -> {utt number: words}
TRANSCRIPTS = {
    "84": {"121123": {"0000": "GO DO YOU HEAR", "0001": "BUT IN LESS THAN FIVE MINUTES"}},
    "174": {"50561": {"0000": "FOREVER FOREVER", "0001": "THE LINE WITHOUT AUDIO"}},
}
NO_AUDIO = "174-50561-0001"  # transcript line, no flac
NO_TEXT = "84-121123-0002"  # flac, no transcript line


def tone(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def make_librispeech(root: Path, part: str = "dev-clean") -> Path:
    """Write LibriSpeech/<part>/<spk>/<chapter>/... with tiny flac files under `root`."""
    for spk, chapters in TRANSCRIPTS.items():
        for chapter, utts in chapters.items():
            folder = root / "LibriSpeech" / part / spk / chapter
            folder.mkdir(parents=True)
            lines = [f"{spk}-{chapter}-{n} {words}" for n, words in utts.items()]
            (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
            for n in utts:
                utt = f"{spk}-{chapter}-{n}"
                if utt != NO_AUDIO:
                    save(folder / f"{utt}.flac", tone(0.2 + 0.1 * int(n)), 16000)
    save(root / "LibriSpeech" / part / "84" / "121123" / f"{NO_TEXT}.flac", tone(0.1), 16000)
    return root


def check_prepared(dest: Path) -> None:
    assert [p for p in validate_data_dir(dest) if p.level == "error"] == []
    data = DataDir.load(dest)
    assert data.utt_ids == ["174-50561-0000", "84-121123-0000", "84-121123-0001"]
    assert data.text["84-121123-0001"] == "BUT IN LESS THAN FIVE MINUTES"
    assert data.utt2spk == {u: u.split("-")[0] for u in data.utt_ids}
    assert data.spk2utt["84"] == ["84-121123-0000", "84-121123-0001"]
    assert data.wav_scp["84-121123-0001"].endswith("/84/121123/84-121123-0001.flac")
    assert data.utt2dur["84-121123-0001"] == pytest.approx(0.3)


def test_prepare_from_data_root_reports_and_skips_mismatches(tmp_path):
    root = make_librispeech(tmp_path / "corpus")
    (res,) = prepare_librispeech(tmp_path / "data", ["dev-clean"], data_root=root, progress=False)
    assert res.num_utts == 3 and res.path == tmp_path / "data" / "dev_clean"
    assert res.skipped["transcript line without audio"] == [NO_AUDIO]
    (no_text,) = res.skipped["audio without transcript"]
    assert no_text.endswith(f"{NO_TEXT}.flac")
    check_prepared(res.path)
    # idempotent: a rerun keeps the finished dir
    (again,) = prepare_librispeech(tmp_path / "data", ["dev-clean"], data_root=root, progress=False)
    assert again.reused and again.num_utts == 3
    # a root that points inside LibriSpeech/ works too
    (inner,) = prepare_librispeech(tmp_path / "d2", ["dev-clean"], data_root=root / "LibriSpeech",
                                   progress=False)  # fmt: skip
    assert inner.num_utts == 3


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown LibriSpeech part"):
        prepare_librispeech(tmp_path, ["dev-dirty"], data_root=tmp_path)
    with pytest.raises(ConfigError, match="exactly one of"):
        prepare_librispeech(tmp_path, ["dev-clean"])
    with pytest.raises(DataDirError, match="no LibriSpeech/dev-clean"):
        prepare_librispeech(tmp_path / "o", ["dev-clean"], data_root=tmp_path, progress=False)


def test_cli_download_verify_extract_prepare(tmp_path, monkeypatch, capsys):
    make_librispeech(tmp_path / "src")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "LibriSpeech", arcname="LibriSpeech")
    archive = buf.getvalue()
    monkeypatch.setitem(librispeech.MD5, "dev-clean", hashlib.md5(archive).hexdigest())
    with serve({"/dev-clean.tar.gz": archive}) as (url, log):
        monkeypatch.setattr(librispeech, "BASE_URL", url)
        args = ["data", "prepare", "librispeech", "--download-dir", str(tmp_path / "dl"),
                "--parts", "dev-clean", str(tmp_path / "data")]  # fmt: skip
        with pytest.raises(SystemExit) as exc:
            main(args)
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    assert "dev-clean: 3 utterance(s)" in out
    assert "skipped 1: transcript line without audio (174-50561-0001)" in out
    assert "skipped 1: audio without transcript" in out
    assert log == [None]
    check_prepared(tmp_path / "data" / "dev_clean")


def test_cli_user_error_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "librispeech", "--data-root", str(tmp_path), "--parts",
              "dev-dirty", str(tmp_path / "out")])  # fmt: skip
    assert exc.value.code == 2
    assert "error: unknown LibriSpeech part(s) dev-dirty" in capsys.readouterr().err
