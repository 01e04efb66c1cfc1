"""Duration-bucketed dynamic batching with deterministic shuffling and exact mid-epoch resume.

:class:`DynamicBucketSampler` is a *batch* sampler (pass it as ``batch_sampler=``): each item it
yields is a list of dataset indices whose padded size, ``max(length) * len(batch)``, stays within
``max_frames``. The batch list of an epoch depends only on (lengths, settings, seed, epoch), so
every rank of a distributed job computes the same list and takes its own share, and a resumed
run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from audiokit.errors import ConfigError

log = logging.getLogger(__name__)


def epoch_rng(seed: int, epoch: int, *more: int) -> np.random.Generator:
    """A numpy generator that depends only on (seed, epoch, *more) (never on global state)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, *more]))


def pack_batches(order: np.ndarray, lengths: np.ndarray, max_frames: int) -> list[list[int]]:
    """Greedily cut `order` into consecutive batches with max(len) * size <= max_frames.

    An index whose own length exceeds `max_frames` becomes a batch by itself.
    """
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for idx, n in zip(order.tolist(), lengths[order].tolist(), strict=True):
        new_max = max(cur_max, n)
        if cur and new_max * (len(cur) + 1) > max_frames:
            batches.append(cur)
            cur, new_max = [], n
        cur.append(idx)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


