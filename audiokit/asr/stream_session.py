"""Live recognition of one audio stream: source -> features -> model.step -> text -> endpoints.

    session = StreamSession.from_model_dir("exp/packed", decoder="rnnt", att_context=(70, 6))
    for event in session.run(FileSource("a.wav", session.sample_rate, realtime=True)):
        ...  # Partial / Final / Chunk events, then one Done holding the whole transcript

Sources (:mod:`audiokit.asr.stream_sources`: :class:`FileSource`, :class:`MicSource`) deliver
blocks from a producer thread into a queue that the session reads, so a file paced with
``realtime`` and the microphone go through the same code; blocks are resampled to the model's
rate by a stateful soxr stream.

Endpoints (:mod:`audiokit.asr.endpoint`) split the transcript into segments, printed as finals.
By default the model's caches and decoder state carry on over an endpoint (as sherpa-onnx
does), so the whole transcript equals offline decoding; ``reset_at_endpoint`` starts the model
afresh instead (WeNet style: bounded state, each segment decoded on its own).

Streaming model API used (``audiokit.asr.streaming.StreamingConformer``)::

    state = model.init_state(batch_size, att_context=None | (L, R), decoder=None | "rnnt" | "ctc")
    new_ids, state = model.step(feats (B, T, D), lengths (B,), state)   # any T >= 0
    new_ids, state = model.flush(state)                                 # final remainder
    state.frames_done (B,) encoder frames decoded; state.starts[b] token starts (feature frames)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiokit.asr.endpoint import EndpointConfig, EndpointDetector
from audiokit.asr.stream_features import stream_features
from audiokit.asr.stream_sources import AudioSource, BlockResampler
from audiokit.errors import ConfigError

# ---- events ------------------------------------------------------------------------------------


@dataclass
class Partial:
    """The current segment's text so far (changes as tokens arrive)."""

    segment: int
    text: str
    token_ids: list[int]


@dataclass
class Final:
    """A segment ended (endpoint, or the end of the input)."""

    segment: int
    text: str
    token_ids: list[int]
    start: float  # seconds of audio
    end: float


@dataclass
class Chunk:
    """Per-block latency: compute time and how far the decoded audio lags the received audio."""

    index: int
    audio_s: float  # audio received so far (seconds)
    block_s: float  # audio in this block
    compute_s: float  # features + model step + text, wall-clock seconds
    decoded_s: float  # audio covered by decoded encoder frames
    new_tokens: int

    @property
    def lag_s(self) -> float:
        return self.audio_s - self.decoded_s


@dataclass
class Done:
    """The whole input: all segments concatenated, and latency totals."""

    text: str
    token_ids: list[int]
    tokens: list[str]
    token_times: list[float]
    segments: list[Final]
    duration: float
    chunks: list[Chunk] = field(default_factory=list)
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "tokens": self.tokens,
            "token_times": [round(t, 3) for t in self.token_times],
            "duration": round(self.duration, 3),
            "segments": [
                {"text": s.text, "start": round(s.start, 3), "end": round(s.end, 3)}
                for s in self.segments
            ],
        }


# ---- the session -------------------------------------------------------------------------------


