"""audiokit.audio wav.scp entries: paths, pipes, Kaldi ark offsets, and the real speech_en_dev data."""

from __future__ import annotations

import shlex
import sys

import numpy as np
import pytest
import soundfile as sf

from audiokit.audio import AudioInfo, load, load_scp_entry, save, scp_entry_info
from audiokit.data.kaldi_files import read_kv_file
from audiokit.errors import AudioError

SR = 16000


@pytest.fixture
def data_dir(tmp_path):
    """A data dir with wav/a.wav (0.1 s stereo tone, PCM_16)."""
    (tmp_path / "wav").mkdir()
    t = np.arange(1600) / SR
    x = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 1000 * t)]).astype(
        np.float32
    )
    save(tmp_path / "wav" / "a.wav", x, SR)
    return tmp_path


def test_relative_and_absolute_paths(data_dir, tmp_path_factory):
    ref, _ = load(data_dir / "wav" / "a.wav", channel="all")
    y, sr = load_scp_entry("wav/a.wav", data_dir, channel="all")
    assert sr == SR
    np.testing.assert_array_equal(y, ref)
    elsewhere = tmp_path_factory.mktemp("other")  # absolute paths ignore base_dir
    np.testing.assert_array_equal(
        load_scp_entry(str(data_dir / "wav" / "a.wav"), elsewhere, channel="all")[0], ref
    )
    assert scp_entry_info("  wav/a.wav ", data_dir) == AudioInfo(SR, 1600, 2, "WAV")


def test_options_pass_through(data_dir):
    y, sr = load_scp_entry(
        "wav/a.wav", data_dir, sample_rate=8000, channel=1, start=0.025, end=0.075
    )
    assert sr == 8000 and y.shape == (400,)


def test_errors_name_key_and_path(data_dir):
    with pytest.raises(AudioError, match=r"wav/b\.wav \(id utt7\): file not found"):
        load_scp_entry("wav/b.wav", data_dir, key="utt7")
    with pytest.raises(AudioError, match=r"\(id utt7\).*channel 5"):
        load_scp_entry("wav/a.wav", data_dir, channel=5, key="utt7")
    with pytest.raises(AudioError, match=r"\(id rec1\).*starts after the audio ends"):
        load_scp_entry("wav/a.wav", data_dir, start=3.0, key="rec1")
    with pytest.raises(AudioError, match=r"id utt7.*empty"):
        load_scp_entry("  ", data_dir, key="utt7")


def test_pipe_refused_by_default(data_dir, tmp_path):
    marker = tmp_path / "ran"
    entry = f"touch {marker}; cat wav/a.wav |"
    with pytest.raises(
        AudioError,
        match=r"\(id utt1\): piped wav.scp entries run a shell command.*--allow-pipes.*allow_pipe=True",
    ):
        load_scp_entry(entry, data_dir, key="utt1")
    with pytest.raises(AudioError, match="allow-pipes"):
        scp_entry_info(entry, data_dir)
    assert not marker.exists()  # nothing ran


def test_pipe_when_allowed(data_dir):
    ref, _ = load(data_dir / "wav" / "a.wav", channel="all")
    y, sr = load_scp_entry(
        "cat wav/a.wav |", data_dir, allow_pipe=True, channel="all"
    )  # cwd = data dir
    assert sr == SR
    np.testing.assert_array_equal(y, ref)
    assert scp_entry_info("cat wav/a.wav |", data_dir, allow_pipe=True) == AudioInfo(
        SR, 1600, 2, "WAV"
    )
    seg, _ = load_scp_entry("cat wav/a.wav|", data_dir, allow_pipe=True, start=0.05, channel=0)
    np.testing.assert_array_equal(seg, ref[0, 800:])


