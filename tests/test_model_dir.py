"""Packed model dirs: write/load round trip, packing a training run, errors, `model info`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
import yaml
from typer.testing import CliRunner

from audiokit.data.kaldi_files import read_kv_file
from audiokit.data.synthetic import make_demo_data_dir
from audiokit.errors import AudiokitError, ConfigError
from audiokit.features.cmvn import save_cmvn_npz
from audiokit.model_dir import (
    load_model_dir,
    load_model_tokenizer,
    pack_model,
    read_model_config,
    write_model_dir,
)
from audiokit.registry import build_model
from audiokit.text import CharTokenizer

NUM_BINS = 40
FRONTEND = {"type": "fbank", "num_mel_bins": NUM_BINS, "dither": 1.0}


def tiny_model(vocab: int, num_layers: int = 1, seed: int = 0):
    """A small Conformer-CTC with non-trivial CMVN (num_layers=0: conv subsampling only, so
    every output frame sees just 7 input frames)."""
    torch.manual_seed(seed)
    model = build_model(
        "conformer_ctc", input_dim=NUM_BINS, vocab_size=vocab, d_model=32, num_heads=2,
        ff_dim=64, num_layers=num_layers, conv_kernel=5,
    )  # fmt: skip
    model.set_cmvn(np.full(NUM_BINS, 9.0), np.full(NUM_BINS, 0.4))
    return model.eval()


def make_model_dir(root: Path, num_layers: int = 1, data: Path | None = None) -> Path:
    """A real packed model dir: tiny random Conformer-CTC + char tokenizer from demo text."""
    data = data or make_demo_data_dir(root / "data", num_utts=3)
    tok = CharTokenizer.train(read_kv_file(data / "text").values(), latin="char", space="keep")
    model = tiny_model(tok.vocab_size, num_layers)
    save_cmvn_npz(root / "cmvn.npz", np.full(NUM_BINS, 9.0), np.full(NUM_BINS, 0.4), 10)
    return write_model_dir(
        root / f"model_l{num_layers}", model, "conformer_ctc", model.config, FRONTEND, 16000,
        tok, root / "cmvn.npz", {"source": "test"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("md"))


def test_layout_and_model_yaml(model_dir):
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.yaml", "model.safetensors", "tokens.txt", "tokenizer.json", "cmvn.npz"} <= names
    assert "meta.json" in names and not any(n.startswith(".") for n in names)
    raw = yaml.safe_load((model_dir / "model.yaml").read_text())
    assert raw["architecture"] == "conformer_ctc"
    assert raw["frontend"]["dither"] == 0.0  # forced off for inference
    assert raw["frontend"]["num_mel_bins"] == NUM_BINS and raw["sample_rate"] == 16000
    assert raw["tokenizer"]["files"] == ["tokenizer.json", "tokens.txt"]
    meta = json.loads((model_dir / "meta.json").read_text())
    assert meta["source"] == "test" and meta["audiokit_version"] and meta["date"]


def test_round_trip_same_outputs(model_dir):
    model, cfg = load_model_dir(model_dir)
    assert not model.training
    tok = load_model_tokenizer(cfg)
    ref = tiny_model(tok.vocab_size)
    feats = torch.randn(2, 50, NUM_BINS) * 3 + 9
    lengths = torch.tensor([50, 37])
    with torch.no_grad():
        a, la = model(feats, lengths)
        b, lb = ref(feats, lengths)
    assert torch.equal(la, lb)
    torch.testing.assert_close(a, b)
    assert torch.equal(model.cmvn.mean, torch.full((NUM_BINS,), 9.0))
    opts = cfg.fbank_options()
    assert opts.frame.dither == 0.0 and opts.mel.num_bins == NUM_BINS


def test_refuses_to_overwrite_unless_asked(model_dir, tmp_path):
    model, cfg = load_model_dir(model_dir)
    tok = load_model_tokenizer(cfg)
    out = tmp_path / "m"
    args = (model, cfg.architecture, cfg.args, cfg.frontend, 16000, tok)
    write_model_dir(out, *args)
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        write_model_dir(out, *args)
    write_model_dir(out, *args, overwrite=True)
    assert (out / "model.safetensors").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a packed model dir"):
        write_model_dir(tmp_path / "other", *args, overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "other"]  # no temp dirs left


def test_vocab_mismatch_is_refused(model_dir, tmp_path):
    model, cfg = load_model_dir(model_dir)
    small = CharTokenizer.train(["AB"], latin="char")
    with pytest.raises(ConfigError, match="vocab_size"):
        write_model_dir(tmp_path / "m", model, cfg.architecture, cfg.args, None, 16000, small)


def test_sentencepiece_tokenizer_travels(tmp_path):
    from audiokit.data.synthetic import SENTENCES
    from audiokit.text import train_sentencepiece

    tok = train_sentencepiece(SENTENCES * 5, tmp_path / "bpe", vocab_size=40, num_threads=1)
    model = tiny_model(tok.vocab_size)
    out = write_model_dir(
        tmp_path / "m", model, "conformer_ctc", model.config, FRONTEND, 16000, tok
    )
    assert (out / "bpe.model").read_bytes() == (tmp_path / "bpe" / "bpe.model").read_bytes()
    cfg = read_model_config(out)
    assert cfg.tokenizer == {
        "type": tok.type,
        "files": ["bpe.model", "tokenizer.json", "tokens.txt"],
    }
    loaded = load_model_tokenizer(cfg)
    assert loaded.encode(SENTENCES[0]) == tok.encode(SENTENCES[0])
    (out / "bpe.model").unlink()
    with pytest.raises(AudiokitError, match=r"bpe\.model: tokenizer file missing; re-pack"):
        load_model_tokenizer(cfg)


def copy_dir(src: Path, dst: Path) -> Path:
    import shutil

    return Path(shutil.copytree(src, dst))


def test_missing_files_give_one_line_errors(model_dir, tmp_path):
    d = copy_dir(model_dir, tmp_path / "m")
    (d / "model.safetensors").unlink()
    with pytest.raises(ConfigError) as e:
        load_model_dir(d)
    msg = str(e.value)
    assert "model.safetensors: missing" in msg and "audiokit model pack" in msg and "\n" not in msg
    (d / "model.yaml").unlink()
    with pytest.raises(ConfigError, match="model.yaml: missing"):
        load_model_dir(d)
    with pytest.raises(ConfigError, match="model directory not found"):
        load_model_dir(tmp_path / "nowhere")


def test_weights_that_do_not_fit_are_refused(model_dir, tmp_path):
    d = copy_dir(model_dir, tmp_path / "m")
    raw = yaml.safe_load((d / "model.yaml").read_text())
    raw["args"]["num_layers"] = 2
    (d / "model.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="weights do not fit model.yaml"):
        load_model_dir(d)


def fake_exp_dir(root: Path, model_dir: Path) -> Path:
    """An exp dir as the trainer leaves it: config.yaml, model.yaml, checkpoints, metrics."""
    from audiokit.train.checkpoint import save_checkpoint

    model, cfg = load_model_dir(model_dir)
    exp = root / "exp"
    exp.mkdir()
    tok_dir = load_model_tokenizer(cfg).save(root / "tokenizer")
    config = {
        "model": {"architecture": "conformer_ctc", "args": {"d_model": 32}},
        "frontend": {"type": "fbank", "num_mel_bins": NUM_BINS, "dither": 1.0},
        "data": {"train": "x", "tokenizer": str(tok_dir), "cmvn": str(model_dir / "cmvn.npz")},
    }
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    (exp / "model.yaml").write_text(
        yaml.safe_dump({"architecture": "conformer_ctc", "args": cfg.args})
    )
    state = model.state_dict()
    save_checkpoint(exp / "epoch_1.pt", {"model": state, "epoch": 1})
    worse = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    save_checkpoint(exp / "epoch_2.pt", {"model": worse, "epoch": 2})
    records = [
        {"epoch": 1, "step": 10, "checkpoint": "epoch_1.pt", "loss": 1.0},
        {"epoch": 2, "step": 20, "checkpoint": "epoch_2.pt", "loss": 2.0},
    ]
    (exp / "valid_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (exp / "latest").write_text("epoch_2.pt\n")
    return exp


def test_pack_training_run(model_dir, tmp_path):
    from safetensors.torch import save_file

    exp = fake_exp_dir(tmp_path, model_dir)
    ref, _ = load_model_dir(model_dir)
    out = pack_model(exp, tmp_path / "packed")  # no avg_*: the best checkpoint (epoch 1)
    cfg = read_model_config(out)
    assert cfg.meta["weights"] == "epoch_1.pt" and cfg.meta["exp_dir"] == str(exp.resolve())
    assert cfg.frontend["dither"] == 0.0 and cfg.cmvn == "cmvn.npz"
    packed, _ = load_model_dir(out)
    for k, v in ref.state_dict().items():
        assert torch.equal(packed.state_dict()[k], v), k
    # an averaged file wins over checkpoints, and its provenance is recorded
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(state, str(exp / "avg_2.safetensors"), metadata={"averaged": "epoch_1.pt epoch_2.pt"})
    with pytest.raises(ConfigError, match="already exists"):
        pack_model(exp, out)
    pack_model(exp, out, overwrite=True)
    assert read_model_config(out).meta["averaged"] == ["epoch_1.pt", "epoch_2.pt"]
    pack_model(exp, out, weights=exp / "epoch_2.pt", overwrite=True)
    assert read_model_config(out).meta["weights"] == "epoch_2.pt"


def test_pack_errors(tmp_path):
    with pytest.raises(ConfigError, match="no config.yaml"):
        pack_model(tmp_path, tmp_path / "out")


def model_app() -> typer.Typer:
    """The `model` group as the lead registers it (see the report)."""
    from audiokit.cli import model_commands

    app = typer.Typer()
    app.command("pack")(model_commands.pack)
    app.command("info")(model_commands.info)
    return app


def test_cli_pack_and_info(model_dir, tmp_path):
    exp = fake_exp_dir(tmp_path, model_dir)
    runner = CliRunner()
    res = runner.invoke(model_app(), ["pack", "--exp-dir", str(exp), "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "packed epoch_1.pt" in res.output
    res = runner.invoke(model_app(), ["info", str(tmp_path / "p")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for needle in (
        "conformer_ctc",
        "parameters",
        "num_mel_bins=40",
        "char, 30 tokens",
        "epoch_1.pt",
    ):
        assert needle in res.output, needle
    res = runner.invoke(model_app(), ["info", str(tmp_path / "nothing")])
    assert isinstance(res.exception, AudiokitError)
