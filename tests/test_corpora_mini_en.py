"""mini_en: grammar, espeak-ng voices, and a small end-to-end corpus (split, audio, determinism)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from audiokit.audio import info, load
from audiokit.cli.main import main
from audiokit.data import DataDir, validate_data_dir
from audiokit.data.corpora.espeak import Voice, synthesize
from audiokit.data.corpora.mini_en import prepare_mini_en, split_sizes, split_voices
from audiokit.data.corpora.text_grammar import generate_sentences, number_words, vocabulary
from audiokit.errors import ConfigError, DataDirError


def test_grammar_is_seeded_distinct_and_well_formed():
    a = generate_sentences(3000, seed=5)
    assert a == generate_sentences(3000, seed=5)
    assert a != generate_sentences(3000, seed=6)
    assert len(set(a)) == 3000
    vocab = vocabulary()
    assert 200 <= len(vocab) <= 600
    for s in a:
        words = s.split()
        assert 3 <= len(words) <= 10 and s == s.upper() and s.replace(" ", "").isalpha()
        assert set(words) <= vocab
    assert number_words(42) == "FORTY TWO" and number_words(13) == "THIRTEEN"


def test_espeak_is_deterministic_and_voices_differ():
    a, sr = synthesize("put the red box on the table", Voice("en-us+m3", rate=180, pitch=40))
    b, _ = synthesize("put the red box on the table", Voice("en-us+m3", rate=180, pitch=40))
    c, _ = synthesize("put the red box on the table", Voice("en-gb-scotland+f2"))
    assert sr == 22050 and a.dtype == np.int16 and len(a) > 0.8 * sr
    np.testing.assert_array_equal(a, b)  # no state leaks from one utterance to the next
    assert not np.array_equal(a[: len(c)], c[: len(a)])
    slow, _ = synthesize("put the red box on the table", Voice("en-us+m3", rate=100, pitch=40))
    assert len(slow) > 1.4 * len(a)
    with pytest.raises(ConfigError, match="voice 'xx-nope' not found"):
        synthesize("hello", "xx-nope")


def test_voice_split_is_disjoint():
    v = split_voices(0)
    assert not set(v["train"]) & (set(v["dev"]) | set(v["test"]))
    assert not set(v["dev"]) & set(v["test"])
    assert any("+f" in x for x in v["dev"]) and any("+m" in x for x in v["dev"])
    assert split_sizes(3400) == (3000, 200, 200)


def test_small_corpus_valid_split_audio_and_deterministic(tmp_path):
    res = prepare_mini_en(tmp_path / "a", num_utts=30, nj=2, seed=3, progress=False)
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
        assert (
            sr == 16000
            and info(tmp_path / "a" / "wav" / utt.rsplit("-", 1)[0] / f"{utt}.wav").sample_rate
            == 16000
        )
        frames = x[: len(x) // 160 * 160].reshape(-1, 160)
        energy = (frames**2).mean(axis=1)
        assert np.sqrt(energy.max()) > 0.05  # speech is there
        assert np.min(energy) > 0  # additive noise: never digital silence
        assert data[split].utt2dur[utt] == pytest.approx(len(x) / sr)
    voices = json.loads((tmp_path / "a" / "voices.json").read_text())
    assert set(voices["dev"]) == set(data["dev"].utt2spk.values())

    # same seed, different nj: identical files; another seed: another corpus
    prepare_mini_en(tmp_path / "b", num_utts=30, nj=1, seed=3, progress=False)
    for utt in data["test"].utt_ids:
        spk = data["test"].utt2spk[utt]
        xa, _ = load(tmp_path / "a" / "wav" / spk / f"{utt}.wav")
        xb, _ = load(tmp_path / "b" / "wav" / spk / f"{utt}.wav")
        np.testing.assert_array_equal(xa, xb)
    assert (tmp_path / "a" / "train" / "text").read_text() == (
        tmp_path / "b" / "train" / "text"
    ).read_text()

    # idempotent rerun; a different seed in the same folder is refused
    again = prepare_mini_en(tmp_path / "a", num_utts=30, nj=2, seed=3, progress=False)
    assert again.synthesised == 0 and all(d.reused for d in again.dirs)
    with pytest.raises(ConfigError, match="use another output folder"):
        prepare_mini_en(tmp_path / "a", num_utts=30, seed=4, progress=False)


def test_interrupted_run_is_finished(tmp_path):
    prepare_mini_en(tmp_path / "c", num_utts=6, nj=1, seed=1, progress=False)
    wavs = sorted((tmp_path / "c" / "wav").rglob("*.wav"))
    wavs[0].unlink()
    (tmp_path / "c" / "dev" / ".audiokit_prepared").unlink()
    res = prepare_mini_en(tmp_path / "c", num_utts=6, nj=1, seed=1, progress=False)
    assert res.synthesised == 1 and wavs[0].is_file()


def test_foreign_data_dir_is_not_clobbered(tmp_path):
    (tmp_path / "o" / "dev").mkdir(parents=True)
    (tmp_path / "o" / "dev" / "wav.scp").write_text("u1 /data/u1.wav\n")
    with pytest.raises(DataDirError, match="did not write"):
        prepare_mini_en(tmp_path / "o", num_utts=3, nj=1, progress=False)
    assert (tmp_path / "o" / "dev" / "wav.scp").read_text() == "u1 /data/u1.wav\n"
    assert not (tmp_path / "o" / "wav").exists()  # refused before any synthesis


def test_cli_mini_en(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "mini-en", str(tmp_path / "m"), "--num-utts", "5", "--nj", "1"])
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    assert "train: 3 utterance(s)" in out and "synthesised 5 utterance(s)" in out
