"""The mini_en streaming recipe end to end at CI size: egs/mini_en/asr1/run.sh with a shrunken
conf/train_streaming.yaml (same architecture, contexts and heads; 1 epoch on 52 utterances),
then local/score_streaming.py (offline vs chunk-by-chunk decoding of the packed model) and the
`asr transcribe` / `asr stream` commands on one file: streaming ids must equal offline ids."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_main

REPO = Path(__file__).resolve().parents[1]
EGS = REPO / "egs" / "mini_en" / "asr1"
TINY = {
    "d_model": 32,
    "num_heads": 2,
    "ff_dim": 64,
    "num_layers": 1,
    "subsampling_channels": 16,
    "pred_hidden": 32,
    "joint_hidden": 32,
}


def tiny_config(path: Path) -> Path:
    """conf/train_streaming.yaml with a tiny model and one short epoch."""
    cfg = yaml.safe_load((EGS / "conf" / "train_streaming.yaml").read_text())
    assert cfg["model"]["architecture"] == "streaming_conformer"
    contexts = cfg["model"]["args"]["att_context_size"]
    assert [32, 7] in contexts and [32, 0] in contexts
    assert all(left % (right + 1) == 0 for left, right in contexts)
    cfg["model"]["args"].update(TINY)
    cfg["data"].update(max_frames_per_batch=3000, num_workers=0)
    cfg["train"].update(epochs=1, keep_best=1, log_interval=5)
    cfg["scheduler"] = {"name": "warmup_constant", "warmup_steps": 5}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_mini_en_streaming_recipe_ci(tmp_path, capsys, one_torch_thread):
    work = tmp_path / "work"
    config = tiny_config(tmp_path / "train_streaming_ci.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env["OMP_NUM_THREADS"] = "1"
    cmd = ["bash", str(EGS / "run.sh"), "--num-utts", "60", "--nj", "1", "--num-avg", "1"]
    cmd += ["--token-type", "bpe", "--nbpe", "48", "--tokenizer-opts", ""]
    cmd += ["--train-config", str(config), "--decode-config", "conf/decode_streaming.yaml"]
    cmd += ["--work-dir", str(work)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    exp = work / "exp" / "asr_train_streaming_ci"
    packed = exp / "packed"
    assert res.stdout.rstrip().splitlines()[-1] == f"packed model: {packed}"
    model_yaml = yaml.safe_load((packed / "model.yaml").read_text())
    assert model_yaml["architecture"] == "streaming_conformer"
    assert (exp / "decode_test" / "text").is_file()  # stage 9: offline decoding (rnnt)

    # offline vs streaming over the test set at two lookaheads, both decoders
    script = EGS / "local" / "score_streaming.py"
    cmd = [sys.executable, str(script), "--exp", str(exp.relative_to(work)), "--sets", "test"]
    cmd += ["--contexts", "32,7", "32,0", "--decoders", "rnnt", "ctc", "--results", "R.md"]
    res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    rows = re.findall(r"^\| test \| (\w+) \| (\d+,\d+) .*\| (\d+)/(\d+) \|", res.stdout, re.M)
    assert {(d, c) for d, c, _, _ in rows} == {
        (d, c) for d in ("rnnt", "ctc") for c in ("32,7", "32,0")
    }
    for decoder, ctx, same, total in rows:
        assert int(total) == 4 and same == total, (decoder, ctx, res.stdout)
    assert "### Offline vs streaming" in (work / "R.md").read_text()
    for kind in ("offline", "stream"):
        out = exp / "decode_stream" / "test" / "rnnt_32_0" / kind
        for name in ("text", "token_ids", "wer", "cer"):
            assert (out / name).is_file(), (kind, name)

    # the CLI: `asr stream --input` gives the ids of `asr transcribe` at the same context
    wav = (work / "dump" / "raw" / "test" / "wav.scp").read_text().split()[1]
    for ctx in ("32,7", "32,0"):
        code, out, err = run_main(
            capsys, "asr", "transcribe", "--model", packed, "--att-context", ctx,
            "--output", "json", wav,
        )  # fmt: skip
        assert code == 0, err
        offline = json.loads(out.strip().splitlines()[-1])
        code, out, err = run_main(
            capsys, "asr", "stream", "--model", packed, "--input", wav, "--att-context", ctx,
            "--output", "json",
        )  # fmt: skip
        assert code == 0, err
        final = json.loads(out.strip().splitlines()[-1])
        assert final["token_ids"] == offline["token_ids"], ctx
        assert final["text"] == offline["text"]
