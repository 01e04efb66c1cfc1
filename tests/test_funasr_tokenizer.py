"""FunASR char tokenizer: encode with seg_dict, sentence_postprocess parity, times, save/load."""

from __future__ import annotations

import json

import pytest

from audiokit.errors import TokenizerError
from audiokit.text.funasr_tokenizer import FunasrTokenizer, funasr_postprocess, read_seg_dict
from audiokit.text.tokenizer import load_tokenizer
from tests.conftest import shared_path

SPECIALS = ["<blank>", "<s>", "</s>"]


@pytest.fixture(scope="module")
def cases():
    path = shared_path("fixtures", "funasr_paraformer", "postprocess_cases.json")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fixture_tok():
    return FunasrTokenizer.load(shared_path("fixtures", "funasr_paraformer", "model"))


def _tokenizer_for(tokens: list[str]) -> FunasrTokenizer:
    body = sorted({t for t in tokens if t not in SPECIALS + ["<unk>"]})
    return FunasrTokenizer(SPECIALS + body + ["<unk>"])


def test_postprocess_cases_on_token_strings(cases):
    for case in cases:
        spans = [tuple(s) for s in case["timestamps_in"]]
        text, spaced, words, out_spans = funasr_postprocess(case["tokens"], spans)
        assert text == case["text"], case["tokens"]
        assert words == case["words"] == case["words_with_timestamps"], case["tokens"]
        assert spaced == case["text_with_timestamps"], case["tokens"]
        assert [list(s) for s in out_spans] == case["timestamps_out"], case["tokens"]
        assert funasr_postprocess(case["tokens"])[:3] == (text, spaced, words)


def test_postprocess_cases_through_ids(cases):
    for case in cases:
        tok = _tokenizer_for(case["tokens"])
        ids = [tok.token_list.id(t) for t in case["tokens"]]
        assert tok.decode(ids) == case["text"]
        starts, ends = zip(*case["timestamps_in"], strict=True)
        out = tok.decode_with_times(ids, starts, ends)
        if any(t in SPECIALS for t in case["tokens"]):
            continue  # see test_special_ids_leave_with_their_times
        assert out.text == case["text_with_timestamps"]
        assert out.words == case["words_with_timestamps"]
        assert [[s, e] for s, e in zip(out.starts, out.ends, strict=True)] == case["timestamps_out"]


def test_unk_shift_and_dangling_pieces():
    tok = _tokenizer_for(["甚", "至", "现", "go", "for@@", "dis@@", "ward", "中"])
    ids = tok.encode("甚") + [tok.token_list.unk_id] + tok.encode("至现")
    out = tok.decode_with_times(ids, [0, 10, 20, 30], [5, 15, 25, 35])
    # FunASR drops <unk> from the words but not from the times: later words shift back.
    assert out == ("甚 至 现", ["甚", "至", "现"], [0, 10, 20], [5, 15, 25])
    ids = [tok.token_list.id(t) for t in ["dis@@", "中", "ward", "go", "for@@"]]
    out = tok.decode_with_times(ids, [0, 10, 20, 30, 40], [5, 15, 25, 35, 45])
    # The open run gives its span to 中 and its text to "ward"; the final "for@@" is dropped.
    assert out == ("中 disward go", ["中", "disward", "go"], [0, 20, 30], [5, 25, 35])
    assert tok.decode(ids) == "中disward go"
    with pytest.raises(TokenizerError, match="one start and one end per token"):
        tok.decode_with_times(ids, [0, 1], [1, 2])


def test_special_ids_leave_with_their_times():
    tok = _tokenizer_for(["情", "况"])
    ids = [tok.token_list.id(t) for t in ["<s>", "情", "</s>", "况", "<blank>"]]
    out = tok.decode_with_times(ids, [0, 10, 20, 30, 40], [5, 15, 25, 35, 45])
    # Paraformer removes these ids before timing, so they take their own times with them
    # (unlike <unk>, which reaches sentence_postprocess).
    assert out == ("情 况", ["情", "况"], [10, 30], [15, 35])
    assert tok.decode(ids) == "情况"


