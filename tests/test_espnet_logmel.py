"""ESPnet default frontend (espnet_logmel): a float64 NumPy reference, batching, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiokit.errors import ConfigError, FeatureError
from audiokit.features.espnet_logmel import EspnetLogMelFrontend, librosa_melmat
from audiokit.features.frontend import build_frontend
from audiokit.features.mel import mel_filterbank


def reference(wave: np.ndarray, n_fft=512, win=400, hop=160, n_mels=80) -> np.ndarray:
    """Float64 NumPy: reflect pad, centred periodic Hann, |rfft|^2, Slaney mel, log."""
    pad = n_fft // 2
    x = np.pad(wave.astype(np.float64), pad, mode="reflect")
    frames = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    power = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2
    mel = power @ mel_filterbank(16000, n_fft, n_mels).double().numpy().T
    return np.log(np.maximum(mel, 1e-10))


def test_matches_numpy_reference_and_frame_count():
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(3041) * 0.1).astype(np.float32)
    fe = EspnetLogMelFrontend(16000, 512, 400, 160, 80)
    feats, frames = fe(torch.from_numpy(wave)[None], torch.tensor([3041]))
    assert feats.shape == (1, 1 + 3041 // 160, 80) and int(frames[0]) == fe.num_frames(3041) == 20
    np.testing.assert_allclose(feats[0].numpy(), reference(wave), atol=2e-4, rtol=0)


def test_batch_equals_single_and_padding_is_zero():
    rng = np.random.default_rng(1)
    waves = [(rng.standard_normal(n) * 0.2).astype(np.float32) for n in (2400, 1650, 2000)]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(3, 2400)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    fe = EspnetLogMelFrontend(16000, 512, 400, 160, 40)
    feats, frames = fe(batch, lengths)
    for i, w in enumerate(waves):
        one, n = fe(torch.from_numpy(w)[None], lengths[i : i + 1])
        assert int(n[0]) == int(frames[i])
        # equal up to float32 rounding: multi-threaded matmul blocks a batch of 3 and of 1
        # differently (1-ulp differences, 2.4e-7, were seen with 2 threads)
        torch.testing.assert_close(feats[i, : int(n[0])], one[0], atol=1e-6, rtol=1e-6)
        assert feats[i, int(n[0]) :].abs().max() == 0 if int(n[0]) < feats.shape[1] else True


def test_melmat_is_librosa_slaney():
    ours = librosa_melmat(16000, 512, 80)
    assert ours.shape == (257, 80)
    torch.testing.assert_close(ours, mel_filterbank(16000, 512, 80).T, atol=1e-6, rtol=1e-5)


def test_registered_builder_and_errors():
    fe = build_frontend(
        {"type": "espnet_logmel", "n_fft": 512, "win_length": 400, "hop_length": 160, "fs": "16k"},
        16000,
    )
    assert fe.frame_shift == 160 and fe.frame_shift_s == 0.01 and fe.num_frames(16000) == 101
    with pytest.raises(ConfigError, match="window"):
        build_frontend({"type": "espnet_logmel", "window": "hamming"}, 16000)
    with pytest.raises(ConfigError, match="fs 8000 differs"):
        build_frontend({"type": "espnet_logmel", "fs": "8k"}, 16000)
    with pytest.raises(ConfigError, match="win_length 600"):
        EspnetLogMelFrontend(16000, 512, 600, 160)
    with pytest.raises(FeatureError, match="utterance 0 .* 100 samples"):
        fe(torch.zeros(1, 100), torch.tensor([100]))
