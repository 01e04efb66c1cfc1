"""`audiokit feats extract` / `compute-cmvn`: ark/scp output, options, bad utterances, CMVN."""

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.cli.main import main
from audiokit.errors import ConfigError, FeatureError
from audiokit.features.extract import (
    build_options,
    extract_features,
    options_to_conf,
    parse_kaldi_bool,
    read_feats,
    read_kaldi_conf,
)
from audiokit.features.kaldi import fbank, mfcc
from audiokit.features.kaldi_options import FbankOptions, FrameOptions, MelOptions, MfccOptions
from tests.conftest import shared_path

SR = 16000


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def _wave(seconds: float, seed: int, sr: int = SR) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t) + 0.05 * rng.standard_normal(t.shape)
    return x.astype(np.float32)


def make_data_dir(root, durations=(0.5, 0.31, 0.77, 0.42, 0.6), rates=None, extra=""):
    d = root / "data"
    (d / "wav").mkdir(parents=True)
    lines = []
    for i, dur in enumerate(durations):
        sr = rates[i] if rates else SR
        sf.write(d / "wav" / f"u{i}.wav", _wave(dur, i, sr), sr, subtype="PCM_16")
        lines.append(f"u{i} wav/u{i}.wav")
    (d / "wav.scp").write_text("\n".join(lines) + "\n" + extra)
    return d


def _read_wav(d, utt):
    return torch.from_numpy(sf.read(d / "wav" / f"{utt}.wav", dtype="float32")[0])


def test_nj2_scp_reads_back_equal_to_direct_fbank(tmp_path, capsys):
    d = make_data_dir(tmp_path)
    out = tmp_path / "fb"
    code = run("feats", "extract", "--nj", "2", "--batch-size", "2", "--dither", "0",
               "--num-mel-bins", "40", str(d), str(out))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("raw_fbank.*.ark")) == [
        "raw_fbank.1.ark",
        "raw_fbank.2.ark",
    ]
    scp = kaldiio.load_scp(str(out / "feats.scp"))
    assert list(scp.keys()) == [f"u{i}" for i in range(5)]
    frames = dict(line.split() for line in (out / "utt2num_frames").read_text().splitlines())
    opts = FbankOptions(frame=FrameOptions(dither=0.0), mel=MelOptions(num_bins=40))
    for utt in scp:
        ref, n = fbank(_read_wav(d, utt), opts=opts)
        got = scp[utt]
        assert got.dtype == np.float32 and got.shape == (int(n), 40) == (int(frames[utt]), 40)
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-4)
    conf = read_kaldi_conf(out / "fbank.conf")
    assert conf["num-mel-bins"] == "40" and conf["dither"] == "0"
    assert read_feats(out).keys() == scp.keys()


def test_snip_edges_spellings_and_bad_boolean(tmp_path, capsys):
    d = make_data_dir(tmp_path, durations=(0.3,))
    for i, spelling in enumerate([("--snip-edges", "false"), ("--snip-edges=FALSE",)]):
        out = tmp_path / f"o{i}"
        assert run("feats", "extract", *spelling, "--dither", "0", str(d), str(out)) == 0
        assert read_kaldi_conf(out / "fbank.conf")["snip-edges"] == "false"
        assert read_feats(out)["u0"].shape[0] == round(
            0.3 * SR / 160
        )  # 30; snip-edges=true gives 28
    assert (
        run("feats", "extract", "--snip-edges=true", "--dither", "0", str(d), str(tmp_path / "t"))
        == 0
    )
    assert read_feats(tmp_path / "t")["u0"].shape[0] == 28
    assert run("feats", "extract", "--snip-edges", "maybe", str(d), str(tmp_path / "bad")) == 2
    assert "expected true or false" in capsys.readouterr().err
    assert parse_kaldi_bool("True") is True and parse_kaldi_bool("0") is False
    with pytest.raises(ConfigError):
        parse_kaldi_bool("yes please")


def test_mfcc_config_file_and_option_type_checks(tmp_path, capsys):
    d = make_data_dir(tmp_path, durations=(0.4, 0.5))
    conf = tmp_path / "mfcc.conf"
    conf.write_text("# comment\n--use-energy=false\n--num-ceps=10\n--dither=0\n")
    out = tmp_path / "mf"
    assert (
        run(
            "feats",
            "extract",
            "--type",
            "mfcc",
            "--config",
            str(conf),
            "--num-ceps",
            "12",
            "--compress",
            "true",
            str(d),
            str(out),
        )
        == 0
    )
    opts = MfccOptions(frame=FrameOptions(dither=0.0), use_energy=False, num_ceps=12)
    ref, _ = mfcc(_read_wav(d, "u1"), opts=opts)
    got = read_feats(out)["u1"]
    assert got.shape[1] == 12
    # --compress true: Kaldi's 8-bit-per-value codec, error a small fraction of each column's range
    col_range = ref.numpy().max(0) - ref.numpy().min(0)
    assert np.all(np.abs(got - ref.numpy()) <= 0.02 * col_range + 1e-3)
    assert read_kaldi_conf(out / "mfcc.conf")["use-energy"] == "false"
    assert (
        run(
            "feats",
            "extract",
            "--type",
            "spectrogram",
            "--num-mel-bins",
            "40",
            str(d),
            str(tmp_path / "x"),
        )
        == 2
    )
    assert "does not apply to spectrogram" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="num-ceps"):
        build_options("mfcc", {"num-ceps": "lots"})
    spec_opts = build_options("spectrogram", {"frame-length": 20})
    assert "--num-mel-bins" not in options_to_conf("spectrogram", spec_opts)


