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

import json
import os
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from audiokit.data.corpora import (
    PreparedDir,
    check_corpus_config,
    check_replaceable,
    is_prepared,
    write_prepared,
)
from audiokit.data.corpora.mini_en import Job, assign_jobs, hold_out_voices, render, split_sizes
from audiokit.utils.atomic import atomic_write

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


def _render_all(jobs: list[Job], nj: int, progress: bool) -> dict[str, int]:
    """Render jobs in `nj` processes (espeak-ng is one synthesiser per process)."""
    from rich.console import Console
    from rich.progress import Progress

    lengths: dict[str, int] = {}
    if not jobs:
        return lengths
    bar = Progress(console=Console(stderr=True), transient=True, disable=not progress)
    with bar:
        task = bar.add_task("synthesising mini_zh", total=len(jobs))
        if nj <= 1:
            results = map(render, jobs)
        else:
            pool = ProcessPoolExecutor(nj, mp_context=get_context("spawn"))
            results = pool.map(render, jobs, chunksize=8)
        try:
            for job, n in zip(jobs, results, strict=True):
                lengths[job.utt] = n
                bar.advance(task)
        finally:
            if nj > 1:
                pool.shutdown(cancel_futures=True)
    return lengths


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
    from audiokit.audio import info

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    config = {"version": VERSION, "num_utts": num_utts, "seed": seed}
    cfg_path = out_dir / CONFIG_FILE
    check_corpus_config(out_dir, cfg_path, config, "mini_zh")
    splits = ("train", "dev", "test")
    if cfg_path.is_file() and all(is_prepared(out_dir / s) for s in splits):
        dirs = [PreparedDir(s, out_dir / s, _count(out_dir / s), reused=True) for s in splits]
        return MiniZhResult(dirs, 0, time.perf_counter() - t0)
    split_sizes(num_utts)  # a bad --num-utts fails before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = cfg_path.is_file()  # an earlier run of ours: its half-written dirs may be replaced
    for split in splits:
        check_replaceable(out_dir / split, ours)  # before minutes of work, not after
    with atomic_write(cfg_path) as f:
        f.write(json.dumps(config) + "\n")
    jobs = plan(out_dir, num_utts, seed)
    todo = [j for split in splits for j in jobs[split] if not Path(j.path).is_file()]
    lengths = _render_all(todo, nj, progress)
    dirs = []
    for split in splits:
        for j in jobs[split]:
            if j.utt not in lengths:  # rendered by an earlier, interrupted run
                lengths[j.utt] = info(j.path).num_frames
        dest = out_dir / split
        write_prepared(
            dest,
            wav_scp={j.utt: os.path.relpath(j.path, dest) for j in jobs[split]},
            text={j.utt: j.text for j in jobs[split]},
            utt2spk={j.utt: j.speaker for j in jobs[split]},
            lengths={j.utt: (lengths[j.utt], SAMPLE_RATE) for j in jobs[split]},
            overwrite=ours,
        )
        dirs.append(PreparedDir(split, dest, len(jobs[split])))
    with atomic_write(out_dir / "voices.json") as f:  # which espeak-ng voice each speaker is
        json.dump({s: {j.speaker: j.voice for j in jobs[s]} for s in splits}, f, indent=1)
    return MiniZhResult(dirs, len(todo), time.perf_counter() - t0)


def _count(path: Path) -> int:
    with open(path / "wav.scp", encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())
