"""DynamicBucketSampler: coverage, frame budget, determinism, replicas and exact resume."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from audiokit.data.sampler import DynamicBucketSampler
from audiokit.errors import ConfigError

MAX_FRAMES = 1000


@pytest.fixture
def lengths() -> list[int]:
    rng = np.random.default_rng(7)
    return rng.integers(50, 600, size=203).tolist()


def flat(batches: list[list[int]]) -> list[int]:
    return [i for b in batches for i in b]


def test_every_utterance_once_per_epoch_within_budget(lengths):
    s = DynamicBucketSampler(lengths, MAX_FRAMES, seed=3, num_buckets=5)
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s)
        assert sorted(flat(batches)) == list(range(len(lengths)))
        for b in batches:
            assert max(lengths[i] for i in b) * len(b) <= MAX_FRAMES
    # buckets keep batches homogeneous: padding waste is small
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert sum(lengths) / padded > 0.75


def test_too_long_utterance_gets_its_own_batch(lengths, caplog):
    lengths = [*lengths, 5 * MAX_FRAMES, 2 * MAX_FRAMES]
    s = DynamicBucketSampler(lengths, MAX_FRAMES)
    with caplog.at_level(logging.WARNING, logger="audiokit.data.sampler"):
        batches = list(s)
        s.set_epoch(1)
        list(s)
    assert [len(b) for b in batches if len(lengths) - 1 in b] == [1]
    assert [len(b) for b in batches if len(lengths) - 2 in b] == [1]
    assert sorted(flat(batches)) == list(range(len(lengths)))
    assert sum("longer than max_frames" in r.message for r in caplog.records) == 1


def test_deterministic_per_seed_and_epoch(lengths):
    a = DynamicBucketSampler(lengths, MAX_FRAMES, seed=11)
    b = DynamicBucketSampler(lengths, MAX_FRAMES, seed=11)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(5)
    assert list(a) != first
    c = DynamicBucketSampler(lengths, MAX_FRAMES, seed=12)
    c.set_epoch(4)
    assert list(c) != first


def test_no_shuffle_is_length_sorted_and_fixed(lengths):
    s = DynamicBucketSampler(lengths, MAX_FRAMES, shuffle=False)
    batches = list(s)
    s.set_epoch(1)
    assert list(s) == batches
    order = [lengths[i] for i in flat(batches)]
    assert order == sorted(order)


def test_two_replicas_drop_last_disjoint_equal(lengths):
    ranks = [DynamicBucketSampler(lengths, MAX_FRAMES, drop_last=True, num_replicas=2, rank=r)
             for r in range(2)]  # fmt: skip
    for epoch in range(3):
        got = []
        for s in ranks:
            s.set_epoch(epoch)
            got.append(list(s))
        assert len(got[0]) == len(got[1]) == len(ranks[0])
        assert not set(flat(got[0])) & set(flat(got[1]))
        total = len(ranks[0].all_batches())
        assert total % 2 == 0
        dropped = len(lengths) - len(flat(got[0])) - len(flat(got[1]))
        assert dropped >= 0


def test_two_replicas_pad_covers_everything(lengths):
    ranks = [DynamicBucketSampler(lengths, MAX_FRAMES, num_replicas=2, rank=r) for r in range(2)]
    odd_seen = False
    for epoch in range(6):
        got = []
        for s in ranks:
            s.set_epoch(epoch)
            got.append(list(s))
        assert len(got[0]) == len(got[1])
        both = flat(got[0]) + flat(got[1])
        assert set(both) == set(range(len(lengths)))
        single = DynamicBucketSampler(lengths, MAX_FRAMES, num_replicas=1)
        single.set_epoch(epoch)
        n = len(single)
        if n % 2:  # one batch repeated: the first one of the shuffled list
            odd_seen = True
            assert got[1][-1] == list(single)[0]  # padded index n goes to rank n % 2
            assert len(both) == len(lengths) + len(got[1][-1])
        else:
            assert len(both) == len(lengths)
    assert odd_seen  # the padding branch was exercised


def test_state_dict_resumes_exact_remaining_batches(lengths):
    s = DynamicBucketSampler(lengths, MAX_FRAMES, seed=5, num_replicas=2, rank=1)
    s.set_epoch(2)
    full = list(s)
    it = iter(s)
    taken = [next(it) for _ in range(4)]
    assert taken == full[:4]
    state = s.state_dict()
    assert state["epoch"] == 2 and state["consumed"] == 4

    fresh = DynamicBucketSampler(lengths, MAX_FRAMES, seed=5, num_replicas=2, rank=1)
    fresh.load_state_dict(state)
    fresh.set_epoch(2)  # the trainer's loop calls this again: the position must survive
    assert list(fresh) == full[4:]
    assert fresh.state_dict()["consumed"] == len(full)
    rank0 = DynamicBucketSampler(lengths, MAX_FRAMES, seed=5, num_replicas=2, rank=0)
    rank0.load_state_dict(state)  # rank 1's state resumes rank 0 too (equal batch counts)
    assert list(rank0) == rank0.rank_batches(2)[4:]
    fresh.set_epoch(3)
    nxt = list(fresh)
    s.set_epoch(3)
    assert nxt == list(s)
    # the next pass over the same epoch starts from the beginning again
    fresh.set_epoch(3)
    assert list(fresh) == nxt


def test_state_dict_rejects_other_data(lengths):
    s = DynamicBucketSampler(lengths, MAX_FRAMES)
    state = s.state_dict()
    other = DynamicBucketSampler(lengths[:-1], MAX_FRAMES)
    with pytest.raises(ConfigError, match="other data or batching settings"):
        other.load_state_dict(state)
    with pytest.raises(ConfigError, match="consumed"):
        s.load_state_dict({"epoch": 0, "consumed": 10_000})
    with pytest.raises(ConfigError, match="lacks"):
        s.load_state_dict({})


def test_bad_settings():
    with pytest.raises(ConfigError, match="max_frames"):
        DynamicBucketSampler([1, 2], 0)
    with pytest.raises(ConfigError, match="rank"):
        DynamicBucketSampler([1, 2], 10, num_replicas=2, rank=2)
    assert list(DynamicBucketSampler([], 10)) == []
