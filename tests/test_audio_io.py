"""audiokit.audio: file formats, SPHERE, channels, segments, resampling, errors, mu-law."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.audio import AudioInfo, info, load, mulaw_decode, mulaw_encode, resample, save
from audiokit.errors import AudioError, ConfigError

SR = 16000


def tone(n: int = 1600, freq: float = 440.0, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sr)).astype(np.float32)


def stereo(n: int = 1600) -> np.ndarray:
    """(2, T): channel 0 a tone, channel 1 a different tone."""
    return np.stack([tone(n, 440.0), tone(n, 1000.0, amp=0.25)])


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype", "atol"),
    [
        (".wav", "WAV", "PCM_U8", 1 / 128),
        (".wav", "WAV", "PCM_16", 1 / 32768),
        (".wav", "WAV", "PCM_24", 1e-6),
        (".wav", "WAV", "PCM_32", 1e-7),
        (".wav", "WAV", "FLOAT", 0.0),
        (".flac", "FLAC", "PCM_16", 1 / 32768),
        (".flac", "FLAC", "PCM_24", 1e-6),
    ],
)
def test_lossless_round_trip(tmp_path, suffix, fmt, subtype, atol):
    x = tone()
    path = tmp_path / f"a{suffix}"
    save(path, x, SR, subtype=subtype)
    i = info(path)
    assert i == AudioInfo(SR, len(x), 1, fmt)
    assert i.duration == pytest.approx(0.1)
    y, sr = load(path)
    assert sr == SR and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=atol + 1e-9)


def test_pcm16_scaling_matches_int_division(tmp_path):
    ints = np.array([-32768, -1, 0, 1, 16384, 32767], dtype=np.int16)
    sf.write(tmp_path / "i.wav", ints, SR, subtype="PCM_16")
    y, _ = load(tmp_path / "i.wav")
    np.testing.assert_array_equal(y, ints.astype(np.float32) / 32768)


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype"), [(".ogg", "OGG", "VORBIS"), (".mp3", "MP3", "MPEG_LAYER_III")]
)
def test_lossy_round_trip(tmp_path, suffix, fmt, subtype):
    x = tone(SR)  # 1 s: codecs need some length
    path = tmp_path / f"a{suffix}"
    sf.write(path, x, SR, format=fmt, subtype=subtype)
    i = info(path)
    assert (i.format, i.sample_rate, i.num_channels) == (fmt, SR, 1)
    y, sr = load(path)
    assert sr == SR and y.dtype == np.float32
    assert abs(len(y) - len(x)) <= 1152  # mp3 may differ by at most a frame
    # lossy but close: the tone's energy survives and it is still a 440 Hz peak
    spec = np.abs(np.fft.rfft(y[: SR // 2]))
    assert np.argmax(spec) * 2 == pytest.approx(440, abs=2)
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.1)


def test_save_accepts_torch_and_channels_first(tmp_path):
    x = stereo()
    save(tmp_path / "s.flac", torch.from_numpy(x), SR)
    assert info(tmp_path / "s.flac").num_channels == 2
    y, _ = load(tmp_path / "s.flac", channel="all")
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1 / 32768)


def test_save_rejects_bad_input_and_is_atomic(tmp_path):
    path = tmp_path / "a.wav"
    save(path, tone(), SR)
    before = path.read_bytes()
    bad = tone()
    bad[3] = np.nan
    with pytest.raises(AudioError, match="a.wav.*NaN"):
        save(path, bad, SR)
    assert path.read_bytes() == before  # old file untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]  # no temp file left
    with pytest.raises(ConfigError, match="suffix '.mp4'"):
        save(tmp_path / "a.mp4", tone(), SR)
    with pytest.raises(ConfigError, match="subtype 'PCM_32'"):
        save(tmp_path / "a.flac", tone(), SR, subtype="PCM_32")
    with pytest.raises(AudioError, match="shape"):
        save(tmp_path / "b.wav", np.zeros((1, 2, 3), np.float32), SR)


def test_save_clips_out_of_range_for_pcm(tmp_path):
    save(tmp_path / "c.wav", np.array([1.5, -1.5, 0.5], np.float32), SR)
    y, _ = load(tmp_path / "c.wav")
    np.testing.assert_allclose(y, [32767 / 32768, -1.0, 0.5])


# ---------------------------------------------------------------- channels and segments


def test_channel_pick_mix_all(tmp_path):
    x = stereo()
    path = tmp_path / "s.wav"
    sf.write(path, x.T, SR, subtype="FLOAT")
    np.testing.assert_array_equal(load(path, channel=1)[0], x[1])
    np.testing.assert_allclose(load(path)[0], x.mean(axis=0), atol=1e-7)
    assert load(path, channel="all")[0].shape == (2, len(x[0]))
    mono = tmp_path / "m.wav"
    sf.write(mono, x[0], SR, subtype="FLOAT")
    assert load(mono, channel="all")[0].shape == (1, len(x[0]))
    with pytest.raises(AudioError, match=r"s\.wav.*channel 2 .* 2 channel"):
        load(path, channel=2)
    with pytest.raises(ConfigError, match="channel"):
        load(path, channel="left")


def test_segments(tmp_path):
    x = np.arange(SR, dtype=np.int16)  # 1 s ramp: sample value = index
    path = tmp_path / "r.wav"
    sf.write(path, x, SR, subtype="PCM_16")
    y, _ = load(path, start=0.25, end=0.5)
    np.testing.assert_array_equal(y * 32768, np.arange(4000, 8000))
    assert len(load(path, start=0.9)[0]) == 1600
    assert len(load(path, start=0.9, end=-1)[0]) == 1600
    assert len(load(path, start=0.9, end=1.3)[0]) == 1600  # < 0.5 s overshoot: cut at the end
    for start, end in [(1.0, None), (0.5, 1.6), (0.5, 0.4), (-0.1, 0.5)]:
        with pytest.raises(AudioError, match=r"r\.wav.*segment"):
            load(path, start=start, end=end)


def test_segment_then_resample(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(path, tone(SR), SR, subtype="FLOAT")
    y, sr = load(path, sample_rate=8000, start=0.1, end=0.35)
    assert sr == 8000 and len(y) == 2000


# ---------------------------------------------------------------- resampling


@pytest.mark.parametrize(("orig", "target"), [(16000, 8000), (16000, 22050), (44100, 16000)])
def test_resample_keeps_frequency_and_length(orig, target):
    x = tone(orig, 1000.0, sr=orig)  # 1 s, 1 kHz
    y = resample(x, orig, target)
    assert y.dtype == np.float32 and len(y) == math.ceil(len(x) * target / orig)
    spec = np.abs(np.fft.rfft(y))
    assert np.argmax(spec) * target / len(y) == pytest.approx(1000.0, abs=2.0)
    assert np.sqrt(np.mean(y[100:-100] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resample_matches_librosa_and_handles_channels():
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1003)).astype(np.float32)
    y = resample(x, 16000, 22050)
    ref = librosa.resample(x, orig_sr=16000, target_sr=22050, res_type="soxr_hq")
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-6)
    np.testing.assert_allclose(y[1], resample(x[1], 16000, 22050), atol=1e-6)
    assert resample(x, 16000, 16000).shape == x.shape
    with pytest.raises(ConfigError):
        resample(x, 0, 16000)


def test_load_resamples(tmp_path):
    path = tmp_path / "a.flac"
    save(path, tone(SR), SR)
    y, sr = load(path, sample_rate=8000)
    assert sr == 8000 and len(y) == 8000


# ---------------------------------------------------------------- SPHERE


def sphere_bytes(data: bytes, fields: dict[str, str], header_size: int = 1024) -> bytes:
    lines = ["NIST_1A", f"{header_size:7d}"]
    for k, v in fields.items():
        typ = "-i" if v.lstrip("-").isdigit() and k != "sample_byte_format" else f"-s{len(v)}"
        lines.append(f"{k} {typ} {v}")
    head = ("\n".join(lines) + "\nend_head\n").encode()
    return head + b" " * (header_size - len(head)) + data


def test_sphere_pcm16_both_byte_orders_stereo(tmp_path):
    ints = (stereo(400).T * 32767).astype(np.int16)  # (T, 2)
    for order, dtype in [("01", "<i2"), ("10", ">i2")]:
        fields = {
            "sample_rate": "8000",
            "channel_count": "2",
            "sample_n_bytes": "2",
            "sample_count": "400",
            "sample_byte_format": order,
            "sample_coding": "pcm",
        }
        path = tmp_path / f"s{order}.sph"
        path.write_bytes(sphere_bytes(ints.astype(dtype).tobytes(), fields))
        assert info(path) == AudioInfo(8000, 400, 2, "SPHERE")
        y, sr = load(path, channel="all")
        assert sr == 8000
        np.testing.assert_array_equal(y, ints.T.astype(np.float32) / 32768)
        np.testing.assert_array_equal(
            load(path, channel=1, start=0.01, end=0.02)[0], ints[80:160, 1] / 32768
        )


def test_sphere_ulaw_matches_libsndfile(tmp_path):
    codes = np.arange(256, dtype=np.uint8)
    path = tmp_path / "u.wv1"  # TIMIT/WSJ style suffix: detected by content
    fields = {
        "sample_rate": "8000",
        "channel_count": "1",
        "sample_n_bytes": "1",
        "sample_count": "256",
        "sample_coding": "ulaw",
    }
    path.write_bytes(sphere_bytes(codes.tobytes(), fields))
    y, _ = load(path)
    ref, _ = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(y, ref)
    assert y.max() == pytest.approx(32124 / 32768)


@pytest.mark.parametrize("subtype", ["PCM_S8", "PCM_16", "PCM_24", "PCM_32", "ULAW", "ALAW"])
def test_sphere_reader_agrees_with_libsndfile(tmp_path, subtype):
    path = tmp_path / "n.sph"
    sf.write(path, stereo(300).T, 8000, format="NIST", subtype=subtype)
    y, sr = load(path, channel="all")
    ref, _ = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 8000 and info(path).format == "SPHERE"
    np.testing.assert_allclose(y, ref.T, atol=1e-7)


def test_sphere_errors(tmp_path):
    fields = {
        "sample_rate": "16000",
        "channel_count": "1",
        "sample_n_bytes": "2",
        "sample_count": "100",
        "sample_coding": "pcm,embedded-shorten-v2.00",
        "sample_byte_format": "01",
    }
    shorten = tmp_path / "sh.sph"
    shorten.write_bytes(sphere_bytes(b"ajkg" + b"\0" * 50, fields))
    with pytest.raises(AudioError, match=r"sh\.sph.*shorten.*sph2pipe -f wav"):
        load(shorten)
    with pytest.raises(AudioError, match="sph2pipe"):
        info(shorten)
    fields["sample_coding"] = "pcm"
    cut = tmp_path / "cut.sph"
    cut.write_bytes(sphere_bytes(b"\0" * 101, fields))  # 50.5 of 100 samples
    with pytest.raises(AudioError, match=r"cut\.sph.*truncated.*100.*50"):
        load(cut)
    fields["sample_coding"] = "wavpack"
    odd = tmp_path / "w.sph"
    odd.write_bytes(sphere_bytes(b"\0" * 200, fields))
    with pytest.raises(AudioError, match=r"w\.sph.*wavpack.*not supported"):
        load(odd)


# ---------------------------------------------------------------- errors


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav: file not found"):
        load(tmp_path / "nope.wav")
    (tmp_path / "empty.flac").write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.flac: file is empty"):
        info(tmp_path / "empty.flac")
    with pytest.raises(AudioError, match="directory"):
        load(tmp_path)


def test_zero_length_audio(tmp_path):
    sf.write(tmp_path / "z.wav", np.zeros(0, np.float32), SR, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"z\.wav: audio has no samples"):
        load(tmp_path / "z.wav")
    with pytest.raises(AudioError, match="no samples"):
        info(tmp_path / "z.wav")


@pytest.mark.parametrize("cut", [1001, 1000, 3])  # mid-sample, whole samples, inside the data
def test_truncated_wav(tmp_path, cut):
    save(tmp_path / "a.wav", tone(), SR)
    full = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "t.wav").write_bytes(full[: 44 + cut])
    for fn in (info, load):
        with pytest.raises(
            AudioError, match=r"t\.wav: WAV file is truncated: header declares 3200 bytes"
        ):
            fn(tmp_path / "t.wav")
    (tmp_path / "h.wav").write_bytes(full[:30])  # cut inside the header
    with pytest.raises(AudioError, match=r"h\.wav"):
        load(tmp_path / "h.wav")


def test_truncated_flac_and_ogg(tmp_path):
    for suffix in (".flac", ".ogg"):
        save_path = tmp_path / f"a{suffix}"
        sf.write(save_path, tone(SR), SR)
        data = save_path.read_bytes()
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(AudioError, match=rf"cut\{suffix}"):
            load(cut)


def test_streamed_wav_header_reads_to_end(tmp_path):
    save(tmp_path / "a.wav", tone(), SR)
    data = bytearray((tmp_path / "a.wav").read_bytes())
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFFFFFF)  # as a writer to a pipe leaves it
    (tmp_path / "s.wav").write_bytes(bytes(data))
    assert info(tmp_path / "s.wav").num_frames == 1600
    np.testing.assert_array_equal(load(tmp_path / "s.wav")[0], load(tmp_path / "a.wav")[0])


def test_garbage_and_unsupported(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "g.wav").write_bytes(rng.integers(0, 256, 700, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match=r"g\.wav: cannot decode audio.*corrupt"):
        load(tmp_path / "g.wav")
    (tmp_path / "x.m4a").write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    with pytest.raises(AudioError, match=r"x\.m4a: unsupported audio format '\.m4a'.*ffmpeg"):
        info(tmp_path / "x.m4a")
    save(tmp_path / "c.wav", tone(), SR)
    good = bytearray((tmp_path / "c.wav").read_bytes())
    good[20:22] = struct.pack("<H", 0x1234)  # unknown WAV codec tag
    (tmp_path / "codec.wav").write_bytes(bytes(good))
    with pytest.raises(AudioError, match=r"codec\.wav: cannot decode"):
        load(tmp_path / "codec.wav")


def test_nonfinite_float_wav(tmp_path):
    x = tone()
    x[5] = np.inf
    sf.write(tmp_path / "f.wav", x, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"f\.wav.*NaN or infinite"):
        load(tmp_path / "f.wav")


def test_bad_options(tmp_path):
    save(tmp_path / "a.wav", tone(), SR)
    with pytest.raises(ConfigError, match="sample_rate"):
        load(tmp_path / "a.wav", sample_rate=0)


# ---------------------------------------------------------------- mu-law


def test_mulaw_round_trip_error_bound():
    x = torch.linspace(-1, 1, 20001)
    q = mulaw_encode(x)
    assert q.dtype == torch.int64 and int(q.min()) == 0 and int(q.max()) == 255
    y = mulaw_decode(q)
    mu = 255
    bound = math.log1p(mu) * (x.abs() + 1 / mu) / mu * 1.05 + 1e-6
    assert bool(((y - x).abs() <= bound).all())
    assert float((y - x).abs().max()) < 0.025
    assert torch.equal(mulaw_encode(y), q)  # decoding gives the level's centre
    # batched (..., T) and clipping of out-of-range input
    assert mulaw_encode(torch.zeros(2, 3, 4)).shape == (2, 3, 4)
    assert mulaw_encode(torch.tensor([2.0, -2.0])).tolist() == [255, 0]


def test_mulaw_matches_torchaudio():
    F = pytest.importorskip("torchaudio.functional")
    x = torch.linspace(-1, 1, 1001)
    assert torch.equal(mulaw_encode(x, 16), F.mu_law_encoding(x, 16))
    q = torch.arange(256)
    torch.testing.assert_close(mulaw_decode(q), F.mu_law_decoding(q, 256))
