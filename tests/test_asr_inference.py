"""Recognizer: any audio format/rate/channels, batching, long-form windows, token times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.asr.decode import ctc_greedy_search, ctc_token_start_frames
from audiokit.asr.inference import Recognizer
from audiokit.asr.long_form import Window, merge_windows, plan_windows
from audiokit.audio import resample
from audiokit.errors import FeatureError
from tests.test_model_dir import make_model_dir


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inf")
    conformer = make_model_dir(root, num_layers=1)
    local = make_model_dir(root, num_layers=0, data=root / "data")
    waves = [sf.read(p, dtype="float32")[0] for p in sorted((root / "data" / "wav").glob("*.wav"))]
    return {"conformer": conformer, "local": local, "waves": waves, "root": root}


def test_formats_rates_and_channels(dirs, tmp_path):
    rec = Recognizer(dirs["conformer"])
    x = dirs["waves"][0]
    sf.write(tmp_path / "a.wav", x, 16000, subtype="PCM_16")
    sf.write(tmp_path / "a.flac", x, 16000, subtype="PCM_16")
    sf.write(tmp_path / "stereo.wav", np.stack([x, x], axis=1), 16000, subtype="PCM_16")
    sf.write(tmp_path / "a44.wav", resample(x, 16000, 44100), 44100)
    names = ["a.wav", "a.flac", "stereo.wav", "a44.wav"]
    results = rec.transcribe([tmp_path / n for n in names])
    assert [Path(r.path).name for r in results] == names
    base = results[0]
    assert (
        base.error is None and base.token_ids and base.text == rec.tokenizer.decode(base.token_ids)
    )
    assert base.tokens == rec.tokenizer.token_list.symbols(base.token_ids)
    assert base.duration == pytest.approx(len(x) / 16000)
    for r in results[1:3]:  # lossless copies of the same samples
        assert r.token_ids == base.token_ids and r.token_times == base.token_times
    r44 = results[3]
    assert r44.error is None and r44.duration == pytest.approx(base.duration, abs=1e-3)
    # resampled twice, so not bit-equal; the transcript must still be mostly the same
    same = sum(a == b for a, b in zip(r44.token_ids, base.token_ids, strict=False))
    assert same >= 0.5 * len(base.token_ids)
    # arrays: (T,) at the model rate, or (samples, rate)
    arr = rec.transcribe([x, (x, 16000)])
    assert arr[0].token_ids == base.token_ids == arr[1].token_ids


def test_batching_does_not_change_results(dirs):
    rec = Recognizer(dirs["conformer"])
    waves = dirs["waves"]
    together = rec.transcribe(waves)
    alone = [rec.transcribe([w])[0] for w in waves]
    chunked = Recognizer(dirs["conformer"], files_per_chunk=2, max_batch_size=2).transcribe(waves)
    for a, b, c in zip(together, alone, chunked, strict=True):
        assert a.token_ids == b.token_ids == c.token_ids
        assert a.token_times == pytest.approx(b.token_times)


def test_token_times_are_increasing_and_inside(dirs):
    for decoder in ("greedy", "prefix_beam"):
        rec = Recognizer(dirs["conformer"], decoder=decoder, beam_size=4)
        for r in rec.transcribe(dirs["waves"]):
            t = np.asarray(r.token_times)
            assert len(t) == len(r.token_ids) > 0
            assert (np.diff(t) > 0).all() and t[0] >= 0 and t[-1] < r.duration
            assert np.allclose(t / 0.04, np.round(t / 0.04))  # whole output frames of 40 ms


def test_viterbi_start_frames_match_greedy_path():
    torch.manual_seed(1)
    log_probs = torch.randn(3, 40, 6).mul(3).log_softmax(-1)
    lengths = torch.tensor([40, 25, 1])
    ids, frames = ctc_greedy_search(log_probs, lengths, return_frames=True)
    assert ctc_token_start_frames(log_probs, lengths, ids) == frames
    # a forced sequence: starts strictly increase and leave room for the rest
    forced = ctc_token_start_frames(log_probs[:1], lengths[:1], [[1, 1, 2]])[0]
    assert len(forced) == 3 and forced[0] < forced[1] - 1 < forced[2] - 1  # blank between 1 1


def test_long_file_windows_equal_a_single_pass(dirs):
    """With a model that sees only 7 input frames per output frame, windowed decoding must
    reproduce a single pass exactly: no token lost or duplicated at window borders."""
    x = np.concatenate(dirs["waves"])  # ~11 s
    single = Recognizer(dirs["local"], window_s=1000).transcribe([x])[0]
    rec = Recognizer(dirs["local"], window_s=3.0, overlap_s=0.6)
    windows = plan_windows(len(x), 16000, 3.0, 0.6, rec.align)
    assert len(windows) >= 4
    windowed = rec.transcribe([x])[0]
    assert len(single.token_ids) > 50
    assert windowed.token_ids == single.token_ids
    assert windowed.token_times == pytest.approx(single.token_times)
    # several long files at once (all windows of all files batched) give the same
    both = rec.transcribe([x, x[: 16000 * 7]])
    assert both[0].token_ids == single.token_ids
    assert (
        both[1].token_ids
        == Recognizer(dirs["local"], window_s=1000).transcribe([x[: 16000 * 7]])[0].token_ids
    )


def test_plan_windows_cover_and_partition():
    sr, n = 16000, 16000 * 65 + 123
    ws = plan_windows(n, sr, 30.0, 2.0, align=640)
    assert ws[0].start == 0 and ws[-1].end == n and ws[0].own_start == 0.0
    assert all(w.start % 640 == 0 for w in ws)
    assert all(b.start < a.end for a, b in zip(ws, ws[1:], strict=False))  # overlapping
    assert all(a.own_end == b.own_start for a, b in zip(ws, ws[1:], strict=False))
    for w in ws:  # each owns a stretch inside itself, at least `overlap` from inner edges
        assert w.own_start >= w.start / sr and min(w.own_end, n / sr) <= w.end / sr
    assert plan_windows(100, sr, 30.0, 2.0) == [Window(0, 100, 0.0, float("inf"))]


def test_merge_drops_border_duplicates_but_keeps_real_repeats():
    ws = [Window(0, 100, 0.0, 1.0), Window(50, 150, 1.0, float("inf"))]
    # token 5 seen by both windows one frame apart around the 1.0 s boundary
    left = ([3, 5], [0.50, 0.98])
    right = ([5, 5, 7], [1.02, 1.10, 1.30])  # 1.02 duplicate; 1.10 a real repeat (2 frames on)
    ids, times = merge_windows([left, right], ws, frame_s=0.04)
    assert ids == [3, 5, 5, 7] and times == pytest.approx([0.50, 0.98, 1.10, 1.30])


def test_too_short_audio_is_a_clear_error(dirs, tmp_path):
    rec = Recognizer(dirs["conformer"])
    sf.write(tmp_path / "short.wav", np.zeros(800, np.float32), 16000)
    with pytest.raises(FeatureError, match=r"short\.wav: 0\.050 s of audio is too short"):
        rec.transcribe([tmp_path / "short.wav"])
    res = rec.transcribe([tmp_path / "short.wav", dirs["waves"][0]], on_error="keep")
    assert "too short" in res[0].error and res[1].error is None and res[1].token_ids
