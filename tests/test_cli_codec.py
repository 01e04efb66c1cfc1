"""`audiokit codec encode/decode/resynth/eval` with tiny codecs that follow audiokit/codec/base.py.

The tiny codecs live here (architecture ``tests.test_cli_codec:TinyRVQ``) so the CLI is tested
without the real models; a real-model check uses ``codec_vae`` when it is importable.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from torch import nn

from audiokit.codec.base import CodecEncoding, CodecOutput
from tests.conftest import run_main

SR = 8000


class TinyRVQ(nn.Module):
    """RVQ codec: strided conv encoder (receptive field 3 frames), residual nearest-neighbour
    quantisation, transposed-conv decoder. codes (B, K, ceil(S / hop))."""

    kind = "rvq"

    def __init__(self, sample_rate=SR, channels=1, hop_length=40, n_codebooks=4,
                 codebook_size=16, dim=8, seed=0, tag_extra=True):  # fmt: skip
        super().__init__()
        torch.manual_seed(seed)
        self.sample_rate, self.channels, self.hop_length = sample_rate, channels, hop_length
        self.n_codebooks, self.codebook_size = n_codebooks, codebook_size
        self.tag_extra = tag_extra  # extra={"tiny": True}: checks that `extra` reaches the npz
        self.enc = nn.Conv1d(channels, dim, 3 * hop_length, stride=hop_length, padding=hop_length)
        self.dec = nn.ConvTranspose1d(dim, channels, hop_length, stride=hop_length)
        self.codebooks = nn.Parameter(torch.randn(n_codebooks, codebook_size, dim) * 0.3)

    def n_codebooks_for_bandwidth(self, kbps: float) -> int:
        per_q = math.log2(self.codebook_size) * self.sample_rate / self.hop_length / 1000
        return max(1, min(self.n_codebooks, int(kbps // per_q)))

    def encode(self, wav, n_codebooks=None):
        x = F.pad(wav, (0, -wav.shape[-1] % self.hop_length))
        r = self.enc(x).transpose(1, 2)  # (B, T, D)
        codes = []
        for cb in self.codebooks[: n_codebooks or self.n_codebooks]:
            idx = torch.cdist(r, cb[None].expand(r.shape[0], -1, -1)).argmin(-1)
            codes.append(idx)
            r = r - cb[idx]
        extra = {"tiny": True} if self.tag_extra else {}
        return CodecEncoding(codes=torch.stack(codes, 1), num_samples=wav.shape[-1], extra=extra)

    def decode(self, encoding):
        codes = encoding.codes
        z = sum(self.codebooks[k][codes[:, k]] for k in range(codes.shape[1]))
        y = torch.tanh(self.dec(z.transpose(1, 2)))
        return y if encoding.num_samples is None else y[..., : encoding.num_samples]

    def forward_train(self, wav):
        enc = self.encode(wav)
        return CodecOutput(audio=self.decode(enc), latent=self.enc(wav), codes=enc.codes)


class TinyLatent(nn.Module):
    """Latent codec: latents (B, 4, ceil(S / hop)) and their logvar."""

    kind = "latent"

    def __init__(self, sample_rate=SR, channels=1, hop_length=80):
        super().__init__()
        torch.manual_seed(1)
        self.sample_rate, self.channels, self.hop_length = sample_rate, channels, hop_length
        self.enc = nn.Conv1d(channels, 8, hop_length, stride=hop_length)
        self.dec = nn.ConvTranspose1d(4, channels, hop_length, stride=hop_length)

    def encode(self, wav, n_codebooks=None):
        h = self.enc(F.pad(wav, (0, -wav.shape[-1] % self.hop_length)))
        mean, logvar = h.chunk(2, dim=1)
        return CodecEncoding(latents=mean, logvar=logvar, num_samples=wav.shape[-1])

    def decode(self, encoding):
        y = self.dec(encoding.latents)
        return y if encoding.num_samples is None else y[..., : encoding.num_samples]

    def forward_train(self, wav):
        raise NotImplementedError


def write_model(path: Path, model: nn.Module, architecture: str, args: dict) -> Path:
    """A packed model dir (model.yaml + model.safetensors) without a tokenizer."""
    path.mkdir(parents=True)
    cfg = {"format_version": 1, "architecture": architecture, "args": args, "frontend": None,
           "sample_rate": model.sample_rate}  # fmt: skip
    (path / "model.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    return path


@pytest.fixture
def rvq_dir(tmp_path):
    return write_model(tmp_path / "rvq", TinyRVQ(), "tests.test_cli_codec:TinyRVQ", {})


@pytest.fixture
def latent_dir(tmp_path):
    return write_model(tmp_path / "lat", TinyLatent(), "tests.test_cli_codec:TinyLatent", {})


def speechlike(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonics plus a little noise, float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = env * (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 720 * t))
    x += 0.05 * rng.standard_normal(len(t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def wav_file(path: Path, seconds=0.5, sr=SR, channels=1, seed=0) -> Path:
    x = speechlike(seconds, sr, seed)
    sf.write(str(path), np.stack([x] * channels, 1) if channels > 1 else x, sr)
    return path


def test_encode_writes_codes_npz_without_pickle(capsys, rvq_dir, tmp_path):
    src = wav_file(tmp_path / "a.wav", seconds=0.5)
    out = tmp_path / "a.npz"
    code, stdout, err = run_main(capsys, "codec", "encode", "--model", rvq_dir, src, out)
    assert code == 0, err
    with np.load(out, allow_pickle=False) as z:
        assert z["codes"].shape == (4, 100)  # 4000 samples / hop 40
        assert np.issubdtype(z["codes"].dtype, np.integer)
        assert int(z["sample_rate"]) == SR and int(z["hop_length"]) == 40
        assert int(z["num_samples"]) == 4000 and int(z["n_codebooks"]) == 4
        assert str(z["kind"]) == "rvq" and json.loads(str(z["extra"])) == {"tiny": True}
        assert "latents" not in z.files
    assert "codes 4x100" in stdout and "kbit/s" in stdout
    assert "note:" not in err  # already at the model's rate


def test_decode_and_resynth_agree(capsys, rvq_dir, tmp_path):
    src = wav_file(tmp_path / "a.wav", seconds=0.3)
    assert run_main(capsys, "codec", "encode", "--model", rvq_dir, src, tmp_path / "a.npz")[0] == 0
    code, _, err = run_main(capsys, "codec", "decode", "--model", rvq_dir, tmp_path / "a.npz",
                            tmp_path / "dec.wav")  # fmt: skip
    assert code == 0, err
    code, _, err = run_main(
        capsys, "codec", "resynth", "--model", rvq_dir, src, tmp_path / "re.wav"
    )
    assert code == 0, err
    dec, sr = sf.read(tmp_path / "dec.wav")
    re, _ = sf.read(tmp_path / "re.wav")
    assert sr == SR and len(dec) == len(re) == int(0.3 * SR)
    np.testing.assert_array_equal(dec, re)
    assert np.abs(dec).max() > 0


def test_n_codebooks_and_bandwidth(capsys, rvq_dir, tmp_path):
    src = wav_file(tmp_path / "a.wav")
    run_main(capsys, "codec", "encode", "--model", rvq_dir, src, tmp_path / "k2.npz", "--n-codebooks", "2")  # fmt: skip
    # one codebook of 16 entries at 200 frames/s = 0.8 kbit/s -> 2.0 kbit/s gives 2 codebooks
    run_main(capsys, "codec", "encode", "--model", rvq_dir, src, tmp_path / "bw.npz", "--bandwidth", "2.0")  # fmt: skip
    for name in ("k2", "bw"):
        with np.load(tmp_path / f"{name}.npz", allow_pickle=False) as z:
            assert z["codes"].shape[0] == 2 and int(z["n_codebooks"]) == 2
    code, _, err = run_main(capsys, "codec", "encode", "--model", rvq_dir, src, tmp_path / "x.npz",
                            "--n-codebooks", "2", "--bandwidth", "2")  # fmt: skip
    assert code == 2 and "not both" in err
    code, _, err = run_main(capsys, "codec", "encode", "--model", rvq_dir, src, tmp_path / "x.npz",
                            "--n-codebooks", "9")  # fmt: skip
    assert code == 2 and "out of range" in err and "\n" not in err.strip()
    # fewer codebooks decode too
    assert run_main(capsys, "codec", "decode", "--model", rvq_dir, tmp_path / "k2.npz", tmp_path / "k2.wav")[0] == 0  # fmt: skip


def test_other_rate_and_channels_are_converted_with_a_note(capsys, rvq_dir, tmp_path):
    src = wav_file(tmp_path / "st.wav", seconds=0.5, sr=16000, channels=2)
    code, _, err = run_main(capsys, "codec", "encode", "--model", rvq_dir, src, tmp_path / "st.npz")
    assert code == 0, err
    assert "note:" in err and "16000 -> 8000 Hz" in err and "2 -> 1 channel" in err
    with np.load(tmp_path / "st.npz", allow_pickle=False) as z:
        assert z["codes"].shape == (4, 100) and int(z["num_samples"]) == 4000


def test_refuses_to_overwrite_and_several_inputs(capsys, rvq_dir, tmp_path):
    a, b = wav_file(tmp_path / "a.wav"), wav_file(tmp_path / "b.wav", seed=1)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    outd = tmp_path / "codes"
    code, stdout, err = run_main(capsys, "codec", "encode", "--model", rvq_dir, a, bad, b, "--out-dir", outd)  # fmt: skip
    assert code == 1
    assert (
        (outd / "a.npz").is_file()
        and (outd / "b.npz").is_file()
        and not (outd / "bad.npz").exists()
    )
    assert "bad.wav" in err and "1 of 3 file(s) failed" in err
    before = (outd / "a.npz").read_bytes()
    code, _, err = run_main(capsys, "codec", "encode", "--model", rvq_dir, a, outd / "a.npz")
    assert code == 1 and "already exists" in err and "--overwrite" in err
    assert (outd / "a.npz").read_bytes() == before
    code, _, err = run_main(capsys, "codec", "encode", "--model", rvq_dir, a, outd / "a.npz", "--overwrite")  # fmt: skip
    assert code == 0, err
    code, _, err = run_main(capsys, "codec", "encode", "--model", rvq_dir, a)
    assert code == 2 and "--out-dir" in err
    assert not list(outd.glob(".*tmp*"))  # atomic writes leave no temp files


def test_decode_rejects_codes_of_another_codec(capsys, rvq_dir, latent_dir, tmp_path):
    src = wav_file(tmp_path / "a.wav")
    run_main(capsys, "codec", "encode", "--model", rvq_dir, src, tmp_path / "a.npz")
    code, _, err = run_main(capsys, "codec", "decode", "--model", latent_dir, tmp_path / "a.npz", tmp_path / "o.wav")  # fmt: skip
    assert code == 1 and "another codec" in err
    (tmp_path / "junk.npz").write_bytes(b"PK junk")
    code, _, err = run_main(capsys, "codec", "decode", "--model", rvq_dir, tmp_path / "junk.npz", tmp_path / "o.wav")  # fmt: skip
    assert code == 1 and "junk.npz" in err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda z: z.update(codes=-z["codes"] - 1), "negative"),
        (lambda z: z.update(codes=np.concatenate([z["codes"], z["codes"]])), "rows"),
        (lambda z: z.update(codes=z["codes"][:, :0]), "no frames"),
        (lambda z: z.update(codes=z["codes"].astype(np.float32) + 0.5), "integers"),
        (lambda z: z.update(sample_rate=np.array([8000, 8000])), "single value"),
        (lambda z: z.update(extra=np.array("[1, 2]")), "JSON object"),
        (lambda z: z.update(num_samples=np.array(10**12)), "does not fit"),
        (lambda z: z.update(channels=np.array(2)), "another codec"),
    ],
)
def test_crafted_npz_is_one_line_error(capsys, rvq_dir, tmp_path, change, message):
    src = wav_file(tmp_path / "a.wav", seconds=0.5)
    assert run_main(capsys, "codec", "encode", "--model", rvq_dir, src, tmp_path / "a.npz")[0] == 0
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    change(data)
    np.savez(tmp_path / "bad.npz", **data)
    good = tmp_path / "a.npz"
    code, out, err = run_main(capsys, "codec", "decode", "--model", rvq_dir, tmp_path / "bad.npz", good, "--out-dir", tmp_path / "dec")  # fmt: skip
    assert code == 1 and message in err and "Traceback" not in err
    assert (tmp_path / "dec" / "a.wav").is_file()  # the good file after the bad one still decoded


def test_latent_codec_round_trip(capsys, latent_dir, tmp_path):
    src = wav_file(tmp_path / "a.wav", seconds=0.5)
    code, stdout, err = run_main(capsys, "codec", "encode", "--model", latent_dir, src, tmp_path / "a.npz")  # fmt: skip
    assert code == 0, err
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert z["latents"].shape == (4, 50) and z["logvar"].shape == (4, 50)
        assert z["latents"].dtype == np.float32 and "codes" not in z.files
    code, _, err = run_main(capsys, "codec", "decode", "--model", latent_dir, tmp_path / "a.npz", tmp_path / "a_dec.wav")  # fmt: skip
    assert code == 0, err
    assert sf.info(str(tmp_path / "a_dec.wav")).frames == 4000
    code, _, err = run_main(capsys, "codec", "encode", "--model", latent_dir, src, tmp_path / "b.npz", "--n-codebooks", "2")  # fmt: skip
    assert code == 2 and "latent codec" in err


def test_chunked_encode_decode_match_one_pass(tmp_path, latent_dir):
    from audiokit.codec import inference as inf

    x = speechlike(1.3)[None]  # 1.3 s = 260 frames of 40 samples at 8 kHz
    args = {"tag_extra": False}
    plain = write_model(tmp_path / "plain", TinyRVQ(**args), "tests.test_cli_codec:TinyRVQ", args)
    codec = inf.load_codec(plain)
    whole = inf.encode(codec, x, chunk_seconds=None)
    parts = inf.encode(codec, x, chunk_seconds=0.25, context_seconds=0.01)  # 50-frame windows
    torch.testing.assert_close(parts.codes, whole.codes, rtol=0, atol=0)
    y_whole = inf.decode(codec, whole, chunk_seconds=None)
    y_parts = inf.decode(codec, parts, chunk_seconds=0.25, context_seconds=0.01)
    assert y_whole.shape == y_parts.shape == (1, x.shape[-1])
    np.testing.assert_allclose(y_parts, y_whole, atol=1e-6)
    lat = inf.load_codec(latent_dir)
    a = inf.encode(lat, x, chunk_seconds=None)
    b = inf.encode(lat, x, chunk_seconds=0.3, context_seconds=0.0)
    torch.testing.assert_close(b.latents, a.latents)
    torch.testing.assert_close(b.logvar, a.logvar)


def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "wav").mkdir(parents=True)
    wav_file(d / "wav" / "u1.wav", seconds=1.2, seed=1)
    wav_file(d / "wav" / "u2.wav", seconds=1.0, sr=16000, seed=2)
    (d / "wav" / "u3.wav").write_bytes(b"broken")
    (d / "wav.scp").write_text("u1 wav/u1.wav\nu2 wav/u2.wav\nu3 wav/u3.wav\n", encoding="utf-8")
    return d


def test_eval_json_reports_metrics_and_skips_bad_items(capsys, rvq_dir, tmp_path):
    d = data_dir(tmp_path)
    out = tmp_path / "eval.json"
    code, stdout, err = run_main(capsys, "codec", "eval", "--model", rvq_dir, "--data", d,
                                 "--n-codebooks", "3", "--output", "json", "--out", out)  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert res == json.loads(out.read_text())
    assert sorted(res["utterances"]) == ["u1", "u2"] and list(res["failed"]) == ["u3"]
    assert "skipped u3" in err
    assert res["kbps"] == pytest.approx(3 * 4 * 200 / 1000)  # K * log2(16) * frames/s
    for m in ("mel_distance", "si_sdr", "stoi"):
        vals = [u[m] for u in res["utterances"].values()]
        assert res["mean"][m] == pytest.approx(np.mean(vals))
    assert res["utterances"]["u2"]["seconds"] == pytest.approx(1.0)  # scored at 8 kHz
    code, stdout, _ = run_main(capsys, "codec", "eval", "--model", rvq_dir, "--data", d)
    assert code == 0 and "mean (2)" in stdout and "STOI" in stdout


def test_eval_opus_baseline(capsys, tmp_path):
    from audiokit.codec.opus import opus_backend

    if opus_backend() is None:
        pytest.skip("opusenc/opusdec or ffmpeg not installed (apt-get install opus-tools)")
    d = data_dir(tmp_path)
    code, stdout, err = run_main(capsys, "codec", "eval", "--opus", "12", "--data", d,
                                 "--sample-rate", "8000", "--output", "json")  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert res["system"] == "opus 12k" and res["kbps"] == 12.0 and list(res["failed"]) == ["u3"]
    assert res["mean"]["si_sdr"] > 5.0  # Opus at 12 kbit/s keeps the waveform of a tone mix
    assert 0.0 < res["mean"]["stoi"] <= 1.0
    code, _, err = run_main(capsys, "codec", "eval", "--opus", "12", "--model", tmp_path, "--data", d)  # fmt: skip
    assert code == 2 and "exactly one" in err


def test_not_a_codec_model_dir(capsys, tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "model.yaml").write_text(yaml.safe_dump({"architecture": "torch.nn:Identity", "args": {}}))
    save_file({}, str(d / "model.safetensors"))
    src = wav_file(tmp_path / "a.wav")
    code, _, err = run_main(capsys, "codec", "encode", "--model", d, src, tmp_path / "a.npz")
    assert code == 2 and "not an audio codec" in err


def test_real_vae_codec_if_present(capsys, tmp_path, one_torch_thread):
    vae = pytest.importorskip("audiokit.codec.vae")
    args = {"encoder_dim": 4, "strides": [2, 2], "latent_dim": 3, "sample_rate": 8000}
    model = vae.WaveformVAE(**args).eval()
    d = write_model(tmp_path / "vae", model, "codec_vae", args)
    src = wav_file(tmp_path / "a.wav", seconds=0.2)
    code, _, err = run_main(capsys, "codec", "resynth", "--model", d, src, tmp_path / "r.wav")
    assert code == 0, err
    assert sf.info(str(tmp_path / "r.wav")).frames == 1600


def test_real_rvq_codec_long_audio_uses_dac_chunking(capsys, tmp_path, one_torch_thread):
    dac = pytest.importorskip("audiokit.codec.dac")
    args = dict(encoder_dim=4, encoder_rates=[2, 4], latent_dim=8, decoder_dim=16,
                decoder_rates=[4, 2], n_codebooks=3, codebook_size=16, codebook_dim=4,
                sample_rate=SR)  # fmt: skip
    d = write_model(tmp_path / "dac", dac.RVQCodec(**args).eval(), "rvq_codec", args)
    src = wav_file(tmp_path / "a.wav", seconds=2.5)
    code, _, err = run_main(capsys, "codec", "encode", "--model", d, src, tmp_path / "a.npz",
                            "--chunk-seconds", "1", "--n-codebooks", "2")  # fmt: skip
    assert code == 0, err
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        extra = json.loads(str(z["extra"]))
        assert extra["chunk_length"] > 0 and extra["padding"] is False  # DAC's chunked compress
        assert z["codes"].shape[0] == 2 and int(z["num_samples"]) == int(2.5 * SR)
    code, _, err = run_main(capsys, "codec", "decode", "--model", d, tmp_path / "a.npz", tmp_path / "d.wav")  # fmt: skip
    assert code == 0, err
    assert sf.info(str(tmp_path / "d.wav")).frames == int(2.5 * SR)
    code, _, err = run_main(capsys, "codec", "resynth", "--model", d, src, tmp_path / "r.wav")
    assert code == 0, err  # short of the default 60 s window: one pass


def test_resample_data_converts_only_what_needs_it(capsys, tmp_path):
    d = data_dir(tmp_path)  # u1 at 8 kHz, u2 at 16 kHz, u3 broken
    (d / "text").write_text("u1 A B\nu2 C\nu3 D\n", encoding="utf-8")
    out = tmp_path / "d8k"
    code, stdout, err = run_main(capsys, "codec", "resample-data", d, out, "--sample-rate", "8000", "--nj", "2")  # fmt: skip
    assert code == 0, err
    assert "2 utterance(s), 1 converted to 8000 Hz, 1 skipped" in stdout and "skipped u3" in err
    scp = dict(line.split(maxsplit=1) for line in (out / "wav.scp").read_text().splitlines())
    assert scp["u1"] == str((d / "wav" / "u1.wav").resolve())  # already 8 kHz mono: kept
    assert Path(scp["u2"]).parent == (out / "wav").resolve()
    assert sf.info(scp["u2"]).samplerate == 8000 and sf.info(scp["u2"]).frames == 8000
    assert (out / "text").read_text() == "u1 A B\nu2 C\n"
    code, _, err = run_main(capsys, "codec", "resample-data", d, out, "--sample-rate", "8000")
    assert code == 2 and "--overwrite" in err


def test_resample_data_refuses_ids_that_are_paths(capsys, tmp_path):
    d = data_dir(tmp_path)  # u2 is at 16 kHz, so it would be written as a new file
    scp = (d / "wav.scp").read_text().replace("u2 ", "../../escape ")
    (d / "wav.scp").write_text(scp)
    out = tmp_path / "d8k"
    code, stdout, err = run_main(capsys, "codec", "resample-data", d, out, "--sample-rate", "8000")  # fmt: skip
    assert "cannot be a file name" in err
    assert not list(tmp_path.rglob("escape.wav"))


def test_eval_short_utterances(capsys, rvq_dir, tmp_path):
    d = tmp_path / "short"
    d.mkdir()
    wav_file(d / "tiny.wav", seconds=0.1)  # 800 samples: too short for the mel distance
    wav_file(d / "brief.wav", seconds=0.3)  # scored, but under 30 STOI frames: stoi is None
    (d / "wav.scp").write_text(f"brief {d / 'brief.wav'}\ntiny {d / 'tiny.wav'}\n")
    code, stdout, err = run_main(capsys, "codec", "eval", "--model", rvq_dir, "--data", d, "--output", "json")  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert "too short to score" in res["failed"]["tiny"] and "skipped tiny" in err
    assert res["utterances"]["brief"]["stoi"] is None and res["mean"]["stoi"] is None
    assert res["utterances"]["brief"]["mel_distance"] > 0
    (d / "wav.scp").write_text(f"tiny {d / 'tiny.wav'}\n")
    code, _, err = run_main(capsys, "codec", "eval", "--model", rvq_dir, "--data", d)
    assert code == 1 and "all 1 utterance(s) failed" in err
