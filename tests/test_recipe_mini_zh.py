"""egs/mini_zh/asr1/run.sh end to end with the tiny CI configs: the Conformer-CTC path, then the
Paraformer path on the same data (stages 1-5 reused), real commands, a temp work dir (nothing is
written into the source tree), then an idempotent re-run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_recipe_mini_en import _missing_commands

REPO = Path(__file__).resolve().parents[1]
EGS = REPO / "egs" / "mini_zh" / "asr1"


def _run(work: Path, config: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = ["bash", str(EGS / "run.sh"), "--num-utts", "340", "--train-config", config]
    cmd += ["--work-dir", str(work)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _test_row(work: Path, exp: str) -> tuple[int, float]:
    results = (work / "exp" / exp / "RESULTS.md").read_text()
    assert "egs/mini_zh/asr1/run.sh --num-utts 340" in results
    row = re.search(r"^\| test \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", results, re.M)
    assert row is not None, results
    return int(row.group(1)), float(row.group(2))


@pytest.mark.slow
def test_mini_zh_recipe_ci_ctc_then_paraformer(tmp_path):
    missing = _missing_commands()
    if missing:
        pytest.skip(f"audiokit/cli/main.py does not register {', '.join(missing)} yet")
    before = sorted(p.name for p in EGS.iterdir())
    work = tmp_path / "work"

    res = _run(work, "conf/train_ci.yaml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    packed = work / "exp" / "asr_train_ci" / "packed"
    assert res.stdout.rstrip().splitlines()[-1] == f"packed model: {packed}"
    for name in ("model.yaml", "model.safetensors", "tokens.txt", "cmvn.npz", "RESULTS.md"):
        assert (packed / name).is_file(), name
    utts, _ = _test_row(work, "asr_train_ci")
    assert utts == 20  # 340 utterances: 300 train, 20 dev, 20 test
    hyp = (work / "exp" / "asr_train_ci" / "decode_test" / "text").read_text(encoding="utf-8")
    assert len(hyp.splitlines()) == 20

    # the Paraformer on the same corpus: data, filtering and the token list are reused
    res = _run(work, "conf/train_paraformer_ci.yaml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("done already") >= 6  # stages 1, 3 (x3), 4 (x2), 5
    packed = work / "exp" / "asr_train_paraformer_ci" / "packed"
    assert res.stdout.rstrip().splitlines()[-1] == f"packed model: {packed}"
    model_yaml = (packed / "model.yaml").read_text()
    eos = next(
        line.split()[1]
        for line in (work / "data" / "token_list" / "char" / "tokens.txt").read_text().splitlines()
        if line.startswith("<sos/eos> ")
    )
    assert "architecture: paraformer" in model_yaml
    assert f"eos_id: {eos}" in model_yaml and f"sos_id: {eos}" in model_yaml
    utts, _ = _test_row(work, "asr_train_paraformer_ci")
    assert utts == 20
    assert sorted(p.name for p in EGS.iterdir()) == before  # the source tree is untouched

    again = _run(work, "conf/train_paraformer_ci.yaml", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done already") >= 10 and f"packed model: {packed}" in again.stdout
