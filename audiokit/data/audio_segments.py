"""Fixed-length waveform segments for codec training: dataset, fixed-size batch sampler, collate.

Codecs train on short random crops of the audio (DAC: 0.38 s at 44.1 kHz), not whole
utterances, skipping near-silent crops (``min_db``, as DAC's loudness cut-off). :class:`AudioSegmentDataset` crops item ``i`` of epoch ``e`` at an offset drawn from
a generator seeded by ``(seed, e, i)`` only (as :class:`audiokit.data.dataset.AsrDataset`), so
workers, order and resuming never change an item. Utterances shorter than the segment are
zero-padded (their true length is kept in ``feat_lengths``). Audio at another rate is resampled
on load.

With a tokenizer (QDAC: transcripts supervise the latents) a crop would no longer match its
transcript, so items are whole utterances instead; those longer than the segment length are
left out (with a warning), and batches are padded to their longest item.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from audiokit.data.collate import PinnableBatch
from audiokit.data.data_dir import DataDir
from audiokit.data.dataset import item_generator
from audiokit.data.sampler import epoch_rng
from audiokit.errors import AudioError, AudiokitError, ConfigError, DataDirError
from audiokit.train.interface import IGNORE_ID, Batch

if TYPE_CHECKING:
    from audiokit.text import Tokenizer

log = logging.getLogger(__name__)


class AudioSegmentDataset(torch.utils.data.Dataset):
    """Waveform segments of a Kaldi data dir (``wav.scp``, optional ``segments``/``text``).

    Item: ``{"utt_id", "feats": (S,) float32 (or (C, S) for channels > 1), "length": valid
    samples, "targets": (U,) int64}``; S is the segment length except for whole utterances.

    Args:
        data_dir: a Kaldi data dir (path or :class:`DataDir`).
        sample_rate: the codec's rate; audio is resampled to it.
        segment_seconds: crop length (training: random offset; ``training=False``: the
            centre crop, deterministic). With a tokenizer: the longest utterance kept.
        seed: base of the per-item generators.
        tokenizer: gives text targets and switches to whole utterances (see the module doc).
        channels: 1 mixes multi-channel audio down; C > 1 needs C-channel audio.
        min_db: crops are drawn among those whose mean power is at least this many dBFS
            (DAC's salient excerpts: silent crops teach nothing, and the discriminators'
            peak normalisation amplifies near-silence); None: any crop.
        allow_pipe: run piped wav.scp commands (only for data you trust).
        skip_bad: unreadable audio gives None (dropped by :func:`collate_segments`) with a
            warning, instead of raising AudioError.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike | DataDir,
        sample_rate: int,
        segment_seconds: float,
        seed: int = 0,
        tokenizer: Tokenizer | None = None,
        channels: int = 1,
        min_db: float | None = -40.0,
        allow_pipe: bool = False,
        skip_bad: bool = False,
    ) -> None:
        if segment_seconds is None or segment_seconds <= 0:
            raise ConfigError(f"segment_seconds={segment_seconds} must be > 0, e.g. 0.5")
        if seed < 0:
            raise ConfigError(f"seed={seed} must be non-negative")
        if channels < 1:
            raise ConfigError(f"channels={channels} must be >= 1")
        self.data = data_dir if isinstance(data_dir, DataDir) else DataDir.load(data_dir)
        self.sample_rate, self.seed, self.channels = int(sample_rate), int(seed), int(channels)
        self.segment_samples = max(1, round(segment_seconds * self.sample_rate))
        self.tokenizer, self.allow_pipe, self.skip_bad = tokenizer, allow_pipe, skip_bad
        self.min_db = None if min_db is None else float(min_db)
        self.training, self.epoch = True, 0
        self.utt_ids = list(self.data.utt_ids)
        self.whole = tokenizer is not None
        if self.whole:
            self._check_text()
            self.utt_ids = self._short_enough(segment_seconds)
        if not self.utt_ids:
            raise DataDirError(f"{self.data.path}: no utterances to train on; check the data dir")
        self._warned: set[str] = set()

    def _check_text(self) -> None:
        if self.data.text is None:
            raise DataDirError(
                f"{self.data.path}: no text file, but a tokenizer was given; add transcripts "
                "or leave data.tokenizer empty for codecs without text supervision"
            )
        missing = [u for u in self.utt_ids if u not in self.data.text]
        if missing:
            raise DataDirError(
                f"{self.data.path}: {len(missing)} utterance(s) have no transcript (first "
                f"'{missing[0]}'); run `audiokit data fix` to drop them"
            )

    def _short_enough(self, max_seconds: float) -> list[str]:
        """Utterances no longer than `max_seconds` (durations from the data dir or headers)."""
        known = {u: self.data.duration(u) for u in self.utt_ids}
        if any(d is None or d < 0 for d in known.values()):
            infos = self.data.recording_infos(allow_pipe=self.allow_pipe, progress=False)
            for u, d in known.items():
                if d is None or d < 0:
                    info = infos[self.data.recording_of(u)]
                    if isinstance(info, Exception):
                        raise AudioError(f"utterance '{u}': {info}") from info
                    seg = self.data.utterance(u)
                    end = info.duration if seg.end is None or seg.end < 0 else seg.end
                    known[u] = max(0.0, min(end, info.duration) - seg.start)
        keep = [u for u in self.utt_ids if known[u] <= max_seconds + 1e-6]
        if len(keep) < len(self.utt_ids):
            log.warning(
                "%s: %d of %d utterances are longer than data.segment_seconds=%g and are left "
                "out (whole utterances are used with text targets); raise segment_seconds to "
                "keep them", self.data.path, len(self.utt_ids) - len(keep), len(self.utt_ids),
                max_seconds,
            )  # fmt: skip
        return keep

    def set_epoch(self, epoch: int) -> None:
        """Epoch whose crops items use; call before each epoch (workers copy it at start)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.utt_ids)

    def _load(self, utt: str) -> np.ndarray:
        """(C, T) float32 at `sample_rate`."""
        if self.channels == 1:  # multi-channel audio is mixed down
            samples, _ = self.data.load_audio(utt, self.sample_rate, allow_pipe=self.allow_pipe)
        else:
            from audiokit.audio import load_scp_entry

            u = self.data.utterance(utt)
            samples, _ = load_scp_entry(
                u.entry, self.data.base_dir, sample_rate=self.sample_rate, channel="all",
                start=u.start, end=u.end, allow_pipe=self.allow_pipe, key=u.recording,
            )  # fmt: skip
        x = np.atleast_2d(np.asarray(samples, dtype=np.float32))
        if x.shape[0] != self.channels:
            raise AudioError(
                f"utterance '{utt}': {x.shape[0]} channel(s), the codec takes {self.channels}; "
                "convert the audio or set the model's channels to match"
            )
        return x

    def _loud_offsets(self, x: np.ndarray) -> np.ndarray | None:
        """Crop offsets whose mean power is >= `min_db` dBFS (None: no threshold or none is)."""
        if self.min_db is None:
            return None
        seg = self.segment_samples
        power = np.square(x, dtype=np.float64).mean(axis=0)
        total = np.concatenate([[0.0], np.cumsum(power)])
        mean_power = (total[seg:] - total[:-seg]) / seg  # (T - seg + 1,): every crop at once
        ok = np.flatnonzero(mean_power >= 10.0 ** (self.min_db / 10.0))
        return ok if ok.size else None

    def _crop(self, x: np.ndarray, gen: torch.Generator) -> tuple[np.ndarray, int]:
        """(C, T) -> (C, segment) and the valid length.

        Training: a uniform offset among the crops louder than `min_db` (all crops when the
        utterance has none); validation: the loud crop nearest the centre.
        """
        seg, t = self.segment_samples, x.shape[-1]
        if t <= seg:
            return np.pad(x, ((0, 0), (0, seg - t))), t
        loud = self._loud_offsets(x)
        if self.training:
            count = t - seg + 1 if loud is None else loud.size
            pick = int(torch.randint(count, (1,), generator=gen))  # one draw either way
            offset = pick if loud is None else int(loud[pick])
        else:
            offset = (t - seg) // 2
            if loud is not None:
                offset = int(loud[np.argmin(np.abs(loud - offset))])
        return x[:, offset : offset + seg], seg

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any] | None:
        """Item `index` of the current epoch, or of epoch e for ``index = (e, i)``."""
        epoch, i = index if isinstance(index, tuple) else (self.epoch, index)
        utt = self.utt_ids[i]
        try:
            x = self._load(utt)
        except AudiokitError as e:
            if not self.skip_bad:
                if utt in str(e):
                    raise
                raise type(e)(f"utterance '{utt}': {e}; or pass skip_bad=True") from e
            if utt not in self._warned:
                self._warned.add(utt)
                log.warning("skipping utterance '%s': %s", utt, e)
            return None
        if self.whole:
            length = x.shape[-1]
        else:
            x, length = self._crop(x, item_generator(self.seed, epoch, i))
        wave = torch.from_numpy(np.ascontiguousarray(x))
        if self.tokenizer is None:
            targets = torch.zeros(0, dtype=torch.int64)
        else:
            targets = torch.tensor(self.tokenizer.encode(self.data.text[utt]), dtype=torch.int64)
        feats = wave[0] if self.channels == 1 else wave
        return {"utt_id": utt, "feats": feats, "length": length, "targets": targets}


def collate_segments(items: Sequence[dict[str, Any] | None]) -> Batch | None:
    """Stack segment items: feats (B, S) (or (B, C, S)) zero-padded to the longest,
    feat_lengths (B,) valid samples, targets (B, U) padded with -1, target_lengths (B,).
    None items are dropped; None when nothing is left."""
    items = [x for x in items if x is not None]
    if not items:
        return None
    waves = [x["feats"] for x in items]
    longest = max(w.shape[-1] for w in waves)
    feats = torch.stack([torch.nn.functional.pad(w, (0, longest - w.shape[-1])) for w in waves])
    targets = [x["targets"] for x in items]
    return PinnableBatch(
        feats=feats,
        feat_lengths=torch.tensor([x["length"] for x in items], dtype=torch.int64),
        targets=pad_sequence(targets, batch_first=True, padding_value=IGNORE_ID),
        target_lengths=torch.tensor([t.shape[0] for t in targets], dtype=torch.int64),
        utt_ids=[x["utt_id"] for x in items],
    )


class FixedBatchSampler:
    """Batches of `batch_size` indices; a fresh permutation of (seed, epoch) per epoch.

    ``drop_last`` (training) drops the incomplete last batch, so every batch has the same
    shape (kept when it is the only one). Replicas take batches ``rank::num_replicas`` of the
    same list; when the count is not a multiple, batches from the start are repeated so
    every rank gets equally many (as :class:`audiokit.data.sampler.DynamicBucketSampler`).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be >= 1")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ConfigError(
                f"rank={rank} / num_replicas={num_replicas}: need 0 <= rank < num_replicas"
            )
        self.num_items, self.batch_size = int(num_items), int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.num_replicas, self.rank, self.epoch = int(num_replicas), int(rank), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def all_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every batch of `epoch` (default: the current one), before the split across ranks."""
        epoch = self.epoch if epoch is None else epoch
        n, b = self.num_items, self.batch_size
        if n == 0:
            return []
        order = epoch_rng(self.seed, epoch).permutation(n) if self.shuffle else np.arange(n)
        count = n // b if self.drop_last and n >= b else math.ceil(n / b)
        batches = [order[k * b : (k + 1) * b].tolist() for k in range(count)]
        r = self.num_replicas
        if len(batches) % r:
            batches += [batches[k % len(batches)] for k in range(r - len(batches) % r)]
        return batches

    def __len__(self) -> int:
        return len(self.all_batches()[self.rank :: self.num_replicas])

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.all_batches()[self.rank :: self.num_replicas]

    def fingerprint(self) -> int:
        """CRC of the settings: a checkpoint only resumes on the same batch plan."""
        settings = np.array(
            [self.num_items, self.batch_size, self.shuffle, self.seed, self.drop_last,
             self.num_replicas], dtype=np.int64,
        )  # fmt: skip
        return zlib.crc32(settings.tobytes())


__all__ = ["AudioSegmentDataset", "FixedBatchSampler", "collate_segments"]
