"""A tiny synthetic corpus for demos and tests that must run anywhere without downloads.

Each word becomes a voiced "syllable": a harmonic source at a speaker-dependent pitch, shaped by
two formant-like resonances chosen from the word's letters, with onset/offset ramps and short
pauses between words. It is not speech, but it has speech's structure (pitched, word-sized
events, silences), which is what feature extraction, data-dir tools and scoring need to exercise.
Real-sounding synthetic speech (espeak-ng voices) comes with the recipe corpora.

Run as `python -m audiokit.data.synthetic OUT_DIR [--num-utts N]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SENTENCES = [
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "A SPEECH TOOLKIT SHOULD BE FAST AND FAITHFUL",
    "THE RAIN IN SPAIN STAYS MAINLY IN THE PLAIN",
    "SHE SELLS SEA SHELLS BY THE SEA SHORE",
    "HOW MUCH WOOD WOULD A WOODCHUCK CHUCK",
    "THE FIVE BOXING WIZARDS JUMP QUICKLY",
    "PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS",
    "THE EARLY BIRD CATCHES THE WORM",
]

SPEAKERS = {"spk1": 110.0, "spk2": 180.0, "spk3": 230.0}


def synthesize_words(
    words: list[str], pitch_hz: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Render `words` as a (T,) float32 signal in [-1, 1]; vectorised per word."""
    pieces = [np.zeros(int(0.15 * sample_rate), dtype=np.float32)]
    for word in words:
        dur = 0.12 + 0.05 * len(word)
        t = np.arange(int(dur * sample_rate)) / sample_rate
        f0 = pitch_hz * (1.0 + 0.08 * np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, np.pi)))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        codes = np.frombuffer(word.encode(), dtype=np.uint8).astype(np.float64)
        f1 = 300.0 + 5.0 * (codes.mean() % 120)
        f2 = 900.0 + 20.0 * (codes.max() % 70)
        harmonics = np.arange(1, 30)[:, None]
        freqs = harmonics * f0[None, :]
        gain = 1.0 / (1.0 + ((freqs - f1) / 120.0) ** 2) + 0.6 / (1.0 + ((freqs - f2) / 200.0) ** 2)
        gain = gain * (freqs < sample_rate / 2 - 200)
        voiced = (gain * np.sin(harmonics * phase[None, :])).sum(axis=0)
        ramp = np.minimum(1.0, np.minimum(t, dur - t) / 0.02)
        pieces.append((voiced * ramp).astype(np.float32))
        pieces.append(np.zeros(int(rng.uniform(0.05, 0.12) * sample_rate), dtype=np.float32))
    signal = np.concatenate(pieces)
    signal += 0.003 * rng.standard_normal(signal.shape).astype(np.float32)
    return (0.5 * signal / max(1e-6, float(np.abs(signal).max()))).astype(np.float32)


def make_demo_data_dir(
    out_dir: str | Path, num_utts: int = 12, sample_rate: int = 16000, seed: int = 0
) -> Path:
    """Write a Kaldi data dir (wav/, wav.scp, text, utt2spk, spk2utt) of synthetic utterances."""
    from audiokit.audio import save
    from audiokit.data.kaldi_files import write_kv_file

    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    wav_scp, text, utt2spk = {}, {}, {}
    speakers = list(SPEAKERS)
    for i in range(num_utts):
        spk = speakers[i % len(speakers)]
        utt = f"{spk}-utt{i:03d}"
        sentence = SENTENCES[i % len(SENTENCES)]
        signal = synthesize_words(sentence.split(), SPEAKERS[spk], sample_rate, rng)
        save(out_dir / "wav" / f"{utt}.wav", signal, sample_rate)
        wav_scp[utt] = f"wav/{utt}.wav"
        text[utt] = sentence
        utt2spk[utt] = spk
    write_kv_file(out_dir / "wav.scp", wav_scp)
    write_kv_file(out_dir / "text", text)
    write_kv_file(out_dir / "utt2spk", utt2spk)
    spk2utt: dict[str, list[str]] = {}
    for utt, spk in sorted(utt2spk.items()):
        spk2utt.setdefault(spk, []).append(utt)
    write_kv_file(out_dir / "spk2utt", spk2utt)
    return out_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--num-utts", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = make_demo_data_dir(args.out_dir, args.num_utts, seed=args.seed)
    print(f"wrote {args.num_utts} synthetic utterances to {out}")


if __name__ == "__main__":
    main()