def test_bad_utterances_skipped_and_listed(tmp_path, capsys):
    d = make_data_dir(tmp_path, durations=(0.5, 0.01, 0.4), extra="u9 wav/missing.wav\n")
    out = tmp_path / "fb"
    assert run("feats", "extract", "--dither", "0", str(d), str(out)) == 0
    err = capsys.readouterr().err
    assert "skipped 2 utterance(s)" in err and "u1" in err and "u9" in err
    assert sorted(read_feats(out)) == ["u0", "u2"]
    # every utterance bad -> exit 2 with a one-line error
    d2 = make_data_dir(tmp_path / "b", durations=(0.01,))
    assert run("feats", "extract", str(d2), str(tmp_path / "fb2")) == 2
    assert "all 1 utterances failed" in capsys.readouterr().err


def test_rate_mismatch_errors_unless_resample(tmp_path, capsys):
    d = make_data_dir(tmp_path, durations=(0.5, 0.5), rates=[SR, 8000])
    with pytest.raises(FeatureError, match=r"'u1': audio is 8000 Hz.*--resample"):
        extract_features(d, tmp_path / "a", opts=build_options("fbank", {"dither": 0}))
    assert not (tmp_path / "a" / "feats.scp").exists()
    assert not list((tmp_path / "a").glob("*.ark"))  # the partial ark was discarded
    # the same through the CLI with 2 jobs: a one-line error and exit 2
    assert run("feats", "extract", "--nj", "2", str(d), str(tmp_path / "c")) == 2
    err = capsys.readouterr().err
    assert "8000 Hz" in err and "Traceback" not in err
    res = extract_features(
        d, tmp_path / "b", opts=build_options("fbank", {"dither": 0}), resample=True
    )
    assert res.num_done == 2 and not res.failed
    assert read_feats(tmp_path / "b")["u1"].shape[0] == 48
    with pytest.raises(FeatureError, match="not found"):
        read_feats(tmp_path / "nothing")


def test_compute_cmvn_kaldi_and_npz(tmp_path):
    d = make_data_dir(tmp_path, durations=(0.5, 0.3))
    out = tmp_path / "fb"
    extract_features(d, out, opts=build_options("fbank", {"dither": 0}), compress=False)
    assert run("feats", "compute-cmvn", "--per-utterance", str(out), str(tmp_path / "cmvn")) == 0
    feats = read_feats(out)
    frames = np.concatenate(list(feats.values())).astype(np.float64)
    mat = kaldiio.load_mat(str(tmp_path / "cmvn" / "cmvn.ark"))
    assert mat.shape == (2, 24) and mat[0, -1] == len(frames)
    np.testing.assert_allclose(mat[0, :-1], frames.sum(0), rtol=1e-9)
    np.testing.assert_allclose(mat[1, :-1], (frames**2).sum(0), rtol=1e-9)
    z = np.load(tmp_path / "cmvn" / "cmvn.npz")
    np.testing.assert_allclose(z["mean"], frames.mean(0), rtol=1e-5)
    np.testing.assert_allclose(z["istd"], 1 / frames.std(0), rtol=1e-4)
    per_utt = kaldiio.load_scp(str(tmp_path / "cmvn" / "cmvn_utt.scp"))
    assert per_utt["u1"][0, -1] == feats["u1"].shape[0]


def test_speech_en_dev_matches_torchaudio(tmp_path):
    import torchaudio.compliance.kaldi as ta_kaldi

    data = shared_path("data", "speech_en_dev")
    res = extract_features(
        data, tmp_path / "fb", opts=build_options("fbank", {"dither": 0, "num-mel-bins": 80}),
        batch_size=4, compress=False,
    )  # fmt: skip
    assert res.num_done == 11 and not res.failed
    feats = read_feats(tmp_path / "fb")
    wav_scp = dict(line.split(maxsplit=1) for line in (data / "wav.scp").read_text().splitlines())
    for utt, ours in feats.items():
        x, sr = sf.read(data / wav_scp[utt], dtype="float32")
        ref = ta_kaldi.fbank(
            torch.from_numpy(x)[None] * 32768, num_mel_bins=80, dither=0.0, sample_frequency=sr
        )
        assert ours.shape == tuple(ref.shape)
        np.testing.assert_allclose(ours, ref.numpy(), atol=5e-3, rtol=0)
        assert np.median(np.abs(ours - ref.numpy())) < 1e-4


def test_features_package_exports_everything_lazily():
    import audiokit.features as features

    assert sorted(features.__all__) == sorted(
        n for names in features._EXPORTS.values() for n in names
    )
    for name in features.__all__:
        assert callable(getattr(features, name)), name
    with pytest.raises(AttributeError):
        features.no_such_thing  # noqa: B018


def test_segments_are_cut_before_extraction(tmp_path):
    d = make_data_dir(tmp_path, durations=(1.0,))
    (d / "segments").write_text("a u0 0.0 0.4\nb u0 0.25 0.9\n")
    res = extract_features(
        d, tmp_path / "fb", opts=build_options("fbank", {"dither": 0}), compress=False
    )
    assert res.num_done == 2
    wave = _read_wav(d, "u0")
    feats = read_feats(tmp_path / "fb")
    opts = FbankOptions(frame=FrameOptions(dither=0.0))
    for utt, (start, end) in {"a": (0.0, 0.4), "b": (0.25, 0.9)}.items():
        ref, _ = fbank(wave[int(start * SR) : int(end * SR)], opts=opts)
        np.testing.assert_allclose(feats[utt], ref.numpy(), rtol=1e-5, atol=1e-4)
