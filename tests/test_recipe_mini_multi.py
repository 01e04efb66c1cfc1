"""egs/mini_multi/s2t1/run.sh end to end with the tiny CI config: multitask data (text with
<lang><asr>, text.ctc, text.prev), a unigram tokenizer with the OWSM symbols, OWSM-CTC training,
packing, decoding with the given language and with --lang auto; all in a temp work dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EGS = REPO / "egs" / "mini_multi" / "s2t1"


@pytest.mark.slow
def test_mini_multi_recipe_ci(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for name, corpus in (("MINI_EN_DATA", "mini_en"), ("MINI_ZH_DATA", "mini_zh")):
        prepared = REPO / "egs" / corpus / "asr1" / "data"
        # reuse a prepared corpus; else synthesise a small one in the temp dir
        env[name] = str(prepared if (prepared / "test" / "text").is_file() else tmp_path / corpus)
    before = sorted(p.name for p in EGS.iterdir())
    work = tmp_path / "work"
    cmd = ["bash", str(EGS / "run.sh"), "--max-utts", "60", "--num-utts", "340", "--nbpe", "260"]
    cmd += ["--train-config", "conf/train_ci.yaml", "--work-dir", str(work)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    exp = work / "exp" / "asr_train_ci"
    assert res.stdout.rstrip().splitlines()[-1] == f"packed model: {exp / 'packed'}"
    data = work / "data" / "train"
    text = (data / "text").read_text(encoding="utf-8").splitlines()
    assert len(text) == 120
    assert {line.split()[1] for line in text} == {"<eng><asr>", "<zho><asr>"}
    assert set((data / "text.prev").read_text().split()[1::2]) == {"<na>"}
    model_yaml = (exp / "packed" / "model.yaml").read_text()
    assert "architecture: owsm_ctc" in model_yaml and "nolang_prob: 0.3" in model_yaml
    scores = json.loads((exp / "decode_test" / "scores.json").read_text())
    assert set(scores["given"]) == {"cer_eng", "cer_zho"}
    assert {"cer_eng", "cer_zho", "lid_accuracy"} <= set(scores["auto"])
    assert 0.0 <= scores["auto"]["lid_accuracy"] <= 100.0
    hyp = (exp / "decode_test" / "given" / "hyp.zho.txt").read_text(encoding="utf-8")
    assert len(hyp.splitlines()) == 20
    assert sorted(p.name for p in EGS.iterdir()) == before  # the source tree is untouched
