"""FunASR's char tokenizer (Paraformer vocabularies) and its text post-processing, exactly.

Encoding follows ``funasr/tokenizer/char_tokenizer.py`` (``CharTokenizer.text2tokens``):

- with a ``seg_dict`` (word -> pieces, as shipped with paraformer-zh): the stripped text is
  split on single spaces; each word is lower-cased; a word in the dict becomes its pieces; a
  word whose first character is a CJK char, ASCII letter or digit is split into characters,
  each replaced by its dict pieces or ``<unk>``; any other word is one ``<unk>``. (Two spaces
  in a row give an empty word, hence an ``<unk>``, as in FunASR.) FunASR ignores
  ``split_with_space``: the seg_dict alone decides.
- without one: every character except the space is a token.

Pieces missing from the vocabulary encode as ``<unk>``.

Decoding follows ``funasr/utils/postprocess_utils.py: sentence_postprocess``:

- ``<s>``, ``</s>``, ``<unk>`` and ``<OOV>`` tokens are dropped (and ``<blank>``/``<s>``/``</s>``
  ids before that, as ``Paraformer.inference`` does);
- all-CJK output is concatenated (digits and '@' count as CJK); English words are separated by
  spaces but glued to neighbouring CJK characters;
- ``xx@@`` pieces are glued to the next word. A dangling run before a CJK character is carried
  past it ("dis@@ 中 ward" -> "中disward"), and an unclosed run at the end is dropped;
- runs of single letters become an upper-case abbreviation ("a b c" -> "ABC").

With times (``output_timestamp=True``), the words are joined by spaces. A ``@@`` run takes the
span of its pieces, and when the run is never closed the next CJK character inherits that span.
FunASR drops ``<unk>`` from the words but not from the times, so every later word takes the span
of the token before it; :meth:`FunasrTokenizer.decode_with_times` keeps that quirk to stay
equal to FunASR.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from audiokit.errors import TokenizerError
from audiokit.text.token_list import UNK, TokenList
from audiokit.text.tokenizer import Tokenizer, write_config
from audiokit.utils.atomic import atomic_write

TOKENS_JSON = "tokens.json"
SEG_DICT = "seg_dict"
DROPPED = frozenset({"<s>", "</s>", "<unk>", "<OOV>"})  # removed by sentence_postprocess
_WASHED = (" ", "</s>", "<s>", "<unk>", "<OOV>")  # stripped, in this order, before list tests
_SEG_WORD = re.compile(r"[\u4E00-\u9FA5A-Za-z0-9]")  # FunASR's seg_tokenize pattern (match)

Span = tuple[Any, Any]


class WordTimes(NamedTuple):
    """Post-processed words and their spans (in the unit of the times given).

    `starts`/`ends` can be shorter than `words` only when a token is neither CJK, Latin nor
    an ``@@`` piece (e.g. punctuation): FunASR gives such tokens no span.
    """

    text: str  # words joined by single spaces (FunASR's output_timestamp=True text)
    words: list[str]
    starts: list[Any]
    ends: list[Any]


# --- FunASR's character classes ------------------------------------------------------------


def _cjk_string(s: str) -> bool:
    """FunASR ``isChinese`` on a whole string: a *lexicographic* range test ("2a" passes)."""
    return "\u4e00" <= s <= "\u9fff" or "0" <= s <= "9" or s == "@"


def _cjk_token(tok: str) -> bool:
    """Every character is CJK (U+4E00..U+9FFF), a digit or '@'."""
    return bool(tok) and all(c != " " and _cjk_string(c) for c in tok)


def _alpha_unit(s: str) -> bool:
    """FunASR ``isAllAlpha``'s per-item test: letters (or one "'"), not CJK."""
    return (s.isalpha() or s == "'") and not (s.isalpha() and _cjk_string(s))


def _alpha_token(tok: str) -> bool:
    return bool(tok) and all(c != " " and _alpha_unit(c) for c in tok)


def _wash(tok: str) -> str:
    for s in _WASHED:
        tok = tok.replace(s, "")
    return tok


def _mixed_kind(tok: str) -> str:
    if _cjk_token(tok):
        return "cjk"
    if "@@" in tok:
        return "piece"
    return "alpha" if _alpha_token(tok) else "other"