def test_pipe_streamed_and_overlong_headers(data_dir):
    """Tools writing to a pipe cannot seek back: sizes are 0xFFFFFFFF, 0 or an estimate."""
    ref, _ = load(data_dir / "wav" / "a.wav", channel="all")
    for size_hex in ("ffffffff", "00000000", "00ffffff"):
        # rewrite the RIFF and data sizes (bytes 4-7, 40-43) of the piped copy
        code = (
            "import sys; b = bytearray(open('wav/a.wav', 'rb').read()); "
            f"v = bytes.fromhex('{size_hex}'); b[4:8] = v; b[40:44] = v; sys.stdout.buffer.write(b)"
        )
        cmd = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} |"
        y, _ = load_scp_entry(cmd, data_dir, allow_pipe=True, channel="all")
        np.testing.assert_array_equal(y, ref)


def test_pipe_failures(data_dir):
    with pytest.raises(
        AudioError, match=r"\(id u2\): piped command failed with exit status 3 \(boom\)"
    ):
        load_scp_entry("echo boom >&2; exit 3 |", data_dir, allow_pipe=True, key="u2")
    with pytest.raises(AudioError, match="wrote nothing to stdout"):
        load_scp_entry("true |", data_dir, allow_pipe=True)
    with pytest.raises(AudioError, match="not decodable audio"):
        load_scp_entry("echo hello |", data_dir, allow_pipe=True)


def test_kaldi_ark_offsets(data_dir):
    kaldiio = pytest.importorskip("kaldiio")
    ints = (np.arange(-800, 800) * 20).astype(np.int16)
    stereo_ints = np.stack([ints, -ints], axis=1)
    kaldiio.save_ark(
        str(data_dir / "raw.ark"),
        {"u1": (8000, ints), "u2": (SR, stereo_ints)},
        scp=str(data_dir / "raw.scp"),
    )
    entries = {
        k: v.replace(str(data_dir) + "/", "") for k, v in read_kv_file(data_dir / "raw.scp").items()
    }
    assert entries["u1"].startswith("raw.ark:")  # relative: resolved against the data dir
    y, sr = load_scp_entry(entries["u1"], data_dir)
    assert sr == 8000
    np.testing.assert_array_equal(y, ints / 32768)
    y2, _ = load_scp_entry(entries["u2"], data_dir, channel="all", start=0.05)
    np.testing.assert_array_equal(y2, stereo_ints[800:].T / 32768)
    assert scp_entry_info(entries["u2"], data_dir) == AudioInfo(SR, 1600, 2, "WAV")
    with pytest.raises(AudioError, match=r"\(id u9\): cannot read an object at byte 5"):
        load_scp_entry("raw.ark:5", data_dir, key="u9")
    with pytest.raises(AudioError, match=r"missing\.ark not found"):
        load_scp_entry("missing.ark:5", data_dir)
    kaldiio.save_ark(str(data_dir / "feats.ark"), {"f": np.ones((3, 4), np.float32)})
    with pytest.raises(AudioError, match="holds a matrix"):
        load_scp_entry("feats.ark:2", data_dir)


def test_flac_entry_resolves_like_wav(data_dir):
    sf.write(data_dir / "wav" / "b.flac", np.zeros(800, np.float32) + 0.25, 8000)
    y, sr = load_scp_entry("wav/b.flac", data_dir, sample_rate=SR)
    assert sr == SR and len(y) == 1600


def test_load_every_speech_en_dev_recording(shared):
    ddir = shared / "data" / "speech_en_dev"  # the `shared` fixture skips when shared/ is absent
    if not ddir.is_dir():
        pytest.skip(f"reference data {ddir} is absent")
    wav_scp = read_kv_file(ddir / "wav.scp")
    assert len(wav_scp) == 11
    total = 0.0
    for key, entry in wav_scp.items():
        meta = scp_entry_info(entry, ddir, key=key)
        y, sr = load_scp_entry(entry, ddir, key=key)
        assert sr == meta.sample_rate == 16000 and y.dtype == np.float32
        assert y.shape == (meta.num_frames,) and meta.duration > 0.5
        assert np.isfinite(y).all() and 0.001 < np.abs(y).max() <= 1.0
        np.testing.assert_array_equal(y, sf.read(ddir / entry, dtype="float32")[0])
        total += meta.duration
    assert total == pytest.approx(37.17, abs=0.01)  # measured (data/README.md rounds it to "41 s")
