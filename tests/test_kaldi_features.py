"""Unit tests for audiokit.features.kaldi: batching, frame counts, errors, dtypes, peers.

torchaudio.compliance.kaldi is an independent per-utterance implementation of the same Kaldi
recipes; agreeing with it across options checks each option's plumbing (Kaldi parity itself is
in test_kaldi_reference_parity.py).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio.compliance.kaldi as ta_kaldi

from audiokit.errors import ConfigError, FeatureError
from audiokit.features import kaldi
from audiokit.features.kaldi import (
    FbankOptions,
    FrameOptions,
    MelOptions,
    MfccOptions,
    SpectrogramOptions,
    fbank,
    mfcc,
    num_frames,
    spectrogram,
)
from audiokit.features.kaldi_mel import mel_banks


def speech_like(num_samples: int, seed: int = 0, sr: int = 16000) -> torch.Tensor:
    """Harmonics of a gliding pitch under a syllable-rate envelope, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples, dtype=torch.float64) / sr
    f0 = 120 + 30 * torch.sin(2 * math.pi * 3 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 20))
    envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t + seed).clamp_min(0)
    wave = 0.1 * envelope * voiced + 0.003 * torch.randn(
        num_samples, generator=g, dtype=torch.float64
    )
    return (wave.clamp(-1, 1) * 32767).round().float() / 32768  # 16-bit values, as from a wav


def pad_batch(waves: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(w) for w in waves])
    return torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), lengths


NO_DITHER = FrameOptions(dither=0.0)
LENGTHS = [16000, 4321, 400, 9999, 401]


def _kaldi_num_frames(n: int, shift: int, length: int, snip: bool) -> int:
    """Kaldi's NumFrames written the slow way: count frame starts."""
    if snip:
        return sum(1 for start in range(0, n, shift) if start + length <= n)
    return (n + shift // 2) // shift


@pytest.mark.parametrize("snip", [True, False])
def test_num_frames_matches_kaldi(snip: bool) -> None:
    opts = FrameOptions(snip_edges=snip)
    ns = [0, 1, 79, 80, 159, 160, 399, 400, 401, 559, 560, 16000, 16079, 16080]
    expected = [_kaldi_num_frames(n, 160, 400, snip) for n in ns]
    assert [num_frames(n, opts) for n in ns] == expected
    assert num_frames(torch.tensor(ns), opts).tolist() == expected


@pytest.mark.parametrize(
    "compute, opts",
    [
        (fbank, FbankOptions(frame=NO_DITHER, use_energy=True)),
        (fbank, FbankOptions(frame=FrameOptions(dither=0.0, snip_edges=False))),
        (mfcc, MfccOptions(frame=NO_DITHER)),
        (mfcc, MfccOptions(frame=FrameOptions(dither=0.0, snip_edges=False), htk_compat=True)),
        (spectrogram, SpectrogramOptions(frame=FrameOptions(dither=0.0, snip_edges=False))),
    ],
)
def test_batched_equals_per_utterance(compute, opts, monkeypatch) -> None:
    waves = [speech_like(n, seed=i) for i, n in enumerate(LENGTHS)]
    batch, lengths = pad_batch(waves)
    monkeypatch.setattr(kaldi, "CPU_BLOCK_FRAMES", 7)  # many blocks, straddling utterances
    feats, counts = compute(batch, lengths, opts)
    monkeypatch.undo()
    assert counts.dtype == torch.int64
    assert counts.tolist() == [num_frames(n, opts.frame) for n in LENGTHS]
    for i, w in enumerate(waves):
        single, count = compute(w, opts=opts)
        assert count.dim() == 0 and int(count) == counts[i]
        assert single.shape == (counts[i], feats.shape[-1])
        torch.testing.assert_close(feats[i, : counts[i]], single, atol=2e-4, rtol=1e-5)
        assert torch.all(feats[i, counts[i] :] == 0)  # padding rows are zero


def test_padding_content_is_ignored() -> None:
    """Samples past an utterance's length (edge reflection included) never leak in."""
    waves = [speech_like(5000, 1), speech_like(3000, 2)]
    batch, lengths = pad_batch(waves)
    noisy = batch.clone()
    noisy[1, 3000:] = 0.9
    for snip in (True, False):
        opts = FbankOptions(frame=FrameOptions(dither=0.0, snip_edges=snip))
        torch.testing.assert_close(fbank(batch, lengths, opts)[0], fbank(noisy, lengths, opts)[0])


def test_too_short_is_feature_error() -> None:
    batch, lengths = pad_batch([speech_like(1000), speech_like(399)])
    with pytest.raises(FeatureError) as err:
        fbank(batch, lengths)
    message = str(err.value)
    assert "\n" not in message and "utterance 1" in message and "at least 400 samples" in message
    # Kaldi's snip_edges=false rounds to the nearest frame: 399 samples make 2 frames.
    feats, counts = fbank(batch, lengths, FbankOptions(frame=FrameOptions(snip_edges=False)))
    assert counts.tolist() == [6, 2]
    with pytest.raises(FeatureError, match="at least 80 samples"):
        fbank(torch.zeros(79), opts=FbankOptions(frame=FrameOptions(snip_edges=False)))


def test_bad_inputs_are_feature_errors() -> None:
    with pytest.raises(FeatureError, match="float tensor"):
        fbank(torch.zeros(1000, dtype=torch.int16))
    with pytest.raises(FeatureError, match="shape"):
        fbank(torch.zeros(2, 2, 1000))
    with pytest.raises(FeatureError, match="outside"):
        fbank(torch.zeros(2, 1000), torch.tensor([1000, 1001]))
    with pytest.raises(FeatureError, match="entries"):
        fbank(torch.zeros(2, 1000), torch.tensor([1000]))


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="window_type"):
        fbank(torch.zeros(1000), opts=FbankOptions(frame=FrameOptions(window_type="kaiser")))
    with pytest.raises(ConfigError, match="num_ceps"):
        mfcc(torch.zeros(1000), opts=MfccOptions(num_ceps=30))
    with pytest.raises(ConfigError, match="high_freq"):
        fbank(torch.zeros(1000), opts=FbankOptions(mel=MelOptions(high_freq=9000.0)))
    with pytest.raises(ConfigError, match="covers no FFT bin"):
        fbank(torch.zeros(1000), opts=FbankOptions(mel=MelOptions(num_bins=200)))


