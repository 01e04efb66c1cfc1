"""Token lists, sentencepiece and char tokenizers, loading, training text, normalisation."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from audiokit.errors import ConfigError, DataDirError, TokenizerError
from audiokit.text import (
    CharTokenizer,
    SentencePieceTokenizer,
    TokenList,
    load_tokenizer,
    read_training_text,
    train_sentencepiece,
)
from audiokit.text.normalize import (
    collapse_whitespace,
    fullwidth_to_halfwidth,
    normalize,
    remove_spaces_between_cjk,
    strip_punctuation,
)
from tests.conftest import shared_path

WORDS = (
    (
        "the a of and to in is was he it that for his with as had on at by not be but from "
        "they this which you her all she there would their we him been has when who will more "
        "no if out so said what up its about into than them can only other new some could time "
        "these two may then do first any my now such like our over man me even most made after "
        "also did many before must through back years where much your way well down should "
        "because each just those people how too little state good very make world still own "
        "see men work long get here between both life being under never day same another know "
        "don't o'clock"
    )
    .upper()
    .split()
)

CHINESE = [
    "甚至出现交易几乎停滞的情况",
    "今天天气很好我们去公园散步吧",
    "北京是中华人民共和国的首都",
    "语音识别技术在近年来取得了很大的进步",
    "请把这份文件发送给所有的同事",
    "他说明天上午九点钟开会",
    "这家餐厅的饺子非常好吃",
    "我们需要更多的训练数据",
]


def english_sentences(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe")
    train_sentencepiece(english_sentences(), out, vocab_size=120, model_type="bpe")
    return out


# --- token list ---------------------------------------------------------------------------------


def test_token_list_build_invariants():
    tl = TokenList.build(["a", "<unk>", "b", "a", "<sos/eos>", "c"])
    assert tl.symbols_list == ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
    assert (tl.blank_id, tl.unk_id, tl.sos_id, tl.eos_id) == (0, 1, 5, 5)
    assert tl.special_ids == {0, 5}
    assert tl.id("b") == 3 and tl.symbol(3) == "b" and len(tl) == 6
    assert tl.id("never-seen") == 1
    assert tl.ids(["c", "zz"]) == [4, 1]
    assert tl.symbols(np.array([2, 4])) == ["a", "c"]


def test_token_list_rejects_bad_symbols_and_ids():
    with pytest.raises(TokenizerError, match="appears twice"):
        TokenList(["a", "b", "a"])
    with pytest.raises(TokenizerError, match="whitespace"):
        TokenList(["a", "b c"])
    tl = TokenList.build(["x"])
    with pytest.raises(TokenizerError, match="out of range"):
        tl.symbols([0, 7])
    with pytest.raises(TokenizerError, match="out of range"):
        tl.check_ids([-1])
    with pytest.raises(TokenizerError, match="integers"):
        tl.check_ids([0.5])
    with pytest.raises(TokenizerError, match="no <unk>"):
        TokenList(["<blank>", "a"]).id("b")


def test_token_list_write_read_symbol_id(tmp_path):
    tl = TokenList.build(["▁HE", "LLO", "你"])
    tl.write(tmp_path / "tokens.txt")
    lines = (tmp_path / "tokens.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "<blank> 0" and lines[1] == "<unk> 1" and lines[-1] == "<sos/eos> 5"
    assert TokenList.read(tmp_path / "tokens.txt") == tl


def test_token_list_reads_unordered_symbol_id_and_rejects_gaps(tmp_path):
    path = tmp_path / "units.txt"
    path.write_text("<unk> 1\nb 3\n<blank> 0\na 2\n<sos/eos> 4\n", encoding="utf-8")
    assert TokenList.read(path).symbols_list == ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    path.write_text("<blank> 0\n<unk> 1\na 3\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="no gaps"):
        TokenList.read(path)
    path.write_text("<blank> 0\n<unk> x y\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"units\.txt:2"):
        TokenList.read(path)


def test_token_list_reads_espnet_plain_list(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("<blank>\n<unk>\n▁THE\nS\n<sos/eos>\n", encoding="utf-8")
    tl = TokenList.read(path)
    assert tl.symbols_list == ["<blank>", "<unk>", "▁THE", "S", "<sos/eos>"]
    assert (tl.blank_id, tl.unk_id, tl.sos_id) == (0, 1, 4)


def test_token_list_reads_funasr_json(tmp_path):
    path = tmp_path / "tokens.json"
    json.dump(
        ["<blank>", "<s>", "</s>", "你", "好", "<unk>"],
        path.open("w", encoding="utf-8"),
        ensure_ascii=False,
    )
    tl = TokenList.read(path)
    assert (tl.blank_id, tl.sos_id, tl.eos_id, tl.unk_id) == (0, 1, 2, 5)
    assert tl.special_ids == {0, 1, 2}
    path.write_text('{"<blank>": 0, "<unk>": 1, "x": 2}', encoding="utf-8")
    assert TokenList.read(path).symbols_list == ["<blank>", "<unk>", "x"]
    path.write_text('{"a": ', encoding="utf-8")
    with pytest.raises(TokenizerError, match="invalid JSON"):
        TokenList.read(path)


def test_token_list_empty_or_missing_file(tmp_path):
    (tmp_path / "tokens.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="empty"):
        TokenList.read(tmp_path / "tokens.txt")
    with pytest.raises(TokenizerError, match="not found"):
        TokenList.read(tmp_path / "nope.txt")


# --- sentencepiece ------------------------------------------------------------------------------


def test_bpe_files_and_token_list_invariants(bpe_dir):
    assert {p.name for p in bpe_dir.iterdir()} == {"bpe.model", "tokens.txt", "tokenizer.json"}
    tok = load_tokenizer(bpe_dir)
    assert isinstance(tok, SentencePieceTokenizer) and tok.type == "bpe"
    tl = tok.token_list
    assert len(tl) == 120 + 2
    assert (
        tl.symbol(0) == "<blank>"
        and tl.symbol(1) == "<unk>"
        and tl.symbol(len(tl) - 1) == "<sos/eos>"
    )
    assert "<s>" not in tl and "</s>" not in tl
    # Our ids are sentencepiece's shifted by one (its <unk> is 0, ours 1).
    sp = tok.processor
    assert [tl.id(sp.id_to_piece(i)) for i in range(sp.get_piece_size())] == list(
        range(1, sp.get_piece_size() + 1)
    )
    assert json.loads((bpe_dir / "tokenizer.json").read_text())["vocab_size"] == 120


def test_bpe_round_trip_english(bpe_dir):
    tok = load_tokenizer(bpe_dir)
    for text in english_sentences(50, seed=1) + ["DON'T  STOP   THE WORLD "]:
        ids = tok.encode(text)
        assert ids and all(2 <= i < len(tok) - 1 for i in ids)
        assert tok.decode(ids) == tok.normalize(text) == " ".join(text.split())
        assert tok.tokenize(text) == tok.token_list.symbols(ids)


def test_bpe_round_trip_on_shared_english_text(tmp_path):
    data = shared_path("data", "speech_en_dev")
    sentences = list(read_training_text(data))
    tok = train_sentencepiece(sentences, tmp_path, vocab_size=60, model_type="unigram")
    for text in sentences:
        assert tok.decode(tok.encode(text)) == text


def test_bpe_unknown_character_and_specials_in_decode(bpe_dir):
    tok = load_tokenizer(bpe_dir)
    ids = tok.encode("THE Ж")
    assert 1 in ids  # <unk>
    assert "Ж" not in tok.decode(ids)
    eos = len(tok) - 1
    plain = tok.encode("THE WORLD")
    assert tok.decode([0, eos, *plain, 0, eos]) == "THE WORLD"
    with pytest.raises(TokenizerError, match="out of range"):
        tok.decode([len(tok)])


def test_bpe_batch_matches_single(bpe_dir):
    tok = load_tokenizer(bpe_dir)
    texts = english_sentences(7, seed=2) + [""]
    batch = tok.encode_batch(texts)
    assert batch == [tok.encode(t) for t in texts]
    assert tok.encode_batch([]) == []
    assert tok.tokenize_batch(texts[:2]) == [tok.tokenize(t) for t in texts[:2]]
    # Padded (B, U) ids with lengths (B,): padding value is ignored.
    width = max(len(b) for b in batch)
    padded = np.full((len(batch), width), -1, dtype=np.int64)
    for row, ids in zip(padded, batch, strict=True):
        row[: len(ids)] = ids
    lengths = np.array([len(b) for b in batch])
    expected = [tok.decode(b) for b in batch]
    assert tok.decode_batch(padded, lengths) == expected
    assert tok.decode_batch(batch) == expected


def test_sentencepiece_training_is_deterministic(tmp_path):
    sentences = english_sentences(400, seed=3)
    for model_type, sample in (("bpe", 0), ("unigram", 0), ("bpe", 150)):
        a, b = tmp_path / f"{model_type}{sample}a", tmp_path / f"{model_type}{sample}b"
        for out in (a, b):
            train_sentencepiece(
                sentences, out, vocab_size=90, model_type=model_type, input_sentence_size=sample
            )
        for name in ("bpe.model", "tokens.txt", "tokenizer.json"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), (model_type, sample, name)


def test_sentencepiece_sampling_uses_the_seed(tmp_path):
    sentences = english_sentences(400, seed=4)
    for seed in (0, 1):
        train_sentencepiece(
            sentences, tmp_path / str(seed), vocab_size=90, input_sentence_size=120, seed=seed
        )
    assert (tmp_path / "0" / "tokens.txt").read_bytes() != (
        tmp_path / "1" / "tokens.txt"
    ).read_bytes()


def test_user_defined_symbols_stay_whole(tmp_path):
    sentences = [s + " <NOISE>" for s in english_sentences(100, seed=5)]
    tok = train_sentencepiece(sentences, tmp_path, vocab_size=80, user_defined_symbols=["<NOISE>"])
    assert "<NOISE>" in tok.tokenize("THE <NOISE> WORLD")
    with pytest.raises(ConfigError, match="reserved"):
        train_sentencepiece(sentences, tmp_path, vocab_size=80, user_defined_symbols=["<blank>"])


def test_vocab_too_large_says_how_far_to_lower(tmp_path):
    with pytest.raises(TokenizerError) as exc:
        train_sentencepiece(["HELLO WORLD"] * 5, tmp_path, vocab_size=500, source="tiny.txt")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("tiny.txt:")
    assert "--vocab-size 500 is too large" in msg
    most = int(msg.split("lower --vocab-size to ")[1].split()[0])
    assert 1 < most < 500
    train_sentencepiece(["HELLO WORLD"] * 5, tmp_path, vocab_size=most)  # the suggestion works
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_vocab_smaller_than_alphabet_and_empty_input(tmp_path):
    with pytest.raises(TokenizerError, match="raise --vocab-size to at least"):
        train_sentencepiece(["ABCDEFGHIJ KLMNOP"], tmp_path, vocab_size=5)
    with pytest.raises(TokenizerError, match="no text to train on"):
        train_sentencepiece(["", "   "], tmp_path, vocab_size=50)
    assert not (tmp_path / "bpe.model").exists()


def test_sentencepiece_with_foreign_token_list(bpe_dir, tmp_path):
    """A WeNet-style units.txt listing only some pieces, in its own order."""
    ours = load_tokenizer(bpe_dir)
    text = "THE WORLD IS GOOD"
    used = sorted(set(ours.tokenize(text)))
    (tmp_path / "bpe.model").write_bytes((bpe_dir / "bpe.model").read_bytes())
    units = ["<blank>", "<unk>", *used, "<sos/eos>"]
    (tmp_path / "units.txt").write_text(
        "".join(f"{s} {i}\n" for i, s in enumerate(units)), encoding="utf-8"
    )
    tok = load_tokenizer(tmp_path)
    ids = tok.encode(text)
    assert tok.token_list.symbols(ids) == ours.tokenize(text)
    assert tok.decode(ids) == text
    assert 1 in tok.encode("MAN")  # a piece missing from units.txt encodes as <unk>


def test_sentencepiece_model_without_token_list(bpe_dir, tmp_path):
    (tmp_path / "m.model").write_bytes((bpe_dir / "bpe.model").read_bytes())
    tok = load_tokenizer(tmp_path / "m.model")
    assert tok.token_list == load_tokenizer(bpe_dir).token_list
    assert load_tokenizer(bpe_dir / "tokens.txt").token_list == tok.token_list  # config says bpe
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="several sentencepiece models"):
        load_tokenizer(tmp_path)
    with pytest.raises(TokenizerError, match="not a valid sentencepiece model"):
        load_tokenizer(tmp_path / "bad.model")


# --- char ---------------------------------------------------------------------------------------


def test_char_round_trip_chinese():
    tok = CharTokenizer.train(CHINESE)
    for text in CHINESE:
        ids = tok.encode(text)
        assert len(ids) == len(text)
        assert tok.decode(ids) == text
    assert tok.tokenize("北京 首都") == ["北", "京", "首", "都"]  # spaces dropped
    assert tok.encode("鑫")[0] == tok.token_list.unk_id
    tl = tok.token_list
    assert (tl.blank_id, tl.unk_id, tl.sos_id) == (0, 1, len(tl) - 1)
    assert tl.symbol(2) == "的"  # most frequent first


def test_char_round_trip_on_shared_chinese_text():
    text = next(iter(read_training_text(shared_path("data", "speech_zh_dev"))))
    tok = CharTokenizer.train([text, *CHINESE])
    assert tok.decode(tok.encode(text)) == text


def test_char_mixed_latin_word_mode():
    text = "我爱 New York 的秋天, don't  stop 好吗"
    tok = CharTokenizer.train([text], latin="word", case="upper")
    assert tok.tokenize(text) == [
        "我", "爱", "NEW", "YORK", "的", "秋", "天", ",", "DON'T", "STOP", "好", "吗",
    ]  # fmt: skip
    assert (
        tok.decode(tok.encode(text)) == tok.normalize(text) == "我爱NEW YORK的秋天,DON'T STOP好吗"
    )
    assert tok.tokenize("new 城") == ["NEW", "<unk>"]


def test_char_keeps_tags_whole():
    tok = CharTokenizer.train(["<noise> 你好 [LAUGHTER] ok"], latin="char")
    assert tok.tokenize("你<noise>好 [LAUGHTER]") == ["你", "<noise>", "好", "[LAUGHTER]"]
    assert tok.decode(tok.encode("你 <noise> 好")) == "你<noise>好"


def test_decode_batch_accepts_torch_tensors(bpe_dir):
    torch = pytest.importorskip("torch")
    tok = load_tokenizer(bpe_dir)
    rows = [tok.encode("THE WORLD"), tok.encode("GOOD")]
    padded = torch.zeros(2, max(map(len, rows)), dtype=torch.long)
    for b, ids in enumerate(rows):
        padded[b, : len(ids)] = torch.tensor(ids)
    lengths = torch.tensor([len(r) for r in rows])
    assert tok.decode_batch(padded, lengths) == ["THE WORLD", "GOOD"]
    assert tok.decode(padded[1, : lengths[1]]) == "GOOD"
    with pytest.raises(TokenizerError, match="lengths"):
        tok.decode_batch(padded, lengths[:1])


def test_char_mixed_latin_char_mode_keeps_spaces():
    text = "我爱 New York 的秋天"
    tok = CharTokenizer.train(
        [text], latin="char", space="keep", space_symbol="<space>", case="lower"
    )
    assert tok.tokenize(text) == [
        "我", "爱", "<space>", "n", "e", "w", "<space>", "y", "o", "r", "k", "<space>", "的", "秋", "天",
    ]  # fmt: skip
    assert tok.decode(tok.encode(text)) == "我爱 new york 的秋天"
    no_space = CharTokenizer.train(["我爱你"], space="keep")
    assert no_space.tokenize("我 爱") == ["我", "▁", "爱"]
    dropped = CharTokenizer.train([text], latin="char")
    assert dropped.decode(dropped.encode(text)) == "我爱NewYork的秋天"


def test_char_vocab_limits():
    tok = CharTokenizer.train(["甲甲甲乙乙丙"], min_count=2)
    assert [s for s in tok.token_list][2:-1] == ["甲", "乙"]
    tok = CharTokenizer.train(["甲甲甲乙乙丙"], vocab_size=2)  # <unk> + one token
    assert [s for s in tok.token_list] == ["<blank>", "<unk>", "甲", "<sos/eos>"]
    with pytest.raises(TokenizerError, match="no text"):
        CharTokenizer.train(["   ", ""])
    with pytest.raises(ConfigError, match="latin mode"):
        CharTokenizer.train(["a"], latin="words")


def test_char_save_load_keeps_options(tmp_path):
    text = "我爱 New York"
    tok = CharTokenizer.train([text], latin="char", space="keep", case="upper")
    tok.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokens.txt"]
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, CharTokenizer) and loaded.config() == tok.config()
    assert loaded.encode(text) == tok.encode(text)
    assert load_tokenizer(tmp_path / "tokens.txt").config() == tok.config()


def test_char_from_funasr_tokens_json_without_config(tmp_path):
    symbols = ["<blank>", "<s>", "</s>", "我", "爱", "NEW", "YORK", "<unk>"]
    (tmp_path / "tokens.json").write_text(json.dumps(symbols, ensure_ascii=False), encoding="utf-8")
    tok = load_tokenizer(tmp_path)
    assert isinstance(tok, CharTokenizer) and tok.latin == "word" and tok.space == "drop"
    ids = tok.encode("我爱NEW YORK")
    assert ids == [3, 4, 5, 6]
    assert tok.decode([1, *ids, 0, 2]) == "我爱NEW YORK"


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(TokenizerError, match="no bpe.model or token list"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokens.txt").write_text("<blank> 0\n<unk> 1\n", encoding="utf-8")
    (tmp_path / "tokenizer.json").write_text('{"type": "bpe"}', encoding="utf-8")
    with pytest.raises(TokenizerError, match="no bpe.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"type": "wordpiece"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown tokenizer type"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "tokenizer.yaml").write_text("type: char\nspace: keep\n", encoding="utf-8")
    assert load_tokenizer(tmp_path).space == "keep"


# --- training text ------------------------------------------------------------------------------


def test_read_training_text_sources(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "text").write_text("u2 HELLO WORLD\nu1 你好\nu3\n", encoding="utf-8")
    assert list(read_training_text(data)) == ["HELLO WORLD", "你好"]
    assert list(read_training_text(data / "text", has_keys=True)) == ["HELLO WORLD", "你好"]
    assert list(read_training_text(data / "text")) == ["u2 HELLO WORLD", "u1 你好", "u3"]
    (data / "text").write_text("u1 A\nu1 B\n", encoding="utf-8")
    with pytest.raises(DataDirError, match="duplicate key"):
        list(read_training_text(data))
    (tmp_path / "keys_only.txt").write_text("u1\nu2\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="has-keys"):
        read_training_text(tmp_path / "keys_only.txt", has_keys=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TokenizerError, match="no 'text' file"):
        read_training_text(empty)


# --- normalisation ------------------------------------------------------------------------------


def test_normalize_helpers():
    assert collapse_whitespace("  a \t b\u3000c\n") == "a b c"
    assert fullwidth_to_halfwidth("ＡＢＣ１２３，！　你好。") == "ABC123,! 你好。"
    assert (
        strip_punctuation("\"Don't\" stop, 'rock'n'roll' — well,then… $5")
        == "Don't stop rock'n'roll well then $5"
    )
    assert strip_punctuation("你好，世界！「好」") == "你好 世界 好"
    assert strip_punctuation("don't", keep_inner_apostrophes=False) == "don t"
    assert remove_spaces_between_cjk("我 爱 你 ok 好 the end") == "我爱你ok好the end"
    assert (
        normalize("  Ｈｅｌｌｏ，  ｗｏｒｌｄ！ ", case="upper", punctuation=True, fullwidth=True)
        == "HELLO WORLD"
    )
    assert normalize("A b", case="lower") == "a b"
    with pytest.raises(ConfigError):
        normalize("x", case="title")
