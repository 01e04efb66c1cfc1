"""`audiokit train` of a tiny codec (data.task=codec): GAN groups, exact resume, packing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from audiokit.errors import ConfigError
from audiokit.train.checkpoint import load_checkpoint, read_metrics
from tests.test_audio_segments import make_codec_data_dir
from tests.test_codec_gan import TINY_DISC, TINY_MEL

ARCH = "tests.test_codec_gan:TinyCodec"


def _app():
    from audiokit.cli.main import app

    return app


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("codec_corpus")
    seconds = [0.15, 0.3, 0.25, 0.4, 0.08, 0.2]
    rates = [8000, 8000, 16000, 8000, 8000, 8000]  # one file is resampled on load
    make_codec_data_dir(root / "train", seconds, rate=rates, seed=0)
    make_codec_data_dir(root / "dev", [0.2, 0.12], seed=1)
    config = {
        "model": {
            "architecture": ARCH,
            "args": {"dim": 4, "discriminator": TINY_DISC, "loss": {"mel_options": TINY_MEL}},
        },
        "data": {
            "task": "codec",
            "train": str(root / "train"),
            "valid": str(root / "dev"),
            "sample_rate": 8000,
            "segment_seconds": 0.1,
            "batch_size": 2,
            "num_workers": 0,
        },
        "optim": {"name": "adam", "lr": 1.0e-3, "betas": [0.8, 0.99]},
        "scheduler": {"name": "warmup_constant", "warmup_steps": 2},
        "train": {
            "epochs": 2,
            "log_interval": 1,
            "keep_best": 2,
            "best_metric": "mel",
            "device": "cpu",
            "seed": 5,
        },
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("codec_ref") / "exp"
    args = ["train", "--config", str(corpus / "config.yaml"), "--exp-dir", str(exp)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert "trained to step 6 (epoch 2)" in result.output
    return exp


def test_codec_training_run(reference):
    model_yaml = yaml.safe_load((reference / "model.yaml").read_text())
    assert model_yaml["args"]["sample_rate"] == 8000  # filled from data.sample_rate
    assert model_yaml["args"]["discriminator"] == TINY_DISC
    saved = yaml.safe_load((reference / "config.yaml").read_text())
    assert saved["frontend"] is None and saved["data"]["task"] == "codec"
    valid = read_metrics(reference)
    assert [r["epoch"] for r in valid] == [1, 2]
    assert all({"loss", "mel", "si_sdr", "commitment", "codebook"} <= set(r) for r in valid)
    log = [
        yaml.safe_load(line)
        for line in (reference / "train_log.jsonl").read_text().splitlines()
        if line.strip()
    ]
    train = [r for r in log if "generator_mel" in r]
    assert len(train) == 6  # 6 utterances, 2 per batch: 3 steps per epoch
    for key in ("discriminator_loss", "generator_loss", "generator_adv", "generator_feature"):
        assert all(key in r for r in train), key
    ckpt = load_checkpoint(reference / "epoch_2.pt")
    assert set(ckpt["optimizers"]) == {"discriminator", "generator"}
    assert int(ckpt["model"]["discriminator.generator_steps"]) == 6


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_exactly(corpus, reference, tmp_path):
    from audiokit.train.builders import run_training
    from audiokit.train.config import load_config

    extra = ["train.save_interval_steps=1"]
    cfg = load_config(corpus / "config.yaml", extra)
    cut = tmp_path / "cut"

    def stop(trainer) -> None:
        if trainer.step == 4:  # mid epoch 2
            raise _Interrupt

    with pytest.raises(_Interrupt):
        run_training(cfg, cut, step_hook=stop)
    assert load_checkpoint(cut / (cut / "latest").read_text().strip())["step"] == 4
    run_training(load_config(corpus / "config.yaml", extra), cut, resume=True)
    ref = load_checkpoint(reference / "epoch_2.pt")
    got = load_checkpoint(cut / "epoch_2.pt")
    for name, value in ref["model"].items():
        assert torch.equal(value, got["model"][name]), name
    for group in ("discriminator", "generator"):
        a, b = ref["optimizers"][group]["state"], got["optimizers"][group]["state"]
        assert all(torch.equal(a[k]["exp_avg"], b[k]["exp_avg"]) for k in a)
    assert [r["mel"] for r in read_metrics(cut)] == [r["mel"] for r in read_metrics(reference)]


def test_pack_drops_the_discriminator(corpus, reference, tmp_path):
    from safetensors import safe_open

    from audiokit.model_dir import load_model_dir
    from audiokit.train.builders import run_training
    from audiokit.train.config import load_config

    out = tmp_path / "packed"
    weights = reference / "epoch_2.pt"
    args = ["--exp-dir", str(reference), "--out", str(out), "--weights", str(weights)]
    result = CliRunner().invoke(_app(), ["model", "pack", *args])
    assert result.exit_code == 0, result.output
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("discriminator.") for k in keys)
    packed = yaml.safe_load((out / "model.yaml").read_text())
    assert packed["args"]["discriminator"] is None and packed["frontend"] is None
    assert packed["tokenizer"] == {} and packed["sample_rate"] == 8000
    model, cfg = load_model_dir(out)
    assert model.discriminator is None and not model.training
    state = load_checkpoint(weights)["model"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    wav = torch.randn(1, 1, 800) * 0.1
    enc = model.encode(wav)
    assert model.decode(enc).shape == (1, 1, 800)
    with pytest.raises(ConfigError, match="add model.args.discriminator"):
        model.optimizer_groups()
    # fine-tuning from the packed dir: the discriminator starts fresh, the rest is loaded
    ft = load_config(corpus / "config.yaml", [f"model.init={out}", "train.max_steps=1"])
    run_training(ft, tmp_path / "ft")
    seen = load_checkpoint(tmp_path / "ft" / "step_1.pt")["model"]
    assert not torch.equal(seen["encoder.weight"], state["encoder.weight"])  # one step on
    assert torch.allclose(seen["encoder.weight"], state["encoder.weight"], atol=2e-3)


def test_codec_config_errors(corpus, tmp_path):
    from audiokit.train.builders import run_training
    from audiokit.train.config import load_config

    path = corpus / "config.yaml"
    with pytest.raises(ConfigError, match="set frontend: null"):
        load_config(path, ["frontend.type=fbank"])
    with pytest.raises(ConfigError, match="data.batch_size=None"):
        load_config(path, ["data.batch_size=null"])
    with pytest.raises(ConfigError, match="data.segment_seconds applies to data.task=codec"):
        load_config(path, ["data.task=asr"])
    with pytest.raises(ConfigError, match="data.task='tts' is unknown"):
        load_config(path, ["data.task=tts"])
    with pytest.raises(ConfigError, match="data.specaug does not apply"):
        load_config(path, ["data.specaug={num_time_masks: 1}"])
    inference_only = load_config(path, ["model.args.discriminator=null"])
    with pytest.raises(ConfigError, match="inference-only"):
        run_training(inference_only, tmp_path / "a")
    wrong_rate = load_config(path, ["model.args.sample_rate=16000"])
    with pytest.raises(ConfigError, match="runs at 16000 Hz but data.sample_rate=8000"):
        run_training(wrong_rate, tmp_path / "b")
