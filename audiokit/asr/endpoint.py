"""Endpoint detection for streaming recognition: when does an utterance end?

The rules of WeNet/k2 (sherpa): each rule fires when

    (speech was seen or not rule.must_contain_speech)
    and trailing silence >= rule.min_trailing_silence
    and utterance length >= rule.min_utterance_length

and the utterance ends when any rule fires. Defaults (seconds):

- rule 1: 2.4 s of trailing silence with no speech yet (nothing said: start afresh);
- rule 2: 1.2 s of trailing silence after speech (the speaker paused: finalise);
- rule 3: an utterance of 20 s (cut, whatever the decoder is emitting).

"Silence" is decided per encoder output frame from the decoder: a CTC frame whose best token
is blank, or an RNN-T frame that emitted no token. Pure logic on boolean arrays; batched over
streams. The caller resets a stream (:meth:`EndpointDetector.reset`) after its endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audiokit.errors import ConfigError


@dataclass(frozen=True)
class EndpointRule:
    must_contain_speech: bool
    min_trailing_silence: float  # seconds
    min_utterance_length: float  # seconds

    def fires(
        self, speech_seen: np.ndarray, trailing_silence: np.ndarray, length: np.ndarray
    ) -> np.ndarray:
        """(B,) bool from (B,) bool / seconds / seconds."""
        ok = speech_seen | (not self.must_contain_speech)
        eps = 1e-9  # frame counts x frame length: 30 x 0.04 must reach 1.2
        return (
            ok
            & (trailing_silence + eps >= self.min_trailing_silence)
            & (length + eps >= self.min_utterance_length)
        )


@dataclass(frozen=True)
class EndpointConfig:
    rule1: EndpointRule = field(default_factory=lambda: EndpointRule(False, 2.4, 0.0))
    rule2: EndpointRule = field(default_factory=lambda: EndpointRule(True, 1.2, 0.0))
    rule3: EndpointRule = field(default_factory=lambda: EndpointRule(False, 0.0, 20.0))

    @classmethod
    def from_options(
        cls,
        silence_after_speech: float | None = None,
        max_utterance: float | None = None,
        silence_no_speech: float | None = None,
    ) -> EndpointConfig:
        """Defaults with the CLI's overrides (None keeps a default; 0 or less disables rule 3)."""
        d = cls()
        for name, v in (
            ("--endpoint-silence", silence_after_speech),
            ("--silence-no-speech", silence_no_speech),
        ):
            if v is not None and v <= 0:
                raise ConfigError(f"{name} {v:g} must be positive seconds, e.g. 1.2")
        r1 = d.rule1 if silence_no_speech is None else EndpointRule(False, silence_no_speech, 0.0)
        r2 = (
            d.rule2
            if silence_after_speech is None
            else EndpointRule(True, silence_after_speech, 0.0)
        )
        r3 = d.rule3
        if max_utterance is not None:
            # rule 3 off: an utterance length that is never reached
            r3 = EndpointRule(False, 0.0, max_utterance if max_utterance > 0 else float("inf"))
        return cls(r1, r2, r3)

    @property
    def rules(self) -> tuple[EndpointRule, EndpointRule, EndpointRule]:
        return (self.rule1, self.rule2, self.rule3)


class EndpointDetector:
    """Tracks B streams' utterances in encoder frames of `frame_s` seconds.

    Per stream: frames decoded since the last reset, and the index of the last speech frame
    (-1: none yet). :meth:`update` takes the next frames' speech flags and says which streams
    reached an endpoint (the flags of a whole chunk are applied before the rules are checked,
    as k2/WeNet check after each decoding step).
    """

    def __init__(self, config: EndpointConfig, frame_s: float, batch_size: int = 1) -> None:
        if frame_s <= 0:
            raise ConfigError(f"endpoint frame length {frame_s} s must be positive")
        self.config = config
        self.frame_s = frame_s
        self.num_frames = np.zeros(batch_size, dtype=np.int64)
        self.last_speech = np.full(batch_size, -1, dtype=np.int64)

    def update(self, speech: np.ndarray) -> np.ndarray:
        """`speech` (B, N) bool, True = the frame emitted a token. Returns (B,) endpoint flags."""
        speech = np.asarray(speech, dtype=bool)
        if speech.ndim == 1:
            speech = speech[None]
        n = speech.shape[1]
        if n:
            # index of the last True per row (-1 when none), offset by the frames before
            last = n - 1 - np.argmax(speech[:, ::-1], axis=1)
            has = speech.any(axis=1)
            self.last_speech = np.where(has, self.num_frames + last, self.last_speech)
            self.num_frames = self.num_frames + n
        return self.check()

    def check(self) -> np.ndarray:
        """(B,) whether any rule fires now."""
        seen = self.last_speech >= 0
        trailing = self.trailing_silence()
        length = self.num_frames * self.frame_s
        fired = np.zeros(self.num_frames.shape, dtype=bool)
        for rule in self.config.rules:
            fired |= rule.fires(seen, trailing, length)
        return fired & (self.num_frames > 0)

    def trailing_silence(self) -> np.ndarray:
        """(B,) seconds of silence at the end of each stream's current utterance."""
        seen = self.last_speech >= 0
        frames = np.where(seen, self.num_frames - 1 - self.last_speech, self.num_frames)
        return frames * self.frame_s

    def reset(self, streams: np.ndarray | None = None) -> None:
        """Start new utterances for the streams where `streams` (B,) is True (all when None)."""
        mask = np.ones_like(self.num_frames, dtype=bool) if streams is None else np.asarray(streams)
        self.num_frames = np.where(mask, 0, self.num_frames)
        self.last_speech = np.where(mask, -1, self.last_speech)


def ctc_speech_frames(log_probs, blank: int):
    """(B, T, V) CTC scores -> (B, T) bool: True where the best token is not blank."""
    return log_probs.argmax(-1) != blank


def rnnt_speech_frames(emitted_per_frame):
    """(B, T) tokens emitted per RNN-T frame -> (B, T) bool: True where a frame emitted any."""
    return emitted_per_frame > 0
