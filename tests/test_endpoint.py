"""Endpoint rules (WeNet/k2 style) on hand-made speech/silence frame patterns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audiokit.asr.endpoint import (
    EndpointConfig,
    EndpointDetector,
    EndpointRule,
    ctc_speech_frames,
    rnnt_speech_frames,
)
from audiokit.errors import ConfigError

FRAME = 0.04  # 40 ms encoder frames


def frames(pattern: str) -> np.ndarray:
    """'s' = speech frame, '.' = silence frame."""
    return np.array([c == "s" for c in pattern])


def test_rule1_silence_without_speech():
    det = EndpointDetector(EndpointConfig(), FRAME)
    assert not det.update(frames("." * 59))[0]  # 2.36 s < 2.4 s
    assert det.update(frames("."))[0]  # 60 frames = 2.4 s


def test_rule2_silence_after_speech_and_reset():
    det = EndpointDetector(EndpointConfig(), FRAME)
    assert not det.update(frames("..sss" + "." * 29))[0]  # 29 frames = 1.16 s after speech
    assert det.trailing_silence()[0] == pytest.approx(29 * FRAME)
    assert det.update(frames("."))[0]  # 1.2 s
    det.reset()
    assert det.num_frames[0] == 0 and det.last_speech[0] == -1
    assert not det.update(frames("s" + "." * 29))[0]


def test_speech_resets_the_trailing_silence_within_a_chunk():
    det = EndpointDetector(EndpointConfig(), FRAME)
    # 40 silent frames then speech at the end of the same chunk: no endpoint
    assert not det.update(frames("s" + "." * 40 + "s"))[0]
    assert det.trailing_silence()[0] == 0.0


def test_rule3_max_utterance_and_overrides():
    cfg = EndpointConfig.from_options(silence_after_speech=0.4, max_utterance=2.0)
    det = EndpointDetector(cfg, FRAME)
    assert not det.update(frames("s" * 49))[0]
    assert det.update(frames("s"))[0]  # 50 frames = 2.0 s, still speaking
    det.reset()
    assert not det.update(frames("s......"))[0]  # 0.24 s
    assert det.update(frames("...."))[0]  # 0.40 s of silence after speech
    off = EndpointDetector(EndpointConfig.from_options(max_utterance=0), FRAME)
    assert not off.update(frames("s" * 2000))[0]  # rule 3 disabled
    with pytest.raises(ConfigError, match="--endpoint-silence"):
        EndpointConfig.from_options(silence_after_speech=0)


def test_batched_streams_are_independent():
    det = EndpointDetector(EndpointConfig(rule3=EndpointRule(False, 0.0, 1e9)), FRAME, 3)
    chunk = np.stack([frames("s" + "." * 30), frames("." * 31), frames("." * 30 + "s")])
    assert det.update(chunk).tolist() == [True, False, False]
    det.reset(np.array([True, False, False]))
    assert det.num_frames.tolist() == [0, 31, 31]
    assert det.update(np.zeros((3, 30), bool)).tolist() == [False, True, True]


def test_empty_update_and_custom_rule():
    det = EndpointDetector(EndpointConfig(), FRAME)
    assert not det.update(np.zeros((1, 0), bool))[0]  # nothing decoded: never an endpoint
    rule = EndpointRule(True, 0.5, 1.0)
    seen, trailing, length = (
        np.array([True, False, True]),
        np.array([0.6, 9, 0.6]),
        np.array([1.0, 9, 0.9]),
    )
    assert rule.fires(seen, trailing, length).tolist() == [True, False, False]


def test_silence_from_decoder_outputs():
    blank = 4
    logp = torch.full((1, 5, 5), -9.0)
    best = torch.tensor([4, 1, 4, 4, 2])
    logp[0, torch.arange(5), best] = 0.0
    assert ctc_speech_frames(logp, blank).tolist() == [[False, True, False, False, True]]
    assert rnnt_speech_frames(torch.tensor([[0, 2, 0, 1]])).tolist() == [[False, True, False, True]]
