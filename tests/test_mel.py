"""Mel filterbank and MelSpectrogram against librosa."""

import librosa
import numpy as np
import pytest
import torch

from audiokit.errors import ConfigError
from audiokit.features.mel import MelSpectrogram, hz_to_mel, mel_filterbank, mel_to_hz


@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", ["slaney", None])
@pytest.mark.parametrize(
    "sr,n_fft,n_mels,fmin,fmax",
    [(22050, 1024, 80, 0.0, 8000.0), (16000, 512, 40, 20.0, None), (24000, 2048, 128, 0.0, None)],
)
def test_filterbank_matches_librosa(htk, norm, sr, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax, htk=htk, norm=norm).numpy()
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm
    )
    assert ours.shape == ref.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("htk", [False, True])
def test_mel_scale_round_trip_and_reference(htk):
    f = np.array([0.0, 440.0, 1000.0, 3000.0, 11025.0])
    np.testing.assert_allclose(hz_to_mel(f, htk=htk), librosa.hz_to_mel(f, htk=htk), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, htk=htk), htk=htk), f, atol=1e-9)


def test_bad_norm_and_range_raise():
    with pytest.raises(ConfigError):
        mel_filterbank(16000, 512, 40, norm="l2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        mel_filterbank(16000, 512, 40, fmin=9000.0, fmax=8000.0)


@pytest.mark.parametrize("htk,norm", [(False, "slaney"), (True, None)])
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_melspectrogram_matches_librosa_batched(htk, norm, center, power):
    rng = np.random.default_rng(0)
    sr, n_fft, hop, win = 16000, 512, 128, 400
    waves = rng.standard_normal((3, 4000)).astype(np.float32) * 0.1
    module = MelSpectrogram(
        sr, n_fft, hop, win, n_mels=40, fmax=7600.0, center=center, power=power, htk=htk, norm=norm
    )
    ours = module(torch.from_numpy(waves)).numpy()
    for b in range(3):
        ref = librosa.feature.melspectrogram(
            y=waves[b],
            sr=sr,
            n_fft=n_fft,
            hop_length=hop,
            win_length=win,
            n_mels=40,
            fmax=7600.0,
            center=center,
            power=power,
            htk=htk,
            norm=norm,
        )
        assert ours[b].shape == ref.shape
        np.testing.assert_allclose(ours[b], ref, rtol=1e-4, atol=1e-5 * ref.max())
    lengths = module.frame_lengths(torch.tensor([4000, 3000]))
    assert int(lengths[0]) == ours.shape[-1]
    n_short = librosa.feature.melspectrogram(
        y=waves[0, :3000], sr=sr, n_fft=n_fft, hop_length=hop, win_length=win, center=center
    ).shape[-1]
    assert int(lengths[1]) == n_short


def test_log_mel_is_clamped_and_unbatched_input_works():
    module = MelSpectrogram(22050, 1024, 256, n_mels=80, log=True, log_floor=1e-5)
    silence = torch.zeros(2048)
    out = module(silence)
    assert out.shape == (80, 1 + 2048 // 256)
    assert torch.allclose(out, torch.full_like(out, float(np.log(1e-5))))