def _token_kinds(tokens: list[str]) -> list[str]:
    """Per token: "cjk", "piece" (has "@@"), "alpha" or "other", using FunASR's branches."""
    washed = [_wash(t) for t in tokens]
    if washed and all(_cjk_string(w) for w in washed):
        return ["cjk"] * len(tokens)  # the all-Chinese branch: plain concatenation
    if washed and all(_alpha_unit(w) for w in washed):  # the all-alpha branch
        return ["piece" if "@@" in t else "alpha" for t in tokens]
    return [_mixed_kind(t) for t in tokens]


def _is_letter(part: str) -> bool:
    return len(part) == 1 and part.isascii() and part.isalpha()


def _abbreviations(parts: list[str]) -> list[tuple[int, int]]:
    """(first, last) indices of runs "x", " ", "y", ... of >= 2 single ASCII letters."""
    runs, i, n = [], 0, len(parts)
    while i < n:
        j = i
        while (
            j + 2 < n and _is_letter(parts[j]) and parts[j + 1] == " " and _is_letter(parts[j + 2])
        ):
            j += 2
        if j > i:
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    return runs


def funasr_postprocess(
    tokens: Sequence[str], spans: Sequence[Span] | None = None
) -> tuple[str, str, list[str], list[Span]]:
    """FunASR ``sentence_postprocess`` on token strings.

    tokens: (N,) token strings; spans: optional (N,) per-token (start, end).
    Returns ``(text, spaced_text, words, word_spans)``. `text` is FunASR's plain output,
    `spaced_text` the ``output_timestamp=True`` form (words joined by spaces), and
    `word_spans` is empty without `spans`.
    """
    tokens = list(tokens)
    if spans is not None and len(spans) != len(tokens):
        raise TokenizerError(
            f"{len(spans)} time spans for {len(tokens)} tokens; pass one (start, end) per token"
        )
    words = [t for t in tokens if t not in DROPPED]
    # FunASR indexes the times by position in the *filtered* list, so after a dropped token
    # every later word takes the span of the token before it (the <unk> shift).
    times = list(spans) if spans is not None else [(None, None)] * len(words)

    parts: list[str] = []  # words and " " separators
    parts_spans: list[Span] = []
    pending = ""  # "@@" pieces waiting for the end of their word
    after_word = False  # parts[-1] is the " " after a Latin word
    begin, end, in_run = None, None, False
    for i, (tok, kind) in enumerate(zip(words, _token_kinds(words), strict=True)):
        if not in_run:
            begin, end = times[i]
        if kind == "cjk":
            if after_word:
                parts.pop()
            parts.append(tok)
            parts_spans.append((begin, end))
            after_word, in_run = False, False
        elif kind == "piece":
            pending += tok.replace("@@", "")
            end = times[i][1]
            after_word, in_run = False, True
        elif kind == "alpha":
            parts += [pending + tok, " "]
            pending = ""
            end = times[i][1]
            parts_spans.append((begin, end))
            after_word, in_run = True, False
        else:  # neither: kept as is, with no span and no effect on the state
            parts.append(tok)

    # Single letters -> abbreviation. Spans are looked up by the count of non-" " parts
    # before a part, as FunASR does (off when an "other" token took no span).
    runs = dict(_abbreviations(parts))
    span_index = np.cumsum([0] + [p != " " for p in parts]).tolist()
    merged: list[str] = []
    out_spans: list[Span] = []
    i = 0
    while i < len(parts):
        last = runs.get(i, i)
        piece = "".join(parts[i : last + 1 : 2]).upper() if last > i else parts[i]
        merged.append(piece)
        first_idx, last_idx = span_index[i], span_index[last]
        if piece != " " and last_idx < len(parts_spans):
            out_spans.append((parts_spans[first_idx][0], parts_spans[last_idx][1]))
        i = last + 1
    real = [p for p in merged if p != " "]
    return (
        "".join(merged).strip(),
        " ".join(real).strip(),
        real,
        out_spans if spans is not None else [],
    )


# --- seg_dict files ------------------------------------------------------------------------


