"""DAC's chunked compress/decompress: fixture parity and the padding-off machinery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiokit.codec import dac_chunked
from audiokit.codec.dac import RVQCodec, conv_unpadded
from audiokit.errors import AudioError, ConfigError
from tests.conftest import shared_path

RUNS = {"win1.0_nqall": (1.0, None), "win1.0_nq2": (1.0, 2), "winNone_nqall": (None, None)}
TINY = dict(
    encoder_dim=4, encoder_rates=[2, 3], latent_dim=8, decoder_dim=16, decoder_rates=[3, 2],
    n_codebooks=3, codebook_size=16, codebook_dim=4, sample_rate=600,
)  # fmt: skip


@pytest.fixture(scope="module")
def fixture_run():
    """(model with the fixture weights, input (1, 1, T), expected arrays), 1 torch thread."""
    import soundfile as sf

    root = shared_path("fixtures", "dac")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    ckpt = torch.load(root / "weights.pth", map_location="cpu", weights_only=True)
    model = RVQCodec(**ckpt["metadata"]["kwargs"]).eval()
    model.load_state_dict(ckpt["state_dict"], strict=True)
    x, _ = sf.read(root / "inputs" / "sense0880_16000.wav", dtype="float32")
    yield model, torch.from_numpy(x)[None, None], np.load(root / "expected.npz"), root
    torch.set_num_threads(before)


def _maxdiff(a: torch.Tensor, ref: np.ndarray) -> float:
    assert tuple(a.shape) == ref.shape
    return float((a - torch.from_numpy(ref)).abs().max())


def test_geometry_matches_dac(fixture_run):
    model = fixture_run[0]
    assert dac_chunked.codec_delay(model) == model.delay == 5264
    assert dac_chunked.output_length(model, 16000) == 5346


def test_normalised_input(fixture_run):
    model, x, ref, _ = fixture_run
    norm, input_db = dac_chunked.normalize_input(x, 16000, -16.0)
    # our float64 meter vs audiotools' float32 one: ~6e-5 dB apart (see the fixture README)
    assert abs(input_db.item() - float(ref["sense0880/compress/input_db"][0])) <= 1e-3
    np.testing.assert_allclose(
        norm.numpy(), ref["sense0880/compress/norm_input"], rtol=1e-4, atol=0
    )


@pytest.mark.parametrize("run", sorted(RUNS))
def test_compress_parity(fixture_run, run):
    model, x, ref, _ = fixture_run
    win, nq = RUNS[run]
    enc = model.compress(x, win_duration=win, n_codebooks=nq)
    key = f"sense0880/compress/{run}"
    assert torch.equal(enc.codes, torch.from_numpy(ref[f"{key}/codes"]).long())
    chunked = win is not None
    assert enc.extra["padding"] is (not chunked)
    assert enc.extra["chunk_length"] == (34 if chunked else 150)
    assert enc.extra["original_length"] == enc.num_samples == x.shape[-1]
    if f"{key}/decompress_raw" in ref.files:
        raw = dac_chunked.decode_chunks(model, enc.codes, 34, False)
        assert _maxdiff(raw, ref[f"{key}/decompress_raw"]) <= 1e-4
    if f"{key}/decompress_audio" in ref.files:
        out = model.decode(enc)  # an encoding from compress is decompressed
        assert _maxdiff(out, ref[f"{key}/decompress_audio"]) <= 1e-4


def test_dac_file_metadata(fixture_run):
    model, x, _, root = fixture_run
    dac_file = np.load(root / "sense0880_win1.0.dac", allow_pickle=True)[()]
    enc = model.compress(x, win_duration=1.0)
    assert torch.equal(enc.codes, torch.from_numpy(dac_file["codes"].astype(np.int64)))
    meta = dac_file["metadata"]
    assert enc.extra["chunk_length"] == meta["chunk_length"]
    assert enc.extra["original_length"] == meta["original_length"]
    assert enc.extra["padding"] == meta["padding"]
    assert abs(enc.extra["input_db"][0] - float(np.asarray(meta["input_db"]).reshape(-1)[0])) < 1e-3


@pytest.fixture
def tiny(one_torch_thread):
    torch.manual_seed(0)
    return RVQCodec(**TINY).eval()


def test_output_length_is_the_unpadded_models(tiny):
    for n in (600, 900, 1206):
        with torch.no_grad():
            z = tiny.encoder(torch.zeros(1, 1, n), False)
            out = tiny.decoder(tiny.quantizer.decode(tiny.quantizer.encode(z)), False)
        assert out.shape[-1] == dac_chunked.output_length(tiny, n)
    assert dac_chunked.codec_delay(tiny) > 0
    # a discriminator (training-only, with its own convs) does not change the geometry
    disc = RVQCodec(**TINY, discriminator={"mpd": {"periods": [2], "channels": [4]}, "mrd": None})
    assert disc.delay == tiny.delay


def test_padding_flag_leaves_the_model_alone(tiny):
    paddings = [m.padding for m in dac_chunked.conv_layers(tiny)]
    x = torch.randn(1, 1, 900) * 0.1
    with torch.no_grad():
        before = tiny.decode(tiny.encode(x))
        tiny.compress(torch.randn(1, 1, 3000), win_duration=2.0)
        after = tiny.decode(tiny.encode(x))
    assert [m.padding for m in dac_chunked.conv_layers(tiny)] == paddings
    assert torch.equal(before, after)
    conv = tiny.encoder.block[0]
    y = torch.nn.functional.conv1d(x, conv.effective_weight, conv.bias)
    assert torch.equal(conv_unpadded(conv, x), y)


def test_windows_batched_equal_one_at_a_time(tiny):
    x = torch.randn(2, 1, 4000) * 0.1  # 6.7 s at 600 Hz: six 2 s windows, 668 samples apart
    with torch.no_grad():
        a = dac_chunked.compress(tiny, x, 2.0, batch_windows=64)
        b = dac_chunked.compress(tiny, x, 2.0, batch_windows=1)
        one = dac_chunked.compress(tiny, x[1:], 2.0)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.codes[1:], one.codes)
    assert dac_chunked.output_length(tiny, 1200) == 668
    frames = a.extra["chunk_length"]  # < 1200 / 6: the unpadded encoder loses edge frames
    assert frames == 156 and a.codes.shape == (2, 3, 6 * frames)
    with torch.no_grad():
        out = dac_chunked.decompress(tiny, a, batch_windows=1)
        assert out.shape == x.shape
        torch.testing.assert_close(out, dac_chunked.decompress(tiny, a), atol=1e-6, rtol=0)
        unchunked = dac_chunked.compress(tiny, x, None)
    assert unchunked.extra["padding"] is True and unchunked.extra["chunk_length"] == 667
    norm, _ = dac_chunked.normalize_input(x, 600)
    assert torch.equal(unchunked.codes, tiny.encode(norm).codes)


def test_bad_inputs(tiny):
    with pytest.raises(AudioError, match="mono"):
        dac_chunked.compress(tiny, torch.zeros(1, 2, 100))
    with pytest.raises(ConfigError, match="win_duration"):
        dac_chunked.compress(tiny, torch.zeros(1, 1, 100), 0.0)
    with pytest.raises(ConfigError, match="context"):
        dac_chunked.compress(tiny, torch.zeros(1, 1, 3000), 0.5)
    with pytest.raises(ConfigError, match="lacks"):
        from audiokit.codec.base import CodecEncoding

        dac_chunked.decompress(tiny, CodecEncoding(codes=torch.zeros(1, 1, 3, dtype=torch.long)))
