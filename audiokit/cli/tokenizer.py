"""`audiokit tokenizer`: train a tokenizer, encode text, decode ids.

Heavy modules (numpy, sentencepiece) are imported inside the commands to keep `--help` fast.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path

import typer

from audiokit.errors import ConfigError

app = typer.Typer(
    help="Train tokenizers (BPE, unigram, char) and encode/decode text with them.",
    add_completion=False,
    no_args_is_help=True,
)


class TokType(str, Enum):
    bpe = "bpe"
    unigram = "unigram"
    char = "char"


class Latin(str, Enum):
    word = "word"
    char = "char"


class Space(str, Enum):
    drop = "drop"
    keep = "keep"


class Case(str, Enum):
    keep = "keep"
    upper = "upper"
    lower = "lower"


@app.command("train")
def train(
    input: Path = typer.Argument(..., help="Text file (one sentence a line) or Kaldi data dir."),
    out_dir: Path = typer.Argument(..., help="Where bpe.model, tokens.txt, tokenizer.json go."),
    tok_type: TokType = typer.Option(TokType.bpe, "--type", help="Tokenizer type."),
    vocab_size: int = typer.Option(
        0,
        "--vocab-size",
        help="Pieces including <unk> (the list adds <blank> and <sos/eos>). Required for "
        "bpe/unigram; for char a cap (0: keep every token).",
    ),
    character_coverage: float = typer.Option(
        1.0,
        "--character-coverage",
        help="bpe/unigram: share of characters covered; 0.9995 for CJK.",
    ),
    user_defined_symbols: str = typer.Option(
        "",
        "--user-defined-symbols",
        help="bpe/unigram: comma-separated symbols kept whole, e.g. '<noise>,<laugh>'.",
    ),
    input_sentence_size: int = typer.Option(
        0, "--input-sentence-size", help="bpe/unigram: sample this many sentences (0: all)."
    ),
    seed: int = typer.Option(0, "--seed", help="bpe/unigram: seed for sentence sampling."),
    latin: Latin = typer.Option(
        Latin.word, "--latin", help="char: Latin words whole or as letters."
    ),
    space: Space = typer.Option(
        Space.drop, "--space", help="char: drop spaces or keep them as a token."
    ),
    space_symbol: str = typer.Option(
        "\u2581", "--space-symbol", help="char: the kept space token (▁ or <space>)."
    ),
    case: Case = typer.Option(Case.keep, "--case", help="char: change the case of Latin letters."),
    min_count: int = typer.Option(1, "--min-count", help="char: drop tokens seen fewer times."),
    has_keys: bool = typer.Option(
        False, "--has-keys", help="INPUT file is Kaldi `text` (utterance id first): strip the ids."
    ),
) -> None:
    """Train a tokenizer on INPUT and save it in OUT_DIR."""
    from audiokit.text import CharTokenizer, read_training_text, train_sentencepiece

    if tok_type is not TokType.char and vocab_size <= 0:
        raise ConfigError(
            f"--vocab-size is required for --type {tok_type.value}; e.g. --vocab-size 500"
        )
    source = str(input)
    sentences = read_training_text(input, has_keys=has_keys)
    if tok_type is TokType.char:
        tok = CharTokenizer.train(
            sentences,
            latin=latin.value,
            space=space.value,
            space_symbol=space_symbol,
            case=case.value,
            min_count=min_count,
            vocab_size=vocab_size,
            source=source,
        )
        tok.save(out_dir)
        files = "tokens.txt, tokenizer.json"
    else:
        symbols = [s.strip() for s in user_defined_symbols.split(",") if s.strip()]
        tok = train_sentencepiece(
            sentences,
            out_dir,
            vocab_size=vocab_size,
            model_type=tok_type.value,
            character_coverage=character_coverage,
            user_defined_symbols=symbols,
            input_sentence_size=input_sentence_size,
            seed=seed,
            source=source,
        )
        files = "bpe.model, tokens.txt, tokenizer.json"
    print(f"wrote {out_dir}: {tok.vocab_size} tokens ({files})")
    if tok_type is TokType.char and latin is Latin.char and space is Space.drop:
        print(
            "note: --latin char with --space drop loses word boundaries in Latin text; use --space keep"
        )


def _input_lines(
    text: str | None, input_file: Path | None, has_keys: bool
) -> list[tuple[str, str]]:
    """(key, text) pairs: the TEXT argument, or each line of --input ('-' for stdin)."""
    if (text is None) == (input_file is None):
        raise ConfigError("give either TEXT or --input FILE (not both, not neither)")
    if text is not None:
        return [("", text)]
    if str(input_file) == "-":
        lines = sys.stdin.read().splitlines()
    else:
        if not input_file.is_file():
            raise ConfigError(f"{input_file}: input file not found; check the path")
        lines = input_file.read_text(encoding="utf-8").splitlines()
    pairs = []
    for line in lines:
        if has_keys:
            parts = line.split(maxsplit=1)
            if parts:
                pairs.append((parts[0], parts[1] if len(parts) > 1 else ""))
        else:
            pairs.append(("", line))
    return pairs


def _emit(rows: list[tuple[str, str]], output: Path | None) -> None:
    lines = "".join((f"{k} {v}".rstrip() if k else v) + "\n" for k, v in rows)
    if output is None:
        sys.stdout.write(lines)
        return
    from audiokit.utils.atomic import atomic_write

    with atomic_write(output) as f:
        f.write(lines)


@app.command("encode")
def encode(
    text: str = typer.Argument(None, help="Text to encode (or use --input)."),
    tokenizer: Path = typer.Option(
        ..., "--tokenizer", "-t", help="Tokenizer dir (or .model / tokens file)."
    ),
    ids: bool = typer.Option(False, "--ids/--pieces", help="Print token ids or token symbols."),
    input_file: Path = typer.Option(
        None, "--input", "-i", help="File with one text a line ('-': stdin)."
    ),
    has_keys: bool = typer.Option(
        False, "--has-keys", help="Lines start with an utterance id: keep it in the output."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """Encode text into tokens (one output line per input line)."""
    from audiokit.text import load_tokenizer

    tok = load_tokenizer(tokenizer)
    pairs = _input_lines(text, input_file, has_keys)
    encoded = tok.encode_batch([t for _, t in pairs])
    if ids:
        rows = [(k, " ".join(map(str, e))) for (k, _), e in zip(pairs, encoded, strict=True)]
    else:
        rows = [
            (k, " ".join(tok.token_list.symbols(e)))
            for (k, _), e in zip(pairs, encoded, strict=True)
        ]
    _emit(rows, output)


@app.command("decode")
def decode(
    ids: list[str] = typer.Argument(None, help="Token ids to decode (or use --input)."),
    tokenizer: Path = typer.Option(
        ..., "--tokenizer", "-t", help="Tokenizer dir (or .model / tokens file)."
    ),
    input_file: Path = typer.Option(
        None, "--input", "-i", help="File with one id sequence a line ('-': stdin)."
    ),
    has_keys: bool = typer.Option(
        False, "--has-keys", help="Lines start with an utterance id: keep it in the output."
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """Decode token ids back into text (drops <blank> and <sos/eos>)."""
    from audiokit.text import load_tokenizer

    tok = load_tokenizer(tokenizer)
    pairs = _input_lines(" ".join(ids) if ids else None, input_file, has_keys)
    rows = []
    for n, (key, line) in enumerate(pairs, 1):
        try:
            seq = [int(x) for x in line.split()]
        except ValueError as e:
            where = f"line {n}" + (f" ({key})" if key else "") if input_file else "IDS"
            raise ConfigError(
                f"{where}: token ids must be integers ({e}); pass ids like '5 17 3'"
            ) from e
        rows.append((key, tok.decode(seq)))
    _emit(rows, output)
