"""Drop utterances a model cannot train on, before training rather than in the middle of it.

Rules (each dropped utterance gets one reason, the first that applies, in this order):

- ``no_text``: missing or blank transcript;
- ``too_short``: fewer feature frames than the model's subsampling needs (7/11/15 for
  conv2d4/6/8), counted for the *fastest* on-the-fly speed factor (it shortens the audio);
- ``too_long``: longer than ``max_duration`` seconds at the *slowest* speed factor;
- ``ctc_infeasible`` (only with a tokenizer): more CTC labels than subsampled frames; CTC needs
  ``T' >= len(tokens) + repeats`` (a blank between equal neighbours), else its loss is infinite.

:func:`rules_from_config` reads the subsampling, framing and speed factors from a training
config, so the filter agrees with what `audiokit train` will compute.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiokit.data.data_dir import DataDir
from audiokit.errors import ConfigError, DataDirError

REASONS = ("no_text", "too_short", "too_long", "ctc_infeasible")


@dataclass
class FilterRules:
    """What an utterance must satisfy to be kept (durations in seconds, frames of the frontend)."""

    subsampling: str | None = "conv2d4"  # None: no subsampling check beyond min_frames
    min_frames: int = 1
    min_duration: float = 0.0
    max_duration: float | None = None
    sample_rate: float = 16000.0
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    snip_edges: bool = True
    speed_factors: list[float] = field(default_factory=lambda: [1.0])
    require_text: bool = True

    def needed_frames(self) -> int:
        """Fewest input frames accepted: the larger of `min_frames` and the subsampling's need."""
        if self.subsampling is None:
            return max(1, self.min_frames)
        from audiokit.nn.subsampling import min_input_frames

        return max(self.min_frames, min_input_frames(self.subsampling))


@dataclass
class FilterResult:
    path: Path
    total: int
    kept: int
    dropped: dict[str, list[str]]  # reason -> utterance ids, in id order


def rules_from_config(
    config: str | os.PathLike, overrides: list[str] | None = None, **changes
) -> FilterRules:
    """Rules matching a training config (`audiokit train --config`); `changes` set other fields.

    Subsampling comes from ``model.args.subsampling`` or, when absent, the model class's
    default; framing from the ``frontend`` section (Kaldi defaults otherwise); speed factors
    from ``data.speed_perturb``.
    """
    from audiokit.features.extract import build_options
    from audiokit.train.config import load_config

    cfg = load_config(config, overrides)
    subsampling = cfg.model.args.get("subsampling", _default_subsampling(cfg.model.architecture))
    rules = FilterRules(subsampling=subsampling, sample_rate=float(cfg.data.sample_rate))
    if cfg.frontend is not None:
        options = {k.replace("_", "-"): v for k, v in cfg.frontend.options.items()}
        options.setdefault("sample-frequency", cfg.data.sample_rate)
        frame = build_options(cfg.frontend.type, options).frame
        rules.sample_rate = frame.sample_frequency
        rules.frame_shift_ms, rules.frame_length_ms = frame.frame_shift_ms, frame.frame_length_ms
        rules.snip_edges = frame.snip_edges
    if cfg.data.speed_perturb:
        rules.speed_factors = [float(f) for f in cfg.data.speed_perturb]
    for key, value in changes.items():
        setattr(rules, key, value)
    return rules


def _default_subsampling(architecture: str) -> str | None:
    from audiokit.registry import model_class

    param = inspect.signature(model_class(architecture)).parameters.get("subsampling")
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


def frames_for_durations(durations: np.ndarray, rules: FilterRules) -> np.ndarray:
    """``(N,)`` seconds -> ``(N,)`` feature frames (Kaldi framing; 0 when shorter than a window)."""
    from audiokit.features.kaldi_frames import num_frames
    from audiokit.features.kaldi_options import FrameOptions

    opts = FrameOptions(
        sample_frequency=rules.sample_rate,
        frame_shift_ms=rules.frame_shift_ms,
        frame_length_ms=rules.frame_length_ms,
        snip_edges=rules.snip_edges,
    )
    import torch

    samples = torch.from_numpy(np.floor(durations * rules.sample_rate + 1e-6).astype(np.int64))
    return num_frames(samples, opts).clamp(min=0).numpy()