class StreamSession:
    """Drives one stream through a streaming model (see the module doc); one session per run."""

    def __init__(
        self,
        model,
        frontend,
        tokenizer,
        sample_rate: int,
        decoder: str | None = None,
        att_context: Any = None,
        endpoint: EndpointConfig | None = None,
        reset_at_endpoint: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        for name in ("init_state", "step", "flush"):
            if not callable(getattr(model, name, None)):
                raise ConfigError(
                    f"{type(model).__name__} cannot stream (no {name}()); use a streaming model "
                    "(streaming_conformer, or an imported NeMo cache-aware model)"
                )
        self.model, self.frontend, self.tokenizer = model, frontend, tokenizer
        self.sample_rate = int(sample_rate)
        self.decoder, self.att_context = decoder, att_context
        self.device = torch.device(device)
        self.subsampling = int(getattr(model, "subsampling_factor", 1))
        self.frame_s = frontend.frame_shift_s * self.subsampling  # one encoder frame
        self.endpoint = endpoint or EndpointConfig()
        self.reset_at_endpoint = reset_at_endpoint
        self._new_state()  # validates decoder and context now, before any audio

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | Path,
        decoder: str | None = None,
        att_context: Any = None,
        device: str = "cpu",
        **kwargs: Any,
    ) -> StreamSession:
        """Decoder and context default to model.yaml's ``decoding`` (as ``asr transcribe``)."""
        from audiokit.features.frontend import build_frontend
        from audiokit.model_dir import load_model_dir, load_model_tokenizer

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model, cfg = load_model_dir(model_dir, device)
        dec = cfg.decoding or {}
        if decoder is None and dec.get("method") in ("rnnt", "ctc"):
            decoder = dec["method"]
        if att_context is None:
            att_context = (dec.get("options") or {}).get("att_context")
        return cls(
            model,
            build_frontend(cfg.frontend, cfg.sample_rate),
            load_model_tokenizer(cfg),
            cfg.sample_rate,
            decoder,
            att_context,
            device=device,
            **kwargs,
        )

    def _new_state(self) -> None:
        self.state = self.model.init_state(1, att_context=self.att_context, decoder=self.decoder)

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def _decode(
        self, feats: torch.Tensor, flush: bool
    ) -> tuple[list[int], list[float], np.ndarray]:
        """Feed (1, T, D) features (and flush the state when asked).

        Returns the new token ids, their start times (seconds of audio) and the speech flags of
        the newly decoded encoder frames (True: a token started there).
        """
        before = int(self.state.frames_done[0])
        ids, self.state = self.model.step(
            feats.to(self.device), torch.tensor([feats.shape[1]]), self.state
        )
        new = list(ids[0])
        if flush:
            more, self.state = self.model.flush(self.state)
            new += list(more[0])
        after = int(self.state.frames_done[0])
        starts = self.state.starts[0][len(self.state.starts[0]) - len(new) :]
        times = [self._base_s + s * self.frontend.frame_shift_s for s in starts]
        flags = np.zeros(max(after - before, 0), dtype=bool)
        hit = np.asarray([int(s) // self.subsampling - before for s in starts], dtype=np.int64)
        if len(flags) and len(hit):
            flags[np.clip(hit, 0, len(flags) - 1)] = True
        self._decoded_s = self._base_s + after * self.frame_s
        return new, times, flags

    def run(self, source: AudioSource) -> Iterator[Partial | Final | Chunk | Done]:
        """Recognise everything `source` delivers and yield events; the last is :class:`Done`.

        Ctrl-C (SIGINT, when run in the main thread) stops the source: the audio received so
        far is finished and flushed, and the final result still comes (``Done.interrupted``).
        """
        feats = stream_features(self.frontend, batch_size=1)
        resampler = BlockResampler(source.rate, self.sample_rate)
        detector = EndpointDetector(self.endpoint, self.frame_s)
        self._new_state()
        self._base_s = self._decoded_s = 0.0  # audio before the current model state (resets)
        all_ids: list[int] = []
        times: list[float] = []
        segments: list[Final] = []
        seg_ids: list[int] = []
        seg_start = 0.0
        received = fed = 0  # samples at the model's rate, feature frames given to the model
        chunks: list[Chunk] = []
        interrupted = threading.Event()
        restore = _on_sigint(lambda: (interrupted.set(), source.stop()))
        source.start()
        blocks = source.read()
        try:
            while True:
                block = next(blocks, None)
                last = block is None
                t0 = time.perf_counter()
                x = resampler(block if block is not None else np.zeros(0, np.float32), last)
                received += len(x)
                f = feats.accept(torch.from_numpy(np.ascontiguousarray(x))[None])
                if last:
                    f = torch.cat([f, feats.finish()], 1)
                fed += f.shape[1]
                new, new_times, flags = self._decode(f, flush=last)
                ended = bool(detector.update(flags[None])[0]) and not last
                if ended and self.reset_at_endpoint:
                    more, more_times, _ = self._decode(f[:, :0], flush=True)
                    new, new_times = new + more, new_times + more_times
                all_ids += new
                times += new_times
                seg_ids += new
                audio_s = received / self.sample_rate
                chunks.append(
                    Chunk(len(chunks), audio_s, len(x) / self.sample_rate,
                          time.perf_counter() - t0, min(self._decoded_s, audio_s), len(new))
                )  # fmt: skip
                yield chunks[-1]
                if new:
                    yield Partial(len(segments), self._text(seg_ids), list(seg_ids))
                if ended or (last and (seg_ids or not segments)):
                    end = audio_s if last else min(self._decoded_s, audio_s)
                    segments.append(
                        Final(len(segments), self._text(seg_ids), list(seg_ids), seg_start, end)
                    )
                    yield segments[-1]
                    seg_ids, seg_start = [], end
                    detector.reset()
                    if ended and self.reset_at_endpoint:
                        # a fresh state decodes the feature frames that follow
                        self._base_s = fed * self.frontend.frame_shift_s
                        self._new_state()
                if last:
                    break
        finally:
            source.stop()
            restore()
        yield Done(
            text=self._text(all_ids),
            token_ids=all_ids,
            tokens=self.tokenizer.token_list.symbols(all_ids),
            token_times=times,
            segments=segments,
            duration=received / self.sample_rate,
            chunks=chunks,
            interrupted=interrupted.is_set(),
        )


def _on_sigint(action) -> Any:
    """Run `action` on the first Ctrl-C (a second one interrupts as usual); returns a restorer.

    Signal handlers can only be set from the main thread; elsewhere this does nothing.
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        action()

    signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)
