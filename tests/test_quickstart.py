"""The README's main job, `scripts/quickstart.sh`, runs end to end and ends with a %WER line."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quickstart_runs_end_to_end(tmp_path):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "quickstart.sh"), str(tmp_path / "qs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "%WER 2.11 [ 2 / 95, 1 ins, 1 del, 0 sub ]"
    assert (tmp_path / "qs" / "fbank" / "feats.scp").read_text().count("\n") == 12
    assert (tmp_path / "qs" / "bpe" / "bpe.model").is_file()
    assert (tmp_path / "qs" / "score" / "result.txt").is_file()
