"""Paraformer training in two stages through the trainer: CE, then MWER fine-tuning started
from the CE run's weights (`model.init`), as the recipe's separate MWER stage does."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from audiokit.errors import ConfigError
from audiokit.train.config import load_config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from audiokit.data.synthetic import make_demo_data_dir
    from audiokit.text import CharTokenizer

    root = tmp_path_factory.mktemp("pf_corpus")
    make_demo_data_dir(root / "train", num_utts=4, seed=0)
    make_demo_data_dir(root / "dev", num_utts=2, seed=1)
    text = (root / "train" / "text").read_text().splitlines()
    CharTokenizer.train(line.split(" ", 1)[1] for line in text).save(root / "tok")
    args = {
        "lfr_m": 1, "lfr_n": 1, "encoder": "conformer", "d_model": 16, "num_heads": 2,
        "ff_dim": 32, "num_layers": 1, "conv_kernel": 3, "predictor": "v1",
        "decoder": "transformer", "decoder_layers": 1, "decoder_heads": 2,
        "decoder_ff_dim": 32, "ctc_weight": 0.3, "sampling_ratio": 0.4, "predictor_bias": 0,
    }  # fmt: skip
    config = {
        "model": {"architecture": "paraformer", "args": args},
        "frontend": {"type": "fbank", "num_mel_bins": 20, "dither": 0.0},
        "data": {
            "train": str(root / "train"),
            "valid": str(root / "dev"),
            "tokenizer": str(root / "tok"),
            "max_frames_per_batch": 1000,
            "num_workers": 0,
        },
        "optim": {"name": "adamw", "lr": 2.0e-3},
        "scheduler": {"name": "warmup_constant", "warmup_steps": 2},
        "train": {"epochs": 1, "log_interval": 1, "keep_best": 1, "device": "cpu", "seed": 3},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def _log(exp) -> list[dict]:
    return [json.loads(line) for line in (exp / "train_log.jsonl").read_text().splitlines()]


def test_ce_then_mwer_stage_from_the_ce_weights(corpus, tmp_path, one_torch_thread):
    from audiokit.train.builders import run_training
    from audiokit.train.checkpoint import load_checkpoint

    ce = tmp_path / "ce"
    run_training(load_config(corpus / "config.yaml"), ce)
    assert _log(ce) and not any("mwer" in r for r in _log(ce))
    ce_weights = load_checkpoint(ce / "epoch_1.pt")["model"]

    overrides = ["model.args.train_stage=mwer", f"model.init={ce / 'epoch_1.pt'}"]
    cfg = load_config(corpus / "config.yaml", [*overrides, "optim.lr=1e-12"])
    mwer = tmp_path / "mwer"
    run_training(cfg, mwer, resume=True)  # recipes always pass --resume: init must still apply
    logged = [r for r in _log(mwer) if "mwer" in r]
    assert len(logged) == 4  # every step of the epoch (log_interval 1)
    assert {"expected_errors", "oracle_errors", "att", "pre", "ctc"} <= set(logged[0])
    # lr 1e-12 (Adam steps are ~lr): the run started from the CE weights and kept them
    after = load_checkpoint(mwer / "epoch_1.pt")["model"]
    for name, value in ce_weights.items():
        if value.is_floating_point() and "running_" not in name:  # BatchNorm stats move
            assert torch.allclose(after[name], value, rtol=0, atol=1e-8), name
    model_yaml = yaml.safe_load((mwer / "model.yaml").read_text())
    assert model_yaml["args"]["train_stage"] == "mwer"


def test_init_weights_must_fit(corpus, tmp_path, one_torch_thread):
    from audiokit.train.builders import run_training

    ce = tmp_path / "ce"
    run_training(load_config(corpus / "config.yaml"), ce)
    cfg = load_config(
        corpus / "config.yaml", [f"model.init={ce / 'epoch_1.pt'}", "model.args.d_model=24"]
    )
    with pytest.raises(ConfigError, match="model.init .*do not fit this model"):
        run_training(cfg, tmp_path / "bad")
