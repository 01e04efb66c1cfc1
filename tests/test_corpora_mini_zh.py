"""mini_zh: Mandarin grammar, espeak-ng's cmn voice, and a small corpus (split, audio, determinism)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from audiokit.audio import load
from audiokit.data import DataDir, validate_data_dir
from audiokit.data.corpora.espeak import Voice, synthesize
from audiokit.data.corpora.mini_zh import FEMALE, MALE, prepare_mini_zh, split_voices
from audiokit.data.corpora.text_grammar_zh import (
    MAX_CHARS,
    MIN_CHARS,
    count_chars,
    generate_sentences,
    number_chars,
    vocabulary,
)
from audiokit.errors import ConfigError
from tests.conftest import run_main


def _is_hanzi(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff"


def test_grammar_is_seeded_distinct_and_aishell_normalised():
    a = generate_sentences(5000, seed=5)
    assert a == generate_sentences(5000, seed=5)
    assert a != generate_sentences(5000, seed=6)
    assert len(set(a)) == 5000
    vocab = vocabulary()
    assert 250 <= len(vocab) <= 600 and all(_is_hanzi(c) for c in vocab)
    lengths = [len(s) for s in a]
    assert min(lengths) >= MIN_CHARS and max(lengths) <= MAX_CHARS
    assert all(set(s) <= vocab for s in a)  # characters only: no spaces, digits, punctuation
    assert len({len(s) for s in a}) >= 10  # lengths spread over the range


def test_numbers_are_spelt_as_spoken():
    expect = {0: "零", 7: "七", 10: "十", 15: "十五", 20: "二十", 42: "四十二", 100: "一百",
              105: "一百零五", 110: "一百一十", 999: "九百九十九"}  # fmt: skip
    assert {n: number_chars(n) for n in expect} == expect
    assert count_chars(2) == "两" and count_chars(12) == "十二"
    with pytest.raises(ValueError):
        number_chars(1000)


def test_cmn_voice_reads_characters():
    """espeak-ng reads the characters as Mandarin syllables: about 0.25 s a character at
    175 wpm, scaling with the character count (spelling them out as "Chinese letter ..." or
    skipping them would break both)."""
    durs = {}
    for text in ("三个苹果", "请把蓝色的杯子放在桌子上", "我们七月二十二号开会"):
        x, sr = synthesize(text, Voice("cmn+m3", rate=175))
        durs[text] = len(x) / sr / len(text)
        assert 0.15 < durs[text] < 0.4, (text, durs[text])
    a, _ = synthesize("今天天气很好", Voice("cmn+f2", 175, 40))
    c, _ = synthesize("今天天气很好", Voice("cmn+m1", 175, 40))
    assert not np.array_equal(a[: len(c)], c[: len(a)])  # variants are different voices


def test_voice_split_is_disjoint_and_mixed():
    v = split_voices(0)
    assert not set(v["train"]) & (set(v["dev"]) | set(v["test"]))
    assert not set(v["dev"]) & set(v["test"])
    assert sum(len(x) for x in v.values()) == len(FEMALE) + len(MALE)
    for split in ("dev", "test"):
        variants = {x.split("+")[1] for x in v[split]}
        assert len(variants & set(FEMALE)) == 2 and len(variants & set(MALE)) == 2
    assert all(x.startswith("cmn+") for split in v.values() for x in split)


def test_small_corpus_valid_split_audio_and_deterministic(tmp_path):
    res = prepare_mini_zh(tmp_path / "a", num_utts=30, nj=2, seed=3, progress=False)
    assert [(d.name, d.num_utts) for d in res.dirs] == [("train", 26), ("dev", 2), ("test", 2)]
    data = {}
    for split in ("train", "dev", "test"):
        dest = tmp_path / "a" / split
        assert [p for p in validate_data_dir(dest) if p.level != "info"] == []
        data[split] = DataDir.load(dest)
    train_spk = set(data["train"].utt2spk.values())
    train_text = set(data["train"].text.values())
    for split in ("dev", "test"):
        assert not set(data[split].utt2spk.values()) & train_spk
        assert not set(data[split].text.values()) & train_text
    for utt in data["dev"].utt_ids + data["train"].utt_ids[:3]:
        split = "dev" if utt in data["dev"].wav_scp else "train"
        x, sr = data[split].load_audio(utt)
        assert sr == 16000
        frames = x[: len(x) // 160 * 160].reshape(-1, 160)
        energy = (frames**2).mean(axis=1)
        assert np.sqrt(energy.max()) > 0.05  # speech is there
        assert np.min(energy) > 0  # additive noise: never digital silence
        per_char = len(x) / sr / len(data[split].text[utt])
        assert 0.12 < per_char < 0.5, (utt, per_char)  # syllables, not spelt-out names
        assert data[split].utt2dur[utt] == pytest.approx(len(x) / sr)
    voices = json.loads((tmp_path / "a" / "voices.json").read_text())
    assert set(voices["dev"]) == set(data["dev"].utt2spk.values())

    # idempotent rerun; another seed is refused
    again = prepare_mini_zh(tmp_path / "a", num_utts=30, nj=2, seed=3, progress=False)
    assert again.synthesised == 0 and all(d.reused for d in again.dirs)
    with pytest.raises(ConfigError, match="use another output folder"):
        prepare_mini_zh(tmp_path / "a", num_utts=30, seed=4, progress=False)


def test_same_seed_gives_the_same_audio_whatever_nj_or_time(tmp_path):
    """espeak-ng seeds its own random generator (used by the Mandarin voice) from time(NULL) at
    initialisation; the synthesiser must reseed it so that audio depends on the arguments only."""
    a, _ = synthesize("现在是下午四点五十分", Voice("cmn+f5", 175, 40))
    time.sleep(1.1)  # another second: another espeak-ng seed unless it is fixed
    b, _ = synthesize("现在是下午四点五十分", Voice("cmn+f5", 175, 40))
    np.testing.assert_array_equal(a, b)
    prepare_mini_zh(tmp_path / "a", num_utts=12, nj=2, seed=3, progress=False)
    prepare_mini_zh(tmp_path / "b", num_utts=12, nj=1, seed=3, progress=False)
    wavs = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "wav").rglob("*.wav"))
    assert len(wavs) == 12
    for wav in wavs:
        xa, _ = load(tmp_path / "a" / wav)
        xb, _ = load(tmp_path / "b" / wav)
        np.testing.assert_array_equal(xa, xb, err_msg=str(wav))
    assert (tmp_path / "a" / "train" / "text").read_text() == (
        tmp_path / "b" / "train" / "text"
    ).read_text()


def test_interrupted_run_is_finished(tmp_path):
    prepare_mini_zh(tmp_path / "c", num_utts=6, nj=1, seed=1, progress=False)
    wavs = sorted((tmp_path / "c" / "wav").rglob("*.wav"))
    wavs[0].unlink()
    (tmp_path / "c" / "dev" / ".audiokit_prepared").unlink()
    res = prepare_mini_zh(tmp_path / "c", num_utts=6, nj=1, seed=1, progress=False)
    assert res.synthesised == 1 and wavs[0].is_file()


def test_too_few_utterances_is_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="--num-utts 2 is too small"):
        prepare_mini_zh(tmp_path / "t", num_utts=2, progress=False)
    assert not (tmp_path / "t").exists()


def test_cli_mini_zh(tmp_path, capsys):
    code, out, err = run_main(capsys, "data", "prepare", "mini-zh", str(tmp_path / "m"),
                              "--num-utts", "5", "--nj", "1")  # fmt: skip
    assert code == 0, out + err
    assert "train: 3 utterance(s)" in out and "synthesised 5 utterance(s)" in out
    text = (tmp_path / "m" / "train" / "text").read_text(encoding="utf-8")
    assert all(_is_hanzi(c) for line in text.splitlines() for c in line.split(" ", 1)[1])
