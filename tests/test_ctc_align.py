"""CTC forced alignment (word times) and OWSM-CTC long-form merging, with the ESPnet fixture model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiokit.asr.ctc_align import align_audio, align_tokens, group_words, word_spans
from audiokit.asr.long_form import Window, merge_windows, plan_windows
from audiokit.errors import ScoringError
from tests.conftest import run_main, shared_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")
INPUTS = ("librivox_0870", "cards_002", "aishell_BAC009S0764W0121")


def test_align_tokens_recovers_a_known_alignment():
    # 12 frames, vocabulary {blank, a, b, c}: a on 2-3, b on 5, b again on 7-8 (blank between), c 10
    path = [0, 0, 1, 1, 0, 2, 0, 2, 2, 0, 3, 0]
    logits = torch.full((12, 4), -4.0)
    logits[torch.arange(12), torch.tensor(path)] = 4.0
    spans = align_tokens(torch.log_softmax(logits, -1), [1, 2, 2, 3], blank_id=0)
    assert [(s.token_id, s.start, s.end) for s in spans] == [
        (1, 2, 4),
        (2, 5, 6),
        (2, 7, 9),
        (3, 10, 11),
    ]
    assert all(0.9 < s.score <= 1.0 for s in spans)
    # the text, not the argmax, decides: force "c a" onto the same frames
    forced = align_tokens(torch.log_softmax(logits, -1), [3, 1], blank_id=0)
    assert [s.token_id for s in forced] == [3, 1] and forced[0].end <= forced[1].start
    with pytest.raises(ScoringError, match="too long for this audio"):
        align_tokens(torch.log_softmax(logits[:3], -1), [1, 2, 2, 3], blank_id=0)


def test_words_from_pieces_and_times():
    pieces = ["<eng>", "\u2581HE", "LLO", "\u2581", "W", "OR", "LD", "\u2581", "你", "好", "<unk>"]
    words = group_words(pieces)
    assert [w for w, _ in words] == ["HELLO", "WORLD", "你", "好", "<unk>"]
    spans = align_tokens(torch.log_softmax(torch.randn(40, 12), -1), list(range(1, 12)), 0)
    times = word_spans(spans, pieces, frame_s=0.04)
    assert times[0].start == pytest.approx(spans[1].start * 0.04)
    assert times[1].end == pytest.approx(spans[6].end * 0.04)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(times, times[1:], strict=False))


@pytest.fixture(scope="module")
def owsm_dir(tmp_path_factory):
    from audiokit.importers.espnet import import_model

    src = shared_path("fixtures", "espnet_owsm_ctc") / "model"
    return import_model(src, tmp_path_factory.mktemp("owsm") / "model")


def _inputs() -> list[str]:
    root = shared_path("fixtures", "espnet_owsm_ctc") / "inputs"
    return [str(root / f"{name}.wav") for name in INPUTS]


def test_align_own_greedy_output_gives_monotone_words_inside_the_audio(owsm_dir, capsys):
    from audiokit.asr.inference import Recognizer

    rec = Recognizer(owsm_dir, options={"lang": "eng", "task": "asr"})
    for path in _inputs()[:2]:
        greedy = rec.transcribe([path])[0]
        a = align_audio(rec, path)
        plain = [
            i for i, t in zip(greedy.token_ids, greedy.tokens, strict=True) if not t.startswith("<")
        ]
        assert rec.tokenizer.encode(a.text) or a.text == ""
        assert a.text == rec.tokenizer.decode(plain)
        assert a.words, "the fixture model emits words for every input"
        starts = [w.start for w in a.words]
        assert starts == sorted(starts)
        assert all(0.0 <= w.start < w.end <= greedy.duration + rec.frame_s for w in a.words)
        assert all(a.end <= b.start + 1e-9 for a, b in zip(a.words, a.words[1:], strict=False))
    # CLI: the same through `audiokit asr align`, with a given text
    code, out, _ = run_main(
        capsys,
        "asr",
        "align",
        "--model",
        str(owsm_dir),
        "--lang",
        "eng",
        "--text",
        "he was",
        _inputs()[1],
    )
    assert code == 0
    row = json.loads(out.strip().splitlines()[-1])
    assert [w["word"] for w in row["words"]] == ["he", "was"]
    assert 0.0 <= row["words"][0]["start"] < row["words"][1]["start"] < 1.97


def test_merge_drops_each_later_window_prefix_tokens():
    # windows of 10 s with 2 s context each side over 26 s; the model's <lang><task> tokens
    # (ids 5, 9) come out at each window's first output frame = the window start time
    windows = plan_windows(26 * 100, 100, 10.0, 2.0, align=4)
    assert [(w.start, w.end) for w in windows] == [
        (0, 1000),
        (600, 1600),
        (1200, 2200),
        (1600, 2600),
    ]
    speech = {0.5 * k: 100 + k for k in range(1, 52)}  # one token every 0.5 s, 0.5 .. 25.5 s
    pieces = []
    for w in windows:
        lo, hi = w.start / 100, w.end / 100
        ids, times = [5, 9], [lo, lo]
        for t, tok in speech.items():
            if lo <= t < hi:
                ids.append(tok)
                times.append(t)
        pieces.append((ids, times))
    ids, times = merge_windows(pieces, windows, frame_s=0.04)
    assert ids == [5, 9, *speech.values()]  # prefix once, every speech token exactly once
    assert times == sorted(times)


def test_owsm_long_form_windows_batch_and_merge(owsm_dir):
    from audiokit.asr.inference import Recognizer
    from audiokit.audio import load

    waves = [load(p, sample_rate=16000)[0] for p in _inputs()]
    long = np.concatenate([*waves, *waves]).astype(np.float32)  # 26.5 s
    rec = Recognizer(owsm_dir, window_s=8.0, overlap_s=1.5, options={"lang": "eng"})
    windows = plan_windows(len(long), 16000, 8.0, 1.5, rec.align)
    assert len(windows) == 5
    result = rec.transcribe_waves(["long"], [long])[0]
    # expected: each window decoded alone; its own tokens kept; prefix tokens of window 0 only
    model, expected = rec.model, []
    for i, w in enumerate(windows):
        seg = torch.from_numpy(long[w.start : w.end])[None]
        feats, n = rec.frontend(seg, torch.tensor([seg.shape[1]]))
        lp, lengths, k = model.ctc_log_probs(feats, n, lang="eng")
        best = lp[0, : int(lengths[0])].argmax(-1)
        first = torch.cat([torch.tensor([True]), best[1:] != best[:-1]])
        for f in torch.nonzero(first & (best != 0))[:, 0].tolist():
            t = w.start / 16000 + max(f - k, 0) * rec.frame_s
            if f < k and i > 0:
                assert not (w.own_start <= t < w.own_end)  # in the left context: dropped
            if w.own_start <= t < w.own_end:
                expected.append((int(best[f]), t))
    assert result.token_ids == [tok for tok, _ in expected]
    assert result.token_times == pytest.approx([t for _, t in expected])
    assert result.duration == pytest.approx(len(long) / 16000)


def test_window_ownership_has_no_gap_or_overlap():
    windows = plan_windows(16000 * 95, 16000, 30.0, 2.0, align=1280)
    assert windows[0].own_start == 0.0 and windows[-1].own_end == float("inf")
    for a, b in zip(windows, windows[1:], strict=False):
        assert isinstance(a, Window) and a.own_end == b.own_start
        assert b.start / 16000 < b.own_start < a.end / 16000  # seam inside the overlap
