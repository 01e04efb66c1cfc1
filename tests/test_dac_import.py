"""DAC import parity (shared/fixtures/dac) and the RVQCodec model itself on tiny shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiokit.codec.base import AudioCodec, CodecEncoding
from audiokit.codec.dac import RVQCodec
from audiokit.errors import AudioError, ModelError
from audiokit.importers import dac as dac_importer
from audiokit.model_dir import load_model_dir
from tests.conftest import run_main, shared_path

UTTS = ("sense0880", "lj001_0002")
TINY = dict(
    encoder_dim=4, encoder_rates=[2, 4], latent_dim=8, decoder_dim=16, decoder_rates=[4, 2],
    n_codebooks=3, codebook_size=16, codebook_dim=4, quantizer_dropout=False, sample_rate=8000,
)  # fmt: skip


@pytest.fixture(scope="module")
def fixture_model(tmp_path_factory):
    """The fixture checkpoint imported and loaded back from the packed dir, with 1 torch thread."""
    root = shared_path("fixtures", "dac")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    dst = tmp_path_factory.mktemp("dac") / "model"
    dac_importer.import_model(root / "weights.pth", dst)
    model, cfg = load_model_dir(dst)
    yield model, cfg, root, np.load(root / "expected.npz")
    torch.set_num_threads(before)


def _input(root, utt):
    import soundfile as sf

    x, _ = sf.read(root / "inputs" / f"{utt}_16000.wav", dtype="float32")
    return torch.from_numpy(x)[None, None]


def _maxdiff(a: torch.Tensor, ref: np.ndarray) -> float:
    assert tuple(a.shape) == ref.shape
    return float((a - torch.from_numpy(ref)).abs().max())


def test_packed_dir(fixture_model):
    model, cfg, _, _ = fixture_model
    assert cfg.architecture == "rvq_codec" and cfg.meta["imported_from"] == "dac"
    assert cfg.sample_rate == 16000 and model.hop_length == 320 and model.delay == 5264
    assert sum(p.numel() for p in model.parameters()) == 425046
    assert isinstance(model, AudioCodec) and model.kind == "rvq"


@pytest.mark.parametrize("utt", UTTS)
def test_fixture_parity(fixture_model, utt):
    model, _, root, ref = fixture_model
    x = _input(root, utt)
    with torch.no_grad():
        z = model.encoder(model.pad_to_hop(x))
        assert _maxdiff(z, ref[f"{utt}/z_e"]) <= 1e-3
        for k in (1, 2, 4):
            key = f"{utt}/nq{k}"
            z_q, codes, latents, _ = model.quantizer.quantize(z, k)
            assert torch.equal(codes, torch.from_numpy(ref[f"{key}/codes"]).long()), key
            assert _maxdiff(latents, ref[f"{key}/latents"]) <= 1e-3
            assert _maxdiff(z_q, ref[f"{key}/z_q"]) <= 1e-4
            assert _maxdiff(model.quantizer.decode(codes), ref[f"{key}/z_q_from_codes"]) <= 1e-4
            assert _maxdiff(model.decoder(z_q), ref[f"{key}/audio"]) <= 1e-4
            # the public codec API: encode pads to the hop, decode trims to the input length
            enc = model.encode(x, k)
            assert torch.equal(enc.codes, codes) and enc.num_samples == x.shape[-1]
            audio = model.decode(enc)
            want = ref[f"{key}/audio"][..., : x.shape[-1]]
            n = want.shape[-1]  # odd rates: lj001_0002 decodes one sample short, zero-filled
            assert audio.shape == x.shape and _maxdiff(audio[..., :n], want) <= 1e-4
            assert not audio[..., n:].any()


def _tiny_checkpoint(path, **overrides):
    torch.manual_seed(0)
    model = RVQCodec(**TINY)
    state = dict(model.state_dict())
    state.update(overrides)
    torch.save({"state_dict": state, "metadata": {"kwargs": dict(TINY)}}, path)
    return model


def test_import_tiny_roundtrip_and_cli(tmp_path, capsys, one_torch_thread):
    src = tmp_path / "weights.pth"
    model = _tiny_checkpoint(src)
    code, _, err = run_main(capsys, "model", "import", "--from", "dac", src, tmp_path / "m")
    assert code == 0, err
    loaded, cfg = load_model_dir(tmp_path / "m")
    assert cfg.args["encoder_rates"] == [2, 4] and cfg.args["quantizer_dropout"] == 0.0
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # new-style parametrised weight-norm names map onto weight_g / weight_v
    state = {
        k.replace(".weight_g", ".parametrizations.weight.original0").replace(
            ".weight_v", ".parametrizations.weight.original1"
        ): v
        for k, v in model.state_dict().items()
    }
    torch.save({"state_dict": state, "metadata": {"kwargs": dict(TINY)}}, tmp_path / "p.pth")
    dac_importer.import_model(tmp_path / "p.pth", tmp_path / "m", overwrite=True)
    assert torch.equal(load_model_dir(tmp_path / "m")[0].quantizer.quantizers[0].in_proj.weight_g,
                       model.quantizer.quantizers[0].in_proj.weight_g)  # fmt: skip


def test_import_errors(tmp_path, one_torch_thread):
    src = tmp_path / "w.pth"
    model = _tiny_checkpoint(src, **{"extra.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match="unexpected key 'extra.weight'"):
        dac_importer.import_model(src, tmp_path / "a")
    key = "decoder.model.0.bias"
    _tiny_checkpoint(src, **{key: torch.zeros(3)})
    with pytest.raises(ModelError, match=f"'{key}' has shape"):
        dac_importer.import_model(src, tmp_path / "a")
    state = dict(model.state_dict())
    del state[key]
    torch.save({"state_dict": state, "metadata": {"kwargs": dict(TINY)}}, src)
    with pytest.raises(ModelError, match=f"missing key '{key}'"):
        dac_importer.import_model(src, tmp_path / "a")
    torch.save(model.state_dict(), src)  # a bare state dict: no kwargs
    with pytest.raises(ModelError, match="no 'state_dict'"):
        dac_importer.import_model(src, tmp_path / "a")
    src.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError) as e:
        dac_importer.import_model(src, tmp_path / "a")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "a").exists()


def test_tiny_codec_api(one_torch_thread):
    torch.manual_seed(0)
    model = RVQCodec(**TINY).eval()
    assert model.hop_length == 8 and model.latent_dim == 8
    x = torch.randn(2, 1, 100) * 0.1
    enc = model.encode(x)
    assert enc.codes.shape == (2, 3, 13) and enc.num_samples == 100
    assert model.decode(enc).shape == (2, 1, 100)
    assert model.encode(x, 2).codes.shape == (2, 2, 13)
    assert model.decode(CodecEncoding(codes=enc.codes[:, :1])).shape == (2, 1, 104)
    with pytest.raises(AudioError, match="mono"):
        model.encode(torch.zeros(1, 2, 100))
    # 8000/8 = 1000 frames/s, 4 bits per code: 4 kbps per codebook
    assert [model.n_codebooks_for_bandwidth(b) for b in (1, 4, 8.5, 100)] == [1, 1, 2, 3]
    assert RVQCodec(encoder_dim=2, encoder_rates=[2, 2], decoder_dim=8, decoder_rates=[2, 2],
                    n_codebooks=2, codebook_size=8).latent_dim == 8  # fmt: skip


def test_forward_train_and_gan_step(one_torch_thread):
    from audiokit.train.interface import Batch

    torch.manual_seed(0)
    disc = {"mpd": {"periods": [2], "channels": [4, 4]}, "mrd": None}
    loss = {"mel_options": {"window_lengths": [32, 64], "n_mels": [5, 10]}}
    model = RVQCodec(**{**TINY, "quantizer_dropout": 0.5}, discriminator=disc, loss=loss).train()
    wav = torch.randn(2, 1, 203) * 0.1  # not a multiple of the hop: output trimmed to 203
    out = model.forward_train(wav)
    assert out.audio.shape == wav.shape and out.codes.shape == (2, 3, 26)
    assert set(out.losses) == {"commitment", "codebook"}
    batch = Batch(wav[:, 0], torch.tensor([203, 150]), torch.zeros(2, 0, dtype=torch.long),
                  torch.zeros(2, dtype=torch.long), ["a", "b"])  # fmt: skip
    groups = model.optimizer_groups()
    assert set(groups) == {"discriminator", "generator"}
    d = model.training_losses(batch, "discriminator")
    g = model.training_losses(batch, "generator")
    assert torch.isfinite(d["loss"]) and torch.isfinite(g["loss"])
    g["loss"].backward()
    assert model.encoder.block[0].weight_v.grad.abs().sum() > 0
    assert model.quantizer.quantizers[0].codebook.weight.grad.abs().sum() > 0


def test_ema_quantizer_option(one_torch_thread):
    pytest.importorskip("audiokit.codec.ema_quantizer")
    torch.manual_seed(0)
    model = RVQCodec(**TINY, quantizer="ema", kmeans_iters=2).eval()
    enc = model.encode(torch.randn(1, 1, 64) * 0.1)
    assert enc.codes.shape == (1, 3, 8) and model.decode(enc).shape == (1, 1, 64)


# ---- CPU inference fast paths (audiokit.nn.weight_norm / snake / dac.run_layers) --------------


@pytest.mark.parametrize(
    ("cin", "k", "dilation", "padding"), [(4, 7, 1, 3), (8, 7, 3, 9), (3, 3, 1, 0), (6, 1, 1, 0)]
)
def test_fast_conv1d_matches_torch(one_torch_thread, cin, k, dilation, padding):
    from audiokit.nn.weight_norm import conv1d_fast

    torch.manual_seed(0)
    x, w, b = torch.randn(3, cin, 2500), torch.randn(5, cin, k), torch.randn(5)
    want = torch.nn.functional.conv1d(x, w, b, 1, padding, dilation)
    got = conv1d_fast(x, w, b, 1, padding, dilation)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(conv1d_fast(x[1:2], w, b, 1, padding, dilation), got[1:2])  # batch-invariant
    no_bias = conv1d_fast(x, w, None, 1, padding, dilation)
    torch.testing.assert_close(no_bias, want - b[:, None], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("stride", "padding", "output_padding"), [(2, 1, 0), (5, 3, 0), (4, 2, 1)])
def test_fast_conv_transpose1d_matches_torch(one_torch_thread, stride, padding, output_padding):
    from audiokit.nn.weight_norm import conv_transpose1d_fast

    torch.manual_seed(0)
    x, w, b = torch.randn(2, 6, 700), torch.randn(6, 3, 2 * stride), torch.randn(3)
    args = (stride, padding, output_padding)
    want = torch.nn.functional.conv_transpose1d(x, w, b, *args)
    got = conv_transpose1d_fast(x, w, b, *args)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert torch.equal(conv_transpose1d_fast(x[1:], w, b, *args), got[1:])


def test_cached_weight_follows_parameter_updates(one_torch_thread):
    from audiokit.nn.weight_norm import WNConv1d, WNConvTranspose1d

    torch.manual_seed(0)
    for layer, x in (
        (WNConv1d(4, 4, 7, padding=3), torch.randn(1, 4, 3000)),
        (WNConvTranspose1d(4, 2, 4, stride=2, padding=1), torch.randn(1, 4, 1500)),
    ):
        for _ in range(2):
            with torch.no_grad():
                fast = layer(x)
            torch.testing.assert_close(fast, layer(x).detach(), atol=1e-5, rtol=1e-5)
            with torch.no_grad():
                layer.weight_v.mul_(-0.5)  # an optimiser step: the cache must not be reused
        layer.load_state_dict({k: torch.randn_like(v) for k, v in layer.state_dict().items()})
        with torch.no_grad():
            fast = layer(x)
        torch.testing.assert_close(fast, layer(x).detach(), atol=1e-5, rtol=1e-5)
        layer.requires_grad_(False)  # a frozen codec inside a trained model: grads reach x
        xg = x.clone().requires_grad_()
        out = layer(xg)
        torch.testing.assert_close(out.detach(), fast, atol=1e-5, rtol=1e-5)
        out.square().sum().backward()
        assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_inference_path_equals_autograd_path_and_keeps_input(one_torch_thread):
    from audiokit.nn.snake import snake

    torch.manual_seed(0)
    x, alpha = torch.randn(2, 3, 50), torch.rand(1, 3, 1) + 0.5
    with torch.no_grad():
        y = snake(x, alpha)
        assert torch.equal(snake(x.clone(), alpha, inplace=True), y)
    assert torch.equal(y, snake(x, alpha.requires_grad_()).detach())
    model = RVQCodec(**{**TINY, "encoder_dim": 2, "decoder_dim": 8}).eval()
    wav = torch.randn(2, 1, 4000) * 0.1
    before = wav.clone()
    with torch.no_grad():
        enc = model.encode(wav)
        fast = model.decode(enc)
    assert torch.equal(wav, before)  # in-place activations never touch the caller's tensors
    slow = model.decoder(model.quantizer.decode(enc.codes))[..., : wav.shape[-1]]
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        assert torch.equal(model.encode(wav[1:]).codes, enc.codes[1:])
