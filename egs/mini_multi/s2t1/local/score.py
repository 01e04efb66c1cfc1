#!/usr/bin/env python3
"""Decode a multitask test set with a packed OWSM-CTC model: CER per language and LID accuracy.

    local/score.py MODEL_DIR DATA_DIR OUT_DIR [--modes given auto]

``given``: each utterance decoded with its true language (``--lang eng`` / ``--lang zho``);
``auto``: ``--lang auto`` (language identified first from output frame 0). Writes
OUT_DIR/<mode>/hyp.<lang>.txt and OUT_DIR/scores.json, and prints one line per figure.
CER compares the text without ``<...>`` symbols and without spaces.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from audiokit.asr.inference import Recognizer
from audiokit.data.data_dir import DataDir
from audiokit.data.kaldi_files import read_kv_file
from audiokit.metrics.wer import score_corpus

_SYMBOL = re.compile(r"<[^<>\s]+>")
_PREFIX = re.compile(r"\s*<([^<>\s]+)>")


def plain(text: str) -> str:
    return "".join(_SYMBOL.sub("", text).split())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--modes", nargs="+", default=["given", "auto"], choices=["given", "auto"])
    a = p.parse_args()
    torch.set_num_threads(1)
    data = DataDir.load(a.data)
    ref_text = read_kv_file(a.data / "text.ctc")
    lang_of = {u: _PREFIX.match(t).group(1) for u, t in data.text.items()}
    langs = sorted(set(lang_of.values()))
    scores: dict[str, dict[str, float]] = {}
    for mode in a.modes:
        hyps: dict[str, str] = {}
        found: dict[str, str] = {}
        groups = {lang: [u for u in data.utt_ids if lang_of[u] == lang] for lang in langs}
        for lang, utts in groups.items():
            rec = Recognizer(a.model, options={"lang": lang if mode == "given" else "auto"})
            waves = [data.load_audio(u, rec.sample_rate)[0] for u in utts]
            for u, r in zip(utts, rec.transcribe_waves(utts, waves), strict=True):
                hyps[u] = r.text
                found[u] = r.info.get("language", lang)
        (a.out / mode).mkdir(parents=True, exist_ok=True)
        row: dict[str, float] = {}
        for lang, utts in groups.items():
            refs = {u: " ".join(plain(ref_text[u])) for u in utts}
            hyp = {u: " ".join(plain(hyps[u])) for u in utts}
            (a.out / mode / f"hyp.{lang}.txt").write_text(
                "".join(f"{u} {hyps[u]}\n" for u in utts), encoding="utf-8"
            )
            row[f"cer_{lang}"] = round(score_corpus(refs, hyp).total.wer, 2)
            print(f"{mode}: {lang} CER {row[f'cer_{lang}']:.2f}% ({len(utts)} utts)")
        if mode == "auto":
            right = sum(found[u] == lang_of[u] for u in data.utt_ids)
            row["lid_accuracy"] = round(100.0 * right / len(data.utt_ids), 2)
            for lang, utts in groups.items():
                acc = 100.0 * sum(found[u] == lang for u in utts) / len(utts)
                row[f"lid_accuracy_{lang}"] = round(acc, 2)
            print(f"auto: LID accuracy {row['lid_accuracy']:.2f}% ({len(data.utt_ids)} utts)")
        scores[mode] = row
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
