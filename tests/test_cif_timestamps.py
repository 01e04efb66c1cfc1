"""CIF token timestamps: FunASR parity (the swapped call of issue #3723) and the right call."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiokit.asr.cif_timestamps import cif_token_times, funasr_ms, integrate_and_fire
from audiokit.text.funasr_tokenizer import FunasrTokenizer
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def fixture():
    root = shared_path("fixtures", "funasr_paraformer")
    expected = json.loads((root / "expected.json").read_text(encoding="utf-8"))["utterances"]
    arrays = np.load(root / "expected.npz")
    tok = FunasrTokenizer.load(root / "model")
    return expected, arrays, tok


def _sequential_fires(alphas: np.ndarray, threshold: float) -> np.ndarray:
    """FunASR's cif_wo_hidden written as the plain float32 loop, for comparison."""
    integrate, thr, fires = np.float32(0), np.float32(threshold), []
    for a in alphas.astype(np.float32):
        integrate = np.float32(integrate + a)
        fires.append(integrate >= thr)
        if integrate >= thr:
            integrate = np.float32(integrate - thr)
    return np.array(fires)


def test_swapped_call_reproduces_funasr_timestamps(fixture):
    """FunASR passes (peaks, alphas) into (us_alphas, us_peaks): feed exactly that."""
    expected, arrays, tok = fixture
    for utt, exp in expected.items():
        ids = exp["token_ids"]
        starts, ends = cif_token_times(
            arrays[f"{utt}/cif_peaks"], len(ids), peaks=arrays[f"{utt}/cif_alphas"]
        )
        ms = funasr_ms(starts, ends)
        out = tok.decode_with_times(ids, [s for s, _ in ms], [e for _, e in ms])
        assert [[s, e] for s, e in zip(out.starts, out.ends, strict=True)] == exp["timestamps"]
        assert out.text == exp["text_with_timestamp"]
        # No alpha reaches 0.9999, so FunASR always took the rescale-and-integrate branch:
        # leaving `peaks` out gives the same times.
        assert cif_token_times(arrays[f"{utt}/cif_peaks"], len(ids)) == (starts, ends)


def test_right_call_on_alphas_is_monotone_in_range_and_differs(fixture):
    expected, arrays, _ = fixture
    differs = 0
    for utt, exp in expected.items():
        alphas, peaks, n = arrays[f"{utt}/cif_alphas"], arrays[f"{utt}/cif_peaks"], exp["n_tokens"]
        starts, ends = map(np.array, cif_token_times(alphas, n, peaks=peaks))
        assert starts.shape == ends.shape == (n,)
        assert (starts >= 0).all() and (ends <= alphas.shape[0]).all()
        assert (ends > starts).all() and (np.diff(starts) > 0).all()
        assert (ends[:-1] <= starts[1:]).all()  # tokens never overlap
        bug = cif_token_times(peaks, n, peaks=alphas)
        differs += funasr_ms(starts, ends) != funasr_ms(*bug)
        # The alphas integrate to the CIF's own fires (peaks >= 1) at threshold 1.
        own = np.flatnonzero(integrate_and_fire(alphas[None], 1.0)[0])
        np.testing.assert_array_equal(own, np.flatnonzero(peaks >= 1.0))
    assert differs == len(expected)


def test_vectorised_fires_equal_the_sequential_loop():
    rng = np.random.default_rng(0)
    for trial in range(200):
        t = int(rng.integers(1, 60))
        scale = (0.3, 1.2, 3.0)[trial % 3]  # 3.0: several thresholds in one frame (carry)
        alphas = (rng.uniform(0, scale, t) * (rng.uniform(size=t) < 0.7)).astype(np.float32)
        for thr in (1.0 - 1e-4, 1.0):
            got = integrate_and_fire(alphas[None], thr)[0]
            np.testing.assert_array_equal(got, _sequential_fires(alphas, thr))


def test_rules_on_hand_made_fires():
    # Fires (peaks >= thr, exactly N + 1 of them) at frames 3, 6, 30, 33 -> shifted by -1.5.
    peaks = np.zeros(40, np.float32)
    peaks[[3, 6, 30, 33]] = 1.0
    alphas = np.full(40, 0.1, np.float32)
    starts, ends = cif_token_times(alphas, 3, peaks=peaks)
    # token 1 spans 24 frames > 12: cut at 12; the last token ends halfway to the end
    # because 40 - 31.5 > 5 frames of trailing silence remain.
    assert starts == [1.5, 4.5, 28.5]
    assert ends == [4.5, 16.5, (40 + 31.5) / 2]
    starts, ends = cif_token_times(alphas[:35], 3, peaks=peaks[:35])
    assert ends[-1] == 35.0  # 35 - 31.5 <= 5: the last token runs to the last frame
    assert funasr_ms([7.5], [59.5]) == [[449, 3570]]  # int() truncates, as FunASR


def test_batch_lengths_torch_and_edge_cases():
    rng = np.random.default_rng(1)
    rows = [rng.uniform(0, 0.5, t).astype(np.float32) for t in (30, 17, 24)]
    padded = np.zeros((3, 30), np.float32)
    for b, r in enumerate(rows):
        padded[b, : r.size] = r
    counts = [6, 3, 5]
    batch = cif_token_times(torch.from_numpy(padded), counts, lengths=[30, 17, 24])
    assert batch == [cif_token_times(r, n) for r, n in zip(rows, counts, strict=True)]
    assert cif_token_times(rows[0], 0) == ([], [])
    # More tokens than frames can fire: every token still gets a (zero-length) span.
    starts, ends = cif_token_times(np.full(3, 0.5, np.float32), 5)
    assert len(starts) == len(ends) == 5 and ends[-1] >= starts[-1]
    with pytest.raises(ValueError, match="lengths"):
        cif_token_times(padded, counts, lengths=[31, 1, 1])
