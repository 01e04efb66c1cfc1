"""The tokenizer interface, loading a saved tokenizer, and reading training text.

A tokenizer directory holds `tokens.txt` (`SYMBOL ID` lines) and `tokenizer.json` (its type
and options); a sentencepiece tokenizer adds `bpe.model`. :func:`load_tokenizer` also reads
directories made elsewhere: a WeNet/ESPnet `bpe.model` beside `tokens.txt`/`units.txt`, or a
FunASR `tokens.json`.
"""

from __future__ import annotations

import itertools
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from audiokit.errors import ConfigError, TokenizerError
from audiokit.text.token_list import TokenList
from audiokit.utils.atomic import atomic_write

CONFIG_NAME = "tokenizer.json"
TOKENS_NAME = "tokens.txt"
MODEL_NAME = "bpe.model"
# Token-list file names looked for in a directory, in order.
TOKEN_FILES = (TOKENS_NAME, "units.txt", "tokens.json")
_CONFIG_FILES = (CONFIG_NAME, "tokenizer.yaml", "tokenizer.yml")
_SP_TYPES = ("bpe", "unigram", "sentencepiece")


class Tokenizer(ABC):
    """Text <-> token ids over a :class:`TokenList`.

    `decode` drops `<blank>` and `<sos/eos>` (it does not merge CTC repeats: that is the
    decoder's job). `decode(encode(text)) == normalize(text)` whenever every token is known.
    """

    type: str
    token_list: TokenList

    def __len__(self) -> int:
        return len(self.token_list)

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included (the output size of a model's last layer)."""
        return len(self.token_list)

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...

    @abstractmethod
    def normalize(self, text: str) -> str:
        """The text as `decode(encode(text))` returns it (when no token is unknown)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Type and options, as saved to `tokenizer.json`."""

    def tokenize(self, text: str) -> list[str]:
        """The token symbols of `encode(text)` (unknown pieces show as `<unk>`)."""
        return self.token_list.symbols(self.encode(text))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.token_list.symbols(ids) for ids in self.encode_batch(texts)]

    def decode_batch(
        self, ids: Any, lengths: Sequence[int] | np.ndarray | None = None
    ) -> list[str]:
        """Decode a batch: a list of id lists, or padded ids `(B, U)` with `lengths` `(B,)`.

        With `lengths`, only the first `lengths[b]` ids of row `b` are read (the padding
        value does not matter).
        """
        return [self.decode(row) for row in batch_rows(ids, lengths)]

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write `tokens.txt` and `tokenizer.json` (subclasses add their model) into `out_dir`."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self._save_model(out_dir)
        self.token_list.write(out_dir / TOKENS_NAME)
        write_config(out_dir, self.config())
        return out_dir

    def _save_model(self, out_dir: Path) -> None:
        """Hook for tokenizers with a model file beside the token list (none by default)."""
        return None


def batch_rows(ids: Any, lengths: Sequence[int] | np.ndarray | None = None) -> list[Any]:
    """Rows of a batch: `ids` as given, or padded `(B, U)` ids cut to `lengths` `(B,)`."""
    if lengths is None:
        return list(ids)
    if hasattr(ids, "detach"):  # torch tensors, without importing torch
        ids = ids.detach().cpu().numpy()
    if hasattr(lengths, "detach"):
        lengths = lengths.detach().cpu().numpy()
    ids = np.asarray(ids)
    lengths = np.asarray(lengths).astype(np.int64)
    if ids.ndim != 2 or lengths.shape != (ids.shape[0],):
        raise TokenizerError(
            f"decode_batch wants ids (B, U) and lengths (B,), got {ids.shape} and "
            f"{lengths.shape}; pass matching shapes"
        )
    return [row[:n] for row, n in zip(ids, lengths.tolist(), strict=True)]


def write_config(out_dir: Path, config: dict[str, Any]) -> None:
    with atomic_write(out_dir / CONFIG_NAME) as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
        f.write("\n")


def _read_config(directory: Path) -> tuple[dict[str, Any], Path | None]:
    for name in _CONFIG_FILES:
        path = directory / name
        if not path.is_file():
            continue
        try:
            if path.suffix == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
            else:
                import yaml

                data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except Exception as e:  # JSON and YAML errors; their text names line and column
            reason = " ".join(str(e).split())
            raise ConfigError(f"{path}: cannot be parsed ({reason}); fix or delete it") from e
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of options; fix or delete it")
        return data, path
    return {}, None


def _find_token_file(directory: Path) -> Path | None:
    return next((directory / n for n in TOKEN_FILES if (directory / n).is_file()), None)


