"""audiokit.metrics.audio_quality: STOI against pystoi's numbers, SI-SDR and mel distance."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from audiokit.metrics import audio_quality as aq


def signals(sr: int, seconds: float, snr_db: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A voiced, gliding harmonic signal with pauses (so silent frames get removed), and the
    same plus white noise at `snr_db`. Deterministic."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    gate = (np.sin(2 * np.pi * 1.5 * t) > -0.2).astype(np.float64)
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    harmonics = sum(np.sin(k * phase) / k for k in range(1, 12))
    x = gate * harmonics * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))
    n = rng.standard_normal(len(t))
    n *= np.linalg.norm(x) / np.linalg.norm(n) / 10 ** (snr_db / 20)
    return x, x + n


# (rate, seconds, SNR dB, seed, pystoi 0.4.1 `stoi(x, y, rate)` on `signals(...)`), recorded in a
# throwaway venv (pystoi 0.4.1, scipy 1.17.1, numpy 2.4).
PYSTOI_REFERENCE = [
    (16000, 2.0, 10, 0, 0.9539478721736766),
    (16000, 2.0, -5, 1, 0.7190886170268516),
    (8000, 1.5, 0, 2, 0.7607055339405719),
    (10000, 1.5, 5, 3, 0.8841676714640311),
    (22050, 1.2, 0, 4, 0.8578875109143566),
    (44100, 1.0, 20, 5, 0.9813845031918633),
]


@pytest.mark.parametrize(("sr", "seconds", "snr", "seed", "expected"), PYSTOI_REFERENCE)
def test_stoi_matches_pystoi_reference(sr, seconds, snr, seed, expected):
    x, y = signals(sr, seconds, snr, seed)
    assert aq.stoi(x, y, sr) == pytest.approx(expected, abs=1e-6)


def test_stoi_matches_pystoi_when_installed():
    pystoi = pytest.importorskip("pystoi")
    rng = np.random.default_rng(7)
    x = rng.standard_normal(16000) * np.repeat(rng.uniform(0, 1, 20), 800)
    y = x + 0.3 * rng.standard_normal(16000)
    assert aq.stoi(x, y, 16000) == pytest.approx(pystoi.stoi(x, y, 16000), abs=1e-9)


def test_stoi_properties():
    x, y = signals(16000, 1.5, 0, 0)
    assert aq.stoi(x, x, 16000) == pytest.approx(1.0, abs=1e-6)
    assert aq.stoi(x, 3.0 * x, 16000) == pytest.approx(1.0, abs=1e-6)  # gain-invariant
    x10, y10 = signals(16000, 1.5, 10, 0)
    assert aq.stoi(x10, y10, 16000) > aq.stoi(x, y, 16000)  # less noise, more intelligible
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert aq.stoi(x[:3000], y[:3000], 16000) == 1e-5  # < 30 frames after 10 kHz resampling
    assert any("fewer than 30" in str(w.message) for w in caught)
    with pytest.raises(ValueError, match="differ in shape"):
        aq.stoi(x, y[:-1], 16000)


def test_third_octave_matrix_bands():
    obm = aq.third_octave_matrix()
    assert obm.shape == (15, 257)
    assert set(np.unique(obm)) == {0.0, 1.0}
    # band edges are the FFT bins nearest 150 * 2^((2k -+ 1) / 6) Hz (bin width 10000 / 512)
    first = np.flatnonzero(obm[0])
    assert first[0] == round(150 * 2 ** (-1 / 6) / (10000 / 512))
    assert first[-1] + 1 == round(150 * 2 ** (1 / 6) / (10000 / 512))


def test_si_sdr():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(8000)
    noise = rng.standard_normal(8000)
    noise -= noise.mean()
    noise -= ref * (noise @ (ref - ref.mean())) / ((ref - ref.mean()) @ (ref - ref.mean()))
    noise *= np.linalg.norm(ref - ref.mean()) / np.linalg.norm(noise) / 10 ** (12 / 20)
    assert aq.si_sdr(ref, ref + noise) == pytest.approx(12.0, abs=1e-6)
    assert aq.si_sdr(ref, 0.3 * (ref + noise) + 2.0) == pytest.approx(
        12.0, abs=1e-6
    )  # scale, offset
    batch = aq.si_sdr(np.stack([ref, ref]), np.stack([ref + noise, ref + 2 * noise]))
    assert batch.shape == (2,) and batch[1] == pytest.approx(12.0 - 20 * np.log10(2), abs=1e-6)
    assert aq.si_sdr(torch.from_numpy(ref), torch.from_numpy(ref + noise)) == pytest.approx(
        12.0, abs=1e-5
    )


def test_mel_distance():
    x, y = signals(16000, 1.0, 10, 0)
    assert aq.mel_distance(x, x, 16000) == pytest.approx(0.0, abs=1e-6)
    d10 = aq.mel_distance(x, y, 16000)
    _, y0 = signals(16000, 1.0, 0, 0)
    assert 0 < d10 < aq.mel_distance(x, y0, 16000)
    # a gain of 10x shifts every log10 mel by exactly 1 where both are above the 1e-5 floor
    # (true everywhere for the noisy signal; not in the silent gaps of x): 7 scales summed -> 7
    assert aq.mel_distance(y0, 10 * y0, 16000) == pytest.approx(7.0, abs=1e-4)
    assert aq.mel_distance(x, 10 * x, 16000) < 7.0
    # (C, S) inputs average over channels like one long batch
    two = aq.mel_distance(np.stack([x, x]), np.stack([y, y]), 16000)
    assert two == pytest.approx(d10, rel=1e-5)


def test_pesq_optional():
    x, y = signals(16000, 2.0, 10, 0)
    score = aq.pesq(x, y, 16000)
    if aq.pesq_available():
        assert score is not None and 1.0 <= score <= 4.7
        assert aq.pesq(x, x, 16000) > score
    else:
        assert score is None
