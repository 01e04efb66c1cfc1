"""A map-style ASR dataset over a Kaldi data dir: features (on the fly or from feats.scp) + token ids.

Item ``i`` is ``{"utt_id": str, "feats": (T, D) float32, "targets": (U,) int64}``; items of an
OWSM multitask data dir (see :mod:`audiokit.data.multitask`) add ``"extra"``. Every random
choice for item ``i`` in epoch ``e`` (speed factor, dither, SpecAugment) is drawn from a
``torch.Generator`` seeded from ``(seed, e, i)`` only, so an item is the same whichever worker
builds it, in whatever order, and a resumed run rebuilds it exactly.
"""

from __future__ import annotations

import logging
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from audiokit.data.data_dir import DataDir
from audiokit.data.kaldi_files import read_kv_file
from audiokit.data.multitask import MultitaskText
from audiokit.errors import AudioError, AudiokitError, ConfigError, DataDirError

if TYPE_CHECKING:
    from audiokit.features.kaldi_options import FbankOptions
    from audiokit.text import Tokenizer

log = logging.getLogger(__name__)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, epoch, index): well mixed, never global."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)


class AsrDataset(torch.utils.data.Dataset):
    """Utterances of a Kaldi data dir as (features, token ids), with reproducible augmentation.

    Args:
        data_dir: a Kaldi data dir (path or loaded :class:`DataDir`); needs `text` when a
            tokenizer is given.
        tokenizer: turns each `text` line into ids; None gives empty targets (decoding).
        frontend: fbank options for features computed on the fly from audio (dither, if set,
            is drawn from the item's generator). None with `feats_scp` None gives raw
            waveforms (T,) instead of features, for models with their own frontend.
        feats_scp: a Kaldi feats.scp (or a folder holding one) with precomputed (T, D)
            features; used instead of audio. Excludes `frontend` and `speed_perturb`.
        sample_rate: audio is resampled to this rate (must match the frontend's).
        speed_perturb: speed factors, e.g. [0.9, 1.0, 1.1]; one is drawn per item.
        specaug: keyword arguments of :class:`audiokit.features.SpecAugment` (e.g.
            ``{"num_time_masks": 2}``); applied to features only while ``training`` is True.
        seed: base of every per-item generator.
        allow_pipe: run piped wav.scp commands (`cmd |`); only for data you trust.
        skip_bad: unreadable or too-short utterances give None (dropped by `collate_asr`)
            with one warning per utterance, instead of raising AudioError.

    ``training`` (default True) enables speed perturbation and SpecAugment; set it False (or
    build the dataset without them) for validation. Dither follows `frontend`: use
    ``dither=0.0`` there for deterministic evaluation features.
    """

    accepts_epoch_index = True  # __getitem__((epoch, i)): ResumableDataLoader tags indices

    def __init__(
        self,
        data_dir: str | os.PathLike | DataDir,
        tokenizer: Tokenizer | None,
        frontend: FbankOptions | None = None,
        feats_scp: str | os.PathLike | None = None,
        sample_rate: int = 16000,
        speed_perturb: list[float] | None = None,
        specaug: dict[str, Any] | None = None,
        seed: int = 0,
        allow_pipe: bool = False,
        skip_bad: bool = False,
    ) -> None:
        self.data = data_dir if isinstance(data_dir, DataDir) else DataDir.load(data_dir)
        self.utt_ids = self.data.utt_ids
        self.tokenizer, self.frontend = tokenizer, frontend
        self.sample_rate, self.seed, self.allow_pipe = int(sample_rate), int(seed), allow_pipe
        self.skip_bad, self.training, self.epoch = skip_bad, True, 0
        if seed < 0:
            raise ConfigError(f"seed={seed} must be non-negative")
        if frontend is not None and feats_scp is not None:
            raise ConfigError("give either frontend (features from audio) or feats_scp, not both")
        if frontend is not None:
            frontend.validate()
            if frontend.frame.sample_frequency != self.sample_rate:
                raise ConfigError(
                    f"frontend sample_frequency={frontend.frame.sample_frequency:g} differs from "
                    f"sample_rate={self.sample_rate}; set both to the rate you train at"
                )
        self.feats_scp = self._load_feats_scp(feats_scp) if feats_scp is not None else None
        self.speed_factors = self._check_speeds(speed_perturb)
        self.specaug = self._make_specaug(specaug)
        if tokenizer is not None and self.data.text is None:
            raise DataDirError(
                f"{self.data.path}: no text file; add one ('UTT TRANSCRIPT' lines) or pass "
                "tokenizer=None for audio without transcripts"
            )
        if tokenizer is not None:
            missing = [u for u in self.utt_ids if u not in self.data.text]
            if missing:
                raise DataDirError(
                    f"{self.data.path}: {len(missing)} utterance(s) have no transcript (first "
                    f"'{missing[0]}'); run `audiokit data fix` to drop them"
                )
        # ESPnet s2t layout (text.ctc / text.prev beside `<lang><task>` text): OWSM fields
        self.multitask = MultitaskText.from_data_dir(self.data, tokenizer)
        self._durations: list[float] | None = None
        self._warned: set[str] = set()

    # ---- configuration helpers -------------------------------------------------------------
    def _load_feats_scp(self, path: str | os.PathLike) -> dict[str, str]:
        from audiokit.features.extract import feats_scp_path

        scp = read_kv_file(feats_scp_path(path))
        missing = [u for u in self.utt_ids if u not in scp]
        if missing:
            raise DataDirError(
                f"{path}: no features for {len(missing)} utterance(s) (first '{missing[0]}'); "
                "re-run `audiokit feats extract` on this data dir"
            )
        return scp

    def _check_speeds(self, speeds: list[float] | None) -> list[float] | None:
        if not speeds:
            return None
        if self.feats_scp is not None:
            raise ConfigError(
                "speed_perturb needs audio, but features come from feats_scp; compute features "
                "on the fly (frontend=...) or speed-perturb the data dir before extraction"
            )
        for f in speeds:
            if not 0.1 <= float(f) <= 10.0:
                raise ConfigError(
                    f"speed factor {f} is out of range; use values like 0.9, 1.0, 1.1"
                )
        return [float(f) for f in speeds]

    def _make_specaug(self, specaug: dict[str, Any] | None):
        if not specaug:
            return None
        if self.frontend is None and self.feats_scp is None:
            raise ConfigError(
                "specaug needs features; give frontend=FbankOptions(...) or feats_scp"
            )
        from audiokit.features.specaugment import SpecAugment

        try:
            return SpecAugment(**specaug).train()
        except TypeError as e:
            raise ConfigError(
                f"specaug options {specaug}: {e}; see SpecAugment's arguments"
            ) from None

    # ---- epochs and lengths ----------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Epoch whose randomness items use; call before each epoch (workers copy it at start)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def durations(self) -> list[float]:
        """Seconds per utterance, from utt2dur/segments/reco2dur, else audio headers (read once).

        With ``skip_bad`` an unreadable recording gets 0.0 (its item is dropped later).
        """
        if self._durations is None:
            known = [self.data.duration(u) for u in self.utt_ids]
            if self.feats_scp is not None and any(d is None or d < 0 for d in known):
                for i, utt in enumerate(self.utt_ids):  # audio may be gone: use feature shapes
                    if known[i] is None or known[i] < 0:
                        known[i] = self._feats_duration(utt)
            if any(d is None or d < 0 for d in known):
                infos = self.data.recording_infos(allow_pipe=self.allow_pipe, progress=False)
                for i, utt in enumerate(self.utt_ids):
                    if known[i] is None or known[i] < 0:
                        known[i] = self._header_duration(utt, infos[self.data.recording_of(utt)])
            self._durations = [float(d) for d in known]
        return self._durations

    def _feats_duration(self, utt: str) -> float:
        try:
            return self._read_feats(utt).shape[0] / self.frames_per_second
        except AudiokitError:
            if self.skip_bad:
                return 0.0
            raise

    def _header_duration(self, utt: str, info) -> float:
        if isinstance(info, Exception):
            if self.skip_bad:
                return 0.0
            raise AudioError(f"utterance '{utt}': {info}; or pass skip_bad=True") from info
        u = self.data.utterance(utt)
        end = info.duration if u.end is None or u.end < 0 else min(u.end, info.duration)
        return max(0.0, end - u.start)

    @property
    def frames_per_second(self) -> float:
        return 1000.0 / (self.frontend.frame.frame_shift_ms if self.frontend else 10.0)

    def num_frames_estimate(self, i: int) -> int:
        """Upper estimate of item i's frames: duration * frame rate, for the slowest speed factor."""
        slowest = min(self.speed_factors) if self.speed_factors and self.training else 1.0
        return math.ceil(self.durations[i] * self.frames_per_second / slowest - 1e-6)

    def frame_lengths(self) -> list[int]:
        """:meth:`num_frames_estimate` of every item: the `lengths` for the batch sampler."""
        return [self.num_frames_estimate(i) for i in range(len(self))]

    # ---- items -----------------------------------------------------------------------------
    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any] | None:
        """Item `index` of the current epoch, or of epoch e for ``index = (e, i)``."""
        epoch, i = index if isinstance(index, tuple) else (self.epoch, index)
        utt = self.utt_ids[i]
        gen = item_generator(self.seed, epoch, i)
        try:
            feats = self._features(utt, gen)
        except AudiokitError as e:
            if not self.skip_bad:
                if utt in str(e):
                    raise
                raise type(e)(f"utterance '{utt}': {e}; or pass skip_bad=True") from e
            if utt not in self._warned:
                self._warned.add(utt)
                log.warning("skipping utterance '%s': %s", utt, e)
            return None
        if self.multitask is not None:
            targets, extra = self.multitask.item(utt)
            return {"utt_id": utt, "feats": feats, "targets": targets, "extra": extra}
        if self.tokenizer is None:
            targets = torch.zeros(0, dtype=torch.int64)
        else:
            targets = torch.tensor(self.tokenizer.encode(self.data.text[utt]), dtype=torch.int64)
        return {"utt_id": utt, "feats": feats, "targets": targets}

    def _features(self, utt: str, gen: torch.Generator) -> torch.Tensor:
        """(T, D) float32 features (or (T,) samples without a frontend) for one utterance."""
        if self.feats_scp is not None:
            feats = self._read_feats(utt)
        else:
            samples, _ = self.data.load_audio(utt, self.sample_rate, allow_pipe=self.allow_pipe)
            if self.speed_factors and self.training:
                pick = int(torch.randint(len(self.speed_factors), (1,), generator=gen))
                if self.speed_factors[pick] != 1.0:
                    from audiokit.features.speed_perturb import perturb_speed

                    samples = perturb_speed(samples, self.sample_rate, self.speed_factors[pick])
            wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
            if self.frontend is None:
                return wave
            from audiokit.features.kaldi import fbank

            with torch.no_grad():
                feats, _ = fbank(wave, None, self.frontend, gen)
        if self.specaug is not None and self.training:
            with torch.no_grad():
                lengths = torch.tensor([feats.shape[0]])
                feats = self.specaug(feats[None], lengths, gen)[0]
        return feats.contiguous()

    def _read_feats(self, utt: str) -> torch.Tensor:
        import kaldiio

        entry = self.feats_scp[utt]
        try:
            mat = kaldiio.load_mat(entry)
        except (OSError, ValueError, EOFError) as e:
            raise AudioError(
                f"utterance '{utt}': cannot read features '{entry}' ({e}); "
                "re-run `audiokit feats extract`"
            ) from None
        if mat.ndim != 2:
            raise AudioError(
                f"utterance '{utt}': features '{entry}' have shape {mat.shape}, not (T, D); "
                "point feats_scp at a feature matrix scp"
            )
        return torch.from_numpy(np.asarray(mat, dtype=np.float32).copy())


def default_frontend(num_bins: int = 80, dither: float = 1.0, sample_rate: int = 16000):
    """Fbank options usual for ASR training: `num_bins` bins, given dither, at `sample_rate`."""
    from audiokit.features.kaldi_options import FbankOptions, FrameOptions, MelOptions

    return FbankOptions(
        frame=FrameOptions(sample_frequency=float(sample_rate), dither=dither),
        mel=MelOptions(num_bins=num_bins),
    )


__all__ = ["AsrDataset", "default_frontend", "item_generator"]