def ctc_label_lengths(token_ids: list[list[int]]) -> np.ndarray:
    """``(N,)`` frames CTC needs per label sequence: its length plus its adjacent repeats."""
    out = np.zeros(len(token_ids), dtype=np.int64)
    for i, ids in enumerate(token_ids):  # one numpy op per utterance, not per token
        a = np.asarray(ids, dtype=np.int64)
        out[i] = a.size + int(np.count_nonzero(a[1:] == a[:-1])) if a.size else 0
    return out


def utterance_durations(data: DataDir, nj: int = 4) -> np.ndarray:
    """``(N,)`` seconds per utterance (id order): utt2dur/segments, else audio headers."""
    known = [data.duration(u) for u in data.utt_ids]
    if all(d is not None and d >= 0 for d in known):
        return np.asarray(known, dtype=np.float64)
    infos = data.recording_infos(nj=nj)
    out = np.zeros(len(known), dtype=np.float64)
    for i, utt in enumerate(data.utt_ids):
        if known[i] is not None and known[i] >= 0:
            out[i] = known[i]
            continue
        info = infos[data.recording_of(utt)]
        if isinstance(info, Exception):
            raise DataDirError(
                f"{data.path}: utterance '{utt}': {info}; fix or drop it "
                "(`audiokit data validate` lists unreadable audio)"
            )
        u = data.utterance(utt)
        end = info.duration if u.end is None or u.end < 0 else min(u.end, info.duration)
        out[i] = max(0.0, end - u.start)
    return out


def select(
    data: DataDir, rules: FilterRules, tokenizer=None, nj: int = 4
) -> tuple[list[str], dict[str, list[str]], np.ndarray]:
    """(kept ids, reason -> dropped ids, durations of all ids) for a loaded data dir."""
    utts = data.utt_ids
    durations = utterance_durations(data, nj)
    fast, slow = max(rules.speed_factors), min(rules.speed_factors)
    need = rules.needed_frames()
    frames_fast = frames_for_durations(durations / fast, rules)
    texts = [(data.text or {}).get(u, "") for u in utts]
    reason = np.full(len(utts), "", dtype=object)
    checks = [
        ("no_text", np.array([rules.require_text and not t.strip() for t in texts], dtype=bool)),
        ("too_short", (frames_fast < need) | (durations / fast < rules.min_duration)),
    ]
    if rules.max_duration is not None:
        checks.append(("too_long", durations / slow > rules.max_duration))
    if tokenizer is not None and rules.subsampling is not None:
        from audiokit.nn.subsampling import subsampled_length

        labels = ctc_label_lengths([tokenizer.encode(t) if t.strip() else [] for t in texts])
        out_frames = np.asarray(subsampled_length(frames_fast, rules.subsampling))
        checks.append(("ctc_infeasible", out_frames < labels))
    for name, bad in checks:
        reason[(reason == "") & bad] = name
    dropped = {
        name: [u for u, r in zip(utts, reason, strict=True) if r == name] for name in REASONS
    }
    kept = [u for u, r in zip(utts, reason, strict=True) if r == ""]
    return kept, {k: v for k, v in dropped.items() if v}, durations


def filter_data_dir(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    rules: FilterRules,
    tokenizer: str | os.PathLike | None = None,
    nj: int = 4,
    overwrite: bool = False,
) -> FilterResult:
    """Write to `dst` the utterances of `src` that pass `rules` (with `utt2dur`).

    Raises DataDirError when nothing would be kept (the rules or the data are wrong).
    """
    data = DataDir.load(src)
    tok = None
    if tokenizer is not None:
        from audiokit.text import load_tokenizer

        tok = load_tokenizer(tokenizer)
    if rules.max_duration is not None and rules.max_duration <= 0:
        raise ConfigError(f"max_duration={rules.max_duration} must be > 0 seconds")
    kept, dropped, durations = select(data, rules, tok, nj)
    if not kept:
        worst = max(dropped, key=lambda k: len(dropped[k]))
        raise DataDirError(
            f"{src}: every utterance was dropped (most as {worst}); check the data or loosen "
            "the filter (--max-duration, --train-config)"
        )
    sub = data.subset(kept)
    by_id = dict(zip(data.utt_ids, durations.tolist(), strict=True))
    sub.utt2dur = {u: by_id[u] for u in kept}
    out = sub.write(dst, overwrite=overwrite)  # utt2dur included: later stages skip headers
    return FilterResult(out, len(data), len(kept), dropped)
