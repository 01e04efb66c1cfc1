"""Training config: YAML loading, typed overrides, one-line errors, resolved-config round trip."""

from __future__ import annotations

import pytest

from audiokit.errors import ConfigError
from audiokit.train.config import apply_overrides, load_config, parse_override, save_config

YAML = """
model: {architecture: conformer_ctc, args: {d_model: 144, num_layers: 4}}
frontend: {type: fbank, num_mel_bins: 80, dither: 1.0}
data: {train: data/train, valid: data/dev, tokenizer: exp/bpe, speed_perturb: [0.9, 1.0, 1.1]}
optim: {name: adamw, lr: 1.0e-3, weight_decay: 1.0e-2, betas: [0.9, 0.98]}
scheduler: {name: noam, warmup_steps: 1000}
train: {epochs: 30, amp: bf16, ema_decay: null}
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(YAML)
    return path


def test_load_with_typed_overrides(config_file):
    cfg = load_config(
        config_file,
        [
            "train.epochs=3",
            "model.args.num_layers=2",
            "optim.lr=5e-4",
            "data.specaug={num_time_masks: 2}",
        ],
    )
    assert cfg.train.epochs == 3 and cfg.model.args == {"d_model": 144, "num_layers": 2}
    assert cfg.optim.lr == 5e-4 and isinstance(cfg.optim.lr, float)
    assert cfg.data.specaug == {"num_time_masks": 2}
    assert cfg.frontend.options == {"num_mel_bins": 80, "dither": 1.0}
    assert cfg.train.keep_best == 5  # default filled in


def test_resolved_config_round_trips(config_file, tmp_path):
    cfg = load_config(config_file, ["train.max_steps=10"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown config key 'train.epoch'"),
        ("train.epochs=three", "train.epochs='three' must be an integer"),
        ("train.amp=fp8", "train.amp='fp8' is unknown"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("scheduler.name=step", "scheduler.name='step' is unknown"),
        ("trainer.epochs=1", "unknown config section 'trainer'"),
        ("train.ema_decay=1.5", "train.ema_decay=1.5 must be in (0, 1)"),
        ("train", "is not key=value"),
        ("train.epochs.x=1", "'train.epochs' is not a section"),
    ],
)
def test_errors_are_one_line_and_name_the_key(config_file, override, message):
    with pytest.raises(ConfigError) as exc:
        load_config(config_file, [override])
    text = str(exc.value)
    assert message in text and "\n" not in text


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 3\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(bad)


def test_override_parsing():
    assert parse_override("a.b=null") == (["a", "b"], None)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=x:y") == (["a"], "x:y")
    assert apply_overrides({}, ["model.args.d=4"]) == {"model": {"args": {"d": 4}}}


def test_frontend_null_means_raw_waveforms(config_file):
    cfg = load_config(config_file, ["frontend=null"])
    assert cfg.frontend is None


def test_frontend_options_from_config(config_file):
    from audiokit.train.builders import frontend_options

    opts = frontend_options(
        load_config(config_file, ["frontend.num_mel_bins=23", "data.sample_rate=8000"])
    )
    assert (
        opts.mel.num_bins == 23 and opts.frame.sample_frequency == 8000 and opts.frame.dither == 1.0
    )
    with pytest.raises(ConfigError, match="frontend: foo"):
        frontend_options(load_config(config_file, ["frontend.foo=1"]))


def test_build_model_fills_dims_and_reports_bad_args(config_file):
    from audiokit.train.builders import build_model

    cfg = load_config(
        config_file, ["model.architecture=tests.test_train_loop:ToyCTC", "model.args={}"]
    )
    model, args = build_model(cfg, input_dim=7, vocab_size=9)
    assert args == {"input_dim": 7, "vocab_size": 9} and model.net[0].in_features == 7
    cfg = load_config(config_file, ["model.architecture=tests.test_train_loop:ToyCTC"])
    with pytest.raises(ConfigError, match="bad constructor arguments"):
        build_model(cfg, 7, 9)
    cfg = load_config(config_file, ["model.architecture=nope.module:X"])
    with pytest.raises(ConfigError, match="cannot import"):
        build_model(cfg, 7, 9)


def test_build_model_takes_special_ids_from_the_tokenizer(config_file):
    """A Paraformer's sos/eos must be the token list's <sos/eos>, not FunASR's default ids 1/2."""
    from audiokit.train.builders import build_model

    tiny = (
        "model.args={lfr_m: 1, lfr_n: 1, encoder: conformer, d_model: 16, num_heads: 2, "
        "ff_dim: 32, num_layers: 1, conv_kernel: 3, decoder: transformer, decoder_layers: 1, "
        "decoder_heads: 2, decoder_ff_dim: 32}"
    )
    cfg = load_config(config_file, ["model.architecture=paraformer", tiny])
    specials = {"blank_id": 0, "sos_id": 11, "eos_id": 11}
    model, args = build_model(cfg, input_dim=80, vocab_size=12, special_ids=specials)
    assert (args["sos_id"], args["eos_id"], args["blank_id"]) == (11, 11, 0)
    assert model.eos_id == 11
    cfg = load_config(config_file, ["model.architecture=paraformer", tiny, "model.args.eos_id=5"])
    _, args = build_model(cfg, input_dim=80, vocab_size=12, special_ids=specials)
    assert args["eos_id"] == 5  # the config wins