def test_float64_path() -> None:
    wave = speech_like(8000)
    f32, _ = mfcc(wave, opts=MfccOptions(frame=NO_DITHER))
    f64, _ = mfcc(wave.double(), opts=MfccOptions(frame=NO_DITHER))
    assert f32.dtype == torch.float32 and f64.dtype == torch.float64
    torch.testing.assert_close(f64.float(), f32, atol=2e-3, rtol=1e-4)


def test_dither_uses_generator() -> None:
    wave = speech_like(4000)
    a = fbank(wave, generator=torch.Generator().manual_seed(1))[0]
    b = fbank(wave, generator=torch.Generator().manual_seed(1))[0]
    c = fbank(wave, generator=torch.Generator().manual_seed(2))[0]
    plain = fbank(wave, opts=FbankOptions(frame=NO_DITHER))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 < (a - plain).abs().mean() < 0.05  # dither of 1 LSB barely moves speech


def test_waveform_scale() -> None:
    """Integer-valued input with waveform_scale=1 gives the same features as [-1, 1] input."""
    wave = speech_like(4000)
    opts = FbankOptions(frame=FrameOptions(dither=0.0, waveform_scale=1.0), use_energy=True)
    torch.testing.assert_close(
        fbank(wave * 32768, opts=opts)[0],
        fbank(wave, opts=FbankOptions(frame=NO_DITHER, use_energy=True))[0],
        atol=1e-4,
        rtol=1e-6,
    )


def _ta_frame_kwargs(frame: FrameOptions) -> dict:
    return dict(
        dither=0.0,
        window_type=frame.window_type,
        preemphasis_coefficient=frame.preemphasis_coefficient,
        remove_dc_offset=frame.remove_dc_offset,
        round_to_power_of_two=frame.round_to_power_of_two,
        snip_edges=frame.snip_edges,
    )


