"""OWSM multitask data dirs: prefix / prompt / ASR-target fields and their padding in a Batch."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from audiokit.data.collate import collate_asr
from audiokit.data.dataset import AsrDataset, default_frontend
from audiokit.errors import DataDirError
from audiokit.text.sentencepiece_tokenizer import train_sentencepiece

SYMBOLS = ["<na>", "<nolang>", "<eng>", "<zho>", "<asr>", "<st_zho>"]


def _data_dir(root, text: dict[str, str], extra: dict[str, dict[str, str]]):
    root.mkdir()
    rng = np.random.default_rng(0)
    for utt in text:
        sf.write(root / f"{utt}.wav", rng.uniform(-0.1, 0.1, 8000).astype(np.float32), 16000)
    files = {
        "wav.scp": {u: str(root / f"{u}.wav") for u in text},
        "utt2spk": {u: u for u in text},
        "text": text,
        **extra,
    }
    for name, kv in files.items():
        (root / name).write_text("".join(f"{k} {v}\n" for k, v in sorted(kv.items())), "utf-8")
    return root


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    lines = ["<eng><asr> HELLO WORLD", "<zho><asr> 你好世界", "<eng><st_zho> 你好", "GOOD DAY"] * 5
    out = tmp_path_factory.mktemp("tok")
    return train_sentencepiece(
        lines, out, vocab_size=24, model_type="unigram", user_defined_symbols=SYMBOLS, num_threads=1
    )


def test_multitask_items_and_batch(tmp_path, tokenizer):
    ids = {s: tokenizer.token_list.id(s) for s in SYMBOLS}
    text = {"a": "<eng><asr> HELLO WORLD", "b": "<eng><st_zho> 你好", "c": "<zho><asr> 你好世界"}
    data = _data_dir(
        tmp_path / "d", text,
        {"text.ctc": {"a": "HELLO WORLD", "b": "HELLO", "c": "你好世界"},
         "text.prev": {"a": "<na>", "b": "GOOD DAY", "c": "<na>"}},
    )  # fmt: skip
    ds = AsrDataset(data, tokenizer, frontend=default_frontend(dither=0.0))
    a, b, c = ds[0], ds[1], ds[2]
    assert a["targets"][:2].tolist() == [ids["<eng>"], ids["<asr>"]]
    assert a["targets"][2:].tolist() == tokenizer.encode("HELLO WORLD")
    assert b["extra"]["prefix"].tolist() == [ids["<eng>"], ids["<st_zho>"]]
    assert b["extra"]["targets_asr"].tolist() == tokenizer.encode("HELLO")
    assert b["extra"]["prompt"].tolist() == tokenizer.encode("GOOD DAY")
    assert a["extra"]["prompt"].tolist() == [ids["<na>"]]  # "<na>" -> [<na>], as ESPnet
    batch = collate_asr([a, None, b, c])
    assert batch.utt_ids == ["a", "b", "c"]
    assert batch.extra["prefix"].shape == (3, 2)
    p_len = batch.extra["prompt_lengths"]
    assert p_len.tolist() == [1, len(tokenizer.encode("GOOD DAY")), 1]
    assert bool((batch.extra["prompt"][0, 1:] == -1).all())
    assert batch.extra["target_asr_lengths"].tolist() == [
        len(tokenizer.encode(x)) for x in ("HELLO WORLD", "HELLO", "你好世界")
    ]
    assert batch.extra["targets_asr"].dtype == torch.int64


def test_plain_data_dirs_have_no_extra_and_bad_prefix_is_named(tmp_path, tokenizer):
    plain = _data_dir(tmp_path / "plain", {"a": "HELLO WORLD"}, {})
    item = AsrDataset(plain, tokenizer, frontend=default_frontend(dither=0.0))[0]
    assert "extra" not in item and collate_asr([item]).extra == {}
    bad = _data_dir(tmp_path / "bad", {"x": "HELLO WORLD"}, {"text.prev": {"x": "<na>"}})
    with pytest.raises(DataDirError, match=r"'x' does not start with <lang><task>"):
        AsrDataset(bad, tokenizer, frontend=default_frontend(dither=0.0))[0]
    unknown = _data_dir(tmp_path / "unk", {"x": "<fra><asr> HELLO"}, {"text.ctc": {"x": "HELLO"}})
    with pytest.raises(DataDirError, match="<fra>, which is not in the token list"):
        AsrDataset(unknown, tokenizer, frontend=default_frontend(dither=0.0))[0]
