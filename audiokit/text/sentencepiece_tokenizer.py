"""Sentencepiece (BPE or unigram) tokenizer: training and encode/decode over a :class:`TokenList`.

Sentencepiece is trained with its `<unk>` at id 0 and no `<s>`/`</s>`, so the token list is
`<blank>`, `<unk>`, the pieces in sentencepiece order, `<sos/eos>`. Ids are mapped through
lookup tables built from piece names, so a model with a token list made elsewhere (WeNet
`units.txt`, which lists only the pieces seen in training) also works: a piece missing from
the list encodes as `<unk>`.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import random
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiokit.errors import ConfigError, TokenizerError
from audiokit.text.token_list import BLANK, SOS_EOS, UNK, TokenList
from audiokit.text.tokenizer import MODEL_NAME, Tokenizer, batch_rows
from audiokit.utils.atomic import atomic_write

MODEL_TYPES = ("bpe", "unigram")
_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_LOW = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")


class SentencePieceTokenizer(Tokenizer):
    """A sentencepiece model plus the token list that fixes the model-facing ids.

    `model` is a path to a `.model` file or its bytes. Without `token_list`, one is built
    from the model's pieces (ESPnet order). `info` is kept in `tokenizer.json` (type, options).
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        token_list: TokenList | None = None,
        info: dict[str, Any] | None = None,
    ):
        import sentencepiece as spm

        if isinstance(model, bytes):
            proto, where = model, "sentencepiece model"
        else:
            path = Path(model)
            if not path.is_file():
                raise TokenizerError(f"{path}: sentencepiece model not found; check the path")
            proto, where = path.read_bytes(), str(path)
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=proto)
        except RuntimeError as e:
            raise TokenizerError(
                f"{where}: not a valid sentencepiece model ({_clean(e)}); retrain or re-copy it"
            ) from e
        self._proto = proto
        sp = self._sp
        n = sp.get_piece_size()
        pieces = [sp.id_to_piece(i) for i in range(n)]
        if token_list is None:
            token_list = TokenList.build(
                p for i, p in enumerate(pieces) if not (sp.is_unknown(i) or sp.is_control(i))
            )
        if token_list.unk_id is None:
            raise TokenizerError(
                f"{where}: its token list has no <unk>; add '<unk>' to tokens.txt or retrain"
            )
        self.token_list = token_list
        info = dict(info or {})
        self.type = str(info.pop("type", "sentencepiece"))
        self._info = {k: v for k, v in info.items() if k != "model"}
        # sentencepiece id -> our id (pieces absent from the list become <unk>).
        self._to_ours = np.array(token_list.ids(pieces), dtype=np.int64)
        self._to_ours[sp.unk_id()] = token_list.unk_id
        # our id -> sentencepiece id (symbols the model lacks decode as its unk surface).
        self._to_sp = np.array([sp.piece_to_id(s) for s in token_list.symbols_list], dtype=np.int64)
        self._to_sp[token_list.unk_id] = sp.unk_id()
        self._skip = np.zeros(len(token_list), dtype=bool)
        self._skip[list(token_list.special_ids)] = True

    @property
    def processor(self) -> Any:
        """The underlying `sentencepiece.SentencePieceProcessor` (ids are sentencepiece's)."""
        return self._sp

    def encode(self, text: str) -> list[int]:
        return self._to_ours[self._sp.encode(text)].tolist()

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode in one sentencepiece call, map all ids with one lookup, split per text."""
        sp_ids = self._sp.encode(list(texts))
        lengths = [len(x) for x in sp_ids]
        flat = np.fromiter(itertools.chain.from_iterable(sp_ids), np.int64, count=sum(lengths))
        ours = self._to_ours[flat]
        return [a.tolist() for a in np.split(ours, np.cumsum(lengths)[:-1])] if sp_ids else []

    def _sp_ids(self, ids: Sequence[int] | np.ndarray) -> list[int]:
        """Our ids `(U,)` -> sentencepiece ids, without blank and sos/eos."""
        arr = self.token_list.check_ids(ids)
        return self._to_sp[arr[~self._skip[arr]]].tolist()

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self._sp.decode(self._sp_ids(ids))

    def decode_batch(
        self, ids: Any, lengths: Sequence[int] | np.ndarray | None = None
    ) -> list[str]:
        """As :meth:`Tokenizer.decode_batch`, in one sentencepiece call."""
        rows = [self._sp_ids(row) for row in batch_rows(ids, lengths)]
        return self._sp.decode(rows) if rows else []

    def normalize(self, text: str) -> str:
        """Sentencepiece's own normalisation (NFKC, collapsed whitespace), as decode gives it."""
        return self._sp.normalize(text).replace("\u2581", " ").strip()

    def config(self) -> dict[str, Any]:
        return {"type": self.type, "model": MODEL_NAME, **self._info}

    def _save_model(self, out_dir: Path) -> None:
        with atomic_write(out_dir / MODEL_NAME, "wb") as f:
            f.write(self._proto)


