"""NeMo log-mel frontend: parity with NeMo's preprocessor output, batching, normalisation, config."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from audiokit.errors import ConfigError
from audiokit.features.frontend import build_frontend
from audiokit.features.nemo_mel import NemoMel, NemoMelOptions, valid_frames
from tests.conftest import shared_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURE = ("fixtures", "nemo_streaming")


def _fixture():
    root = shared_path(*FIXTURE)
    expected = json.loads((root / "expected.json").read_text())
    return root, expected, np.load(root / "expected.npz")


def _noise(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(n, generator=g)


@pytest.mark.parametrize("name", ["sense_0870", "goforward"])
def test_matches_nemo_preprocessor(name):
    from audiokit.audio.io import load

    root, expected, arrays = _fixture()
    rec = expected["audio"][name]
    frontend = build_frontend({"type": "nemo_mel", **expected["model_cfg"]["preprocessor"]}, 16000)
    wave, sr = load(root / "inputs" / rec["path"].split("/")[-1])
    assert sr == 16000 and len(wave) == rec["num_samples"]
    feats, frames = frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    ref = arrays[f"{name}/mel"].T  # NeMo (D, T) -> (T, D)
    assert feats.shape == (1, *ref.shape)
    assert int(frames[0]) == rec["mel_len"] == frontend.num_frames(len(wave))
    np.testing.assert_allclose(feats[0].numpy(), ref, atol=1e-4, rtol=0)
    assert torch.all(feats[0, rec["mel_len"] :] == 0)  # NeMo's zero-masked last column


def test_window_and_filterbank_equal_checkpoint_buffers():
    root, expected, _ = _fixture()
    with tarfile.open(root / "model.nemo") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("model_weights.ckpt"))
        state = torch.load(io.BytesIO(tar.extractfile(member).read()), weights_only=True)
    mel = NemoMel(NemoMelOptions.from_config(expected["model_cfg"]["preprocessor"], 16000))
    torch.testing.assert_close(
        mel.window, state["preprocessor.featurizer.window"], atol=1e-7, rtol=0
    )
    torch.testing.assert_close(
        mel.filterbank, state["preprocessor.featurizer.fb"][0], atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("normalize", ["NA", "per_feature", "all_features"])
@pytest.mark.parametrize("pad_to", [0, 16])
def test_padded_batch_equals_one_by_one(normalize, pad_to):
    opts = NemoMelOptions(
        win_length=400, n_fft=512, features=40, normalize=normalize, pad_to=pad_to
    )
    mel = NemoMel(opts)
    a, b = _noise(4000, 0), _noise(2650, 1)
    # The short one is padded with noise, not zeros: nothing past its length may leak in.
    batch = torch.stack([a, torch.cat([b, _noise(4000 - 2650, 2)])])
    feats, frames = mel(batch, torch.tensor([4000, 2650]))
    assert frames.tolist() == [4000 // 160, 2650 // 160]
    for i, wave in enumerate([a, b]):
        single, n = mel(wave[None], torch.tensor([len(wave)]))
        assert int(n[0]) == frames[i]
        torch.testing.assert_close(feats[i, : single.shape[1]], single[0], atol=1e-5, rtol=1e-5)
        assert torch.all(feats[i, frames[i] :] == 0.0)
    if pad_to:
        assert feats.shape[1] % pad_to == 0


def test_normalisation_matches_per_utterance_reference():
    wave = _noise(3000, 3)
    raw, n = NemoMel(NemoMelOptions(normalize="NA", pad_to=0))(wave[None], torch.tensor([3000]))
    x = raw[0, : int(n)]  # (T, D) valid frames
    per_feature = (x - x.mean(0)) / (x.std(0) + 1e-5)  # torch.std: unbiased, as NeMo
    all_features = (x - x.mean()) / (x.std() + 1e-5)
    for kind, ref in [("per_feature", per_feature), ("all_features", all_features)]:
        out, _ = NemoMel(NemoMelOptions(normalize=kind, pad_to=0))(wave[None], torch.tensor([3000]))
        torch.testing.assert_close(out[0, : int(n)], ref, atol=1e-4, rtol=1e-4)


def test_lengths_follow_nemo_get_seq_len():
    samples = torch.tensor([0, 159, 160, 161, 16000, 44580])
    centred = NemoMelOptions(n_fft=512, win_length=400, hop_length=160)
    assert valid_frames(samples, centred).tolist() == (samples // 160).tolist()
    exact = NemoMelOptions(n_fft=512, win_length=400, hop_length=160, exact_pad=True, pad_to=0)
    expected = torch.div(samples + 2 * 176 - 512, 160, rounding_mode="floor")
    assert valid_frames(samples, exact).tolist() == torch.where(samples == 0, 0, expected).tolist()
    feats, frames = NemoMel(exact)(_noise(16000, 4)[None], torch.tensor([16000]))
    # Uncentred STFT on the padded signal: S // hop columns, the last one masked, as NeMo.
    assert feats.shape[1] == 100 and int(frames[0]) == 99


def test_dither_only_when_training():
    mel = NemoMel(NemoMelOptions(dither=1e-2, pad_to=0))
    wave, n = _noise(2000, 5)[None], torch.tensor([2000])
    eval_a, _ = mel(wave, n)
    eval_b, _ = mel(wave, n)
    assert torch.equal(eval_a, eval_b)
    t1, _ = mel(wave, n, training=True, generator=torch.Generator().manual_seed(0))
    t2, _ = mel(wave, n, training=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t1, t2) and not torch.allclose(t1, eval_a)


def test_options_and_frontend_registry():
    frontend = build_frontend(
        {
            "type": "nemo_mel",
            "window_size": 0.025,
            "window_stride": 0.01,
            "features": 80,
            "n_fft": 512,
        },
        16000,
    )
    assert isinstance(frontend, NemoMel)
    assert frontend.opts.win_length == 400 and frontend.frame_shift == 160
    assert frontend.frame_shift_s == pytest.approx(0.01) and frontend.feature_dim == 80
    assert frontend.num_frames(44580) == 278
    assert NemoMelOptions.from_config({"window_size": 0.025}).n_fft == 512  # next power of 2
    assert (
        NemoMelOptions.from_config({"n_window_size": 400, "n_window_stride": 160}).win_length == 400
    )


@pytest.mark.parametrize(
    "cfg, words",
    [
        ({"bogus": 1}, "bogus"),
        ({"window_size": 0.02, "n_window_size": 320}, "both"),
        ({"use_torchaudio": True}, "use_torchaudio"),
        ({"window": "kaiser"}, "kaiser"),
        ({"sample_rate": 8000}, "8000"),
        ({"normalize": {"fixed_mean": [0.0], "fixed_std": [1.0]}}, "fixed_mean"),
    ],
)
def test_bad_options_raise_one_line_errors(cfg, words):
    with pytest.raises(ConfigError, match=words) as err:
        NemoMelOptions.from_config(cfg, 16000)
    assert "\n" not in str(err.value)
