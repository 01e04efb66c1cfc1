"""Kaldi data dirs: loading, validation, fix, subset, combine, durations and summary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiokit.data import (
    DataDir,
    combine_data_dirs,
    fix_data_dir,
    subset_data_dir,
    summarize,
    validate_data_dir,
)
from audiokit.errors import ConfigError, DataDirError
from tests.conftest import shared_path

SR = 8000
# utt id -> (speaker, text, seconds)
UTTS = {
    "spkA-u1": ("spkA", "HELLO WORLD", 0.50),
    "spkA-u2": ("spkA", "GOOD MORNING WORLD", 0.75),
    "spkB-u1": ("spkB", "HELLO AGAIN", 0.25),
    "spkB-u2": ("spkB", "SO LONG", 1.00),
}


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_dir(root: Path, utts: dict = UTTS, prefix: str = "") -> Path:
    """A clean data dir with synthesised wavs and relative wav.scp paths."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    for i, (utt, (_, _, secs)) in enumerate(utts.items()):
        sf.write(root / "wav" / f"{prefix}{utt}.wav", tone(secs, 200 + 100 * i), SR, "PCM_16")
    ids = sorted(utts)
    write_lines(root / "wav.scp", [f"{prefix}{u} wav/{prefix}{u}.wav" for u in ids])
    write_lines(root / "text", [f"{prefix}{u} {utts[u][1]}" for u in ids])
    write_lines(root / "utt2spk", [f"{prefix}{u} {prefix}{utts[u][0]}" for u in ids])
    spks = sorted({s for s, _, _ in utts.values()})
    write_lines(
        root / "spk2utt",
        [f"{prefix}{s} " + " ".join(f"{prefix}{u}" for u in ids if utts[u][0] == s) for s in spks],
    )
    return root


