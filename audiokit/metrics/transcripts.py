"""Reading reference/hypothesis transcripts: Kaldi `text` and NIST sclite `trn`.

Kaldi `text`: `utt_id word word ...` per line (an utterance may have no words).
sclite `trn`: `word word ... (utt_id)` per line; lines starting with `;;` are comments.

Transcript syntax shared by both (as sclite reads it):
- `{ a b / c / @ }` is an alternation: any one alternative may match; `@` is the empty
  alternative (free to delete). Alternations may nest and may appear in the hypothesis too.
- `(word)` is an optionally deletable word: dropping it costs nothing and counts as correct.

The speaker of an utterance comes from its id the way sclite's `-i` id types do:
`spu_id` (default) takes the part before the first `-` (or, if there is none, the first `_`),
`wsj` takes the first three characters; `utt` makes every utterance its own speaker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from audiokit.data.kaldi_files import read_kv_file
from audiokit.errors import ScoringError

FORMATS = ("auto", "kaldi", "trn")
ID_FORMATS = ("spu_id", "wsj", "utt")


@dataclass(frozen=True)
class Alternation:
    """`{ alt1 / alt2 / ... }`: each alternative is a sequence of elements (words or Alternations)."""

    alternatives: tuple[tuple[Element, ...], ...]


Element = str | Alternation


def _is_comment(line: str) -> bool:
    return line.startswith(";;")


def detect_format(path: str | os.PathLike) -> str:
    """'trn' when every transcript line ends in `(utt_id)`, else 'kaldi'."""
    lines = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln and not _is_comment(ln)]
    if lines and all(ln.endswith(")") and "(" in ln for ln in lines):
        return "trn"
    return "kaldi"


def read_transcripts(path: str | os.PathLike, fmt: str = "auto") -> dict[str, str]:
    """Read a transcript file into `{utt_id: text}` (file order kept).

    Raises ScoringError naming the file and line for a trn line without `(utt_id)`,
    an unknown format or a duplicate id.
    """
    path = Path(path)
    if fmt not in FORMATS:
        raise ScoringError(f"unknown transcript format '{fmt}'; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise ScoringError(f"{path}: file not found; check the transcript path")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "kaldi":
        return read_kv_file(path, allow_empty_value=True)
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or _is_comment(line):
                continue
            left, right = line.rfind("("), line.rfind(")")
            if left < 0 or right < left:
                raise ScoringError(
                    f"{path}:{lineno}: trn line has no '(utt_id)' at its end; "
                    "add the id or use --format kaldi"
                )
            utt = line[left + 1 : right].strip()
            if utt in out:
                raise ScoringError(
                    f"{path}:{lineno}: duplicate utterance id '{utt}'; keep one line per id"
                )
            out[utt] = line[:left].strip()
    return out


def speaker_of(utt_id: str, id_format: str = "spu_id") -> str:
    """The speaker an utterance id belongs to (see the module docstring)."""
    if id_format == "wsj":
        return utt_id[:3]
    if id_format == "utt":
        return utt_id
    if id_format != "spu_id":
        raise ScoringError(f"unknown id format '{id_format}'; use one of {', '.join(ID_FORMATS)}")
    # sclite looks for '-' anywhere first, and only then for '_'
    cut = utt_id.find("-")
    if cut < 0:
        cut = utt_id.find("_")
    return utt_id[:cut] if cut > 0 else utt_id


def _split_tokens(text: str, where: str) -> list[str]:
    """Whitespace tokens, except that a `{...}` group (balanced braces) is one token."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start = i
        if text[i] == "{":
            depth = 0
            while i < n:
                depth += (text[i] == "{") - (text[i] == "}")
                i += 1
                if depth == 0:
                    break
            if depth > 0:
                raise ScoringError(
                    f"{where}: unbalanced '{{' in '{text}'; close every alternation with '}}'"
                )
        else:
            while i < n and not text[i].isspace():
                i += 1
        tokens.append(text[start:i])
    return tokens


def _split_alternatives(body: str) -> list[str]:
    """Split the inside of `{...}` at top-level '/'; empty alternatives are dropped (as sclite)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "/" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return [p for p in parts if p.strip()]


def parse_transcript(text: str, where: str = "transcript") -> list[Element]:
    """Parse a transcript into words and Alternations; `where` names it in error messages."""
    if "{" not in text and "}" not in text:
        return text.split()
    out: list[Element] = []
    for tok in _split_tokens(text, where):
        if not tok.startswith("{"):
            out.append(tok)
            continue
        body = tok[1 : tok.rfind("}")]
        alts = tuple(tuple(parse_transcript(a, where)) for a in _split_alternatives(body))
        if not alts:
            raise ScoringError(
                f"{where}: empty alternation '{tok}'; give at least one alternative (use @ for nothing)"
            )
        out.append(Alternation(alts))
    return out
