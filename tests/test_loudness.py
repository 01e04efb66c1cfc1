"""ITU-R BS.1770-4 integrated loudness vs pyloudnorm 0.2.0's published numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiokit.audio.loudness import MIN_LOUDNESS, integrated_loudness, normalize_loudness


def tone(freq: float, amp: float, sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def _cases() -> dict[str, tuple[np.ndarray, int]]:
    gated = np.concatenate(
        [tone(1000, 0.5, 16000, 1.5), tone(1000, 0.005, 16000, 1.5), np.zeros(16000)]
    )
    return {
        "sine48": (tone(997, 1.0, 48000, 3.0)[None], 48000),
        "stereo16": (np.stack([tone(997, 1.0, 16000, 2.0), tone(200, 0.25, 16000, 2.0)]), 16000),
        "gated16": (gated[None], 16000),
        "surround44": (np.stack([tone(440 * (i + 1), 0.1 * (i + 1), 44100, 1.0) for i in range(5)]), 44100),
    }  # fmt: skip


# pyloudnorm 0.2.0 `Meter(sr).integrated_loudness(x)` on the signals above (float64). Lengths are
# whole multiples of the 100 ms block step, where its block count equals audiotools'.
PYLOUDNORM = {
    "sine48": -3.05168069057144,
    "stereo16": -2.869204074535195,
    "gated16": -9.554735335168083,
    "surround44": -2.4198440879347376,
}


@pytest.mark.parametrize("name", sorted(PYLOUDNORM))
def test_matches_pyloudnorm(name):
    x, sr = _cases()[name]
    got = integrated_loudness(torch.from_numpy(x)[None], sr)
    assert got.shape == (1,) and got.dtype == torch.float32
    assert abs(got.item() - PYLOUDNORM[name]) < 1e-5


def test_full_scale_997hz_sine_is_about_minus_3_01_lufs():
    # BS.1770's reference: a 0 dBFS 997 Hz sine reads -3.01 LUFS with the standard's own filter
    # coefficients; pyloudnorm's RBJ design of the same filters gives -3.05 at 48 kHz.
    x = tone(997, 1.0, 48000, 3.0)
    assert abs(integrated_loudness(torch.from_numpy(x), 48000).item() + 3.01) < 0.05


def test_gain_shifts_loudness_by_its_db_and_batches_are_independent():
    x, sr = _cases()["stereo16"]
    wav = torch.from_numpy(np.stack([x, 0.1 * x]))  # (2, 2, S)
    lufs = integrated_loudness(wav, sr)
    assert lufs.shape == (2,)
    assert abs((lufs[0] - lufs[1]).item() - 20.0) < 1e-4
    assert abs(lufs[1].item() - integrated_loudness(wav[1:], sr).item()) < 1e-6


def test_silence_and_gates():
    assert integrated_loudness(torch.zeros(2, 1, 16000), 16000).tolist() == [MIN_LOUDNESS] * 2
    loud = tone(1000, 0.5, 16000, 2.0)

    def after_loud(amp: float) -> float:
        x = np.concatenate([loud, amp * tone(1000, 1.0, 16000, 2.0)])
        return integrated_loudness(torch.from_numpy(x), 16000).item()

    silent = after_loud(0.0)
    assert after_loud(1e-6) == pytest.approx(silent, abs=1e-4)  # -126 dB: absolute gate
    assert after_loud(5e-3) == pytest.approx(silent, abs=1e-2)  # -40 dB: relative gate
    assert after_loud(0.2) < silent - 1.0  # -8 dB: inside both gates, lowers the average
    only_loud = integrated_loudness(torch.from_numpy(loud), 16000).item()
    assert only_loud == pytest.approx(-9.097268268075029, abs=1e-5)  # pyloudnorm


def test_short_signal_is_measured_padded_to_half_a_second():
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal(4000)  # 0.25 s at 16 kHz
    padded = np.pad(x, (0, 4000))
    short = integrated_loudness(torch.from_numpy(x), 16000).item()
    assert short == pytest.approx(integrated_loudness(torch.from_numpy(padded), 16000).item())
    assert short == pytest.approx(-20.338533184985682, abs=1e-5)  # pyloudnorm on the padded one


def test_normalize_loudness_reaches_target():
    x, sr = _cases()["gated16"]
    wav = torch.from_numpy(x).float()[None]
    out, before = normalize_loudness(wav, sr, -23.0)
    assert before.item() == pytest.approx(PYLOUDNORM["gated16"], abs=1e-4)
    assert integrated_loudness(out, sr).item() == pytest.approx(-23.0, abs=1e-3)


def test_block_sums_agree_for_every_rate():
    from audiokit.audio.loudness import block_energies

    rng = np.random.default_rng(1)
    for sr in (16000, 11025):  # 6400 = 4 * 1600 steps; 4410 != 4 * 1102
        x = rng.standard_normal((2, 1, sr * 2 + 123))
        z = block_energies(x, sr)
        size, step = int(0.4 * sr), int(0.1 * sr)
        padded = np.pad(x, [(0, 0), (0, 0), (0, (z.shape[-1] - 1) * step + size - x.shape[-1])])
        frames = np.lib.stride_tricks.sliding_window_view(padded, size, axis=-1)[..., ::step, :]
        np.testing.assert_allclose(z, (frames**2).sum(-1) / (0.4 * sr), rtol=1e-10)