@pytest.mark.parametrize(
    "opts",
    [
        FbankOptions(frame=NO_DITHER, mel=MelOptions(num_bins=80)),
        FbankOptions(frame=FrameOptions(dither=0.0, window_type="hamming"), use_energy=True),
        FbankOptions(
            frame=FrameOptions(dither=0.0, window_type="hanning", snip_edges=False),
            use_energy=True,
            raw_energy=False,
            htk_compat=True,
        ),
        FbankOptions(
            frame=FrameOptions(dither=0.0, window_type="blackman", round_to_power_of_two=False),
            use_power=False,
            mel=MelOptions(low_freq=60.0, high_freq=-400.0),
        ),
        FbankOptions(
            frame=FrameOptions(dither=0.0, window_type="rectangular", remove_dc_offset=False),
            use_energy=True,
            energy_floor=1e9,
            use_log_fbank=False,
        ),
    ],
)
def test_fbank_close_to_torchaudio(opts: FbankOptions) -> None:
    wave = speech_like(12000, seed=3)
    ours, _ = fbank(wave, opts=opts)
    ref = ta_kaldi.fbank(
        wave[None] * 32768,
        num_mel_bins=opts.mel.num_bins,
        low_freq=opts.mel.low_freq,
        high_freq=opts.mel.high_freq,
        use_energy=opts.use_energy,
        raw_energy=opts.raw_energy,
        htk_compat=opts.htk_compat,
        energy_floor=opts.energy_floor,
        use_log_fbank=opts.use_log_fbank,
        use_power=opts.use_power,
        **_ta_frame_kwargs(opts.frame),
    )
    diff = ((ours - ref).abs() / (1 if opts.use_log_fbank else ref.abs().clamp_min(1))).max()
    print(f"\nfbank vs torchaudio.compliance.kaldi: max diff {float(diff):.3g}")
    assert diff < 5e-3


@pytest.mark.parametrize("htk_compat, use_energy", [(False, True), (True, False), (True, True)])
def test_mfcc_close_to_torchaudio(htk_compat: bool, use_energy: bool) -> None:
    wave = speech_like(12000, seed=4)
    opts = MfccOptions(frame=NO_DITHER, htk_compat=htk_compat, use_energy=use_energy)
    ours, _ = mfcc(wave, opts=opts)
    ref = ta_kaldi.mfcc(
        wave[None] * 32768, htk_compat=htk_compat, use_energy=use_energy, dither=0.0
    )
    diff = float((ours - ref).abs().max())
    print(f"\nmfcc vs torchaudio.compliance.kaldi: max diff {diff:.3g}")
    assert diff < 2e-2  # cepstra sum 23 log energies, scaled by the lifter (up to 12)


def test_spectrogram_close_to_torchaudio() -> None:
    wave = speech_like(12000, seed=5)
    ours, _ = spectrogram(wave, opts=SpectrogramOptions(frame=NO_DITHER))
    ref = ta_kaldi.spectrogram(wave[None] * 32768, dither=0.0)
    assert ours.shape == ref.shape == (73, 257)
    torch.testing.assert_close(ours, ref, atol=5e-3, rtol=0)


@pytest.mark.parametrize("warp", [1.0, 0.9, 1.1])
def test_mel_banks_match_torchaudio(warp: float) -> None:
    """Including Kaldi's piecewise-linear VTLN warp; torchaudio omits the (zero) Nyquist row."""
    mel = MelOptions(num_bins=23, low_freq=20.0, high_freq=-400.0, vtln_low=100.0, vtln_high=-500.0)
    ours = mel_banks(mel, FrameOptions(), vtln_warp=warp)
    ref, _ = ta_kaldi.get_mel_banks(23, 512, 16000.0, 20.0, -400.0, 100.0, -500.0, warp)
    assert ours.shape == (257, 23) and torch.all(ours[-1] == 0)
    torch.testing.assert_close(ours[:-1], ref.t(), atol=2e-5, rtol=0)


def test_htk_mode_floors_and_zeroes_first_weight() -> None:
    frame = FrameOptions()
    plain = mel_banks(MelOptions(low_freq=25.0), frame)
    htk = mel_banks(MelOptions(low_freq=25.0, htk_mode=True), frame)
    first = int((plain[:, 0] > 0).nonzero()[0])
    assert plain[first, 0] > 0 and htk[first, 0] == 0
    assert torch.equal(plain[first + 1 :], htk[first + 1 :])
    feats, _ = fbank(torch.zeros(4000), opts=FbankOptions(mel=MelOptions(htk_mode=True)))
    assert torch.all(feats >= 0)  # energies floored at 1 -> log >= 0 even for silence


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    batch, lengths = pad_batch([speech_like(n, seed=i) for i, n in enumerate(LENGTHS)])
    opts = MfccOptions(frame=FrameOptions(dither=0.0, snip_edges=False))
    cpu, counts = mfcc(batch, lengths, opts)
    gpu, gcounts = mfcc(batch.cuda(), lengths.cuda(), opts)
    assert gpu.device.type == "cuda" and torch.equal(gcounts.cpu(), counts)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-3, rtol=1e-4)
