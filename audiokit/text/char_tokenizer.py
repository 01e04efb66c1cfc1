"""Character tokenizer for Chinese (and mixed Chinese-English) text.

Every CJK character (and every punctuation mark or other symbol) is one token. Runs of
non-CJK letters/digits (with inner apostrophes: "don't") are one token with `latin="word"`
or split into characters with `latin="char"`. Tags such as `<noise>` or `[LAUGHTER]` are one
token. Whitespace is dropped (`space="drop"`, usual for Chinese) or kept as one `space_symbol`
token (`space="keep"`).

Decoding follows FunASR's sentence post-processing: CJK characters are joined without spaces
and a space goes between two consecutive Latin words, so "我 爱 NEW YORK 的 秋 天" reads
"我爱NEW YORK的秋天".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from audiokit.errors import ConfigError, TokenizerError
from audiokit.text.normalize import CJK_RANGES
from audiokit.text.token_list import BLANK, SOS_EOS, UNK, TokenList
from audiokit.text.tokenizer import Tokenizer

# A letter or digit that is not CJK (Python's \w minus "_" minus the ranges above).
_LETTER = rf"[^\W_{CJK_RANGES}]"
_WORD = rf"{_LETTER}+(?:['\u2019]{_LETTER}+)*"
# Non-linguistic tags ("<noise>", "[LAUGHTER]") stay whole in both modes.
_TAG = r"<[^<>\s]+>|\[[^\[\]\s]+\]"
_SPLIT = {
    "word": re.compile(rf"\s+|{_TAG}|{_WORD}|.", re.DOTALL),
    "char": re.compile(rf"\s+|{_TAG}|.", re.DOTALL),
}
_WORD_RE = re.compile(_WORD)
LATIN_MODES = ("word", "char")
SPACE_MODES = ("drop", "keep")
CASES = ("keep", "upper", "lower")
SPACE_SYMBOLS = ("\u2581", "<space>")


class CharTokenizer(Tokenizer):
    """CJK characters as tokens; Latin words whole or split (see the module docstring).

    Build one with :meth:`train` (from text) or :meth:`from_token_list` (a saved list).
    `case` ("keep", "upper", "lower") is applied before splitting, in training and encoding.
    """

    type = "char"

    def __init__(
        self,
        token_list: TokenList,
        *,
        latin: str = "word",
        space: str = "drop",
        space_symbol: str = "\u2581",
        case: str = "keep",
    ):
        _check_options(latin, space, space_symbol, case)
        if token_list.unk_id is None:
            raise TokenizerError(
                "char token list has no <unk>; add '<unk>' to tokens.txt or retrain"
            )
        self.token_list = token_list
        self.latin, self.space, self.space_symbol, self.case = latin, space, space_symbol, case
        self._split_re = _SPLIT[latin]
        symbols = token_list.symbols_list
        self._index = {s: i for i, s in enumerate(symbols)}
        self._unk = token_list.unk_id
        n = len(symbols)
        self._skip = np.zeros(n, dtype=bool)
        self._skip[list(token_list.special_ids)] = True
        # What each id reads as in text, and whether it is a Latin word (spaced on decode).
        self._surface = np.array([" " if s == space_symbol else s for s in symbols], dtype=object)
        self._is_word = np.zeros(n, dtype=bool)
        if latin == "word":
            self._is_word[:] = [_WORD_RE.fullmatch(s) is not None for s in symbols]
            self._is_word[self._skip] = False
            self._is_word[self._unk] = False

    @classmethod
    def from_token_list(cls, token_list: TokenList, **options: Any) -> CharTokenizer:
        """Wrap a saved list; options missing from `options` are guessed from the list."""
        if "space" not in options:
            kept = [s for s in SPACE_SYMBOLS if s in token_list]
            options["space"] = "keep" if kept else "drop"
            options.setdefault("space_symbol", kept[0] if kept else "\u2581")
        if "latin" not in options:
            words = (s for s in token_list if len(s) > 1 and _WORD_RE.fullmatch(s))
            options["latin"] = "word" if any(words) else "char"
        known = {"latin", "space", "space_symbol", "case"}
        return cls(token_list, **{k: v for k, v in options.items() if k in known})

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        *,
        latin: str = "word",
        space: str = "drop",
        space_symbol: str = "\u2581",
        case: str = "keep",
        min_count: int = 1,
        vocab_size: int = 0,
        source: str = "training text",
    ) -> CharTokenizer:
        """Build the vocabulary from `sentences`.

        Tokens seen at least `min_count` times are kept, most frequent first (ties in code
        point order); `vocab_size` > 0 caps the count of tokens including `<unk>` (the list
        adds `<blank>` and `<sos/eos>`). Unseen tokens encode as `<unk>`.
        """
        if min_count < 1:
            raise ConfigError(f"--min-count {min_count} must be at least 1")
        if vocab_size < 0:
            raise ConfigError(f"--vocab-size {vocab_size} is negative; use 0 for no limit")
        probe = cls(
            TokenList.build([]), latin=latin, space=space, space_symbol=space_symbol, case=case
        )
        counts: Counter[str] = Counter()
        for sentence in sentences:
            counts.update(probe.split(sentence))
        for special in (BLANK, UNK, SOS_EOS):
            counts.pop(special, None)
        if not counts:
            raise TokenizerError(f"{source}: no text to train on; give a non-empty input")
        kept = sorted(
            (s for s, c in counts.items() if c >= min_count), key=lambda s: (-counts[s], s)
        )
        if space == "keep" and space_symbol not in kept:
            kept.insert(0, space_symbol)  # always encodable, even if training text had no space
        if vocab_size:
            kept = kept[: max(vocab_size - 1, 0)]
        return cls(
            TokenList.build(kept), latin=latin, space=space, space_symbol=space_symbol, case=case
        )

    def split(self, text: str) -> list[str]:
        """Raw token strings of `text` (before the vocabulary: no `<unk>` yet)."""
        text = " ".join(text.split())
        if self.case == "upper":
            text = text.upper()
        elif self.case == "lower":
            text = text.lower()
        pieces = self._split_re.findall(text)
        if self.space == "drop":
            return [p for p in pieces if p != " "]
        return [self.space_symbol if p == " " else p for p in pieces]

    def encode(self, text: str) -> list[int]:
        index, unk = self._index, self._unk
        return [index.get(p, unk) for p in self.split(text)]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        arr = self.token_list.check_ids(ids)
        arr = arr[~self._skip[arr]]
        return _join(self._surface[arr], self._is_word[arr])

    def normalize(self, text: str) -> str:
        """`text` as decode gives it back (case applied, spaces per the rules above)."""
        pieces = self.split(text)
        surface = np.array([" " if p == self.space_symbol else p for p in pieces], dtype=object)
        if self.latin == "word":
            is_word = np.array([_WORD_RE.fullmatch(p) is not None for p in pieces], dtype=bool)
        else:
            is_word = np.zeros(len(pieces), dtype=bool)
        return _join(surface, is_word)

    def config(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "latin": self.latin,
            "space": self.space,
            "space_symbol": self.space_symbol,
            "case": self.case,
        }


def _check_options(latin: str, space: str, space_symbol: str, case: str) -> None:
    if latin not in LATIN_MODES:
        raise ConfigError(f"latin mode '{latin}' is not supported; use word or char")
    if space not in SPACE_MODES:
        raise ConfigError(f"space mode '{space}' is not supported; use drop or keep")
    if case not in CASES:
        raise ConfigError(f"case '{case}' is not supported; use keep, upper or lower")
    if (
        not space_symbol
        or any(c.isspace() for c in space_symbol)
        or space_symbol in (BLANK, UNK, SOS_EOS)
    ):
        raise ConfigError(f"space symbol {space_symbol!r} is invalid; use \u2581 or <space>")


def _join(surface: np.ndarray, is_word: np.ndarray) -> str:
    """Concatenate token surfaces `(N,)`, with a space between consecutive words (`is_word` True)."""
    if surface.size == 0:
        return ""
    parts = np.empty(2 * surface.size - 1, dtype=object)
    parts[0::2] = surface
    parts[1::2] = np.where(is_word[:-1] & is_word[1:], " ", "")
    return " ".join("".join(parts.tolist()).split())
