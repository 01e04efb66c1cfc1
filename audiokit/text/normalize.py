"""Text normalisation helpers for recipes: case, punctuation, full-width forms, whitespace.

All functions are pure (str -> str) and work through `str.translate` or one regex pass, so
they are cheap on long transcripts. Typical English ASR text: `normalize(t, case="upper",
punctuation=True)`; Chinese: `normalize(t, fullwidth=True, punctuation=True)`.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

# Full-width ASCII variants U+FF01..U+FF5E sit 0xFEE0 above ASCII; U+3000 is the CJK space.
_FULL_TO_HALF = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_APOSTROPHES = "'\u2019"
# An apostrophe without a letter or digit on both sides (a quote mark, not "don't").
_OUTER_APOSTROPHE = re.compile(rf"(?<![^\W_])[{_APOSTROPHES}]|[{_APOSTROPHES}](?![^\W_])")
# Han (basic, extension A, compatibility, extensions B-G), kana, Hangul syllables, 々 and 〇.
CJK_RANGES = (
    "\u3005\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)


def to_upper(text: str) -> str:
    return text.upper()


def to_lower(text: str) -> str:
    return text.lower()


def collapse_whitespace(text: str) -> str:
    """Runs of any Unicode whitespace become one space; leading/trailing removed."""
    return " ".join(text.split())


def fullwidth_to_halfwidth(text: str) -> str:
    """Full-width ASCII forms ("ＡＢＣ１２３，！") and the ideographic space become ASCII.

    CJK punctuation without an ASCII twin ("。", "、", "《") is left alone.
    """
    return text.translate(_FULL_TO_HALF)


@functools.cache
def _punctuation_table(keep: str = "") -> dict[int, int]:
    # Every code point in Unicode categories P* (Pc Pd Ps Pe Pi Pf Po) except `keep` maps to
    # a space. Built once per `keep` on first use (about 0.3 s).
    return {
        c: 0x20
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)).startswith("P") and chr(c) not in keep
    }


def strip_punctuation(text: str, keep_inner_apostrophes: bool = True) -> str:
    """Replace punctuation (Unicode categories P*) by spaces, then collapse whitespace.

    With `keep_inner_apostrophes`, an apostrophe between two letters/digits stays ("don't",
    "o'clock"); quotes and leading/trailing apostrophes go. Replacing by a space (not
    deleting) keeps "well,then" as two words; Chinese text loses nothing because spaces are
    dropped by the char tokenizer. Symbols (S*: "$", "+", "%") are kept.
    """
    if keep_inner_apostrophes:
        text = _OUTER_APOSTROPHE.sub(" ", text.translate(_punctuation_table(_APOSTROPHES)))
    else:
        text = text.translate(_punctuation_table())
    return collapse_whitespace(text)


def remove_spaces_between_cjk(text: str) -> str:
    """Drop whitespace next to a CJK character ("我 爱 你 ok" -> "我爱你ok")."""
    return _CJK_SPACE.sub("", text)


_CJK_SPACE = re.compile(rf"(?<=[{CJK_RANGES}])\s+|\s+(?=[{CJK_RANGES}])")


def normalize(
    text: str,
    *,
    case: str = "keep",
    punctuation: bool = False,
    fullwidth: bool = False,
) -> str:
    """Apply, in order: full-width -> half-width, punctuation stripping, case, whitespace collapse.

    `case` is "keep", "upper" or "lower".
    """
    if case not in ("keep", "upper", "lower"):
        from audiokit.errors import ConfigError

        raise ConfigError(f"case '{case}' is not supported; use keep, upper or lower")
    if fullwidth:
        text = fullwidth_to_halfwidth(text)
    if punctuation:
        text = strip_punctuation(text)
    if case == "upper":
        text = text.upper()
    elif case == "lower":
        text = text.lower()
    return collapse_whitespace(text)
