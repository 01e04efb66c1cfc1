"""CMVN statistics, global/per-utterance normalisation and the three file formats."""

import kaldiio
import numpy as np
import pytest
import torch

from audiokit.errors import FeatureError
from audiokit.features.cmvn import (
    CmvnStats,
    GlobalCMVN,
    apply_utterance_cmvn,
    load_cmvn,
    read_am_mvn,
    read_kaldi_cmvn,
    save_cmvn_npz,
)


def _padded(lengths, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), dim, generator=g) * 2 + 5
    for i, n in enumerate(lengths):
        x[i, n:] = 123.0  # padding garbage must be ignored
    return x, torch.tensor(lengths)


def test_stats_ignore_padding_and_match_numpy():
    x, lengths = _padded([6, 2, 4])
    stats = CmvnStats(3)
    stats.update(x[:2], lengths[:2])
    stats.update(x[2, :4])  # (T, D) input
    frames = torch.cat([x[0, :6], x[1, :2], x[2, :4]]).double().numpy()
    assert stats.count == 12
    np.testing.assert_allclose(stats.sum, frames.sum(0))
    mean, istd = stats.mean_istd()
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-6)
    np.testing.assert_allclose(istd, 1 / frames.std(0), rtol=1e-5)


def test_kaldi_matrix_round_trip_layout(tmp_path):
    stats = CmvnStats(2)
    stats.update(np.array([[1.0, 2.0], [3.0, 6.0]]))
    mat = stats.to_kaldi()
    np.testing.assert_array_equal(mat, [[4.0, 8.0, 2.0], [10.0, 40.0, 0.0]])
    stats.write_kaldi(tmp_path / "cmvn.ark")
    loaded = kaldiio.load_mat(str(tmp_path / "cmvn.ark"))
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, mat)
    back = read_kaldi_cmvn(tmp_path / "cmvn.ark")
    assert back.count == 2 and np.array_equal(back.sumsq, stats.sumsq)
    # A Kaldi text-format matrix is read as well.
    (tmp_path / "cmvn.txt").write_text(" [\n  4 8 2\n  10 40 0 ]\n")
    np.testing.assert_allclose(load_cmvn(tmp_path / "cmvn.txt")[0], [2.0, 4.0])


def test_merge_and_npz(tmp_path):
    a, b = CmvnStats(3), CmvnStats(3)
    x, lengths = _padded([5, 3])
    a.update(x[:1], lengths[:1])
    b.update(x[1:], lengths[1:])
    a.merge(b)
    whole = CmvnStats(3)
    whole.update(x, lengths)
    np.testing.assert_allclose(a.sumsq, whole.sumsq)
    a.save_npz(tmp_path / "cmvn.npz")
    z = np.load(tmp_path / "cmvn.npz")
    assert int(z["count"]) == 8
    mean, istd = load_cmvn(tmp_path / "cmvn.npz")
    np.testing.assert_allclose(mean, whole.mean_istd()[0])
    with pytest.raises(FeatureError):
        a.merge(CmvnStats(4))


AM_MVN = """<Nnet>
<Splice> 3 3
[ 0 ]
<AddShift> 3 3
<LearnRateCoef> 0 [ -1.5 2.0 -0.25 ]
<Rescale> 3 3
<LearnRateCoef> 0 [ 0.5 4.0
 2.0 ]
</Nnet>
"""


def test_am_mvn_shift_is_minus_mean_rescale_is_istd(tmp_path):
    path = tmp_path / "am.mvn"
    path.write_text(AM_MVN)
    mean, istd = read_am_mvn(path)
    np.testing.assert_allclose(mean, [1.5, -2.0, 0.25])
    np.testing.assert_allclose(istd, [0.5, 4.0, 2.0])
    cmvn = GlobalCMVN.from_file(path)
    x = torch.ones(1, 2, 3)
    # FunASR applies (x + shift) * rescale.
    expected = (x + torch.tensor([-1.5, 2.0, -0.25])) * torch.tensor([0.5, 4.0, 2.0])
    torch.testing.assert_close(cmvn(x), expected)
    (tmp_path / "bad.mvn").write_text(
        "<Nnet>\n<AddShift> 3 3\n<LearnRateCoef> 0 [ 1 2 3 ]\n</Nnet>\n"
    )
    with pytest.raises(FeatureError, match="Rescale"):
        read_am_mvn(tmp_path / "bad.mvn")


def test_global_cmvn_masks_padding_and_flags(tmp_path):
    save_cmvn_npz(tmp_path / "c.npz", np.array([1.0, 2.0]), np.array([2.0, 0.5]), 10)
    x = torch.tensor([[[3.0, 4.0], [5.0, 6.0]], [[1.0, 2.0], [9.0, 9.0]]])
    out = GlobalCMVN.from_file(tmp_path / "c.npz")(x, torch.tensor([2, 1]))
    torch.testing.assert_close(
        out, torch.tensor([[[4.0, 1.0], [8.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    )
    means_only = GlobalCMVN.from_file(tmp_path / "c.npz", norm_vars=False)(x[:1])
    torch.testing.assert_close(means_only, x[:1] - torch.tensor([1.0, 2.0]))
    with pytest.raises(FeatureError, match="dim"):
        GlobalCMVN.from_file(tmp_path / "c.npz")(torch.zeros(1, 2, 5))


def test_utterance_cmvn_per_utterance_masked():
    x, lengths = _padded([6, 3])
    out = apply_utterance_cmvn(x, lengths, norm_vars=True)
    for i, n in enumerate(lengths.tolist()):
        seg = x[i, :n]
        ref = (seg - seg.mean(0)) / seg.std(0, unbiased=False)
        torch.testing.assert_close(out[i, :n], ref, rtol=1e-4, atol=1e-4)
        assert torch.all(out[i, n:] == 0)
    means_only = apply_utterance_cmvn(x, lengths)
    torch.testing.assert_close(means_only[1, :3].mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_missing_and_empty_stats_raise(tmp_path):
    with pytest.raises(FeatureError, match="not found"):
        load_cmvn(tmp_path / "nope.npz")
    with pytest.raises(FeatureError, match="no frames"):
        CmvnStats(2).mean_istd()
