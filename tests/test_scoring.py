"""audiokit.metrics: sclite-compatible alignment, counts and reports.

The reference outputs are NIST SCTK's own sclite test results (../shared/data/sclite/base).
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from audiokit.errors import ScoringError
from audiokit.metrics import (
    align,
    format_alignment,
    format_summary,
    kaldi_lines,
    parse_transcript,
    read_transcripts,
    score_corpus,
    speaker_of,
    wer,
)
from audiokit.metrics.transcripts import Alternation, detect_format
from tests.conftest import shared_path

# ---------------------------------------------------------------- sclite's own test data


def _pra_blocks(text: str) -> dict[str, tuple[str, list[str], list[str], list[str]]]:
    """id -> (Scores line, REF words, HYP words, Eval marks); runs of '*' become one '*'
    (sclite pads UTF-8 by bytes, audiokit by characters)."""

    def words(line: str) -> list[str]:
        return ["*" if set(w) == {"*"} else w for w in line.split()]

    pat = r"id: \((\S+)\)\nScores: (.*)\nREF: (.*)\nHYP: (.*)\nEval:(.*)\n"
    return {m[1]: (m[2], words(m[3]), words(m[4]), m[5].split()) for m in re.finditer(pat, text)}


def _csrnab():
    d = shared_path("data", "sclite")
    refs, hyps = read_transcripts(d / "csrnab.ref"), read_transcripts(d / "csrnab.hyp")
    # sclite -i wsj, case-insensitive (its default)
    return d, score_corpus(refs, hyps, ignore_case=True, id_format="wsj")


def test_csrnab_test1_totals_match_sclite():
    _, r = _csrnab()
    t = r.total
    assert (t.n_sent, t.n_ref) == (51, 1406)
    assert (t.correct, t.sub, t.dele, t.ins) == (1263, 131, 12, 26)
    assert round(t.wer, 1) == 12.0 and r.n_ref_words == 1406 and r.wer == pytest.approx(169 / 14.06)
    assert not r.missing and not r.extra
    spk = {s: (c.n_sent, c.n_ref, c.correct, c.sub, c.dele, c.ins) for s, c in r.speakers.items()}
    # from base/test1.sys: 4t0 15 458 84.1/14.0/2.0/2.6, ...
    assert list(spk) == ["4t0", "4t1", "4t2"]
    assert [v[:2] for v in spk.values()] == [(15, 458), (21, 544), (15, 404)]


def test_csrnab_every_alignment_is_byte_identical_to_test1_pra():
    d, r = _csrnab()
    pra = (d / "base" / "test1.pra").read_text()
    for u in r.utts:
        assert format_alignment(u, upper_errors=True) in pra, u.utt_id


def test_csrnab_summary_rows_match_test1_sys():
    d, r = _csrnab()
    mine = format_summary(r, "./csrnab.hyp")
    sys_txt = (d / "base" / "test1.sys").read_text()
    for label in ("4t0", "4t1", "4t2", "Sum/Avg", "Mean", "S.D.", "Median"):
        want = re.search(rf"\| *{re.escape(label)} *\|(.*)\|", sys_txt)[1].split()
        got = re.search(rf"\| *{re.escape(label)} *\|(.*)\|", mine)[1].split()
        assert [x for x in got if x != "|"] == [x for x in want if x != "|"], label


SKIPPED_TEST7 = {"tags-1", "tags-2", "tags-3", "tags-4", "tags-5"}  # word;tag syntax: unsupported


@pytest.mark.parametrize("suffix", ["", ".utf8-2bytes", ".utf8-3bytes", ".utf8-4bytes"])
def test_sclite_test7_edge_cases(suffix):
    """Alternations in ref and hyp, nested networks, @, (optional) words, fragments (-F),
    empty references: `sclite -i spu_id -F -D [-e utf-8]` (tests 7 and 7-utf8-*)."""
    d = shared_path("data", "sclite")
    refs = read_transcripts(d / f"tests.ref{suffix}")
    hyps = read_transcripts(d / f"tests.hyp{suffix}")
    # sclite (no -s) folds only ASCII case under -e utf-8; these UTF-8 files pair letters with
    # their upper case on purpose, so only the ASCII file is scored case-blind here
    r = score_corpus(refs, hyps, ignore_case=not suffix, fragments=True)
    base = "test7" if not suffix else f"test7-{suffix[1:]}"
    want = _pra_blocks((d / "base" / f"{base}.pra").read_text())
    got = _pra_blocks("\n".join(format_alignment(u, True) for u in r.utts) + "\n")
    assert set(got) == set(want)
    bad = [k for k in got if k not in SKIPPED_TEST7 and got[k] != want[k]]
    assert bad == []
    assert {u.speaker for u in r.utts} >= {"f", "g", "h", "i", "empty", "alt", "od1", "od2", "od3"}


def test_sclite_test7_without_fragment_matching_differs_only_on_fragments():
    d = shared_path("data", "sclite")
    r = score_corpus(
        read_transcripts(d / "tests.ref"), read_transcripts(d / "tests.hyp"), ignore_case=True
    )
    got = _pra_blocks("\n".join(format_alignment(u, True) for u in r.utts) + "\n")
    want = _pra_blocks((d / "base" / "test7.pra").read_text())
    bad = {k for k in got if k not in SKIPPED_TEST7 and got[k] != want[k]}
    assert bad == {"i_4", "od3-2", "od3-4", "od3-8"}


@pytest.mark.parametrize(
    "name,ignore_case,expect",
    [("turkish", False, (3, 14, 7, 0, 7, 7)), ("ukranian", True, (6, 66, 59, 7, 0, 2))],
)
def test_sclite_utf8_languages_totals(name, ignore_case, expect):
    """test15_c / test15_d .sys Sum/Avg rows (UTF-8 Turkish and Ukrainian trn files)."""
    d = shared_path("data", "sclite")
    r = score_corpus(
        read_transcripts(d / f"test.{name}.ref"),
        read_transcripts(d / f"test.{name}.hyp"),
        ignore_case=ignore_case,
    )
    t = r.total
    assert (t.n_sent, t.n_ref, t.correct, t.sub, t.dele, t.ins) == expect


# ---------------------------------------------------------------- alignment rules


def _reference_dp(ref: list[str], hyp: list[str]) -> list[tuple[str, str | None, str | None]]:
    """Plain-Python sclite DP for word chains (C 0, S 4, I/D 3; sub <= both, then del < ins)."""
    n, m = len(ref), len(hyp)
    D = np.zeros((n + 1, m + 1), dtype=np.float32)
    move = np.zeros((n + 1, m + 1), dtype="<U1")
    D[1:, 0] = 3 * np.arange(1, n + 1)
    D[0, 1:] = 3 * np.arange(1, m + 1)
    move[1:, 0], move[0, 1:] = "D", "I"
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            s = D[i - 1, j - 1] + (0 if ref[i - 1] == hyp[j - 1] else 4)
            d, ins = D[i - 1, j] + 3, D[i, j - 1] + 3
            if s <= d and s <= ins:
                D[i, j], move[i, j] = s, "S"
            elif d < ins:
                D[i, j], move[i, j] = d, "D"
            else:
                D[i, j], move[i, j] = ins, "I"
    out, i, j = [], n, m
    while i or j:
        mv = move[i, j]
        if mv == "S":
            out.append(("C" if ref[i - 1] == hyp[j - 1] else "S", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif mv == "D":
            out.append(("D", ref[i - 1], None))
            i -= 1
        else:
            out.append(("I", None, hyp[j - 1]))
            j -= 1
    return out[::-1]


def test_alignment_matches_a_plain_dp_on_random_word_chains():
    rng = random.Random(0)
    refs, hyps = [], []
    for _ in range(200):
        refs.append([rng.choice("abcd") for _ in range(rng.randint(0, 9))])
        hyps.append([rng.choice("abcde") for _ in range(rng.randint(0, 9))])
    from audiokit.metrics.align import align_many

    got = align_many(list(zip(refs, hyps, strict=True)))
    for r, h, g in zip(refs, hyps, got, strict=True):
        assert [tuple(p) for p in g] == _reference_dp(r, h), (r, h)


def test_tie_break_prefers_substitution_then_deletion():
    # equal cost 6 either way: sclite keeps the diagonal (sub/correct) move when it ties
    assert [p.op for p in align("a b", "b a")] == ["D", "C", "I"]
    assert [p.op for p in align("a", "b")] == ["S"]
    assert align("x y", "x") == [("C", "x", "x"), ("D", "y", None)]


def test_alternations_optional_words_and_null():
    assert [p.op for p in align("a { b c / d } e", "a d e")] == ["C", "C", "C"]
    assert [p.op for p in align("a { b c / d } e", "a b c e")] == ["C", "C", "C", "C"]
    # '@' makes the whole alternation skippable at (almost) no cost and is never shown
    assert align("a { @ / the } b", "a b") == [("C", "a", "a"), ("C", "b", "b")]
    # an optional word may be dropped (counted correct) or matched
    assert align("b (c) d", "b d")[1] == ("C", "(c)", "")
    assert align("b (c) d", "b c d")[1] == ("C", "(c)", "c")
    # alternations in the hypothesis too
    assert [p.op for p in align("this is", "{ th is / this } is")] == ["C", "C"]


def test_ignore_case_and_case_sensitive_default():
    assert [p.op for p in align("Hello world", "hello World")] == ["S", "S"]
    assert [p.op for p in align("Hello world", "hello World", ignore_case=True)] == ["C", "C"]


def test_cer_on_chinese_by_hand():
    # 我爱北京天安门 vs 我爱南京天门: 北->南 substitution, 安 deleted: 2 errors / 7 chars
    a = align("我爱北京 天安门", "我爱南京天门", cer=True)
    assert [p.op for p in a] == ["C", "C", "S", "C", "C", "D", "C"]
    r = score_corpus({"u1": "我爱北京 天安门"}, {"u1": "我 爱 南 京 天 门"}, cer=True)
    assert (r.total.n_ref, r.total.sub, r.total.dele, r.total.ins) == (7, 1, 1, 0)
    assert kaldi_lines(r)[-1] == "%CER 28.57 [ 2 / 7, 0 ins, 1 del, 1 sub ]"
    # mixed text: Latin words become characters too
    assert [p.ref for p in align("ok 好", "ok", cer=True)] == ["o", "k", "好"]


def test_wer_convenience_and_kaldi_line_format():
    assert wer("a b c d", "a x c") == pytest.approx(50.0)
    assert wer(["a b", "c"], ["a b", "d"]) == pytest.approx(100 / 3)
    r = score_corpus({"s-1": "a b c d", "s-2": "e f"}, {"s-1": "a x c d d", "s-2": "e f"})
    assert kaldi_lines(r) == ["%SER 50.00 [ 1 / 2 ]", "%WER 33.33 [ 2 / 6, 1 ins, 0 del, 1 sub ]"]


def test_missing_and_extra_hypotheses():
    refs = {"spk1-u1": "a b", "spk1-u2": "c d e", "spk2-u1": "f"}
    hyps = {"spk1-u1": "a b", "spk9-x": "zzz"}
    r = score_corpus(refs, hyps)
    assert r.missing == ["spk1-u2", "spk2-u1"] and r.extra == ["spk9-x"]
    assert (r.total.n_ref, r.total.dele, r.total.ins) == (6, 4, 0)
    assert [u.missing for u in r.utts] == [False, True, True]
    assert set(r.speakers) == {"spk1", "spk2"} and r.speakers["spk2"].dele == 1
    assert "no hypothesis" in format_alignment(r.utts[1])


def test_empty_reference_is_all_insertions():
    r = score_corpus({"e-1": ""}, {"e-1": "a b"})
    assert (r.total.n_ref, r.total.ins) == (0, 2) and r.total.wer == float("inf")
    assert "*" in format_summary(r)  # sclite prints raw counts, starred


# ---------------------------------------------------------------- readers


def test_parse_transcript_alternations():
    el = parse_transcript("a {b c / {d / e} f / @ /} g")
    assert el[0] == "a" and el[-1] == "g"
    alt = el[1]
    assert isinstance(alt, Alternation) and len(alt.alternatives) == 3  # empty one dropped
    assert alt.alternatives[0] == ("b", "c")
    with pytest.raises(ScoringError, match="unbalanced"):
        parse_transcript("a { b / c")
    with pytest.raises(ScoringError, match="empty alternation"):
        parse_transcript("a { / } b")


def test_read_trn_and_kaldi(tmp_path):
    trn = tmp_path / "h.trn"
    trn.write_text(";; comment\nhello (there) world (spk1-utt1)\n\n (spk1-utt2)\n")
    kal = tmp_path / "text"
    kal.write_text("spk1-utt1 hello world\nspk1-utt2\n")
    assert detect_format(trn) == "trn" and detect_format(kal) == "kaldi"
    assert read_transcripts(trn) == {"spk1-utt1": "hello (there) world", "spk1-utt2": ""}
    assert read_transcripts(kal) == {"spk1-utt1": "hello world", "spk1-utt2": ""}
    bad = tmp_path / "bad.trn"
    bad.write_text("a b (u1)\nc d\n")
    with pytest.raises(ScoringError, match=r"bad.trn:2"):
        read_transcripts(bad, "trn")
    dup = tmp_path / "dup.trn"
    dup.write_text("a (u1)\nb (u1)\n")
    with pytest.raises(ScoringError, match="duplicate"):
        read_transcripts(dup)


def test_speaker_of():
    assert speaker_of("spk1-utt_3") == "spk1"
    assert speaker_of("a_b-c") == "a_b"  # sclite looks for '-' first
    assert speaker_of("f_0") == "f"
    assert speaker_of("noseparator") == "noseparator"
    assert speaker_of("4t0c0201", "wsj") == "4t0"
    assert speaker_of("x-1", "utt") == "x-1"


def test_utt2spk_applies_when_case_is_ignored():
    r = score_corpus({"U-1": "a b"}, {"u-1": "a c"}, ignore_case=True, utt2spk={"U-1": "alice"})
    assert list(r.speakers) == ["alice"]
