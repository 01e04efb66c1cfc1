"""CTC forced alignment: word start/end times for a known (or recognised) transcript.

The model's CTC log-probabilities ``(T', V)`` and the transcript's token ids go through
``torchaudio.functional.forced_align`` (Viterbi over the CTC topology, per utterance); the
frames of each token (its first to last non-blank frame) then become word spans:

- a sentencepiece piece starting with ``▁`` (or a lone ``▁`` / space token) starts a word;
- a piece holding CJK characters is a word of its own (Chinese has no spaces);
- ``<...>`` symbols (language/task tokens, ``<unk>`` is kept) are aligned but belong to no word.

Frames are output frames of the model; ``skip_frames`` leading frames that are not speech (the
``<lang><task>`` prefix frames of OWSM-CTC) are left out of the alignment, and frame ``f``
after them starts at ``f * frame_s`` seconds (``frame_s`` = feature frame shift x subsampling).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from audiokit.errors import ConfigError, ScoringError

WORD_START = "\u2581"
_SYMBOL = re.compile(r"^<[^<>\s]+>$")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")


@dataclass
class TokenSpan:
    """Token ``index`` (position in the target) over output frames ``[start, end)``."""

    index: int
    token_id: int
    start: int
    end: int
    score: float  # mean posterior of the token over its frames


@dataclass
class WordSpan:
    """One word: its text, start/end in seconds and mean token posterior."""

    word: str
    start: float
    end: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("start", "end", "score"):
            d[k] = round(d[k], 3)
        return d


def align_tokens(
    log_probs: torch.Tensor, token_ids: list[int], blank_id: int = 0
) -> list[TokenSpan]:
    """Forced-align ``token_ids (U,)`` to ``log_probs (T, V)``: one span per token, in order.

    Raises :class:`ScoringError` when the audio is too short for the text (CTC needs at least
    one frame per token plus one between repeated tokens).
    """
    import torchaudio.functional as taf

    ids = torch.as_tensor(token_ids, dtype=torch.int32)
    if ids.numel() == 0:
        return []
    if bool((ids == blank_id).any()):
        raise ConfigError("the text to align holds the blank token; remove it")
    need = ids.numel() + int((ids[1:] == ids[:-1]).sum())
    if log_probs.shape[0] < need:
        raise ScoringError(
            f"{log_probs.shape[0]} output frames cannot hold {ids.numel()} tokens ({need} frames "
            "needed); the text is too long for this audio, check that they belong together"
        )
    lp = log_probs.detach().float().cpu()[None]
    labels, scores = taf.forced_align(lp, ids[None], blank=blank_id)
    labels, probs = labels[0], scores[0].exp()
    # token k occupies the frames where the path is on a non-blank state; consecutive runs of
    # the same label are one token unless the target repeats it (then a blank separates them)
    spans = taf.merge_tokens(labels, probs, blank=blank_id)
    if len(spans) != ids.numel():  # cannot happen for a valid CTC path; guard the mapping
        raise ScoringError(f"alignment produced {len(spans)} spans for {ids.numel()} tokens")
    return [
        TokenSpan(k, int(s.token), int(s.start), int(s.end), float(s.score))
        for k, s in enumerate(spans)
    ]


def group_words(pieces: list[str]) -> list[tuple[str, list[int]]]:
    """``(word, token indices)`` for the pieces of one transcript (see the module doc)."""
    words: list[tuple[str, list[int]]] = []
    open_word = False  # whether the last word may take more pieces
    for k, piece in enumerate(pieces):
        if _SYMBOL.match(piece) and piece != "<unk>":
            open_word = False
            continue
        starts = piece.startswith(WORD_START) or piece in (" ", "<space>")
        text = piece.lstrip(WORD_START).replace("<space>", "").strip()
        if not text:  # a lone word-start marker: the next piece opens the word
            open_word = False
            continue
        if _CJK.search(text):
            words.append((text, [k]))
            open_word = False
        elif starts or not open_word:
            words.append((text, [k]))
            open_word = True
        else:
            words[-1] = (words[-1][0] + text, [*words[-1][1], k])
    return words


def word_spans(
    spans: list[TokenSpan], pieces: list[str], frame_s: float, offset_s: float = 0.0
) -> list[WordSpan]:
    """Word times (seconds) from token spans over output frames of ``frame_s`` seconds each."""
    out = []
    for word, idx in group_words(pieces):
        first, last = spans[idx[0]], spans[idx[-1]]
        score = float(np.mean([spans[i].score for i in idx]))
        out.append(
            WordSpan(word, offset_s + first.start * frame_s, offset_s + last.end * frame_s, score)
        )
    return out


def ctc_log_probs(
    model: Any, feats: torch.Tensor, lengths: torch.Tensor, **options: Any
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(log_probs (B, T', V), lengths (B,), prefix frames)`` from a CTC model.

    Models with ``ctc_log_probs`` (OWSM-CTC: takes ``lang``/``task``/``prompt``) are asked
    directly; a plain CTC model's ``forward`` gives ``(log_probs, lengths)``.
    """
    if hasattr(model, "ctc_log_probs"):
        return model.ctc_log_probs(feats, lengths, **options)
    if options:
        raise ConfigError(f"options {', '.join(options)} do not apply to this model's alignment")
    if not hasattr(model, "ctc_out"):
        raise ConfigError(
            f"{type(model).__name__} has no CTC output to align with; use a CTC model "
            "(conformer_ctc, owsm_ctc)"
        )
    log_probs, out_lengths = model(feats, lengths)
    return log_probs, out_lengths, 0


@dataclass
class Alignment:
    """One input's aligned transcript; `error` is set (and the rest empty) when it failed."""

    path: str
    text: str = ""
    words: list[WordSpan] | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "text": self.text,
            "words": [w.to_dict() for w in self.words or []],
        }


@torch.inference_mode()
def align_audio(recognizer: Any, item: Any, text: str | None = None) -> Alignment:
    """Word times for one input of an :class:`audiokit.asr.inference.Recognizer`.

    `text` None aligns the model's own greedy transcript. The model's decoding options
    (OWSM: ``lang``, ``task``, ``prompt``) come from ``recognizer.options``. The whole input is
    aligned in one pass (no windows): meant for utterances up to a few minutes.
    """
    rec = recognizer
    name, wave = rec.load_audio(item)
    rec.check_length(name, len(wave))
    samples = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None].to(rec.device)
    feats, frames = rec.frontend(samples, torch.tensor([samples.shape[1]], device=rec.device))
    log_probs, lengths, skip = ctc_log_probs(rec.model, feats, frames, **rec.options)
    lp = log_probs[0, : int(lengths[0])]
    blank = int(getattr(rec.model, "blank_id", 0))
    if text is None:  # greedy CTC: frame argmax, merge repeats, drop blanks
        best = torch.unique_consecutive(lp.argmax(dim=-1))
        ids = best[best != blank].tolist()
    else:
        ids = list(rec.tokenizer.encode(text))
    symbols = rec.tokenizer.token_list.symbols(ids)
    # language/task and other <...> symbols are not speech: they are not aligned
    keep = [k for k, s in enumerate(symbols) if not _SYMBOL.match(s) or s == "<unk>"]
    ids, pieces = [ids[k] for k in keep], [symbols[k] for k in keep]
    spans = align_tokens(lp[skip:], ids, blank)
    words = word_spans(spans, pieces, rec.frame_s)
    return Alignment(name, rec.tokenizer.decode(ids), words)
