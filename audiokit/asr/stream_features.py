"""Incremental feature extraction: audio in chunks of any size -> the offline frontend's frames.

    feats = stream_features(frontend, batch_size=1)
    for block in blocks:                 # (B, S) float32 in [-1, 1], any S >= 0
        new = feats.accept(block)        # (B, F_new, D): frames completed by this block
    rest = feats.finish()                # (B, F_rest, D): the frames that need the signal's end

Concatenated, the outputs equal ``frontend(whole_signal)`` (same count, values within float
noise). Each call computes all newly complete frames at once over a short buffered tail; the
buffer keeps only the samples the next frames (and the end reflection) can touch.

A frame is complete when every sample it reads has arrived; frames near the end that read
edge padding wait for :meth:`finish`. All streams of a batch receive the same number of
samples per call (one microphone, or files fed in lockstep).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

import torch
from torch import Tensor

from audiokit.errors import ConfigError, FeatureError


class StreamFeatures(Protocol):
    """Incremental counterpart of a :class:`audiokit.features.frontend.Frontend`."""

    feature_dim: int
    frames_out: int  # frames returned so far (per stream)

    def accept(self, samples: Tensor) -> Tensor: ...

    def finish(self) -> Tensor: ...


class _SampleHistory:
    """The samples a stream has received: its first `keep_head` samples and a recent tail.

    Frames read absolute sample positions; the head serves edge reflection at the start,
    the tail everything else. ``buf`` (B, N) holds positions ``[buf_start, total)``.
    """

    def __init__(self, batch_size: int, keep_head: int, dtype: torch.dtype) -> None:
        self.head = torch.zeros(batch_size, 0, dtype=dtype)
        self.buf = torch.zeros(batch_size, 0, dtype=dtype)
        self.buf_start = 0
        self.total = 0
        self.keep_head = keep_head

    def append(self, x: Tensor) -> None:
        if self.head.shape[1] < self.keep_head:
            self.head = torch.cat([self.head, x[:, : self.keep_head - self.head.shape[1]]], 1)
        self.buf = torch.cat([self.buf, x], 1)
        self.total += x.shape[1]

    def drop_before(self, pos: int) -> None:
        """Forget tail samples before absolute position `pos` (the head stays)."""
        pos = max(self.buf_start, min(pos, self.total))
        self.buf = self.buf[:, pos - self.buf_start :]
        self.buf_start = pos

    def gather(self, index: Tensor) -> Tensor:
        """Samples at absolute positions `index` (N,) in [0, total): (B, N)."""
        in_head = index < self.buf_start
        if bool((index[in_head] >= self.head.shape[1]).any()):
            raise AssertionError("stream feature buffer dropped samples a frame still needs")
        head_len = self.head.shape[1]
        j = torch.where(in_head, index, index - self.buf_start + head_len)
        return torch.cat([self.head, self.buf], 1)[:, j]


def _check_chunk(samples: Tensor, batch_size: int) -> Tensor:
    if samples.dim() == 1:
        samples = samples[None]
    if samples.dim() != 2 or samples.shape[0] != batch_size:
        raise FeatureError(
            f"audio chunk has shape {tuple(samples.shape)}; pass (S,) or ({batch_size}, S) samples"
        )
    return samples.to(torch.float32)


# ---- Kaldi fbank -------------------------------------------------------------------------------


def _kaldi_reflect(index: Tensor, n: int) -> Tensor:
    """Kaldi's edge reflection (-1 -> 0, n -> n-1), repeated for very short signals."""
    m = torch.remainder(index, 2 * n)
    return torch.where(m >= n, 2 * n - 1 - m, m)


