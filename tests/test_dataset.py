"""AsrDataset, collate_asr and the resumable DataLoader on a synthesised data dir."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from audiokit.data import DataDir
from audiokit.data.collate import collate_asr, make_dataloader
from audiokit.data.dataset import AsrDataset, default_frontend
from audiokit.data.kaldi_files import write_kv_file
from audiokit.data.sampler import DynamicBucketSampler
from audiokit.data.synthetic import make_demo_data_dir
from audiokit.errors import AudioError, ConfigError
from audiokit.text import CharTokenizer
from audiokit.train.interface import IGNORE_ID

AUG = {"time_warp_window": 3, "num_time_masks": 2, "time_mask_width": 8, "freq_mask_width": 6}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, CharTokenizer]:
    d = make_demo_data_dir(tmp_path_factory.mktemp("corpus") / "dd", num_utts=6)
    text = DataDir.load(d).text
    return d, CharTokenizer.train(text.values(), latin="char", space="keep")


def train_set(corpus, **kw) -> AsrDataset:
    d, tok = corpus
    opts = {"frontend": default_frontend(num_bins=20), "speed_perturb": [0.9, 1.0, 1.1],
            "specaug": AUG, "seed": 3}  # fmt: skip
    opts.update(kw)
    return AsrDataset(d, tok, **opts)


def same(a: dict, b: dict) -> bool:
    return torch.equal(a["feats"], b["feats"]) and torch.equal(a["targets"], b["targets"])


def test_item_depends_only_on_seed_epoch_index(corpus):
    ds, other = train_set(corpus), train_set(corpus)
    ds.set_epoch(2)
    other.set_epoch(2)
    x = ds[1]
    assert x["feats"].dtype == torch.float32 and x["feats"].shape[1] == 20
    assert x["targets"].dtype == torch.int64
    assert x["utt_id"] == ds.utt_ids[1]
    _ = other[0], other[4]  # consuming other items first changes nothing
    assert same(x, other[1]) and same(x, ds[1]) and same(x, ds[(2, 1)])
    ds.set_epoch(3)
    assert not torch.equal(ds[1]["feats"], x["feats"])
    assert not torch.equal(train_set(corpus, seed=4)[(2, 1)]["feats"], x["feats"])
    tok = corpus[1]
    assert tok.decode(x["targets"].tolist()) == DataDir.load(corpus[0]).text[x["utt_id"]]


def test_speed_perturbation_changes_length_within_estimate(corpus):
    ds = train_set(corpus, specaug=None)
    plain = train_set(corpus, specaug=None, speed_perturb=None)
    frames = {ds[(e, 0)]["feats"].shape[0] for e in range(12)}
    assert len(frames) == 3  # three speed factors, each drawn at least once
    assert plain[0]["feats"].shape[0] in frames
    assert max(frames) <= ds.num_frames_estimate(0)
    assert plain.num_frames_estimate(0) == pytest.approx(100 * plain.durations[0], abs=1)
    ds.training = False  # validation mode: no perturbation, no SpecAugment
    assert ds[0]["feats"].shape[0] == plain[0]["feats"].shape[0]


def test_durations_from_headers_match_utt2dur(corpus, tmp_path):
    d, tok = corpus
    ds = AsrDataset(d, tok, default_frontend(num_bins=20))
    dd = DataDir.load(d)
    assert dd.utt2dur is None
    from_headers = ds.durations
    copy = tmp_path / "dd"
    dd.write(copy)
    write_kv_file(
        copy / "utt2dur", {u: f"{t:.4f}" for u, t in zip(ds.utt_ids, from_headers, strict=True)}
    )
    from_file = AsrDataset(copy, tok, default_frontend(num_bins=20)).durations
    assert from_file == pytest.approx(from_headers, abs=1e-4)


def test_on_the_fly_fbank_equals_feats_scp(corpus, tmp_path):
    from audiokit.features.extract import extract_features

    d, tok = corpus
    opts = default_frontend(num_bins=20, dither=0.0)
    extract_features(d, tmp_path / "feats", "fbank", opts, compress=False)
    live = AsrDataset(d, tok, opts)
    stored = AsrDataset(d, tok, None, feats_scp=tmp_path / "feats" / "feats.scp")
    for i in range(len(live)):
        a, b = live[i], stored[i]
        assert a["feats"].shape == b["feats"].shape
        torch.testing.assert_close(a["feats"], b["feats"], atol=1e-4, rtol=1e-5)
        assert torch.equal(a["targets"], b["targets"])
        # no utt2dur: lengths come from the stored matrices' shapes
        assert stored.num_frames_estimate(i) == b["feats"].shape[0]
    with pytest.raises(ConfigError, match="speed_perturb needs audio"):
        AsrDataset(d, tok, None, feats_scp=tmp_path / "feats", speed_perturb=[0.9, 1.1])


def test_collate_pads_and_drops_none():
    items = [
        {"utt_id": "a", "feats": torch.ones(5, 3), "targets": torch.tensor([1, 2])},
        None,
        {"utt_id": "b", "feats": torch.full((2, 3), 2.0), "targets": torch.tensor([3, 4, 5])},
    ]
    b = collate_asr(items)
    assert b.feats.shape == (2, 5, 3) and b.targets.shape == (2, 3)
    assert b.feat_lengths.tolist() == [5, 2] and b.target_lengths.tolist() == [2, 3]
    assert b.feat_lengths.dtype == b.target_lengths.dtype == torch.int64
    assert b.utt_ids == ["a", "b"]
    assert b.feats[1, 2:].abs().sum() == 0 and b.feats[1, :2].eq(2.0).all()
    assert b.targets[0].tolist() == [1, 2, IGNORE_ID]
    assert collate_asr([None, None]) is None
    waves = collate_asr([{"utt_id": "w", "feats": torch.ones(7), "targets": torch.zeros(0)}])
    assert waves.feats.shape == (1, 7) and waves.targets.shape == (1, 0)


def batches_of(loader) -> list:
    return [(b.utt_ids, b.feats.clone(), b.targets.clone()) for b in loader]


def equal_batches(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x[0] == y[0] and torch.equal(x[1], y[1]) and torch.equal(x[2], y[2])
        for x, y in zip(a, b, strict=True)
    )


def test_workers_give_identical_batches_and_exact_resume(corpus):
    ds = train_set(corpus)
    sampler = DynamicBucketSampler(ds.frame_lengths(), max_frames=900, seed=1)
    loader0 = make_dataloader(ds, sampler, num_workers=0)
    loader0.set_epoch(1)
    ref = batches_of(loader0)
    assert len(ref) >= 3 and sorted(u for b in ref for u in b[0]) == ds.utt_ids

    loader2 = make_dataloader(ds, sampler, num_workers=2)
    loader2.set_epoch(1)
    rng_state = torch.get_rng_state()
    assert equal_batches(batches_of(loader2), ref)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is left alone

    # interrupt after 2 batches while workers prefetch ahead, then resume in a fresh loader
    it = iter(loader2)
    head = [next(it) for _ in range(2)]
    state = loader2.state_dict()
    del it
    assert state["epoch"] == 1 and state["consumed"] == 2
    assert [b.utt_ids for b in head] == [r[0] for r in ref[:2]]
    ds2 = train_set(corpus)
    sampler2 = DynamicBucketSampler(ds2.frame_lengths(), max_frames=900, seed=1)
    resumed = make_dataloader(ds2, sampler2, num_workers=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    assert equal_batches(batches_of(resumed), ref[2:])


def test_bad_audio_raises_or_is_skipped(corpus, tmp_path, caplog):
    d, tok = corpus
    dd = DataDir.load(d)
    copy = tmp_path / "dd"
    dd.write(copy)
    bad = dd.utt_ids[2]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    write_kv_file(copy / "wav.scp", {**DataDir.load(copy).wav_scp, bad: str(broken)})
    ds = AsrDataset(copy, tok, default_frontend(num_bins=20))
    with pytest.raises(AudioError, match=bad):
        ds[2]
    with pytest.raises(AudioError, match=bad):
        _ = ds.durations
    skip = AsrDataset(copy, tok, default_frontend(num_bins=20), skip_bad=True)
    assert skip.durations[2] == 0.0
    with caplog.at_level(logging.WARNING, logger="audiokit.data.dataset"):
        assert skip[2] is None and skip[2] is None
    assert sum(bad in r.getMessage() for r in caplog.records) == 1
    batch = collate_asr([skip[1], skip[2], skip[3]])
    assert batch.utt_ids == [skip.utt_ids[1], skip.utt_ids[3]]


def test_waveform_mode_and_bad_options(corpus):
    d, tok = corpus
    ds = AsrDataset(d, tok, None)
    x = ds[0]
    assert x["feats"].dim() == 1 and abs(x["feats"].shape[0] / 16000 - ds.durations[0]) < 1e-3
    with pytest.raises(ConfigError, match="specaug needs features"):
        AsrDataset(d, tok, None, specaug=AUG)
    with pytest.raises(ConfigError, match="sample_rate"):
        AsrDataset(d, tok, default_frontend(num_bins=20), sample_rate=8000)
    with pytest.raises(ConfigError, match="specaug options"):
        AsrDataset(d, tok, default_frontend(num_bins=20), specaug={"no_such": 1})
