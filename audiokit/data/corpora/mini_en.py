"""mini_en: a synthetic English corpus made offline with espeak-ng voices.

Text comes from :mod:`text_grammar`; each voice is an espeak-ng English accent x variant
(e.g. `en-us+m3`), with its own speaking rate, pitch and pitch range, jittered per utterance,
and white noise added at a random SNR (15-40 dB). Audio is resampled to 16 kHz and written as
16-bit wav under `OUT/wav/SPEAKER/`; Kaldi data dirs go to `OUT/{train,dev,test}`.

The split holds out both voices and sentences: no dev/test voice speaks in train, and no
dev/test sentence is said in train. Everything derives from `seed`, and espeak-ng output
depends only on its arguments, so a rerun (any `nj`) reproduces every file bit for bit.
A rerun with the same settings reuses finished wavs and skips a complete corpus.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from audiokit.data.corpora import (
    PreparedDir,
    check_corpus_config,
    check_replaceable,
    is_prepared,
    write_prepared,
)
from audiokit.errors import ConfigError
from audiokit.utils.atomic import atomic_write

SAMPLE_RATE = 16000
ACCENTS = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-us-nyc")  # fmt: skip
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")
HELD_OUT_VOICES = 6  # voices each in dev and in test (half female where possible)
DEFAULT_UTTS = 3400  # 3000 train + 200 dev + 200 test
SNR_DB = (15.0, 40.0)
CONFIG_FILE = ".mini_en.json"
VERSION = 1  # bump when the recipe changes what a seed produces


@dataclass(frozen=True)
class Job:
    """One utterance to render."""

    utt: str
    speaker: str
    text: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    snr_db: float
    gain: float
    noise_seed: int
    path: str


def speaker_id(voice: str) -> str:
    """`en-us+m3` -> `en_us_m3`: no speaker id is a prefix of another, so utterance ids
    `SPEAKER-NNNNN` sort the same way as their speakers (as Kaldi wants)."""
    return voice.replace("-", "_").replace("+", "_")


def split_sizes(num_utts: int) -> tuple[int, int, int]:
    """(train, dev, test): dev and test get 200/3400 each, at least 1."""
    if num_utts < 3:
        raise ConfigError(f"--num-utts {num_utts} is too small; give at least 3 (train/dev/test)")
    held = max(1, round(num_utts * 200 / DEFAULT_UTTS))
    return num_utts - 2 * held, held, held


def split_voices(seed: int) -> dict[str, list[str]]:
    """Disjoint voice lists per split, seeded; dev and test mix male and female variants."""
    r = random.Random(f"voices-{seed}")
    voices = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]
    female = [v for v in voices if v.split("+")[1].startswith("f")]
    male = [v for v in voices if v not in female]
    return hold_out_voices(female, male, r)


def hold_out_voices(
    female: list[str], male: list[str], r: random.Random, held_out: int = HELD_OUT_VOICES
) -> dict[str, list[str]]:
    """Voices per split: dev and test each get ``held_out`` voices, half female, half male
    (shuffled by `r`); train gets the rest. No voice is in two splits."""
    female, male = list(female), list(male)
    r.shuffle(female)
    r.shuffle(male)
    half = held_out // 2
    dev = female[:half] + male[:half]
    test = female[half : 2 * half] + male[half : 2 * half]
    train = female[2 * half :] + male[2 * half :]
    return {"train": sorted(train), "dev": sorted(dev), "test": sorted(test)}


def assign_jobs(
    out_dir: Path,
    sentences: list[str],
    sizes: dict[str, int],
    voices: dict[str, list[str]],
    r: random.Random,
    rate_range: tuple[int, int],
    speaker_of: Callable[[str], str] = speaker_id,
) -> dict[str, list[Job]]:
    """Consecutive slices of `sentences` per split, voices round robin, prosody from `r`;
    `speaker_of(voice)` names the speaker.

    Each voice has its own habits (base rate in espeak-ng words/min from `rate_range`, pitch
    and pitch range), jittered per utterance, plus a noise SNR and gain per utterance.
    """
    habits = {v: (r.randint(*rate_range), r.randint(25, 75), r.randint(30, 90))
              for split in ("train", "dev", "test") for v in voices[split]}  # fmt: skip
    jobs: dict[str, list[Job]] = {}
    start = 0
    for split in ("train", "dev", "test"):
        texts = sentences[start : start + sizes[split]]
        start += sizes[split]
        order = list(voices[split])
        r.shuffle(order)
        jobs[split] = []
        for i, text in enumerate(texts):
            voice = order[i % len(order)]  # round robin: speakers get equal shares
            spk = speaker_of(voice)
            utt = f"{spk}-{split}{i:05d}"
            rate, pitch, rng = habits[voice]
            jobs[split].append(Job(
                utt=utt, speaker=spk, text=text, voice=voice,
                rate=int(rate * r.uniform(0.9, 1.1)), pitch=min(99, max(0, pitch + r.randint(-5, 5))),
                pitch_range=rng, snr_db=round(r.uniform(*SNR_DB), 2), gain=round(r.uniform(0.3, 0.9), 3),
                noise_seed=r.getrandbits(63), path=str(out_dir / "wav" / spk / f"{utt}.wav"),
            ))  # fmt: skip
    return jobs


def plan(out_dir: Path, num_utts: int, seed: int) -> dict[str, list[Job]]:
    """Every utterance of every split, fully determined by (num_utts, seed)."""
    from audiokit.data.corpora.text_grammar import generate_sentences

    sizes = dict(zip(("train", "dev", "test"), split_sizes(num_utts), strict=True))
    sentences = generate_sentences(num_utts, seed)  # distinct: disjoint slices never share one
    # base rate in words/min
    return assign_jobs(
        out_dir, sentences, sizes, split_voices(seed), random.Random(f"prosody-{seed}"), (140, 200)
    )


def render(job: Job) -> int:
    """Synthesise, add noise, resample to 16 kHz, save; returns the number of samples."""
    from audiokit.audio import resample, save
    from audiokit.data.corpora.espeak import Voice, synthesize

    pcm, sr = synthesize(job.text.lower(), Voice(job.voice, job.rate, job.pitch, job.pitch_range))
    x = pcm.astype(np.float64) / 32768.0
    power = float(np.mean(x**2))
    noise = np.random.default_rng(job.noise_seed).standard_normal(x.shape)
    x = x + noise * np.sqrt(power / 10.0 ** (job.snr_db / 10.0))
    x = resample(x, sr, SAMPLE_RATE)
    x = x * (job.gain / max(1e-9, float(np.abs(x).max())))  # peak level varies per utterance
    save(job.path, x.astype(np.float32), SAMPLE_RATE)
    return int(x.shape[-1])


def render_all(jobs: list[Job], nj: int, progress: bool, name: str) -> dict[str, int]:
    """Render jobs in `nj` processes (espeak-ng is one synthesiser per process): utt -> samples."""
    from rich.console import Console
    from rich.progress import Progress

    lengths: dict[str, int] = {}
    if not jobs:
        return lengths
    bar = Progress(console=Console(stderr=True), transient=True, disable=not progress)
    with bar:
        task = bar.add_task("synthesising mini_en", total=len(jobs))
        if nj <= 1:
            results = map(render, jobs)
            for job, n in zip(jobs, results, strict=True):
                lengths[job.utt] = n
                bar.advance(task)
        else:
            with ProcessPoolExecutor(nj, mp_context=get_context("spawn")) as pool:
                results = pool.map(render, jobs, chunksize=8)
                for job, n in zip(jobs, results, strict=True):
                    lengths[job.utt] = n
                    bar.advance(task)
    return lengths


@dataclass
class MiniEnResult:
    dirs: list[PreparedDir]
    synthesised: int
    seconds: float


def prepare_mini_en(
    out_dir: str | os.PathLike,
    num_utts: int = DEFAULT_UTTS,
    nj: int = 2,
    seed: int = 0,
    progress: bool = True,
) -> MiniEnResult:
    """Build (or finish, or reuse) the corpus in `out_dir`; see the module docstring."""
    t0 = time.perf_counter()
    config = {"version": VERSION, "num_utts": num_utts, "seed": seed}
    dirs, synthesised = synthesize_corpus(
        Path(out_dir), CONFIG_FILE, config, "mini_en", plan, nj, progress
    )
    return MiniEnResult(dirs, synthesised, time.perf_counter() - t0)


def synthesize_corpus(
    out_dir: Path,
    config_file: str,
    config: dict,
    name: str,
    plan_jobs: Callable[[Path, int, int], dict[str, list[Job]]],
    nj: int,
    progress: bool,
) -> tuple[list[PreparedDir], int]:
    """The espeak-ng corpora's build (mini_en, mini_zh): reuse a finished corpus of the same
    config, else render the missing wavs of `plan_jobs(out_dir, num_utts, seed)` and write the
    train/dev/test data dirs and voices.json. Returns (dirs, utterances rendered now)."""
    from audiokit.audio import info

    cfg_path = out_dir / config_file
    check_corpus_config(out_dir, cfg_path, config, name)
    splits = ("train", "dev", "test")
    if cfg_path.is_file() and all(is_prepared(out_dir / s) for s in splits):
        return [PreparedDir(s, out_dir / s, _count(out_dir / s), reused=True) for s in splits], 0
    split_sizes(config["num_utts"])  # a bad --num-utts fails before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = cfg_path.is_file()  # an earlier run of ours: its half-written dirs may be replaced
    for split in splits:
        check_replaceable(out_dir / split, ours)  # before minutes of work, not after
    with atomic_write(cfg_path) as f:
        f.write(json.dumps(config) + "\n")
    jobs = plan_jobs(out_dir, config["num_utts"], config["seed"])
    todo = [j for split in splits for j in jobs[split] if not Path(j.path).is_file()]
    lengths = render_all(todo, nj, progress, name)
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
    return dirs, len(todo)


def _count(path: Path) -> int:
    with open(path / "wav.scp", encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())
