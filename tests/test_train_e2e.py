"""`audiokit train` end to end on a synthetic corpus: Conformer-CTC, averaging, SIGKILL + resume,
and two-process DDP under torchrun (gloo, CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from audiokit.train.checkpoint import load_checkpoint, read_metrics

REPO = Path(__file__).resolve().parents[1]


def _registered() -> bool:
    """True once audiokit/cli/main.py registers `train` and `model` (else run them directly)."""
    from audiokit.cli import main, model, train

    commands = [c.callback for c in main.app.registered_commands]
    groups = [g.typer_instance for g in main.app.registered_groups]
    return train.train in commands and model.app in groups


def cli_app():
    import typer

    from audiokit.cli import model, train

    app = typer.Typer()
    app.command("train")(train.train)
    app.add_typer(model.app, name="model")
    return app


RUNNER = (
    "import sys, typer; from audiokit.cli.train import train; "
    "sys.argv[0] = 'audiokit train'; typer.run(train)"
)


def train_cmd(*args: str) -> list[str]:
    if _registered():
        return [sys.executable, "-m", "audiokit", "train", *args]
    return [sys.executable, "-c", RUNNER, *args]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from audiokit.data.synthetic import make_demo_data_dir
    from audiokit.features.cmvn import save_cmvn_npz
    from audiokit.text import CharTokenizer

    root = tmp_path_factory.mktemp("corpus")
    make_demo_data_dir(root / "train", num_utts=4, seed=0)
    make_demo_data_dir(root / "dev", num_utts=2, seed=1)
    text = (root / "train" / "text").read_text().splitlines()
    CharTokenizer.train(line.split(" ", 1)[1] for line in text).save(root / "tok")
    save_cmvn_npz(root / "cmvn.npz", [10.0] * 20, [0.2] * 20)
    config = {
        "model": {
            "architecture": "conformer_ctc",
            "args": {
                "d_model": 16,
                "num_heads": 2,
                "ff_dim": 32,
                "num_layers": 1,
                "conv_kernel": 3,
            },
        },
        "frontend": {"type": "fbank", "num_mel_bins": 20, "dither": 1.0},
        "data": {
            "train": str(root / "train"),
            "valid": str(root / "dev"),
            "tokenizer": str(root / "tok"),
            "cmvn": str(root / "cmvn.npz"),
            "max_frames_per_batch": 1000,
            "num_workers": 0,
            "speed_perturb": [0.9, 1.0, 1.1],
            "specaug": {"num_freq_masks": 1, "num_time_masks": 1},
        },
        "optim": {"name": "adamw", "lr": 2.0e-3},
        "scheduler": {"name": "noam", "warmup_steps": 3},
        "train": {"epochs": 2, "log_interval": 1, "keep_best": 3, "device": "cpu", "seed": 7},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> tuple[Path, str]:
    """One uninterrupted 2-epoch run (exp dir, CLI output), shared by the tests below."""
    exp = tmp_path_factory.mktemp("reference") / "exp"
    args = ["train", "--config", str(corpus / "config.yaml"), "--exp-dir", str(exp)]
    result = CliRunner().invoke(cli_app(), args)
    assert result.exit_code == 0, result.output
    return exp, result.output


def test_train_and_average(corpus, reference):
    from safetensors.torch import load_file

    exp, output = reference
    runner = CliRunner()
    args = ["train", "--config", str(corpus / "config.yaml"), "--exp-dir", str(exp)]
    assert "trained to step" in output
    for name in ("config.yaml", "model.yaml", "valid_metrics.jsonl", "train_log.jsonl"):
        assert (exp / name).is_file(), name
    assert (exp / "train_curves.png").stat().st_size > 1000
    model_yaml = yaml.safe_load((exp / "model.yaml").read_text())
    assert model_yaml["args"]["input_dim"] == 20 and model_yaml["args"]["vocab_size"] > 4
    records = read_metrics(exp)
    assert [r["epoch"] for r in records] == [1, 2] and all("ter" in r for r in records)
    ckpt = load_checkpoint(exp / "epoch_2.pt")
    assert torch.equal(ckpt["model"]["cmvn.istd"], torch.full((20,), 0.2))

    again = runner.invoke(cli_app(), args)  # refuses to overwrite a run
    assert again.exit_code != 0 and "--resume" in str(again.exception)

    result = runner.invoke(cli_app(), ["model", "average", "--exp-dir", str(exp), "--num", "2"])
    assert result.exit_code == 0, result.output
    avg = load_file(exp / "avg_2.safetensors")
    a, b = (load_checkpoint(exp / f"epoch_{e}.pt")["model"] for e in (1, 2))
    name = "ctc_out.weight"
    assert torch.allclose(avg[name], (a[name].double() + b[name].double()).div(2).float())
    counter = next(k for k, v in a.items() if not v.is_floating_point())
    assert torch.equal(avg[counter], b[counter])  # integer buffers come from the last
    too_many = runner.invoke(cli_app(), ["model", "average", "--exp-dir", str(exp), "--num", "5"])
    assert too_many.exit_code != 0 and "only 2" in str(too_many.exception)


def test_sigkill_then_resume_is_bitwise_identical(corpus, reference, tmp_path):
    from audiokit.train.builders import run_training
    from audiokit.train.config import load_config

    reference = reference[0]  # trained without step checkpoints: saving must not change training
    extra = ["train.save_interval_steps=1"]
    cut = tmp_path / "cut"
    cmd = train_cmd("--config", str(corpus / "config.yaml"), "--exp-dir", str(cut), *extra)
    # the same intra-op thread count as this process: float reductions then match bit for bit
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not (cut / "latest").exists() and proc.poll() is None:  # the first checkpoint
        assert time.monotonic() < deadline, "the training subprocess made no checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    latest = load_checkpoint(cut / (cut / "latest").read_text().strip())
    assert latest["step"] < load_checkpoint(reference / "epoch_2.pt")["step"]

    run_training(load_config(corpus / "config.yaml", extra), cut, resume=True)
    final_ref = load_checkpoint(reference / "epoch_2.pt")["model"]
    final_cut = load_checkpoint(cut / "epoch_2.pt")["model"]
    for name, value in final_ref.items():
        assert torch.equal(value, final_cut[name]), name
    ref_metrics = [r["loss"] for r in read_metrics(reference)]
    assert [r["loss"] for r in read_metrics(cut)] == ref_metrics


def test_torchrun_two_processes_stay_identical(corpus, tmp_path):
    exp, dump = tmp_path / "ddp", tmp_path / "dump"
    args = ["--config", str(corpus / "config.yaml"), "--exp-dir", str(exp), "train.epochs=1"]
    inner = train_cmd(*args)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    torchrun += ["--nproc_per_node", "2"]
    if inner[1] == "-m":
        cmd = [*torchrun, "-m", "audiokit", "train", *args]
    else:
        script = tmp_path / "run_train.py"
        script.write_text(RUNNER.replace("; ", "\n"))
        cmd = [*torchrun, str(script), *args]
    env = {**os.environ, "AUDIOKIT_TRAIN_DUMP_STATE": str(dump), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rank0, rank1 = (torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    final = load_checkpoint(exp / "epoch_1.pt")
    assert final["step"] > 0
    for name, value in final["model"].items():
        assert torch.equal(value, rank0[name]), name
        assert torch.equal(value, rank1[name]), name
    assert final["sampler"]["consumed"] == 0 and final["epoch"] == 1
    # each rank took its own share of the batches: one update per share
    from audiokit.train.builders import build_data
    from audiokit.train.config import load_config
    from audiokit.train.distributed import DistInfo

    cfg = load_config(corpus / "config.yaml")
    shares = [build_data(cfg, DistInfo(r, 2, r))[0].train_sampler for r in (0, 1)]
    for share in shares:
        share.set_epoch(0)
    assert final["step"] == len(shares[0]) == len(shares[1])
    assert set(sum((b for s in shares for b in s), [])) == set(range(4))


def test_cli_user_errors(tmp_path):
    runner = CliRunner()
    no_config = runner.invoke(cli_app(), ["train", "--exp-dir", str(tmp_path)])
    assert "--config is required" in str(no_config.exception)
    resume = runner.invoke(cli_app(), ["train", "--exp-dir", str(tmp_path), "--resume"])
    assert "config.yaml not found" in str(resume.exception)
    avg = runner.invoke(cli_app(), ["model", "average", "--exp-dir", str(tmp_path), "--num", "2"])
    assert "no valid_metrics.jsonl records" in str(avg.exception)
