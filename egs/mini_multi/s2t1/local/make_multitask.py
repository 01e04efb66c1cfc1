#!/usr/bin/env python3
"""Combine mini_en and mini_zh data dirs into OWSM multitask data dirs (ESPnet s2t layout).

    local/make_multitask.py OUT_DIR eng:SRC_EN zho:SRC_ZH [--max-utts N]

OUT_DIR gets wav.scp (absolute paths), utt2spk, utt2dur (when the sources have it), ``text``
= ``<lang><asr> transcript``, ``text.ctc`` = transcript and ``text.prev`` = ``<na>``.
``--max-utts N`` keeps N utterances of each source, evenly spread over its sorted ids (0: all).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiokit.data.data_dir import DataDir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument(
        "sources", nargs="+", help="LANG:DATA_DIR, e.g. eng:../../mini_en/asr1/data/train"
    )
    p.add_argument("--max-utts", type=int, default=0)
    a = p.parse_args()
    files: dict[str, list[str]] = {
        n: [] for n in ("wav.scp", "utt2spk", "utt2dur", "text", "text.ctc", "text.prev")
    }
    for source in a.sources:
        lang, _, path = source.partition(":")
        d = DataDir.load(path)
        if d.segments:
            raise SystemExit(
                f"{path}: segments are not supported here; use a data dir without them"
            )
        utts = d.utt_ids
        if 0 < a.max_utts < len(utts):  # evenly spread: every speaker stays in
            utts = utts[:: len(utts) // a.max_utts][: a.max_utts]
        for utt in utts:
            wav = Path(d.wav_scp[utt])
            wav = wav if wav.is_absolute() else (Path(path) / wav).resolve()
            text = " ".join(d.text[utt].split())
            files["wav.scp"].append(f"{utt} {wav}")
            files["utt2spk"].append(f"{utt} {d.speaker(utt)}")
            if d.utt2dur:
                files["utt2dur"].append(f"{utt} {d.utt2dur[utt]}")
            files["text"].append(f"{utt} <{lang}><asr> {text}")
            files["text.ctc"].append(f"{utt} {text}")
            files["text.prev"].append(f"{utt} <na>")
    a.out.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        if lines:
            (a.out / name).write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