def test_fixture_text_and_ids(fixture_tok):
    root = shared_path("fixtures", "funasr_paraformer")
    expected = json.loads((root / "expected.json").read_text(encoding="utf-8"))["utterances"]
    assert fixture_tok.vocab_size == 400 and fixture_tok.token_list.unk_id == 399
    for exp in expected.values():
        assert fixture_tok.token_list.symbols(exp["token_ids"]) == exp["tokens"]
        assert fixture_tok.decode(exp["token_ids"]) == exp["text"]
        assert fixture_tok.decode(exp["argmax_ids"]) == exp["text"]


def test_encode_with_seg_dict(fixture_tok):
    tok = fixture_tok
    assert tok.seg_dict["disposed"] == ["dis@@", "pos@@", "ed"]
    assert tok.tokenize("he was not an ill disposed young man") == (
        "he was not an ill dis@@ pos@@ ed young man".split()
    )
    # Words are lower-cased; CJK runs split into chars; unknown words/chars -> <unk>.
    assert tok.tokenize("GO Forward 管文") == ["go", "for@@", "ward", "管", "文"]
    assert tok.tokenize("zebra") == ["<unk>"] * 4 + ["a"]  # per letter: its pieces or <unk>
    assert tok.tokenize("!? ten") == ["<unk>", "ten"]  # not a letter/digit/CJK start: one <unk>
    assert tok.tokenize("ten  ten") == ["ten", "<unk>", "ten"]  # FunASR splits on single spaces
    text = "go forward ten meters 管文"
    assert tok.decode(tok.encode(text)) == tok.normalize(text) == "go forward ten meters管文"


def test_encode_without_seg_dict_and_normalize():
    tok = FunasrTokenizer(SPECIALS + ["我", "爱", "a", "b", "c", "<unk>"])
    assert tok.seg_dict is None
    assert tok.tokenize("我 爱abc") == ["我", "爱", "a", "b", "c"]
    assert tok.tokenize("我x") == ["我", "<unk>"]
    assert tok.decode(tok.encode("我爱 a b c")) == tok.normalize("我爱 a b c") == "我爱ABC"
    assert tok.decode([]) == ""
    with pytest.raises(TokenizerError, match="<unk>"):
        FunasrTokenizer(["<blank>", "a"])


def test_save_load_round_trip(tmp_path, fixture_tok):
    out = fixture_tok.save(tmp_path / "tok")
    assert sorted(p.name for p in out.iterdir()) == ["seg_dict", "tokenizer.json", "tokens.json"]
    assert json.loads((out / "tokenizer.json").read_text()) == {"type": "funasr_char"}
    for path in (out, out / "tokens.json"):
        loaded = load_tokenizer(path)
        assert isinstance(loaded, FunasrTokenizer) and loaded.type == "funasr_char"
        assert loaded.token_list == fixture_tok.token_list
        assert loaded.seg_dict == fixture_tok.seg_dict
    assert read_seg_dict(out / "seg_dict") == fixture_tok.seg_dict
    plain = FunasrTokenizer(SPECIALS + ["中", "<unk>"]).save(tmp_path / "plain")
    assert not (plain / "seg_dict").exists()
    assert load_tokenizer(plain).decode([3, 3]) == "中中"


def test_travels_in_a_packed_model_dir(tmp_path, fixture_tok):
    import torch

    from audiokit.model_dir import load_model_tokenizer, read_model_config, write_model_dir

    out = write_model_dir(
        tmp_path / "m", torch.nn.Linear(2, 2), "test_arch", {"vocab_size": 400}, None, 16000,
        fixture_tok, meta={"imported_from": "funasr"},
    )  # fmt: skip
    cfg = read_model_config(out)
    assert cfg.tokenizer == {
        "type": "funasr_char",
        "files": ["seg_dict", "tokenizer.json", "tokens.json"],
    }
    loaded = load_model_tokenizer(cfg)
    assert isinstance(loaded, FunasrTokenizer) and loaded.seg_dict == fixture_tok.seg_dict
