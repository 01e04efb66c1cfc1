"""Speech recognition with a packed model dir: audio -> fbank -> CTC model -> decode -> text.

    from audiokit.asr.inference import Recognizer
    rec = Recognizer("exp/mini_en/packed")
    for r in rec.transcribe(["a.wav", "b.flac"]):
        print(r.path, r.text, r.token_times)

Audio of any format, rate and channel count is read as mono at the model's rate. All pieces
(whole short files, windows of long ones: see :mod:`audiokit.asr.long_form`) are sorted by
length and decoded in padded batches. Token times are the start of each token's first CTC
output frame: frame index x subsampling factor x frame shift (10 ms), plus the window offset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from audiokit.asr.hypothesis import Hypothesis
from audiokit.asr.long_form import Window, merge_windows, plan_windows
from audiokit.errors import AudiokitError, ConfigError, FeatureError
from audiokit.features.frontend import build_frontend
from audiokit.model_dir import load_model_dir, load_model_tokenizer

# A path, samples at the model's rate ((T,) or (C, T)), or (samples, sample_rate).
AudioInput = Union[str, os.PathLike, np.ndarray, tuple[np.ndarray, int]]  # noqa: UP007


@dataclass
class Result:
    """One input's transcript; `error` is set (and the rest empty) when it failed."""

    path: str
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    token_times: list[float] = field(default_factory=list)  # start, seconds, per token
    duration: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # model extras, e.g. detected language
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        d = asdict(self)
        d.pop("error")
        d.update(d.pop("info"))
        d["token_times"] = [round(t, 3) for t in self.token_times]
        d["duration"] = round(self.duration, 3)
        return d


@dataclass
class _Piece:
    item: int  # input index
    window: Window