class DynamicBucketSampler:
    """Batches of similar-length utterances whose padded size fits `max_frames`.

    Per epoch: indices are sorted by length (ties broken randomly when shuffling) and cut into
    `num_buckets` buckets of equal count; each bucket is shuffled and packed greedily so that
    `max_len_in_batch * batch_size <= max_frames`; then the order of all batches is shuffled.
    Everything is drawn from (seed, epoch), never from global RNG state. An utterance longer
    than `max_frames` gets a batch of its own (with a one-time warning) rather than being lost.

    Replicas: every rank builds the same batch list and takes batches ``rank::num_replicas``.
    When the batch count is not a multiple of `num_replicas`, ``drop_last=False`` repeats
    batches from the start of the (shuffled) list so all ranks get equally many (a few
    utterances are then seen twice in that epoch); ``drop_last=True`` drops the last batches
    instead (a few utterances are skipped in that epoch, different ones each epoch). With one
    replica `drop_last` changes nothing.

    Resume: :meth:`state_dict` records (epoch, batches consumed); after :meth:`load_state_dict`
    the next iteration yields exactly the remaining batches of that epoch. ``set_epoch`` with
    the restored epoch keeps the restored position, so the usual loop
    ``for e in range(start, n): sampler.set_epoch(e); for b in loader: ...`` resumes exactly.
    Batches are counted as they are yielded; behind a prefetching DataLoader use
    :class:`audiokit.data.collate.ResumableDataLoader` (from ``make_dataloader``), which counts
    batches actually delivered to the training loop.

    Args:
        lengths: per-utterance length (frames) in dataset order.
        max_frames: budget of padded frames per batch.
        shuffle: shuffle within buckets and the batch order each epoch; False gives batches
            of the length-sorted order, in that order (for validation/decoding).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        num_buckets: int = 10,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if max_frames < 1:
            raise ConfigError(f"max_frames={max_frames} must be a positive number of frames")
        if num_buckets < 1:
            raise ConfigError(f"num_buckets={num_buckets} must be at least 1")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ConfigError(
                f"rank={rank} / num_replicas={num_replicas}: need 0 <= rank < num_replicas"
            )
        if seed < 0:
            raise ConfigError(f"seed={seed} must be non-negative")
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if (self.lengths < 0).any():
            i = int(np.flatnonzero(self.lengths < 0)[0])
            raise ConfigError(f"lengths[{i}]={int(self.lengths[i])} is negative; pass frame counts")
        self.max_frames = int(max_frames)
        self.shuffle, self.seed, self.num_buckets = shuffle, int(seed), int(num_buckets)
        self.drop_last, self.num_replicas, self.rank = drop_last, int(num_replicas), int(rank)
        self.epoch = 0
        self.consumed = 0  # batches of this epoch already taken (by this rank)
        self._resume_at = 0  # where the next iteration starts (set by load_state_dict)
        self.external_count = False  # True: a DataLoader wrapper updates `consumed`
        self._cache: tuple[int, list[list[int]]] | None = None
        self._warned_long = False

    # ---- epoch plan ------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate; a restored position is kept if `epoch` is the restored one."""
        if epoch != self.epoch:
            self.epoch, self._resume_at, self.consumed = int(epoch), 0, 0

    def all_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every batch of `epoch` (default: the current one), before the split across ranks."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            self._cache = (epoch, self._build(epoch))
        return self._cache[1]

    def _build(self, epoch: int) -> list[list[int]]:
        n = len(self.lengths)
        if n == 0:
            return []
        rng = epoch_rng(self.seed, epoch)
        tie = rng.permutation(n) if self.shuffle else np.arange(n)
        order = tie[np.argsort(self.lengths[tie], kind="stable")]  # by length, ties random
        batches: list[list[int]] = []
        for bucket in np.array_split(order, min(self.num_buckets, n)):
            if self.shuffle:
                bucket = bucket[rng.permutation(len(bucket))]
            batches.extend(pack_batches(bucket, self.lengths, self.max_frames))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        too_long = self.lengths > self.max_frames
        if too_long.any() and not self._warned_long:
            self._warned_long = True
            i = int(np.flatnonzero(too_long)[0])
            log.warning(
                "%d utterance(s) longer than max_frames=%d (e.g. index %d, %d frames) get a "
                "batch of their own; raise max_frames or drop them if memory runs out",
                int(too_long.sum()), self.max_frames, i, int(self.lengths[i]),
            )  # fmt: skip
        r = self.num_replicas
        if len(batches) % r:
            if self.drop_last:
                batches = batches[: len(batches) - len(batches) % r]
            else:
                pad = r - len(batches) % r
                batches = batches + [batches[i % len(batches)] for i in range(pad)]
        return batches

    @property
    def resume_at(self) -> int:
        """Batches the next iteration skips (non-zero only after :meth:`load_state_dict`)."""
        return self._resume_at

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of `epoch`, in iteration order."""
        return self.all_batches(epoch)[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        """Batches this rank gets in the current epoch (can differ slightly between epochs)."""
        return len(self.rank_batches())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.rank_batches()
        start, self._resume_at = self._resume_at, 0
        self.consumed = start
        for batch in batches[start:]:
            if not self.external_count:
                self.consumed += 1
            yield list(batch)

    # ---- checkpointing ---------------------------------------------------------------------
    def fingerprint(self) -> int:
        """CRC of the lengths and settings: a checkpoint only resumes on the same plan.

        The rank is left out: all ranks consume equally many batches, so one rank's state
        (e.g. rank 0's checkpoint) resumes every rank.
        """
        settings = np.array(
            [self.max_frames, self.shuffle, self.seed, self.num_buckets, self.drop_last,
             self.num_replicas], dtype=np.int64,
        )  # fmt: skip
        return zlib.crc32(settings.tobytes(), zlib.crc32(self.lengths.tobytes()))

    def state_dict(self) -> dict:
        """{"epoch", "consumed", "fingerprint"}: enough to continue this epoch exactly."""
        return {"epoch": self.epoch, "consumed": self.consumed, "fingerprint": self.fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state`: the next iteration yields the batches not yet consumed."""
        try:
            epoch, consumed = int(state["epoch"]), int(state["consumed"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"sampler state {state!r} lacks integer 'epoch'/'consumed'; "
                "pass what DynamicBucketSampler.state_dict() returned"
            ) from None
        saved = state.get("fingerprint")
        if saved is not None and int(saved) != self.fingerprint():
            raise ConfigError(
                "sampler state was saved with other data or batching settings (lengths, "
                "max_frames, seed, num_buckets, replicas); resume with the same data dir and "
                "settings, or start a new epoch without loading the sampler state"
            )
        self.epoch = epoch
        if not 0 <= consumed <= len(self.rank_batches()):
            raise ConfigError(
                f"sampler state: consumed={consumed} is outside 0..{len(self)} batches of epoch "
                f"{epoch}; the state does not belong to this data"
            )
        self.consumed = self._resume_at = consumed