def train_sentencepiece(
    sentences: Iterable[str],
    out_dir: str | os.PathLike,
    *,
    vocab_size: int,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    user_defined_symbols: Sequence[str] = (),
    input_sentence_size: int = 0,
    seed: int = 0,
    num_threads: int = 4,
    source: str = "training text",
) -> SentencePieceTokenizer:
    """Train a sentencepiece model on `sentences` and save it into `out_dir`.

    `vocab_size` counts sentencepiece's pieces including `<unk>`; the token list adds
    `<blank>` and `<sos/eos>`, so it has `vocab_size + 2` entries. Use `character_coverage`
    0.9995 for Chinese/Japanese (rare characters become `<unk>`). `input_sentence_size` > 0
    trains on that many sentences sampled with `seed`. Training is deterministic: the same
    text, options, seed and `num_threads` give a byte-identical model. `source` names the
    input in error messages. Writes `bpe.model`, `tokens.txt`, `tokenizer.json` atomically.
    """
    import sentencepiece as spm

    _check_options(
        model_type, vocab_size, character_coverage, user_defined_symbols, input_sentence_size
    )
    lines = (s for s in (x.strip() for x in sentences) if s)
    first = next(lines, None)
    if first is None:
        raise TokenizerError(f"{source}: no text to train on; give a non-empty input")
    feed: Iterable[str] = _chain_first(first, lines)
    if input_sentence_size:
        # Sentencepiece 0.2.x samples with an unseeded generator (a new sample on every run),
        # so sample here with `seed` and hand it the result whole.
        feed = _reservoir_sample(feed, input_sentence_size, seed)
    options: dict[str, Any] = dict(
        model_type=model_type,
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=num_threads,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_piece=UNK,
        minloglevel=2,  # quiet: failures come back as exceptions, mapped below
    )
    if user_defined_symbols:
        options["user_defined_symbols"] = list(user_defined_symbols)
    buffer = io.BytesIO()  # the model comes back in memory: nothing half-written on disk
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(feed), model_writer=buffer, **options)
    except RuntimeError as e:
        raise _training_error(e, source, model_type) from e
    info = {
        "type": model_type,
        "vocab_size": vocab_size,
        "character_coverage": character_coverage,
        "user_defined_symbols": list(user_defined_symbols),
        "input_sentence_size": input_sentence_size,
        "seed": seed,
        "num_threads": num_threads,
        "sentencepiece_version": spm.__version__,
    }
    tokenizer = SentencePieceTokenizer(buffer.getvalue(), info=info)
    tokenizer.save(out_dir)
    return tokenizer


def _chain_first(first: str, rest: Iterable[str]) -> Iterable[str]:
    yield first
    yield from rest


def _reservoir_sample(items: Iterable[str], k: int, seed: int) -> list[str]:
    """A uniform sample of `k` items from a stream of unknown length (Li's algorithm L).

    Draws a skip length per accepted item instead of a random number per item, and skips
    with `islice`, so a long corpus is read at C speed. Same seed and stream: same sample.
    """
    rng = random.Random(seed)
    it = iter(items)
    sample = list(itertools.islice(it, k))
    if len(sample) < k:
        return sample
    w = math.exp(math.log(1.0 - rng.random()) / k)
    while True:
        skip = math.floor(math.log(1.0 - rng.random()) / math.log(1.0 - w)) if w < 1.0 else 0
        item = next(itertools.islice(it, skip, None), None)
        if item is None:
            return sample
        sample[rng.randrange(k)] = item
        w *= math.exp(math.log(1.0 - rng.random()) / k)


def _check_options(
    model_type: str,
    vocab_size: int,
    character_coverage: float,
    user_defined_symbols: Sequence[str],
    input_sentence_size: int,
) -> None:
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"model type '{model_type}' is not supported; use bpe or unigram")
    if vocab_size < 2:
        raise ConfigError(f"--vocab-size {vocab_size} is too small; use at least a few dozen")
    if not 0.0 < character_coverage <= 1.0:
        raise ConfigError(
            f"--character-coverage {character_coverage} is outside (0, 1]; use 1.0 (or 0.9995 for CJK)"
        )
    if input_sentence_size < 0:
        raise ConfigError(f"--input-sentence-size {input_sentence_size} is negative; use 0 for all")
    for sym in user_defined_symbols:
        if not sym or any(c.isspace() for c in sym) or sym in (BLANK, UNK, SOS_EOS):
            raise ConfigError(
                f"user-defined symbol {sym!r} is empty, has whitespace or is reserved "
                f"({BLANK}, {UNK}, {SOS_EOS}); use names like <noise>"
            )


def _clean(e: Exception) -> str:
    """Sentencepiece's message without its `INTERNAL: file.cc(123) [check]` prefix."""
    text = " ".join(str(e).split())
    return re.sub(r"^\w+: \S+\(\d+\) \[.*?\] ?", "", text) or text


def _training_error(e: RuntimeError, source: str, model_type: str) -> TokenizerError:
    text = str(e)
    if m := _TOO_HIGH.search(text):
        asked, most = m.groups()
        return TokenizerError(
            f"{source}: --vocab-size {asked} is too large for this text ({model_type} can make "
            f"at most {most} pieces from it); lower --vocab-size to {most} or less, or add more text"
        )
    if m := _TOO_LOW.search(text):
        asked, least = m.groups()
        return TokenizerError(
            f"{source}: --vocab-size {asked} is smaller than the {least} pieces the text "
            f"needs (its characters plus <unk>); raise --vocab-size to at least {least}, or lower "
            "--character-coverage (e.g. 0.9995 for Chinese)"
        )
    return TokenizerError(
        f"{source}: sentencepiece training failed ({_clean(e)}); check the options"
    )
