"""Codec data: random fixed-length crops, padding, resampling, text, fixed-size batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from audiokit.audio import save
from audiokit.data.audio_segments import AudioSegmentDataset, FixedBatchSampler, collate_segments
from audiokit.errors import AudioError, ConfigError, DataDirError
from audiokit.train.interface import IGNORE_ID

RATE = 8000


def make_codec_data_dir(
    root: Path, seconds: list[float], rate: int = RATE, seed: int = 0, text: bool = False
) -> Path:
    """A data dir of noisy tones, `seconds[i]` long; utterance i at `rate` (a list: per utt)."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rates = rate if isinstance(rate, list) else [rate] * len(seconds)
    scp, txt = [], []
    for i, (sec, sr) in enumerate(zip(seconds, rates, strict=True)):
        n = int(round(sec * sr))
        t = np.arange(n) / sr
        x = 0.4 * np.sin(2 * np.pi * rng.uniform(150, 900) * t) + 0.02 * rng.standard_normal(n)
        path = root / "wav" / f"u{i}.wav"
        save(path, x.astype(np.float32), sr)
        scp.append(f"u{i} {path}")
        txt.append(f"u{i} {' '.join('ab' * (i + 1))}")
    (root / "wav.scp").write_text("\n".join(scp) + "\n")
    (root / "utt2spk").write_text("".join(f"u{i} s\n" for i in range(len(seconds))))
    if text:
        (root / "text").write_text("\n".join(txt) + "\n")
    return root


def test_crops_are_deterministic_per_seed_epoch_item(tmp_path: Path) -> None:
    d = make_codec_data_dir(tmp_path / "d", [0.5, 0.3, 0.05])
    ds = AudioSegmentDataset(d, RATE, 0.1, seed=3)
    assert len(ds) == 3 and ds.segment_samples == 800
    a = ds[(0, 0)]
    assert a["feats"].shape == (800,) and a["feats"].dtype == torch.float32 and a["length"] == 800
    assert torch.equal(a["feats"], AudioSegmentDataset(d, RATE, 0.1, seed=3)[(0, 0)]["feats"])
    ds.set_epoch(0)
    assert torch.equal(ds[0]["feats"], a["feats"])
    crops = {ds[(e, 0)]["feats"][:50].sum().item() for e in range(6)}
    assert len(crops) > 1  # a new offset per epoch
    other = AudioSegmentDataset(d, RATE, 0.1, seed=4)
    assert any(not torch.equal(other[(e, 0)]["feats"], ds[(e, 0)]["feats"]) for e in range(4))
    # the crop is a real slice of the utterance
    full = torch.from_numpy(ds.data.load_audio("u0", RATE)[0])
    windows = full.unfold(0, 800, 1)
    assert (windows - a["feats"]).abs().amax(dim=1).min() == 0


def test_short_utterance_is_zero_padded(tmp_path: Path) -> None:
    d = make_codec_data_dir(tmp_path / "d", [0.05])
    item = AudioSegmentDataset(d, RATE, 0.1)[0]
    assert item["feats"].shape == (800,) and item["length"] == 400
    assert item["feats"][400:].abs().sum() == 0 and item["feats"][:400].abs().sum() > 0


def test_validation_crop_is_the_centre(tmp_path: Path) -> None:
    d = make_codec_data_dir(tmp_path / "d", [0.5])
    ds = AudioSegmentDataset(d, RATE, 0.1)
    ds.training = False
    full = torch.from_numpy(ds.data.load_audio("u0", RATE)[0])
    for e in range(3):
        assert torch.equal(ds[(e, 0)]["feats"], full[1600:2400])


def test_resampled_on_load(tmp_path: Path) -> None:
    d = make_codec_data_dir(tmp_path / "d", [0.2], rate=16000)
    ds = AudioSegmentDataset(d, RATE, 0.5)
    item = ds[0]
    assert item["length"] == 1600 and item["feats"].shape == (4000,)


def test_text_targets_use_whole_utterances(tmp_path: Path, caplog) -> None:
    from audiokit.text import CharTokenizer

    d = make_codec_data_dir(tmp_path / "d", [0.2, 0.4, 1.0], text=True)
    tok = CharTokenizer.train(["a b"])
    ds = AudioSegmentDataset(d, RATE, 0.5, tokenizer=tok)
    assert ds.utt_ids == ["u0", "u1"]  # u2 is longer than the 0.5 s limit
    assert "longer than data.segment_seconds" in caplog.text
    item = ds[1]
    assert item["feats"].shape == (3200,) and item["length"] == 3200
    assert item["targets"].tolist() == tok.encode("a b a b")
    batch = collate_segments([ds[0], ds[1]])
    assert batch.feats.shape == (2, 3200) and batch.feat_lengths.tolist() == [1600, 3200]
    assert batch.targets.shape == (2, 4) and batch.targets[0, 2:].tolist() == [IGNORE_ID] * 2
    assert batch.target_lengths.tolist() == [2, 4]
    with pytest.raises(DataDirError, match="no text file"):
        AudioSegmentDataset(make_codec_data_dir(tmp_path / "e", [0.1]), RATE, 0.5, tokenizer=tok)


