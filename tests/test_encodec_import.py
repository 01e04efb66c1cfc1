"""EnCodec import against encodec 0.1.1's own outputs (shared/fixtures/encodec).

Tolerances are the fixture README's: codes exact, z_e <= 1e-3, z_q <= 1e-4, audio <= 1e-4,
per-segment scale rtol 1e-6.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.codec.base import AudioCodec, CodecEncoding
from audiokit.codec.encodec import EncodecCodec
from audiokit.errors import ConfigError, ModelError
from audiokit.importers.encodec import RELEASED, describe_layout, import_model, recognise
from audiokit.model_dir import load_model_dir
from tests.conftest import run_main, shared_path

UTTS = ("sense0880", "lj001_0002")
BWS = ("0.45", "0.9", "1.8")
CKPT = "encodec_tiny24-edebffcf.th"


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return shared_path("fixtures", "encodec")


@pytest.fixture(scope="module")
def expected(fixture_dir):
    return np.load(fixture_dir / "expected.npz")


@pytest.fixture(scope="module")
def model(fixture_dir, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixture's reference was made with 1 thread
    dst = import_model(fixture_dir, tmp_path_factory.mktemp("encodec") / "model")
    m, cfg = load_model_dir(dst)
    yield m
    torch.set_num_threads(before)


def wav(fixture_dir: Path, utt: str) -> torch.Tensor:
    x, _ = sf.read(fixture_dir / "inputs" / f"{utt}_24000.wav", dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(x.T))[None]  # (1, C, S)


def maxdiff(a: torch.Tensor, b: np.ndarray) -> float:
    assert tuple(a.shape) == b.shape
    return (a - torch.from_numpy(b)).abs().max().item()


def test_model_dir(model, fixture_dir):
    assert isinstance(model, EncodecCodec) and isinstance(model, AudioCodec)
    assert (model.kind, model.sample_rate, model.hop_length) == ("rvq", 24000, 320)
    assert (model.n_codebooks, model.codebook_size) == (4, 64)
    assert [model.n_codebooks_for_bandwidth(float(b)) for b in BWS] == [1, 2, 4]
    assert not model.training and model.discriminator is None
    ref = torch.load(fixture_dir / CKPT, weights_only=True)
    ours = model.state_dict()
    assert set(ours) == set(ref)
    assert all(torch.equal(ours[k], ref[k]) for k in ref)


@pytest.mark.parametrize("utt", UTTS)
def test_encoder_output(model, fixture_dir, expected, utt):
    with torch.no_grad():
        z_e = model.encoder(wav(fixture_dir, utt))
    assert maxdiff(z_e, expected[f"{utt}/z_e"]) <= 1e-3


@pytest.mark.parametrize("utt", UTTS)
@pytest.mark.parametrize("bw", BWS)
def test_codes_latent_audio(model, fixture_dir, expected, utt, bw):
    x = wav(fixture_dir, utt)
    key = f"{utt}/bw{bw}"
    with torch.no_grad():
        enc = model.encode(x, model.n_codebooks_for_bandwidth(float(bw)))
        assert enc.codes.dtype == torch.int64
        assert np.array_equal(enc.codes.numpy(), expected[f"{key}/codes"])
        assert maxdiff(model.quantizer.decode(enc.codes), expected[f"{key}/z_q"]) <= 1e-4
        trimmed = model.decode(enc)
        full = model.decode(CodecEncoding(codes=enc.codes))  # untrimmed, as the fixture
    assert maxdiff(full, expected[f"{key}/audio"]) <= 1e-4
    assert torch.equal(trimmed, full[..., : x.shape[-1]])
    assert enc.scales is None and "segment_frames" not in enc.extra


@pytest.mark.parametrize("normalize", [0, 1])
def test_segment_runs(model, fixture_dir, expected, normalize):
    key = f"sense0880/segment1.0_overlap0.01_normalize{normalize}"
    seg_model = EncodecCodec(
        **{**_fixture_args(fixture_dir), "segment": 1.0, "audio_normalize": bool(normalize)}
    )
    seg_model.load_state_dict(model.state_dict())
    seg_model.eval()
    x = wav(fixture_dir, "sense0880")
    with torch.no_grad():
        enc = seg_model.encode(x)
        frames = enc.extra["segment_frames"]
        assert frames == [75, 75, 75, 2]
        for i, part in enumerate(torch.split(enc.codes, frames, dim=2)):
            assert np.array_equal(part.numpy(), expected[f"{key}/seg{i}/codes"])
        if normalize:
            assert enc.scales.shape == (1, 4)
            want = np.concatenate([expected[f"{key}/seg{i}/scale"] for i in range(4)], axis=1)
            np.testing.assert_allclose(enc.scales.numpy(), want, rtol=1e-6, atol=0)
        else:
            assert enc.scales is None
        enc.num_samples = None
        audio = seg_model.decode(enc)
    assert maxdiff(audio, expected[f"{key}/audio"]) <= 1e-4


def test_batched_segments_match_single(model, fixture_dir):
    """A batch of two inputs codes each item as it would alone."""
    seg_model = EncodecCodec(
        **{**_fixture_args(fixture_dir), "segment": 0.5, "audio_normalize": True}
    )
    seg_model.load_state_dict(model.state_dict())
    seg_model.eval()
    x = wav(fixture_dir, "sense0880")[..., :30000]
    xb = torch.cat([x, 0.5 * x.flip(-1)])
    with torch.no_grad():
        both = seg_model.encode(xb)
        one = seg_model.encode(xb[1:])
        assert torch.equal(both.codes[1:], one.codes)
        torch.testing.assert_close(both.scales[1:], one.scales)
        torch.testing.assert_close(
            seg_model.decode(both)[1:], seg_model.decode(one), atol=1e-5, rtol=0
        )


def _fixture_args(fixture_dir: Path) -> dict:
    from audiokit.importers.encodec import args_from_config

    path = fixture_dir / "config.json"
    return args_from_config(json.loads(path.read_text()), path)


def test_cli_import(fixture_dir, tmp_path, capsys):
    dst = tmp_path / "m"
    code, out, err = run_main(
        capsys, "model", "import", "--from", "encodec", fixture_dir / CKPT, dst
    )
    assert code == 0, err
    meta = json.loads((dst / "meta.json").read_text())
    assert meta["imported_from"] == "encodec" and meta["config"] == "config.json"
    assert meta["sha256"].startswith("edebffcf")


@pytest.mark.parametrize("name", ["encodec_24khz", "encodec_48khz"])
def test_recognises_released_layouts(name):
    """The real released architectures (random weights) are recognised from the state dict."""
    torch.manual_seed(0)
    state = EncodecCodec(**RELEASED[name]).state_dict()
    got, args = recognise(state)
    assert got == name and args == RELEASED[name]
    layout = describe_layout(state)
    assert layout["ratios"] == [8, 5, 4, 2] and layout["lstm"] == 2


def test_refuses_unknown_layout_without_config(fixture_dir, tmp_path, capsys):
    src = tmp_path / "tiny.th"
    shutil.copyfile(fixture_dir / CKPT, src)  # no config.json beside it
    with pytest.raises(ModelError, match="neither released model"):
        import_model(src, tmp_path / "out")
    code, _, err = run_main(capsys, "model", "import", "--from", "encodec", src, tmp_path / "o2")
    assert code != 0 and "config.json" in err and len(err.strip().splitlines()) == 1


def test_refuses_bad_checksum_and_mismatched_config(fixture_dir, tmp_path):
    bad = tmp_path / "a" / "encodec_tiny24-deadbeef.th"
    bad.parent.mkdir()
    shutil.copyfile(fixture_dir / CKPT, bad)
    with pytest.raises(ModelError, match="sha256"):
        import_model(bad, tmp_path / "out")
    folder = tmp_path / "b"
    folder.mkdir()
    shutil.copyfile(fixture_dir / CKPT, folder / CKPT)
    cfg = json.loads((fixture_dir / "config.json").read_text())
    cfg["quantizer"]["n_q"] = 8
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="missing quantizer.vq.layers.4"):
        import_model(folder, tmp_path / "out")
    (folder / "other.th").write_bytes(b"")
    with pytest.raises(ConfigError, match="exactly one"):
        import_model(folder, tmp_path / "out")


def test_forward_train_and_gan_step(one_torch_thread):
    from audiokit.train.interface import Batch

    torch.manual_seed(0)
    seanet = {"dimension": 8, "n_filters": 2, "ratios": [4, 2], "lstm": 1}
    disc = {"mpd": {"periods": [2], "channels": [4, 4]}, "mrd": None}
    loss = {"mel_options": {"window_lengths": [32, 64], "n_mels": [5, 10]}}
    model = EncodecCodec(
        sample_rate=8000,
        seanet=seanet,
        n_q=3,
        bins=8,
        kmeans_iters=3,
        quantizer_dropout=0.5,
        audio_normalize=True,
        discriminator=disc,
        loss=loss,
    )
    assert model.loss_weights["commitment"] == 1.0  # EnCodec's weight, not DAC's 0.25
    model.train()
    wav = torch.randn(2, 1, 203) * 0.1  # not a multiple of the hop: output trimmed to 203
    out = model.forward_train(wav)
    assert out.audio.shape == wav.shape and out.codes.shape == (2, 3, 26)
    assert set(out.losses) == {"commitment"}
    assert all(model.quantizer.codebook(k).inited.item() == 1 for k in range(3))
    batch = Batch(
        wav[:, 0],
        torch.tensor([203, 150]),
        torch.zeros(2, 0, dtype=torch.long),
        torch.zeros(2, dtype=torch.long),
        ["a", "b"],
    )
    d = model.training_losses(batch, "discriminator")
    g = model.training_losses(batch, "generator")
    assert torch.isfinite(d["loss"]) and torch.isfinite(g["loss"])
    g["loss"].backward()
    assert model.encoder.model[0].conv.conv.weight_v.grad.abs().sum() > 0
    assert model.decoder.model[1].lstm.weight_ih_l0.grad.abs().sum() > 0


@pytest.mark.parametrize("length", [1, 2, 3, 6, 7, 50])
def test_pad1d_matches_torch_reflect(length):
    """pad1d's concatenated reflection equals F.pad(reflect) with EnCodec's small-input rule."""
    from audiokit.codec.seanet import pad1d

    x = torch.randn(2, 3, length)
    for left, right in [(6, 0), (3, 3), (0, 4), (5, 2)]:
        extra = max(left, right) - length + 1 if length <= max(left, right) else 0
        want = torch.nn.functional.pad(
            torch.nn.functional.pad(x, (0, extra)), (left, right), mode="reflect"
        )
        want = want[..., : want.shape[-1] - extra]
        assert torch.equal(pad1d(x, left, right), want)


def test_inference_weight_cache_follows_parameter_updates():
    """Without autograd the weight-normed weight is cached; any in-place update refreshes it."""
    from audiokit.codec.seanet import SConv1d, SConvTranspose1d

    torch.manual_seed(0)
    for layer in (
        SConv1d(3, 4, 5, norm="weight_norm"),
        SConvTranspose1d(3, 4, 4, 2, norm="weight_norm"),
    ):
        x = torch.randn(1, 3, 9)
        conv = layer.conv.conv if isinstance(layer, SConv1d) else layer.convtr.convtr
        for step in range(3):
            with torch.no_grad():
                fast = layer(x)
            slow = layer(x)  # autograd path: recomputes g * v / ||v||
            assert torch.equal(fast, slow.detach()), step
            with torch.no_grad():
                conv.weight_g.mul_(1.5)  # e.g. an optimiser step
        state = {k: torch.randn_like(v) for k, v in layer.state_dict().items()}
        layer.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(layer(x), torch.enable_grad()(layer)(x).detach())


def test_inference_elu_matches_torch():
    from audiokit.codec.seanet import ELU

    x = torch.cat([torch.linspace(-20, 20, 4001), torch.tensor([0.0, -1e-8, 1e-8])]).view(1, 1, -1)
    with torch.no_grad():
        fast = ELU(1.0)(x)
    torch.testing.assert_close(fast, torch.nn.functional.elu(x), atol=1e-7, rtol=0)
    assert torch.equal(ELU(0.5)(x), torch.nn.functional.elu(x, 0.5))  # other alphas: torch's