class Recognizer:
    """Transcribe audio with a packed model dir (``audiokit model pack``).

    `decoder`/`beam_size`/`window_s`/`overlap_s` default to model.yaml's ``decoding`` section.
    Batches hold at most `max_batch_size` pieces and `max_batch_seconds` of padded audio;
    inputs are read `files_per_chunk` at a time (all windows of a chunk's files are batched).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        device: str = "cpu",
        decoder: str | None = None,
        beam_size: int | None = None,
        window_s: float | None = None,
        overlap_s: float | None = None,
        max_batch_size: int = 16,
        max_batch_seconds: float = 480.0,
        files_per_chunk: int = 64,
        options: dict[str, Any] | None = None,
    ) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA device is visible; use cpu")
        self.device = torch.device(device)
        self.model, self.config = load_model_dir(model_dir, self.device)
        self.tokenizer = load_model_tokenizer(self.config)
        if hasattr(self.model, "set_tokenizer"):  # models that encode text prompts
            self.model.set_tokenizer(self.tokenizer)
        self.frontend = build_frontend(self.config.frontend, self.config.sample_rate)
        dec = self.config.decoding
        known = tuple(getattr(self.model, "decoders", ("greedy",)))
        # a model.yaml's default method may predate the model's own names (e.g. "greedy")
        default = dec.get("method") if dec.get("method") in known else known[0]
        self.decoder = decoder or default
        if self.decoder not in known:
            raise ConfigError(
                f"decoder '{self.decoder}' is unknown for {self.config.architecture}; "
                f"use {' or '.join(known)}"
            )
        self.beam_size = int(beam_size or dec["beam_size"])
        self.options = {**(dec.get("options") or {}), **(options or {})}
        self.window_s = float(window_s if window_s is not None else dec["window_s"])
        self.overlap_s = float(overlap_s if overlap_s is not None else dec["overlap_s"])
        if self.window_s <= 2 * self.overlap_s:
            raise ConfigError(
                f"window {self.window_s:g} s must exceed twice the overlap {self.overlap_s:g} s"
            )
        self.sample_rate = self.config.sample_rate
        self.subsampling = int(getattr(self.model, "subsampling_factor", 1))
        self.feature_frame_s = self.frontend.frame_shift_s
        self.frame_s = self.feature_frame_s * self.subsampling
        self.align = self.frontend.frame_shift * self.subsampling
        self.min_frames = int(getattr(self.model, "min_input_frames", 1))
        self.max_batch_size = max_batch_size
        self.max_batch_samples = int(max_batch_seconds * self.sample_rate)
        self.files_per_chunk = max(1, files_per_chunk)

    # ---- audio -------------------------------------------------------------------------------
    def load_audio(self, item: AudioInput) -> tuple[str, np.ndarray]:
        """(name, mono float32 samples (T,) at the model's rate)."""
        from audiokit.audio import load, resample

        if isinstance(item, str | os.PathLike):
            samples, _ = load(Path(item), sample_rate=self.sample_rate, channel="mix")
            return str(item), samples
        rate = self.sample_rate
        if isinstance(item, tuple):
            item, rate = item
        x = np.asarray(item, dtype=np.float32)
        if x.ndim == 2:
            x = x.mean(axis=0)  # (C, T) -> mono
        if x.ndim != 1:
            raise ConfigError(f"audio array has shape {x.shape}; pass (T,) or (C, T) samples")
        if rate != self.sample_rate:
            x = resample(x, rate, self.sample_rate)
        return "<array>", x

    def check_length(self, name: str, n: int) -> None:
        if self.frontend.num_frames(n) < self.min_frames:
            need = (self.min_frames * self.frontend.frame_shift + 1) / self.sample_rate
            raise FeatureError(
                f"{name}: {n / self.sample_rate:.3f} s of audio is too short for this model "
                f"(needs about {need:.3f} s); pad it or skip the file"
            )

    # ---- recognition -------------------------------------------------------------------------
    def transcribe(
        self,
        inputs: Sequence[AudioInput],
        on_error: str = "raise",
        progress: Callable[[int], None] | None = None,
    ) -> list[Result]:
        """One :class:`Result` per input, in order.

        `on_error="raise"` raises the first input's error; `"keep"` returns it in
        ``Result.error`` and goes on with the others. `progress(n)` is told each decoded piece.
        """
        if on_error not in ("raise", "keep"):
            raise ConfigError(f"on_error={on_error!r}; use 'raise' or 'keep'")
        results: list[Result] = []
        for first in range(0, len(inputs), self.files_per_chunk):  # bounds audio held in memory
            names: list[str] = []
            waves: list[np.ndarray | None] = []
            errors: list[str | None] = []
            for i, item in enumerate(inputs[first : first + self.files_per_chunk], first):
                name = str(item) if isinstance(item, str | os.PathLike) else f"<array {i}>"
                try:
                    wave = self.load_audio(item)[1]
                    self.check_length(name, len(wave))
                    waves.append(wave)
                    errors.append(None)
                except (AudiokitError, OSError) as e:
                    if on_error == "raise":
                        raise
                    waves.append(None)
                    errors.append(str(e) if isinstance(e, AudiokitError) else f"{name}: {e}")
                names.append(name)
            results.extend(self.transcribe_waves(names, waves, errors, progress))
        return results

    def transcribe_waves(
        self,
        names: list[str],
        waves: list[np.ndarray | None],
        errors: list[str | None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> list[Result]:
        """Decode mono samples at the model's rate (None entries carry `errors[i]`)."""
        errors = errors or [None] * len(waves)
        plans: dict[int, list[Window]] = {}
        pieces: list[_Piece] = []
        for i, wave in enumerate(waves):
            if wave is None:
                continue
            plans[i] = plan_windows(
                len(wave), self.sample_rate, self.window_s, self.overlap_s, self.align
            )
            pieces.extend(_Piece(i, w) for w in plans[i])
        decoded: dict[tuple[int, int], tuple[list[int], list[float]]] = {}
        infos: dict[int, dict[str, Any]] = {}
        for batch in self._batches(pieces):
            out = self._decode_batch([waves[p.item][p.window.start : p.window.end] for p in batch])
            for p, hyp in zip(batch, out, strict=True):
                offset = p.window.start / self.sample_rate
                times = [offset + f * self.feature_frame_s for f in hyp.starts]
                decoded[(p.item, p.window.start)] = (hyp.token_ids, times)
                if p.window.start == 0:  # extras (e.g. the language) come from the first window
                    infos[p.item] = hyp.info
            if progress is not None:
                progress(len(batch))
        results = []
        for i, name in enumerate(names):
            if waves[i] is None:
                results.append(Result(name, error=errors[i] or "unknown error"))
                continue
            windows = plans[i]
            parts = [decoded[(i, w.start)] for w in windows]
            ids, times = (
                parts[0] if len(parts) == 1 else merge_windows(parts, windows, self.frame_s)
            )
            results.append(
                Result(
                    path=name,
                    text=self.tokenizer.decode(ids),
                    token_ids=ids,
                    tokens=self.tokenizer.token_list.symbols(ids),
                    token_times=times,
                    duration=len(waves[i]) / self.sample_rate,
                    info=dict(infos.get(i, {})),
                )
            )
        return results

    def _batches(self, pieces: list[_Piece]) -> list[list[_Piece]]:
        """Longest first; a batch grows while (count x longest) stays in the sample budget."""
        order = sorted(pieces, key=lambda p: p.window.end - p.window.start, reverse=True)
        batches: list[list[_Piece]] = []
        for p in order:
            cur = batches[-1] if batches else None
            longest = cur[0].window.end - cur[0].window.start if cur else 0
            if (
                cur
                and len(cur) < self.max_batch_size
                and (len(cur) + 1) * longest <= self.max_batch_samples
            ):
                cur.append(p)
            else:
                batches.append([p])
        return batches

    @torch.inference_mode()
    def _decode_batch(self, waves: list[np.ndarray]) -> list[Hypothesis]:
        """The model's best hypothesis for each waveform of one batch."""
        lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
        padded = torch.zeros((len(waves), int(lengths.max())), dtype=torch.float32)
        for i, w in enumerate(waves):  # packing only
            padded[i, : len(w)] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        feats, num_frames = self.frontend(padded.to(self.device), lengths.to(self.device))
        return self.model.recognize(
            feats, num_frames, method=self.decoder, beam_size=self.beam_size, **self.options
        )