def test_collate_and_bad_audio(tmp_path: Path) -> None:
    d = make_codec_data_dir(tmp_path / "d", [0.2, 0.05])
    (d / "wav.scp").write_text((d / "wav.scp").read_text() + f"u9 {d / 'missing.wav'}\n")
    (d / "utt2spk").write_text((d / "utt2spk").read_text() + "u9 s\n")
    ds = AudioSegmentDataset(d, RATE, 0.1)
    with pytest.raises(AudioError, match="u9"):
        ds[2]
    ds = AudioSegmentDataset(d, RATE, 0.1, skip_bad=True)
    batch = collate_segments([ds[0], ds[1], ds[2]])
    assert batch.feats.shape == (2, 800) and batch.feat_lengths.tolist() == [800, 400]
    assert batch.utt_ids == ["u0", "u1"] and batch.targets.shape == (2, 0)
    assert collate_segments([None]) is None
    with pytest.raises(ConfigError, match="segment_seconds"):
        AudioSegmentDataset(d, RATE, 0.0)


def test_multichannel(tmp_path: Path) -> None:
    d = tmp_path / "d"
    (d / "wav").mkdir(parents=True)
    stereo = np.stack([np.linspace(-0.5, 0.5, 800), np.full(800, 0.25)], axis=1)
    save(d / "wav" / "s.wav", stereo.T.astype(np.float32), RATE)  # (C, T)
    (d / "wav.scp").write_text(f"s {d / 'wav' / 's.wav'}\n")
    (d / "utt2spk").write_text("s s\n")
    item = AudioSegmentDataset(d, RATE, 0.2, channels=2)[0]
    assert item["feats"].shape == (2, 1600) and item["length"] == 800
    assert collate_segments([item]).feats.shape == (1, 2, 1600)
    mono = AudioSegmentDataset(d, RATE, 0.2)[0]
    assert mono["feats"].shape == (1600,)
    with pytest.raises(AudioError, match="2 channel"):
        AudioSegmentDataset(d, RATE, 0.2, channels=3)[0]


def test_fixed_batch_sampler() -> None:
    s = FixedBatchSampler(10, 3, seed=1)
    s.set_epoch(0)
    batches = list(s)
    assert len(s) == 3 and all(len(b) == 3 for b in batches)  # last partial batch dropped
    assert len({i for b in batches for i in b}) == 9
    assert batches == list(FixedBatchSampler(10, 3, seed=1))
    s.set_epoch(1)
    assert list(s) != batches
    valid = FixedBatchSampler(10, 3, shuffle=False, drop_last=False)
    assert list(valid) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    (only,) = list(FixedBatchSampler(2, 3))  # fewer items than a batch: one short batch
    assert sorted(only) == [0, 1]
    # replicas: disjoint shares of the same plan, equally many batches
    r0, r1 = (FixedBatchSampler(10, 3, seed=1, num_replicas=2, rank=r) for r in (0, 1))
    assert len(r0) == len(r1) == 2
    assert r0.fingerprint() == r1.fingerprint() != FixedBatchSampler(11, 3, seed=1).fingerprint()
    assert list(r0)[0] == batches[0] and list(r1)[0] == batches[1]
    with pytest.raises(ConfigError, match="batch_size"):
        FixedBatchSampler(10, 0)


def test_crops_skip_silence(tmp_path: Path) -> None:
    """Only crops at least min_db loud are drawn (DAC's salient excerpts)."""
    d = tmp_path / "d"
    (d / "wav").mkdir(parents=True)
    x = np.zeros(4000, dtype=np.float32)
    x[3000:] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(1000) / RATE)  # last 1/8 s loud
    save(d / "wav" / "q.wav", x, RATE)
    (d / "wav.scp").write_text(f"q {d / 'wav' / 'q.wav'}\n")
    (d / "utt2spk").write_text("q s\n")
    ds = AudioSegmentDataset(d, RATE, 0.05)  # 400-sample crops
    for e in range(8):
        crop = ds[(e, 0)]["feats"]
        assert 10 * torch.log10(crop.double().pow(2).mean()) >= -40.0
    ds.training = False
    assert ds[0]["feats"].pow(2).mean() > 1e-4  # the centre is silent: nearest loud crop
    quiet = AudioSegmentDataset(d, RATE, 0.05, min_db=None)
    assert any(quiet[(e, 0)]["feats"].abs().max() == 0 for e in range(8))