def _find_model(directory: Path) -> Path | None:
    if (directory / MODEL_NAME).is_file():
        return directory / MODEL_NAME
    models = sorted(directory.glob("*.model"))
    if len(models) > 1:
        names = ", ".join(m.name for m in models[:3])
        raise TokenizerError(
            f"{directory}: several sentencepiece models ({names}); pass the .model file to use"
        )
    return models[0] if models else None


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer from a directory, a `.model` file, or a token-list file.

    - a directory with `bpe.model` (or exactly one `*.model`): sentencepiece, with the token
      list from `tokens.txt`/`units.txt`/`tokens.json` beside it, or built from the model;
    - a directory with only a token list: a char tokenizer, options from `tokenizer.json`
      (or `.yaml`); without a config the options are guessed from the list.
    - a directory whose `tokenizer.json` says `funasr_char`: a FunASR tokenizer
      (`tokens.json` and, when present, `seg_dict`).
    """
    from audiokit.text.char_tokenizer import CharTokenizer
    from audiokit.text.sentencepiece_tokenizer import SentencePieceTokenizer

    path = Path(path)
    if not path.exists():
        raise TokenizerError(
            f"{path}: tokenizer not found; train one with `audiokit tokenizer train` or fix the path"
        )
    directory = path if path.is_dir() else path.parent
    config, config_path = _read_config(directory)
    kind = config.get("type")
    if kind == "funasr_char":
        from audiokit.text.funasr_tokenizer import FunasrTokenizer

        return FunasrTokenizer.load(directory)
    if path.is_dir():
        model, tokens = _find_model(path), _find_token_file(path)
    elif path.suffix == ".model":
        model, tokens = path, _find_token_file(directory)
    else:  # a token-list file; a model beside it counts only if the config says so
        model = _find_model(directory) if kind in _SP_TYPES else None
        tokens = path
    if kind in _SP_TYPES or (kind is None and model is not None):
        if model is None:
            raise TokenizerError(
                f"{directory}: {config_path.name if config_path else 'config'} says type={kind} "
                f"but there is no {MODEL_NAME}; copy the model file there or retrain"
            )
        token_list = TokenList.read(tokens) if tokens is not None else None
        return SentencePieceTokenizer(model, token_list, info=config)
    if kind not in (None, "char"):
        raise ConfigError(
            f"{config_path}: unknown tokenizer type '{kind}'; use bpe, unigram, char or funasr_char"
        )
    if tokens is None:
        raise TokenizerError(
            f"{path}: no {MODEL_NAME} or token list ({', '.join(TOKEN_FILES)}) found; "
            "train one with `audiokit tokenizer train`"
        )
    options = {k: v for k, v in config.items() if k != "type"}
    return CharTokenizer.from_token_list(TokenList.read(tokens), **options)


# --- training text ----------------------------------------------------------------------------


def read_training_text(source: str | os.PathLike, has_keys: bool = False) -> Iterator[str]:
    """Yield the non-empty transcripts in a text file or a Kaldi data dir's `text`.

    A directory is a data dir: its `text` is read with utterance ids stripped. For a file,
    `has_keys` strips the first column (a Kaldi `text` file). Raises :class:`TokenizerError`
    when nothing is left, before yielding anything.
    """
    from audiokit.data.kaldi_files import read_kv_file

    source = Path(source)
    if source.is_dir():
        if not (source / "text").is_file():
            raise TokenizerError(
                f"{source}: data dir has no 'text' file; give a data dir with transcripts "
                "or a plain text file"
            )
        lines: Iterable[str] = read_kv_file(source / "text", allow_empty_value=True).values()
    elif source.is_file():
        lines = _read_lines(source, has_keys)
    else:
        raise TokenizerError(f"{source}: input not found; give a text file or a Kaldi data dir")
    stripped = (s for s in (line.strip() for line in lines) if s)
    first = next(stripped, None)
    if first is None:
        hint = " (did --has-keys strip the only column?)" if has_keys else ""
        raise TokenizerError(f"{source}: no text to train on{hint}; give a non-empty input")
    return itertools.chain([first], stripped)


def _read_lines(path: Path, has_keys: bool) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        try:
            for line in f:
                if has_keys:
                    parts = line.split(maxsplit=1)
                    yield parts[1] if len(parts) > 1 else ""
                else:
                    yield line
        except UnicodeDecodeError as e:
            raise TokenizerError(f"{path}: not UTF-8 text ({e.reason}); convert it to UTF-8") from e
