"""mini_zh: a synthetic Mandarin corpus made offline with espeak-ng's Mandarin voice.

Text comes from :mod:`text_grammar_zh` (simplified characters, AISHELL-style: no spaces or
punctuation). Every voice is espeak-ng's `cmn` language (pinyin with tones from its Chinese
dictionary) with one of 35 voice variants (`cmn+m3`, `cmn+f2`, `cmn+Annie`, ...), each with its
own speaking rate, pitch and pitch range, jittered per utterance, and white noise added at a
random SNR (15-40 dB). Audio is resampled to 16 kHz and written as 16-bit wav under
`OUT/wav/SPEAKER/`; Kaldi data dirs go to `OUT/{train,dev,test}`.

The split holds out both voices and sentences: no dev/test voice speaks in train, and no
dev/test sentence is said in train. Everything derives from `seed`; espeak-ng output depends
only on its arguments, so a rerun (any `nj`) reproduces every file bit for bit. A rerun with the
same settings reuses finished wavs and skips a complete corpus.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from audiokit.data.corpora import (
    PreparedDir,
)
from audiokit.data.corpora.mini_en import (
    Job,
    assign_jobs,
    hold_out_voices,
    split_sizes,
    synthesize_corpus,
)

SAMPLE_RATE = 16000
LANGUAGE = "cmn"  # Mandarin; `yue` is Cantonese and `cmn-latn-pinyin` reads pinyin, not characters
# espeak-ng variants by the gender their files declare; robotic/whisper/croak ones left out
FEMALE = ("f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda",
          "linda", "steph", "steph2", "steph3")  # fmt: skip
MALE = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Denis", "Diogo", "Henrique",
        "Hugo", "Marco", "antonio", "michel", "miguel", "sandro", "travis", "victor")  # fmt: skip
HELD_OUT_VOICES = 4  # voices each in dev and in test, half female
DEFAULT_UTTS = 3400  # 3000 train + 200 dev + 200 test
CONFIG_FILE = ".mini_zh.json"
VERSION = 1  # bump when the recipe changes what a seed produces


def speaker_id(voice: str) -> str:
    """`cmn+Annie` -> `cmn_annie`. Utterance ids `SPEAKER-split00012` sort the same way as their
    speakers (as Kaldi wants): ids are lower case and `-` sorts before letters and digits, so
    `cmn_steph-...` comes before `cmn_steph2-...` as `cmn_steph` before `cmn_steph2`."""
    return voice.replace("+", "_").lower()


def split_voices(seed: int) -> dict[str, list[str]]:
    """Disjoint voice lists per split, seeded; dev and test each get 2 female and 2 male."""
    r = random.Random(f"zh-voices-{seed}")
    female = [f"{LANGUAGE}+{v}" for v in FEMALE]
    male = [f"{LANGUAGE}+{v}" for v in MALE]
    return hold_out_voices(female, male, r, HELD_OUT_VOICES)


def plan(out_dir: Path, num_utts: int, seed: int) -> dict[str, list[Job]]:
    """Every utterance of every split, fully determined by (num_utts, seed)."""
    from audiokit.data.corpora.text_grammar_zh import generate_sentences

    sizes = dict(zip(("train", "dev", "test"), split_sizes(num_utts), strict=True))
    sentences = generate_sentences(num_utts, seed)  # distinct: disjoint slices never share one
    # base rate: espeak-ng "words"/min is about characters/min for cmn; 180 is ~0.25 s per
    # character (AISHELL reads ~0.2 s)
    r = random.Random(f"zh-prosody-{seed}")
    return assign_jobs(out_dir, sentences, sizes, split_voices(seed), r, (150, 230), speaker_id)


@dataclass
class MiniZhResult:
    dirs: list[PreparedDir]
    synthesised: int
    seconds: float


def prepare_mini_zh(
    out_dir: str | os.PathLike,
    num_utts: int = DEFAULT_UTTS,
    nj: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> MiniZhResult:
    """Build (or finish, or reuse) the corpus in `out_dir`; see the module docstring."""
    t0 = time.perf_counter()
    config = {"version": VERSION, "num_utts": num_utts, "seed": seed}
    dirs, synthesised = synthesize_corpus(
        Path(out_dir), CONFIG_FILE, config, "mini_zh", plan, nj, progress
    )
    return MiniZhResult(dirs, synthesised, time.perf_counter() - t0)
