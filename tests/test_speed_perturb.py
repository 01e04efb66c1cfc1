"""Speed perturbation of signals and of whole data dirs."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from audiokit.data import DataDir
from audiokit.errors import ConfigError, DataDirError
from audiokit.features.speed_perturb import perturb_speed, sp_prefix, speed_perturb_data_dir

SR = 16000


def _sine(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.95])
def test_speed_changes_length_and_pitch(factor):
    x = _sine(440.0, 1.0)
    y = perturb_speed(x, SR, factor)
    assert y.dtype == np.float32
    assert y.shape == (int(np.ceil(len(x) / factor)),)
    assert abs(_peak_hz(y, SR) - 440.0 * factor) < 3.0
    # agrees with torchaudio's sinc-based speed() away from the edges
    ref, _ = AF.speed(torch.from_numpy(x)[None], SR, factor)
    n = min(ref.shape[-1], y.shape[-1])
    np.testing.assert_allclose(y[200 : n - 200], ref[0, 200 : n - 200].numpy(), atol=5e-3)


def test_identity_multichannel_and_bad_factor():
    x = np.stack([_sine(300.0, 0.2), _sine(500.0, 0.2)])
    np.testing.assert_array_equal(perturb_speed(x, SR, 1.0), x)
    assert perturb_speed(x, SR, 1.1).shape == (2, int(np.ceil(x.shape[1] / 1.1)))
    with pytest.raises(ConfigError):
        perturb_speed(x, SR, 0.0)
    assert sp_prefix(0.9) == "sp0.9-" and sp_prefix(1.0) == ""


def _make_dir(root):
    src = root / "src"
    (src / "audio").mkdir(parents=True)
    sf.write(src / "audio" / "r1.wav", _sine(200.0, 2.0), SR, subtype="PCM_16")
    sf.write(src / "audio" / "r2.wav", _sine(350.0, 1.0), SR, subtype="PCM_16")
    (src / "wav.scp").write_text("r1 audio/r1.wav\nr2 audio/r2.wav\n")
    (src / "segments").write_text("u1 r1 0.0 0.9\nu2 r1 1.0 1.9\nu3 r2 0.1 0.8\n")
    (src / "utt2spk").write_text("u1 a\nu2 a\nu3 b\n")
    (src / "text").write_text("u1 HELLO\nu2 WORLD\nu3 AGAIN\n")
    (src / "spk2gender").write_text("a f\nb m\n")
    (src / "feats.scp").write_text("u1 x.ark:1\n")
    return src


def test_data_dir_three_way(tmp_path):
    src = _make_dir(tmp_path)
    res = speed_perturb_data_dir(src, tmp_path / "sp", factors=(0.9, 1.0, 1.1))
    assert res.num_utterances == 9 and res.num_recordings == 6
    assert res.dropped_files == ["feats.scp"]
    dd = DataDir.load(tmp_path / "sp")
    assert dd.utt_ids == sorted(["u1", "u2", "u3", "sp0.9-u1", "sp0.9-u2", "sp0.9-u3",
                                 "sp1.1-u1", "sp1.1-u2", "sp1.1-u3"], key=str.encode)  # fmt: skip
    seg = dd.segments["sp1.1-u2"]
    assert seg.recording == "sp1.1-r1"
    assert seg.start == pytest.approx(1.0 / 1.1, abs=1e-5) and seg.end == pytest.approx(
        1.9 / 1.1, abs=1e-5
    )
    assert dd.utt2spk["sp0.9-u3"] == "sp0.9-b" and dd.text["sp0.9-u3"] == "AGAIN"
    assert (tmp_path / "sp" / "spk2gender").read_text().splitlines()[0] == "a f"
    assert dd.utt2dur["sp0.9-u1"] == pytest.approx(0.9 / 0.9, abs=1e-5)
    assert dd.reco2dur["sp1.1-r1"] == pytest.approx(np.ceil(2 * SR / 1.1) / SR, abs=1e-5)
    # the original recording keeps its audio; the perturbed file is the perturbed signal
    orig, _ = dd.load_audio("u3")
    assert orig.shape[0] == int(0.7 * SR)
    fast, sr = dd.load_audio("sp1.1-u3")
    assert sr == SR and abs(fast.shape[0] - 0.7 * SR / 1.1) <= 2
    assert abs(_peak_hz(fast, SR) - 350.0 * 1.1) < 5.0
    wav_entry = dd.wav_scp["sp0.9-r2"]
    assert wav_entry.startswith(str(tmp_path)) and wav_entry.endswith("wav/sp0.9-r2.wav")
    assert dd.wav_scp["r1"] == str((src / "audio" / "r1.wav").resolve())


def test_data_dir_refuses_non_empty_output(tmp_path):
    src = _make_dir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    with pytest.raises(DataDirError, match="not empty"):
        speed_perturb_data_dir(src, tmp_path / "out")
    with pytest.raises(DataDirError, match="differ"):
        speed_perturb_data_dir(src, src)


def test_cli_speed_perturb(tmp_path, capsys):
    from audiokit.cli.main import main

    src = _make_dir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["feats", "speed-perturb", "--factors", "1.0,1.1", str(src), str(tmp_path / "o")])
    assert exc.value.code in (0, None)
    assert "feats.scp" in capsys.readouterr().err
    assert len(DataDir.load(tmp_path / "o").utt_ids) == 6
    with pytest.raises(SystemExit) as exc:
        main(["feats", "speed-perturb", "--factors", "fast", str(src), str(tmp_path / "p")])
    assert exc.value.code == 2