def make_segmented_dir(root: Path) -> Path:
    """Two recordings (2 s and 1 s) cut into three utterances by a segments file."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    sf.write(root / "wav" / "rec1.wav", tone(2.0, 300), SR, "PCM_16")
    sf.write(root / "wav" / "rec2.wav", tone(1.0, 500), SR, "PCM_16")
    write_lines(root / "wav.scp", ["rec1 wav/rec1.wav", "rec2 wav/rec2.wav"])
    write_lines(root / "segments", ["s1-a rec1 0.0 0.8", "s1-b rec1 1.0 2.0", "s2-a rec2 0.25 1.0"])
    write_lines(root / "text", ["s1-a ONE", "s1-b TWO", "s2-a THREE"])
    write_lines(root / "utt2spk", ["s1-a s1", "s1-b s1", "s2-a s2"])
    write_lines(root / "spk2utt", ["s1 s1-a s1-b", "s2 s2-a"])
    return root


def kinds(problems, level: str = "error") -> set[str]:
    return {p.kind for p in problems if p.level == level}


def errors(problems):
    return [p for p in problems if p.level == "error"]


# ------------------------------------------------------------------------------ loading
def test_load_and_utterances(tmp_path):
    d = DataDir.load(make_dir(tmp_path / "d"))
    assert d.utt_ids == sorted(UTTS)
    utts = list(d.utterances())
    assert [u.utt_id for u in utts] == sorted(UTTS)
    assert utts[0].speaker == "spkA" and utts[0].text == "HELLO WORLD"
    assert utts[0].start == 0.0 and utts[0].end is None and utts[0].duration is None
    assert d.spk2utt == {"spkA": ["spkA-u1", "spkA-u2"], "spkB": ["spkB-u1", "spkB-u2"]}
    x, sr = d.load_audio("spkB-u2")
    assert sr == SR and x.dtype == np.float32 and x.shape == (SR,)
    x16, sr16 = d.load_audio("spkB-u2", sample_rate=16000)
    assert sr16 == 16000 and abs(x16.shape[0] - 16000) <= 1


def test_load_is_strict_about_duplicates(tmp_path):
    root = make_dir(tmp_path / "d")
    write_lines(root / "text", ["spkA-u1 A", "spkA-u1 B"])
    with pytest.raises(DataDirError, match="duplicate key 'spkA-u1'.*audiokit data fix"):
        DataDir.load(root)


def test_segments_audio_and_durations(tmp_path):
    root = make_segmented_dir(tmp_path / "d")
    d = DataDir.load(root)
    assert d.utt_ids == ["s1-a", "s1-b", "s2-a"]
    u = d.utterance("s2-a")
    assert (u.recording, u.start, u.end, u.duration) == ("rec2", 0.25, 1.0, 0.75)
    full, _ = sf.read(root / "wav" / "rec1.wav", dtype="float32")
    seg, sr = d.load_audio("s1-b")
    assert sr == SR and np.allclose(seg, full[SR : 2 * SR], atol=1e-6)
    d.compute_durations(nj=2)
    again = DataDir.load(root)
    assert again.utt2num_samples == {"s1-a": 6400, "s1-b": 8000, "s2-a": 6000}
    assert again.utt2dur == pytest.approx({"s1-a": 0.8, "s1-b": 1.0, "s2-a": 0.75})
    assert again.reco2dur == pytest.approx({"rec1": 2.0, "rec2": 1.0})
    assert errors(validate_data_dir(root)) == []


def test_compute_durations_whole_files(tmp_path):
    root = make_dir(tmp_path / "d")
    DataDir.load(root).compute_durations(nj=2, progress=False)
    d = DataDir.load(root)
    assert d.utt2num_samples == {u: int(round(s * SR)) for u, (_, _, s) in UTTS.items()}
    assert d.utt2dur == pytest.approx({u: s for u, (_, _, s) in UTTS.items()})
    assert validate_data_dir(root) == []


def test_compute_durations_unwritable_is_a_user_error(tmp_path):
    root = make_dir(tmp_path / "d")
    (root / "utt2dur").mkdir()  # cannot be replaced by a file, even as root
    with pytest.raises(DataDirError, match="utt2dur: cannot write"):
        DataDir.load(root).compute_durations(nj=1)


def test_write_sorts_regenerates_spk2utt_and_absolutises_paths(tmp_path):
    src = make_dir(tmp_path / "src")
    d = DataDir.load(src)
    d.utt2spk["spkA-u2"] = "spkB"  # spk2utt must follow utt2spk
    out = d.write(tmp_path / "out")
    assert (out / "spk2utt").read_text().splitlines() == [
        "spkA spkA-u1",
        "spkB spkA-u2 spkB-u1 spkB-u2",
    ]
    first = (out / "wav.scp").read_text().splitlines()[0].split()[1]
    assert os.path.isabs(first) and Path(first) == (src / "wav" / "spkA-u1.wav").resolve()
    with pytest.raises(DataDirError, match="already holds a data dir.*--overwrite"):
        d.write(tmp_path / "out")
    d.write(tmp_path / "out", overwrite=True)


# ------------------------------------------------------------------------------ validate
def test_clean_dir_validates(tmp_path):
    assert validate_data_dir(make_dir(tmp_path / "d")) == []
    assert validate_data_dir(make_segmented_dir(tmp_path / "s")) == []


def _unsorted(root):
    write_lines(root / "text", ["spkB-u1 X", "spkA-u1 A", "spkA-u2 B", "spkB-u2 C"])


def _duplicate(root):
    with open(root / "utt2spk", "a") as f:
        f.write("spkA-u1 spkA\n")


def _text_not_in_wav(root):
    write_lines(root / "text", [f"{u} {UTTS[u][1]}" for u in sorted(UTTS)] + ["spkC-u9 EXTRA"])


def _missing_utt2spk_line(root):
    write_lines(root / "utt2spk", ["spkA-u1 spkA", "spkA-u2 spkA", "spkB-u1 spkB"])
    write_lines(root / "spk2utt", ["spkA spkA-u1 spkA-u2", "spkB spkB-u1"])


def _spk2utt_mismatch(root):
    write_lines(root / "spk2utt", ["spkA spkA-u1", "spkB spkA-u2 spkB-u1 spkB-u2"])


def _empty_text(root):
    write_lines(root / "text", ["spkA-u1 HELLO", "spkA-u2", "spkB-u1 HI", "spkB-u2 BYE"])


def _missing_audio(root):
    (root / "wav" / "spkB-u1.wav").unlink()


def _no_final_newline(root):
    (root / "text").write_text("spkA-u1 A\nspkA-u2 B\nspkB-u1 C\nspkB-u2 D")


def _crlf(root):
    (root / "text").write_bytes(b"spkA-u1 A\r\nspkA-u2 B\r\nspkB-u1 C\r\nspkB-u2 D\r\n")


def _bad_utt2dur(root):
    write_lines(root / "utt2dur", ["spkA-u1 0.5", "spkA-u2 abc", "spkB-u1 0.25", "spkB-u2 1"])


def _missing_wav_scp(root):
    (root / "wav.scp").unlink()


@pytest.mark.parametrize(
    "breaker, kind, fixable",
    [
        (_unsorted, "unsorted", True),
        (_duplicate, "duplicate", True),
        (_text_not_in_wav, "unknown_id", True),
        (_missing_utt2spk_line, "missing_id", True),
        (_spk2utt_mismatch, "spk2utt_mismatch", True),
        (_empty_text, "empty_text", True),
        (_missing_audio, "missing_audio", False),
        (_no_final_newline, "no_final_newline", True),
        (_crlf, "crlf", True),
        (_bad_utt2dur, "bad_line", True),
        (_missing_wav_scp, "missing_file", False),
    ],
)
def test_validate_finds_problem(tmp_path, breaker, kind, fixable):
    root = make_dir(tmp_path / "d")
    breaker(root)
    problems = validate_data_dir(root, check_audio=False)
    found = [p for p in problems if p.kind == kind and p.level == "error"]
    assert found, problems
    assert all(p.fixable == fixable for p in found)
    for p in found:  # one actionable line that says how to fix
        assert "\n" not in p.message
        assert ("audiokit data fix" in p.message) == fixable


def test_validate_c_byte_order(tmp_path):
    root = make_dir(tmp_path / "d", {"aB": ("aB", "X", 0.1), "a_b": ("a_b", "Y", 0.1)})
    assert validate_data_dir(root, check_audio=False) == []  # 'B' (0x42) < '_' (0x5f)
    write_lines(root / "text", ["a_b Y", "aB X"])  # what a non-C locale sort may produce
    assert kinds(validate_data_dir(root, check_audio=False)) == {"unsorted"}


def test_validate_unreadable_audio_needs_check_audio(tmp_path):
    root = make_dir(tmp_path / "d")
    (root / "wav" / "spkA-u2.wav").write_bytes(b"RIFF\x00\x00not really a wav file")
    assert validate_data_dir(root, check_audio=False) == []
    probs = validate_data_dir(root, check_audio=True)
    assert [(p.kind, p.key) for p in probs] == [("unreadable_audio", "spkA-u2")]


def test_validate_pipes(tmp_path):
    root = make_dir(tmp_path / "d")
    lines = (root / "wav.scp").read_text().splitlines()
    lines[0] = "spkA-u1 cat wav/spkA-u1.wav |"
    write_lines(root / "wav.scp", lines)
    probs = validate_data_dir(root)
    assert kinds(probs, "warning") == {"pipe_not_checked"} and not errors(probs)
    assert validate_data_dir(root, allow_pipes=True) == []


def test_validate_speaker_prefix_and_missing_utt2spk_are_warnings(tmp_path):
    root = make_dir(tmp_path / "d")
    write_lines(
        root / "utt2spk", [f"{u} {'spkB' if u == 'spkA-u1' else UTTS[u][0]}" for u in sorted(UTTS)]
    )
    (root / "spk2utt").unlink()
    probs = validate_data_dir(root, check_audio=False)
    assert not errors(probs)
    assert {(p.kind, p.key) for p in probs} == {
        ("speaker_prefix", "spkA-u1"),
        ("missing_file", None),
    }
    (root / "utt2spk").unlink()
    probs = validate_data_dir(root, check_audio=False)
    assert [(p.kind, p.file, p.level) for p in probs] == [("missing_file", "utt2spk", "warning")]


def test_validate_segments(tmp_path):
    root = make_segmented_dir(tmp_path / "d")
    write_lines(root / "segments", [
        "s1-a rec1 -0.1 0.8",  # start < 0
        "s1-b rec1 1.0 1.0",  # end <= start
        "s2-a rec2 0.25 1.7",  # past the 1 s recording by more than 0.5 s
        "s3-a rec9 0 1",  # unknown recording
        "s3-b rec2 zero 1",  # malformed
        "s3-c rec2 0.5 1.2",  # 0.2 s past the end: warning (cut there, as Kaldi does)
    ])  # fmt: skip
    write_lines(root / "text", ["s1-a A", "s1-b B", "s2-a C", "s3-a D", "s3-b E", "s3-c F"])
    write_lines(
        root / "utt2spk", ["s1-a s1", "s1-b s1", "s2-a s2", "s3-a s3", "s3-b s3", "s3-c s3"]
    )
    write_lines(root / "spk2utt", ["s1 s1-a s1-b", "s2 s2-a", "s3 s3-a s3-b s3-c"])
    probs = validate_data_dir(root, check_audio=True)
    found = {(p.kind, p.key, p.level) for p in probs}
    assert found == {
        ("bad_segment", "s1-a", "error"),
        ("bad_segment", "s1-b", "error"),
        ("segment_past_end", "s2-a", "error"),
        ("unknown_recording", "s3-a", "error"),
        ("bad_segment", "s3-b", "error"),
        ("segment_past_end", "s3-c", "warning"),
    }
    write_lines(root / "segments", ["s1-a rec1 0 0.8"])
    write_lines(root / "text", ["s1-a A"])
    write_lines(root / "utt2spk", ["s1-a s1"])
    write_lines(root / "spk2utt", ["s1 s1-a"])
    probs = validate_data_dir(root, check_audio=False)
    assert {(p.kind, p.key) for p in probs} == {("unused_recording", "rec2")}


# ------------------------------------------------------------------------------ fix
def _break_many(root: Path) -> None:
    write_lines(
        root / "text",
        [
            "spkB-u2 SO LONG",
            "spkA-u1 HELLO WORLD",
            "spkA-u1 HELLO WORLD",  # unsorted + duplicate
            "spkA-u2",  # empty text
            "zz-orphan TEXT WITHOUT AUDIO",  # not in wav.scp
        ],
    )  # fmt: skip  (spkB-u1 has no text)
    _spk2utt_mismatch(root)
    (root / "text.orig").write_text("keep me untouched\n")


def test_fix_in_place_repairs_and_backs_up(tmp_path):
    root = make_dir(tmp_path / "d")
    _break_many(root)
    originals = {n: (root / n).read_bytes() for n in ("text", "spk2utt", "utt2spk", "wav.scp")}
    res = fix_data_dir(root)
    assert res.dropped == {
        "spkA-u2": "empty text",
        "spkB-u1": "no text line",
        "zz-orphan": "no wav.scp entry",
    }
    assert len(res.data) == 2 and res.total == 5
    assert set(res.changed) == {"text", "utt2spk", "spk2utt", "wav.scp"}
    assert validate_data_dir(root) == []
    for name in res.changed:  # originals kept byte for byte
        assert (root / ".backup" / name).read_bytes() == originals[name]
    assert (root / "text.orig").read_text() == "keep me untouched\n"
    assert (root / "text").read_text() == "spkA-u1 HELLO WORLD\nspkB-u2 SO LONG\n"
    # a second fix that changes text again keeps the first backup as text.~1~
    with open(root / "text", "a") as f:
        f.write("spkA-u1 DUPLICATE\n")
    fix_data_dir(root)
    assert (root / ".backup" / "text.~1~").read_bytes() == originals["text"]
    assert validate_data_dir(root) == []


def test_fix_to_out_leaves_source_alone(tmp_path):
    root = make_dir(tmp_path / "d")
    _break_many(root)
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    res = fix_data_dir(root, tmp_path / "fixed")
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before
    assert not (root / ".backup").exists()
    assert validate_data_dir(res.path) == []  # audio paths still resolve (made absolute)
    assert (res.path / "text.orig").read_text() == "keep me untouched\n"


def test_fix_segments_and_missing_utt2spk(tmp_path):
    root = make_segmented_dir(tmp_path / "d")
    write_lines(root / "segments", ["s1-a rec1 0.0 0.8", "s1-b rec1 1.0 0.5", "s2-a rec2 0.25 1.0"])
    write_lines(root / "utt2dur", ["s1-b 1.0"])  # misses s1-a: must go
    (root / "utt2spk").unlink()
    (root / "spk2utt").unlink()
    write_lines(root / "text", ["s1-a ONE", "s1-b TWO"])  # s2-a has no text -> rec2 unused
    res = fix_data_dir(root)
    assert set(res.dropped) == {"s1-b", "s2-a"}
    assert "utt2dur" in res.removed and (root / ".backup" / "utt2dur").exists()
    assert (root / "wav.scp").read_text() == "rec1 wav/rec1.wav\n"
    assert (root / "utt2spk").read_text() == "s1-a s1-a\n"
    assert errors(validate_data_dir(root)) == []


def test_fix_refuses_to_drop_everything(tmp_path):
    root = make_dir(tmp_path / "d")
    write_lines(root / "text", ["other-1 A", "other-2 B"])
    before = (root / "text").read_bytes()
    with pytest.raises(DataDirError, match="no utterance would remain"):
        fix_data_dir(root)
    assert (root / "text").read_bytes() == before and not (root / ".backup").exists()


# ------------------------------------------------------------------------------ subset
@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"first": 2}, ["spkA-u1", "spkA-u2"]),
        ({"last": 1}, ["spkB-u2"]),
    ],
)
def test_subset_first_last(tmp_path, kwargs, expected):
    src = make_dir(tmp_path / "src")
    res = subset_data_dir(src, tmp_path / "out", **kwargs)
    assert DataDir.load(res.path).utt_ids == expected
    assert validate_data_dir(res.path) == []


def test_subset_lists_random_and_extras(tmp_path):
    src = make_dir(tmp_path / "src")
    write_lines(src / "text.orig", [f"{u} {UTTS[u][1].lower()}" for u in sorted(UTTS)])
    write_lines(tmp_path / "utts", ["spkB-u2", "spkA-u1", "nobody"])
    res = subset_data_dir(src, tmp_path / "u", utt_list=tmp_path / "utts")
    assert DataDir.load(res.path).utt_ids == ["spkA-u1", "spkB-u2"]
    assert any("1 id(s)" in n for n in res.notes)
    assert (res.path / "text.orig").read_text() == "spkA-u1 hello world\nspkB-u2 so long\n"
    write_lines(tmp_path / "spks", ["spkB"])
    res = subset_data_dir(src, tmp_path / "s", spk_list=tmp_path / "spks")
    assert DataDir.load(res.path).utt_ids == ["spkB-u1", "spkB-u2"]
    assert (res.path / "spk2utt").read_text() == "spkB spkB-u1 spkB-u2\n"
    a = subset_data_dir(src, tmp_path / "r1", random=3, seed=7).data.utt_ids
    b = subset_data_dir(src, tmp_path / "r2", random=3, seed=7).data.utt_ids
    assert a == b and len(set(a)) == 3 and set(a) <= set(UTTS)
    assert validate_data_dir(tmp_path / "r1") == []


def test_subset_argument_errors(tmp_path):
    src = make_dir(tmp_path / "src")
    with pytest.raises(ConfigError, match="exactly one"):
        subset_data_dir(src, tmp_path / "o", first=1, last=1)
    with pytest.raises(ConfigError, match="has 4 utterances"):
        subset_data_dir(src, tmp_path / "o", random=5)


def test_subset_segments(tmp_path):
    src = make_segmented_dir(tmp_path / "src")
    res = subset_data_dir(src, tmp_path / "o", last=1)
    d = DataDir.load(res.path)
    assert d.utt_ids == ["s2-a"] and list(d.wav_scp) == ["rec2"]
    assert validate_data_dir(res.path) == []


# ------------------------------------------------------------------------------ combine
def test_combine_disjoint_and_identical_duplicates(tmp_path):
    a = make_dir(tmp_path / "a", prefix="a-")
    b = make_dir(tmp_path / "b", prefix="b-")
    res = combine_data_dirs(tmp_path / "ab", [a, b])
    d = DataDir.load(res.path)
    assert len(d) == 8 and d.utt_ids[0] == "a-spkA-u1"
    assert validate_data_dir(res.path) == []
    x, _ = d.load_audio("b-spkB-u2")
    y, _ = DataDir.load(b).load_audio("b-spkB-u2")
    assert np.array_equal(x, y)
    res = combine_data_dirs(tmp_path / "aa", [a, a])  # same ids, same content: kept once
    assert len(res.data) == 4 and any("kept once" in n for n in res.notes)


def test_combine_conflicting_ids_is_an_error(tmp_path):
    a = make_dir(tmp_path / "a")
    b = make_dir(tmp_path / "b")  # same ids, different audio files
    with pytest.raises(DataDirError, match="id 'spkA-u1' is in both .* make ids unique"):
        combine_data_dirs(tmp_path / "ab", [a, b])
    assert not (tmp_path / "ab").exists()


def test_combine_makes_whole_recording_segments(tmp_path):
    seg = make_segmented_dir(tmp_path / "seg")
    whole = make_dir(tmp_path / "whole", prefix="w-")
    (whole / "text").unlink()
    res = combine_data_dirs(tmp_path / "out", [seg, whole])
    d = DataDir.load(res.path)
    assert d.segments["w-spkB-u1"].recording == "w-spkB-u1"
    assert (d.segments["w-spkB-u1"].start, d.segments["w-spkB-u1"].end) == (0.0, 0.25)
    assert d.text is None and any("not combining text" in n for n in res.notes)
    assert len(d) == 7 and validate_data_dir(res.path) == []


# ------------------------------------------------------------------------------ summary
def test_summary(tmp_path):
    s = summarize(make_dir(tmp_path / "d"))
    assert (s.utterances, s.speakers, s.recordings) == (4, 2, 4)
    assert s.duration_stats == pytest.approx((0.25, 0.625, 1.0))
    assert s.total_hours == pytest.approx(2.5 / 3600)
    assert (s.words, s.vocabulary) == (9, 7)
    assert sum(c for _, _, c in s.histogram()) == 4
    sub = DataDir.load(tmp_path / "d").subset(["spkB-u2", "spkA-u1"])  # in memory, path None
    assert summarize(sub).durations == pytest.approx([0.5, 1.0])
    seg = summarize(make_segmented_dir(tmp_path / "s"))
    assert seg.duration_source == "segments" and seg.durations == pytest.approx([0.8, 1.0, 0.75])


# ------------------------------------------------------------------------------ real data
@pytest.mark.parametrize("name, utts", [("speech_en_dev", 11), ("speech_zh_dev", 1)])
def test_real_dirs_validate_and_summarise(name, utts):
    root = shared_path("data", name)
    assert validate_data_dir(root, check_audio=True) == []
    s = summarize(root)
    assert s.utterances == utts and s.speakers == utts
    assert all(d > 1.0 for d in s.durations)
    if name == "speech_en_dev":
        assert s.total_hours * 3600 == pytest.approx(37.1666, abs=1e-3)  # sum of wav headers
    else:
        assert s.characters == 13  # 甚至出现交易几乎停滞的情况