def read_seg_dict(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a FunASR ``seg_dict``: ``WORD PIECE...`` per line (later lines win)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise TokenizerError(f"{path}: seg_dict not found; check the path") from e
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: not UTF-8 text ({e.reason}); save it as UTF-8") from e
    return {f[0]: f[1:] for f in (line.split() for line in lines) if f}


def write_seg_dict(path: str | os.PathLike, seg_dict: dict[str, list[str]]) -> None:
    with atomic_write(path) as f:
        f.writelines(" ".join([word, *pieces]) + "\n" for word, pieces in seg_dict.items())


# --- the tokenizer -------------------------------------------------------------------------


class FunasrTokenizer(Tokenizer):
    """FunASR ``CharTokenizer`` + ``sentence_postprocess`` over a FunASR ``tokens.json`` list.

    tokens:   (V,) token strings, id = index (must contain ``<unk>``).
    seg_dict: optional word -> pieces map used by :meth:`encode` (see the module docstring).
    """

    type = "funasr_char"

    def __init__(self, tokens: Sequence[str], seg_dict: dict[str, list[str]] | None = None):
        self.token_list = tokens if isinstance(tokens, TokenList) else TokenList(tokens)
        if self.token_list.unk_id is None:
            raise TokenizerError(f"FunASR token list has no {UNK}; add it to tokens.json")
        self.seg_dict = {k: list(v) for k, v in seg_dict.items()} if seg_dict else None
        self._index = {s: i for i, s in enumerate(self.token_list)}
        self._symbols = np.array(self.token_list.symbols_list, dtype=object)
        self._skip = np.zeros(len(self.token_list), dtype=bool)
        self._skip[list(self.token_list.special_ids)] = True  # <blank>, <s>, </s>

    @classmethod
    def load(cls, directory: str | os.PathLike) -> FunasrTokenizer:
        """From a dir with ``tokens.json`` (or ``tokens.txt``) and, when present, ``seg_dict``.

        Reads both what :meth:`save` writes and a FunASR model folder.
        """
        directory = Path(directory)
        tokens = directory / TOKENS_JSON
        if not tokens.is_file() and (directory / "tokens.txt").is_file():
            tokens = directory / "tokens.txt"
        seg = directory / SEG_DICT
        return cls(TokenList.read(tokens), read_seg_dict(seg) if seg.is_file() else None)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``tokens.json``, ``seg_dict`` (when any) and ``tokenizer.json``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(out_dir / TOKENS_JSON) as f:
            json.dump(self.token_list.symbols_list, f, ensure_ascii=False)
            f.write("\n")
        if self.seg_dict:
            write_seg_dict(out_dir / SEG_DICT, self.seg_dict)
        write_config(out_dir, self.config())
        return out_dir

    def config(self) -> dict[str, Any]:
        return {"type": self.type}

    def split(self, text: str) -> list[str]:
        """FunASR ``text2tokens``: token strings before the vocabulary lookup."""
        if self.seg_dict is None:
            return [c for c in text if c != " "]
        pieces: list[str] = []
        for word in text.strip().split(" "):
            word = word.lower()
            if word in self.seg_dict:
                pieces += self.seg_dict[word]
            elif _SEG_WORD.match(word):
                for c in word:
                    pieces += self.seg_dict.get(c, [UNK])
            else:
                pieces.append(UNK)
        return pieces

    def encode(self, text: str) -> list[int]:
        index, unk = self._index, self.token_list.unk_id
        return [index.get(p, unk) for p in self.split(text)]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """FunASR's recognised text for these ids."""
        arr = self.token_list.check_ids(ids)
        return funasr_postprocess(self._symbols[arr[~self._skip[arr]]].tolist())[0]

    def decode_with_times(
        self, ids: Sequence[int] | np.ndarray, starts: Sequence[Any], ends: Sequence[Any]
    ) -> WordTimes:
        """Words with (start, end) from per-token times (N,), as FunASR's timestamp output.

        Any ``<blank>``/``<s>``/``</s>`` ids are removed together with their times first
        (FunASR removes them before timing). Times pass through unchanged, so give them in
        the unit you want back (FunASR: milliseconds from :func:`cif_timestamps.funasr_ms`).
        """
        arr = self.token_list.check_ids(ids)
        if not len(starts) == len(ends) == arr.size:
            raise TokenizerError(
                f"{arr.size} token ids but {len(starts)} starts and {len(ends)} ends; "
                "pass one start and one end per token"
            )
        keep = np.flatnonzero(~self._skip[arr]).tolist()
        spans = [(starts[i], ends[i]) for i in keep]
        _, text, words, word_spans = funasr_postprocess(self._symbols[arr[keep]].tolist(), spans)
        return WordTimes(text, words, [s for s, _ in word_spans], [e for _, e in word_spans])

    def normalize(self, text: str) -> str:
        """`text` as ``decode(encode(text))`` gives it back when every piece is known."""
        return funasr_postprocess(self.split(text))[0]
