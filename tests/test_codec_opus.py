"""The Opus baseline (audiokit.codec.opus): round trip, alignment, bitrate, errors."""

from __future__ import annotations

import numpy as np
import pytest

from audiokit.codec import opus
from audiokit.errors import ConfigError
from audiokit.metrics.audio_quality import si_sdr

needs_opus = pytest.mark.skipif(
    opus.opus_backend() is None,
    reason="opusenc/opusdec or ffmpeg not installed (apt-get install opus-tools)",
)


def tone_mix(seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)
    return (0.3 * env * (np.sin(2 * np.pi * 200 * t) + 0.4 * np.sin(2 * np.pi * 1100 * t))).astype(
        np.float32
    )


@needs_opus
@pytest.mark.parametrize("sr", [16000, 24000])
def test_round_trip_is_aligned_and_same_length(sr):
    x = tone_mix(1.0, sr)
    r = opus.opus_roundtrip(x, sr, 32)
    assert r.audio.shape == (1, len(x)) and r.audio.dtype == np.float32
    assert r.kbps == 32.0 and r.backend == opus.opus_backend()
    # pre-skip removed: the output lines up with the input to within a sample or so
    assert si_sdr(x, r.audio[0]) > 15.0
    shifted = np.roll(r.audio[0], 40)
    assert si_sdr(x, shifted) < si_sdr(x, r.audio[0]) - 10


@needs_opus
def test_more_bits_are_better_and_file_bitrate_is_near_nominal():
    sr = 16000
    x = tone_mix(3.0, sr)
    low, high = opus.opus_roundtrip(x, sr, 8), opus.opus_roundtrip(x, sr, 48)
    assert si_sdr(x, high.audio[0]) > si_sdr(x, low.audio[0])
    # hard CBR: the file is the nominal rate plus Ogg headers/page overhead and the encoder's
    # look-ahead frame (about 1.2 kB over 3 s at 48 kbit/s)
    for r in (low, high):
        extra_bytes = (r.file_kbps - r.kbps) * 1000 / 8 * 3.0
        assert 0 <= extra_bytes < 1500


@needs_opus
def test_stereo_keeps_channels():
    sr = 16000
    x = np.stack([tone_mix(0.5, sr), 0.5 * tone_mix(0.5, sr)])
    r = opus.opus_roundtrip(x, sr, 64)
    assert r.audio.shape == x.shape
    assert np.abs(r.audio[1]).max() < np.abs(r.audio[0]).max()


def test_bitrate_out_of_range_and_missing_tools(monkeypatch):
    x = tone_mix(0.2, 16000)
    with pytest.raises(ConfigError, match=r"outside libopus's 6\.\.256"):
        opus.opus_roundtrip(x, 16000, 3)
    with pytest.raises(ConfigError, match=r"12\.\.512 for 2 channel"):
        opus.opus_roundtrip(np.stack([x, x]), 16000, 8)
    monkeypatch.setattr(opus.shutil, "which", lambda name: None)
    assert opus.opus_backend() is None
    with pytest.raises(ConfigError, match="opus-tools"):
        opus.opus_roundtrip(x, 16000, 12)