class KaldiFbankStream:
    """Streaming :class:`audiokit.features.frontend.FbankFrontend` (snip_edges true or false).

    Frame f reads samples ``[offset + f*shift, offset + f*shift + L)`` with offset 0
    (snip_edges) or ``shift//2 - L//2`` (reflected at the start; Kaldi's centred framing).
    Each frame is processed on its own, so a frame computed from the samples it reads equals
    the offline one: the ready frames are laid out as one contiguous signal and passed to the
    offline fbank with snip_edges=True, which frames it from sample 0.
    """

    def __init__(self, frontend, batch_size: int = 1) -> None:
        from audiokit.features.kaldi import fbank

        self._fbank = fbank
        self.opts = frontend.options
        frame = self.opts.frame
        self.frame = frame
        self.shift, self.length = frame.window_shift, frame.window_size
        self.offset = 0 if frame.snip_edges else self.shift // 2 - self.length // 2
        self.snip_opts = replace(self.opts, frame=replace(frame, snip_edges=True))
        self.batch_size = batch_size
        self.feature_dim = int(self.opts.mel.num_bins) + int(self.opts.use_energy)
        self.frames_out = 0
        self.hist = _SampleHistory(batch_size, self.length, torch.float32)
        self.finished = False

    def _compute(self, first: int, count: int, n_end: int | None) -> Tensor:
        """Frames [first, first + count) as (B, count, D); `n_end` = signal length at finish."""
        if count <= 0:
            return torch.zeros(self.batch_size, 0, self.feature_dim)
        start = self.offset + first * self.shift
        pos = torch.arange(start, start + (count - 1) * self.shift + self.length)
        if n_end is not None:
            pos = _kaldi_reflect(pos, n_end)
        elif start < 0:
            pos = torch.where(pos < 0, -pos - 1, pos)  # only the start reflects before the end
        segment = self.hist.gather(pos)
        feats, _ = self._fbank(segment, None, self.snip_opts)
        assert feats.shape[1] == count, (feats.shape, count)
        return feats

    def _advance(self, ready: int, n_end: int | None) -> Tensor:
        feats = self._compute(self.frames_out, ready - self.frames_out, n_end)
        self.frames_out = max(self.frames_out, ready)
        # keep what the next frame reads, and a window's worth for the end reflection
        next_start = self.offset + self.frames_out * self.shift
        self.hist.drop_before(min(next_start, self.hist.total - self.length - self.shift))
        return feats

    def accept(self, samples: Tensor) -> Tensor:
        """Append (B, S) samples; return the frames they complete, (B, F_new, D)."""
        if self.finished:
            raise FeatureError("stream features: accept() after finish(); start a new stream")
        self.hist.append(_check_chunk(samples, self.batch_size))
        n = self.hist.total
        ready = max(0, (n - self.offset - self.length) // self.shift + 1)
        return self._advance(ready, None)

    def finish(self) -> Tensor:
        """The remaining frames, which read past the end (reflected as offline), (B, F, D)."""
        from audiokit.features.kaldi_frames import num_frames

        self.finished = True
        n = self.hist.total
        if n == 0:
            return torch.zeros(self.batch_size, 0, self.feature_dim)
        return self._advance(int(num_frames(n, self.frame)), n)


# ---- NeMo mel ----------------------------------------------------------------------------------


class NemoMelStream:
    """Streaming :class:`audiokit.features.nemo_mel.NemoMel` (centred STFT, zero padding).

    Offline, the pre-emphasised signal y (``y[t] = x[t] - c*x[t-1]``, ``y[0] = x[0]``, zero
    outside ``[0, n)``) is framed with frame f centred on sample ``f*hop``: it reads
    ``[f*hop - n_fft//2, f*hop + n_fft//2)``. Pre-emphasis carries the last sample across
    chunks; the first frames read zeros on the left, the last ones (at finish) on the right.
    Per-utterance normalisation cannot stream, so only ``normalize: NA`` is accepted.
    """

    def __init__(self, frontend, batch_size: int = 1) -> None:
        o = frontend.opts
        if o.normalize in ("per_feature", "all_features"):
            raise ConfigError(
                f"frontend normalize={o.normalize} needs the whole utterance and cannot stream; "
                "use a model trained with normalize: NA"
            )
        if o.exact_pad:
            raise ConfigError(
                "frontend exact_pad=true cannot stream; use a centred (exact_pad: false) model"
            )
        self.frontend, self.opts = frontend, o
        self.batch_size = batch_size
        self.feature_dim = int(frontend.feature_dim)
        self.half = o.n_fft // 2
        self.frames_out = 0
        self.hist = _SampleHistory(batch_size, 0, torch.float32)
        self.last = torch.zeros(batch_size, 1)  # previous raw sample, for pre-emphasis
        self.finished = False

    def _compute(self, first: int, count: int, n_end: int | None) -> Tensor:
        """Frames [first, first + count) as (B, count, D); `n_end` = signal length at finish."""
        o = self.opts
        if count <= 0:
            return torch.zeros(self.batch_size, 0, self.feature_dim)
        start = first * o.hop_length - self.half
        pos = torch.arange(start, start + (count - 1) * o.hop_length + o.n_fft)
        inside = (pos >= 0) & (pos < (self.hist.total if n_end is None else n_end))
        segment = self.hist.gather(pos.clamp(min=0, max=max(self.hist.total - 1, 0)))
        segment = segment * inside  # zero padding outside the signal, as the offline STFT
        spec = torch.stft(
            segment,
            n_fft=o.n_fft,
            hop_length=o.hop_length,
            win_length=o.win_length,
            window=self.frontend.window,
            center=False,
            return_complex=True,
        )
        mag = torch.view_as_real(spec).pow(2).sum(-1).sqrt()  # (B, F, count)
        if o.mag_power != 1.0:
            mag = mag.pow(o.mag_power)
        feats = torch.matmul(self.frontend.filterbank, mag)  # (B, D, count)
        if o.log:
            from audiokit.features.nemo_mel import _guard_value

            guard = _guard_value(o.log_zero_guard_value, feats.dtype)
            if o.log_zero_guard_type == "add":
                feats = torch.log(feats + guard)
            else:
                feats = torch.log(torch.clamp(feats, min=guard))
        if o.frame_splicing > 1:
            feats = feats.repeat(1, o.frame_splicing, 1)
        return feats.transpose(1, 2)

    def _advance(self, ready: int, n_end: int | None) -> Tensor:
        feats = self._compute(self.frames_out, ready - self.frames_out, n_end)
        self.frames_out = max(self.frames_out, ready)
        self.hist.drop_before(self.frames_out * self.opts.hop_length - self.half)
        return feats

    def accept(self, samples: Tensor) -> Tensor:
        """Append (B, S) samples; return the frames they complete, (B, F_new, D)."""
        if self.finished:
            raise FeatureError("stream features: accept() after finish(); start a new stream")
        x = _check_chunk(samples, self.batch_size)
        if x.shape[1]:
            c = self.opts.preemph
            if c is not None:
                prev = torch.cat([self.last, x[:, :-1]], 1)
                y = x - c * prev
            else:
                y = x
            self.last = x[:, -1:]
            self.hist.append(y)
        ready = max(0, (self.hist.total - self.half) // self.opts.hop_length + 1)
        return self._advance(ready, None)

    def finish(self) -> Tensor:
        """The remaining valid frames, which read zeros past the end as offline, (B, F, D)."""
        self.finished = True
        n = self.hist.total
        if n == 0:
            return torch.zeros(self.batch_size, 0, self.feature_dim)
        return self._advance(self.frontend.num_frames(n), n)


# ---- dispatch ----------------------------------------------------------------------------------


def stream_features(frontend, batch_size: int = 1) -> StreamFeatures:
    """The incremental extractor for a frontend built by ``build_frontend``."""
    from audiokit.features.frontend import FbankFrontend

    if isinstance(frontend, FbankFrontend):
        return KaldiFbankStream(frontend, batch_size)
    from audiokit.features.nemo_mel import NemoMel

    if isinstance(frontend, NemoMel):
        return NemoMelStream(frontend, batch_size)
    kind = type(frontend).__name__
    raise ConfigError(
        f"frontend {kind} has no streaming implementation; stream with an fbank or nemo_mel model"
    )
