"""An ordered token list (symbol <-> id) and its file formats.

Lists that audiokit builds follow the ESPnet convention: `<blank>` is id 0 (the CTC blank),
`<unk>` id 1 and `<sos/eos>` the last id. Lists read from elsewhere keep their own order; the
special ids are then found by name (`<blk>` for icefall's blank, `<s>`/`</s>` for FunASR's).

File formats read:

- `SYMBOL ID` per line (WeNet `units.txt`, k2/icefall `tokens.txt`; what :meth:`write` writes),
- one symbol per line (ESPnet `tokens.txt`; the id is the line number from 0),
- a JSON list of symbols (FunASR `tokens.json`) or a JSON object `{symbol: id}`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from audiokit.errors import TokenizerError
from audiokit.utils.atomic import atomic_write

BLANK = "<blank>"
UNK = "<unk>"
SOS_EOS = "<sos/eos>"

# Names other toolkits use for the same roles, in order of preference.
_BLANK_NAMES = (BLANK, "<blk>")
_UNK_NAMES = (UNK, "<UNK>")
_SOS_NAMES = (SOS_EOS, "<sos>", "<s>")
_EOS_NAMES = (SOS_EOS, "<eos>", "</s>")


def _first_present(index: dict[str, int], names: Sequence[str]) -> int | None:
    for name in names:
        if name in index:
            return index[name]
    return None


class TokenList:
    """Ordered symbols: `symbol(id)`, `id(symbol)`; a symbol not in the list maps to `<unk>`.

    `blank_id`, `unk_id`, `sos_id` and `eos_id` are None when the list has no such symbol
    (`sos_id == eos_id` for an ESPnet-style `<sos/eos>`). `special_ids` holds blank/sos/eos:
    the ids a decoder drops when turning ids back into text.
    """

    def __init__(self, symbols: Iterable[str]):
        self._symbols: list[str] = list(symbols)
        if not self._symbols:
            raise TokenizerError("token list is empty; build it from some text first")
        self._index: dict[str, int] = {}
        for i, sym in enumerate(self._symbols):
            if not isinstance(sym, str) or not sym or any(c.isspace() for c in sym):
                raise TokenizerError(
                    f"token {i} ({sym!r}) is empty or contains whitespace; "
                    "tokens must be single non-space strings"
                )
            if sym in self._index:
                raise TokenizerError(
                    f"token '{sym}' appears twice (ids {self._index[sym]} and {i}); "
                    "keep one entry per token"
                )
            self._index[sym] = i
        self.blank_id = _first_present(self._index, _BLANK_NAMES)
        self.unk_id = _first_present(self._index, _UNK_NAMES)
        self.sos_id = _first_present(self._index, _SOS_NAMES)
        self.eos_id = _first_present(self._index, _EOS_NAMES)
        self.special_ids = frozenset(
            i for i in (self.blank_id, self.sos_id, self.eos_id) if i is not None
        )

    @classmethod
    def build(cls, symbols: Iterable[str]) -> TokenList:
        """`<blank>`, `<unk>`, then `symbols` in order (specials and repeats dropped), `<sos/eos>`."""
        seen = {BLANK, UNK, SOS_EOS}
        body = []
        for sym in symbols:
            if sym not in seen:
                seen.add(sym)
                body.append(sym)
        return cls([BLANK, UNK, *body, SOS_EOS])

    # --- lookup -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._symbols)

    def __iter__(self) -> Iterator[str]:
        return iter(self._symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenList) and self._symbols == other._symbols

    def __repr__(self) -> str:
        return f"TokenList({len(self)} tokens: {' '.join(self._symbols[:5])} ...)"

    @property
    def symbols_list(self) -> list[str]:
        """A copy of all symbols in id order."""
        return list(self._symbols)

    def id(self, symbol: str) -> int:
        """Id of `symbol`; `<unk>`'s id for a symbol not in the list."""
        i = self._index.get(symbol)
        if i is not None:
            return i
        if self.unk_id is None:
            raise TokenizerError(
                f"token '{symbol}' is not in the token list and the list has no <unk>; "
                "add <unk> to the list or retrain the tokenizer on text that covers it"
            )
        return self.unk_id

    def ids(self, symbols: Iterable[str]) -> list[int]:
        return [self.id(s) for s in symbols]

    def symbol(self, token_id: int) -> str:
        return self._symbols[self.check_ids([token_id])[0]]

    def symbols(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        syms = self._symbols
        return [syms[i] for i in self.check_ids(ids).tolist()]

    def check_ids(self, ids: object) -> np.ndarray:
        """`ids` (a list, NumPy array or CPU/GPU tensor of ints) as a 1-D int64 array.

        Raises :class:`TokenizerError` for an id outside `[0, len(self))`.
        """
        if hasattr(ids, "detach"):  # a torch tensor, without importing torch
            ids = ids.detach().cpu().numpy()
        arr = np.asarray(ids)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise TokenizerError(
                f"token ids must be a 1-D sequence of integers, got shape {arr.shape} "
                f"and dtype {arr.dtype}; pass one utterance's ids at a time"
            )
        arr = arr.astype(np.int64, copy=False)
        bad = (arr < 0) | (arr >= len(self._symbols))
        if bad.any():
            raise TokenizerError(
                f"token id {int(arr[bad][0])} is out of range for a {len(self)}-token list; "
                "use ids produced with this tokenizer's tokens.txt"
            )
        return arr

    # --- files ------------------------------------------------------------------------------

    @classmethod
    def read(cls, path: str | os.PathLike) -> TokenList:
        """Read `SYMBOL ID` lines, one symbol per line, or a JSON list/object (by `.json`)."""
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: token list not found; check the tokenizer path")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise TokenizerError(f"{path}: not UTF-8 text ({e.reason}); save it as UTF-8") from e
        if path.suffix == ".json":
            return cls._from_json(path, text)
        lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not lines:
            raise TokenizerError(f"{path}: token list is empty; rebuild it")
        if all(len(f) == 1 for _, f in lines):
            return cls(f[0] for _, f in lines)
        pairs = []
        for n, fields in lines:
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise TokenizerError(
                    f"{path}:{n}: expected 'SYMBOL ID' or one symbol per line, got {' '.join(fields)!r}; "
                    "fix the line"
                )
            pairs.append((fields[0], int(fields[1])))
        return cls._from_pairs(path, pairs)

    @classmethod
    def _from_json(cls, path: Path, text: str) -> TokenList:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise TokenizerError(
                f"{path}: invalid JSON at line {e.lineno} ({e.msg}); fix the file"
            ) from e
        if isinstance(data, list) and all(isinstance(s, str) for s in data):
            return cls(data)
        if isinstance(data, dict) and all(isinstance(v, int) for v in data.values()):
            return cls._from_pairs(path, list(data.items()))
        raise TokenizerError(
            f"{path}: expected a JSON list of token strings or an object {{token: id}}; fix the file"
        )

    @classmethod
    def _from_pairs(cls, path: Path, pairs: list[tuple[str, int]]) -> TokenList:
        ids = sorted(i for _, i in pairs)
        if ids != list(range(len(pairs))):
            missing = sorted(set(range(len(pairs))) - set(ids))
            raise TokenizerError(
                f"{path}: token ids must be 0..{len(pairs) - 1} with no gaps or repeats "
                f"(first problem near id {missing[0] if missing else ids[-1]}); renumber the file"
            )
        symbols = [""] * len(pairs)
        for sym, i in pairs:
            symbols[i] = sym
        return cls(symbols)

    def write(self, path: str | os.PathLike) -> None:
        """Write `SYMBOL ID` lines atomically (the WeNet/k2 packed-model format)."""
        with atomic_write(path) as f:
            f.writelines(f"{sym} {i}\n" for i, sym in enumerate(self._symbols))
