"""The recipe framework: option parsing, the local and Slurm job backends (with a fake
`sbatch`/`srun` on PATH), recipes/asr.sh stage sequencing with a stub `audiokit`, and the
`audiokit data filter` stage's library and command."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
UTILS = REPO / "recipes" / "utils"
ASR_SH = REPO / "recipes" / "asr.sh"


def write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    path.chmod(0o755)
    return path


def bash(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = False):
    full = {**os.environ, **(env or {})}
    res = subprocess.run(
        ["bash", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120
    )
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


# ------------------------------------------------------------------------- parse_options.sh
def test_parse_options(tmp_path):
    script = write_exe(
        tmp_path / "s.sh",
        f"""
        #!/usr/bin/env bash
        set -euo pipefail
        foo_bar=1
        name=x
        help_message="usage: s.sh [--foo-bar N] [--name S]"
        . {UTILS}/parse_options.sh
        echo "foo_bar=$foo_bar name=$name rest=$*"
        """,
    )
    res = bash([str(script), "--foo-bar", "7", "--name=a b", "pos"], tmp_path, check=True)
    assert res.stdout.strip() == "foo_bar=7 name=a b rest=pos"
    res = bash([str(script), "--fo-bar", "7"], tmp_path)
    assert res.returncode == 1 and "unknown option --fo-bar" in res.stderr
    res = bash([str(script), "--name"], tmp_path)
    assert res.returncode == 1 and "needs a value" in res.stderr
    assert "usage: s.sh" in bash([str(script), "--help"], tmp_path, check=True).stdout


# ------------------------------------------------------------------------------ run_jobs.sh
def test_run_jobs_local_array_and_failure_tail(tmp_path):
    run_jobs = str(UTILS / "run_jobs.sh")
    res = bash([run_jobs, "JOB=1:3", "log/x.JOB.log", "echo", "job JOB", "$HOME"], tmp_path)
    assert res.returncode == 0, res.stderr
    for i in (1, 2, 3):
        lines = (tmp_path / f"log/x.{i}.log").read_text().splitlines()
        assert f"job {i} $HOME" in lines  # arguments kept verbatim, JOB replaced
        assert lines[-1].startswith("# ended with status 0 ")
    cmd = "echo working; if [ $0 = 2 ]; then echo 'ValueError: bad thing' >&2; exit 3; fi"
    res = bash([run_jobs, "JOB=1:3", "log/y.JOB.log", "bash", "-c", cmd, "JOB"], tmp_path)
    assert res.returncode == 1
    assert "job 2 failed" in res.stderr and "ValueError: bad thing" in res.stderr
    assert "job 1 failed" not in res.stderr and "1 of 3 job(s) failed" in res.stderr
    assert "# ended with status 3 " in (tmp_path / "log/y.2.log").read_text()
    # without a JOB=A:B range "JOB" is ordinary text
    res = bash([run_jobs, "log/JOB.log", "echo", "-n", "JOBS"], tmp_path)
    assert res.returncode == 0 and "\nJOBS# took" in (tmp_path / "log/JOB.log").read_text()


FAKE_SBATCH = """
#!/usr/bin/env bash
# fake sbatch: records its arguments, runs each array task with SLURM_ARRAY_TASK_ID set
echo "sbatch $*" >> "$STUB_CALLS"
array=1-1 out=slurm-%a.out
while [ $# -gt 1 ]; do
    case "$1" in
        --array) array="$2"; shift 2 ;;
        --output) out="$2"; shift 2 ;;
        --job-name|--cpus-per-task|--gres|--mem) shift 2 ;;
        *) shift ;;
    esac
done
script="$1" status=0
for ((i = ${array%-*}; i <= ${array#*-}; i++)); do
    SLURM_ARRAY_TASK_ID=$i bash "$script" > "${out//%a/$i}" 2>&1 || status=1
done
echo 4242
exit $status
"""

FAKE_SRUN = """
#!/usr/bin/env bash
echo "srun $*" >> "$STUB_CALLS"
while [[ "${1:-}" == --* ]]; do shift; done
exec "$@"
"""


@pytest.fixture
def fake_slurm(tmp_path) -> dict[str, str]:
    bin_dir = tmp_path / "slurm_bin"
    write_exe(bin_dir / "sbatch", FAKE_SBATCH)
    write_exe(bin_dir / "srun", FAKE_SRUN)
    calls = tmp_path / "calls.txt"
    calls.touch()
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_CALLS": str(calls)}


def test_run_jobs_slurm_with_fake_sbatch(tmp_path, fake_slurm):
    run_jobs = str(UTILS / "run_jobs.sh")
    args = [run_jobs, "--backend", "slurm", "--cpus", "3", "--gpus", "2", "--mem", "8G"]
    args += ["--name", "demo", "--slurm-opts", "--partition=gpu --time=10", "JOB=1:2"]
    res = bash([*args, "log/s.JOB.log", "echo", "task JOB"], tmp_path, fake_slurm)
    assert res.returncode == 0, res.stderr
    calls = Path(fake_slurm["STUB_CALLS"]).read_text().splitlines()
    sbatch = [c for c in calls if c.startswith("sbatch ")]
    assert len(sbatch) == 1
    for part in ("--wait", "--job-name demo", "--array 1-2", "--cpus-per-task 3",
                 "--gres gpu:2", "--mem 8G", "--partition=gpu", "--time=10"):  # fmt: skip
        assert part in sbatch[0], (part, sbatch[0])
    script = sbatch[0].split()[-1]
    assert script.endswith("log/q/s.array.sh") and (tmp_path / script).is_file()
    assert sum(c.startswith("srun --ntasks=1 --cpus-per-task=3") for c in calls) == 2
    for i in (1, 2):
        text = (tmp_path / f"log/s.{i}.log").read_text()
        assert f"task {i}\n" in text and "# ended with status 0 " in text

    cmd = "if [ $0 = 2 ]; then echo 'RuntimeError: on the node' >&2; exit 5; fi"
    res = bash([*args, "log/f.JOB.log", "bash", "-c", cmd, "JOB"], tmp_path, fake_slurm)
    assert res.returncode == 1
    assert "job 2 failed" in res.stderr and "RuntimeError: on the node" in res.stderr


def test_run_jobs_slurm_needs_sbatch(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    res = bash([str(UTILS / "run_jobs.sh"), "--backend", "slurm", "l.log", "true"], tmp_path, env)
    assert res.returncode == 1 and "needs 'sbatch'" in res.stderr


# ------------------------------------------------------------------- asr.sh with a stub CLI
STUB_AUDIOKIT = r"""
#!/usr/bin/env bash
# stub audiokit: records the call and makes the outputs the next stages look for
echo "audiokit $*" >> "$STUB_CALLS"
if [ -n "${STUB_FAIL:-}" ] && [[ "$*" == *"${STUB_FAIL}"* ]]; then
    echo "Traceback (most recent call last):"
    echo "error: simulated failure in $1 $2"
    exit 2
fi
opt() { local want="$1"; shift; while [ $# -gt 0 ]; do
    [ "$1" = "$want" ] && { echo "$2"; return; }; shift; done; }
copy() { mkdir -p "$2"; cp "$1"/* "$2"/; }
case "$1 ${2:-}" in
    "--version "*) echo "audiokit 0.0-stub" ;;
    "data fix") copy "$3" "$(opt --out "$@")" ;;
    "data filter"|"data subset"|"feats speed-perturb") copy "$3" "$4" ;;
    "feats extract") mkdir -p "$4"; touch "$4/feats.scp" ;;
    "feats compute-cmvn") mkdir -p "$4"; touch "$4/cmvn.npz" ;;
    "tokenizer train") mkdir -p "$4"; echo "<blank> 0" > "$4/tokens.txt" ;;
    "train "*) d=$(opt --exp-dir "$@"); mkdir -p "$d"; printf '{}\n{}\n{}\n' > "$d/valid_metrics.jsonl" ;;
    "model average") touch "$(opt --out "$@")" ;;
    "model pack") d=$(opt --out "$@"); mkdir -p "$d"; touch "$d/model.yaml" ;;
    "asr decode") d=$(opt --out "$@"); mkdir -p "$d"; cp "$(opt --data "$@")/text" "$d/text" ;;
    "score "*)
        if [[ " $* " == *" --cer "* ]]; then echo "%CER 3.25 [ 13 / 400, 1 ins, 2 del, 10 sub ]"
        else echo "%WER 12.50 [ 10 / 80, 0 ins, 1 del, 9 sub ]"; fi ;;
    *) echo "stub: unexpected call: $*" >&2; exit 9 ;;
esac
"""

STUB_TORCHRUN = """
#!/usr/bin/env bash
echo "torchrun $*" >> "$STUB_CALLS"
while [ "$1" != "-m" ]; do shift; done
shift 2
exec audiokit "$@"
"""

LOCAL_DATA = """
#!/usr/bin/env bash
set -euo pipefail
for s in train dev test; do
    mkdir -p data/$s
    printf 'u1 /a/u1.wav\\nu2 /a/u2.wav\\n' > data/$s/wav.scp
    printf 'u1 HELLO\\nu2 WORLD\\n' > data/$s/text
done
echo "local data opts: $*"
"""


@pytest.fixture
def egs(tmp_path, fake_slurm) -> tuple[Path, dict[str, str]]:
    """A fake egs dir (local/data.sh, conf/) and an env with stub audiokit/torchrun/sbatch."""
    d = tmp_path / "egs" / "toy" / "asr1"
    write_exe(d / "local" / "data.sh", LOCAL_DATA)
    (d / "conf").mkdir()
    (d / "conf" / "train.yaml").write_text("model: {architecture: conformer_ctc}\n")
    (d / "conf" / "decode.yaml").write_text("decoder: prefix_beam\nbeam_size: 4\n")
    (d / "conf" / "fbank.conf").write_text("--num-mel-bins=80\n")
    bin_dir = tmp_path / "stub_bin"
    write_exe(bin_dir / "audiokit", STUB_AUDIOKIT)
    write_exe(bin_dir / "torchrun", STUB_TORCHRUN)
    env = dict(fake_slurm)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["AUDIOKIT_PYTHON"] = sys.executable
    return d, env


BASE = ["--train-set", "train", "--valid-set", "dev", "--test-sets", "test", "--nj", "2"]


def calls(env) -> list[str]:
    return Path(env["STUB_CALLS"]).read_text().splitlines()


def test_asr_sh_all_stages_then_idempotent(egs, tmp_path):
    d, env = egs
    work = tmp_path / "work"
    args = [str(ASR_SH), *BASE, "--work-dir", str(work), "--local-data-opts", "--num-utts 9"]
    args += ["--speed-perturb-factors", "0.9 1.0 1.1", "--train-args", "train.epochs=3"]
    res = bash(args, d, env)
    assert res.returncode == 0, res.stdout + res.stderr
    log = calls(env)
    heads = [" ".join(c.split()[:3]) for c in log]
    order = ["audiokit feats speed-perturb", "audiokit data fix", "audiokit data filter",
             "audiokit tokenizer train", "audiokit feats compute-cmvn", "audiokit train --config",
             "audiokit model average", "audiokit model pack", "audiokit asr decode",
             "audiokit score --ref"]  # fmt: skip
    positions = [heads.index(h) for h in order]
    assert positions == sorted(positions), heads
    assert "audiokit feats speed-perturb data/train data/train_sp --factors 0.9,1.0,1.1" in log[0]
    train = next(c for c in log if c.startswith("audiokit train"))
    for part in ("--resume", "--device cpu", "data.train=dump/raw/train_sp_filtered",
                 "data.valid=dump/raw/dev_filtered", "data.tokenizer=data/token_list/char",
                 "data.cmvn=exp/asr_train/asr_stats/cmvn.npz", "train.epochs=3"):  # fmt: skip
        assert part in train, part
    filt = [c for c in log if c.startswith("audiokit data filter")]
    assert len(filt) == 2 and all("--train-config" in c for c in filt)  # train and dev only
    decode = next(c for c in log if c.startswith("audiokit asr decode"))
    assert "--decoder prefix_beam --beam-size 4" in decode
    average = next(c for c in log if c.startswith("audiokit model average"))
    assert "--num 3 " in average  # --num-avg 5 lowered to the 3 validated epochs
    packed = work / "exp" / "asr_train" / "packed"
    assert f"packed model: {packed}" in res.stdout
    assert "local data opts: --num-utts 9" in (work / "exp/asr_train/logs/1.data.log").read_text()
    results = (work / "RESULTS.md").read_text()
    assert "| test | 2 | 3.25 | 12.50 |" in results
    assert "asr.sh" in results or "run.sh" in results  # the command behind the numbers
    assert (packed / "RESULTS.md").is_file()
    assert "<!-- written by recipes/asr.sh" in results
    edited = results.split("<!-- written by")[0] + "\nHand-written notes.\n"  # marker dropped
    (work / "RESULTS.md").write_text(edited)

    n = len(log)
    again = bash(args, d, env)
    assert again.returncode == 0, again.stderr
    assert (work / "RESULTS.md").read_text() == edited  # a re-run keeps the user's edits
    assert "RESULTS.md has been edited" in again.stdout
    new = calls(env)[n:]
    assert all(c.startswith(("audiokit score", "audiokit --version")) for c in new), new
    assert "done already" in again.stdout and "packed model:" in again.stdout

    (work / "exp" / "asr_train" / "decode_test" / ".done").unlink()  # redo one step only
    n = len(calls(env))
    res = bash([*args, "--stage", "9", "--stop-stage", "9"], d, env)
    assert res.returncode == 0, res.stderr
    assert [c.split()[1:3] for c in calls(env)[n:]] == [["asr", "decode"]]


def test_asr_sh_failure_prints_log_tail(egs, tmp_path):
    d, env = egs
    env = {**env, "STUB_FAIL": "train --config"}
    res = bash([str(ASR_SH), *BASE, "--work-dir", str(tmp_path / "w")], d, env)
    assert res.returncode != 0
    assert "error: simulated failure in train" in res.stderr  # the log's tail, not just "failed"
    assert "stage 7 failed" in res.stderr and "7.train.log" in res.stderr
    assert not any(c.startswith("audiokit model") for c in calls(env))


def test_asr_sh_multi_gpu_on_slurm(egs, tmp_path):
    d, env = egs
    args = [str(ASR_SH), *BASE, "--work-dir", str(tmp_path / "w"), "--ngpu", "2"]
    args += ["--backend", "slurm", "--feats-type", "fbank", "--stop-stage", "7"]
    res = bash(args, d, env)
    assert res.returncode == 0, res.stdout + res.stderr
    log = calls(env)
    tr = next(c for c in log if c.startswith("torchrun"))
    assert "--nproc_per_node 2 -m audiokit train" in tr and "--device cuda" in tr
    assert "data.feats_scp=dump/fbank/train" in tr
    sbatch_train = next(c for c in log if c.startswith("sbatch") and "7.train" in c)
    assert "--gres gpu:2" in sbatch_train
    assert not any("--gres" in c for c in log if c.startswith("sbatch") and "7.train" not in c)
    extracted = [c.split()[3] for c in log if c.startswith("audiokit feats extract")]
    assert extracted == ["dump/raw/train", "dump/raw/dev"]  # test sets are decoded from audio


def test_asr_sh_rejects_bad_options(egs, tmp_path):
    d, env = egs
    res = bash([str(ASR_SH), *BASE, "--feats-typ", "raw"], d, env)
    assert res.returncode == 1 and "unknown option --feats-typ" in res.stderr
    res = bash([str(ASR_SH), "--train-set", "train"], d, env)
    assert res.returncode == 2 and "--valid-set" in res.stderr
    assert "Stages:" in bash([str(ASR_SH), "--help"], d, env, check=True).stdout


# ------------------------------------------------------------------------ data filter
def _data_dir(root: Path, items: dict[str, tuple[float, str]], sr: int = 16000) -> Path:
    """A data dir with one wav of `seconds` per utterance; `text` "" means an empty transcript."""
    from audiokit.audio import save

    root.mkdir(parents=True)
    wav, text = [], []
    rng = np.random.default_rng(0)
    for utt, (seconds, words) in sorted(items.items()):
        path = root / f"{utt}.wav"
        save(path, 0.1 * rng.standard_normal(int(round(seconds * sr))).astype(np.float32), sr)
        wav.append(f"{utt} {path}")
        text.append(f"{utt} {words}".rstrip())
    (root / "wav.scp").write_text("\n".join(wav) + "\n")
    (root / "text").write_text("\n".join(text) + "\n")
    (root / "utt2spk").write_text("".join(f"{u} {u}\n" for u in sorted(items)))
    return root


def test_frames_and_ctc_lengths():
    from audiokit.data.filter import FilterRules, ctc_label_lengths, frames_for_durations

    rules = FilterRules()
    # Kaldi snip-edges framing at 16 kHz: 400-sample window, 160-sample shift
    frames = frames_for_durations(np.array([0.0, 0.0249, 0.025, 0.035, 1.0]), rules)
    assert frames.tolist() == [0, 0, 1, 2, 98]
    assert rules.needed_frames() == 7
    assert FilterRules(subsampling="conv2d8", min_frames=20).needed_frames() == 20
    assert ctc_label_lengths([[1, 2, 3], [1, 1, 2, 2], []]).tolist() == [3, 6, 0]


def test_filter_drops_short_long_and_empty(tmp_path):
    from audiokit.data.filter import FilterRules, filter_data_dir

    # 0.085 s = 1360 samples -> 7 frames (conv2d4's minimum); 0.08 s -> 6 frames
    src = _data_dir(tmp_path / "src", {
        "a_ok": (1.0, "HELLO WORLD"), "b_edge": (0.085, "HI"), "c_short": (0.08, "HI"),
        "d_long": (2.5, "A LONG ONE"), "e_empty": (1.0, ""),
    })  # fmt: skip
    res = filter_data_dir(src, tmp_path / "dst", FilterRules(max_duration=2.0))
    assert (res.total, res.kept) == (5, 2)
    assert res.dropped == {"no_text": ["e_empty"], "too_short": ["c_short"], "too_long": ["d_long"]}
    kept = (tmp_path / "dst" / "utt2dur").read_text().split()
    assert kept == ["a_ok", "1", "b_edge", "0.085"]
    # at speed 1.1 (on-the-fly perturbation) the edge case loses a frame and goes too
    res = filter_data_dir(
        src, tmp_path / "dst2", FilterRules(speed_factors=[0.9, 1.0, 1.1], max_duration=2.5)
    )
    assert res.dropped["too_short"] == ["b_edge", "c_short"]
    assert res.dropped["too_long"] == ["d_long"]  # 2.5 s at speed 0.9 is 2.78 s


def test_filter_ctc_feasibility_with_tokenizer(tmp_path):
    from audiokit.data.filter import FilterRules, filter_data_dir
    from audiokit.text import CharTokenizer

    # 0.5 s -> 48 frames -> 11 conv2d4 frames: 11 letters fit, 12 do not, "AA" needs 3
    src = _data_dir(tmp_path / "src", {
        "fits": (0.5, "ABCDEFGHIJK"), "over": (0.5, "ABCDEFGHIJKL"), "rep": (0.5, "ABCDEFGHIJA"),
        "rep2": (0.5, "AABCDEFGHIJ"),
    })  # fmt: skip
    CharTokenizer.train(["ABCDEFGHIJKL"], latin="char").save(tmp_path / "tok")
    res = filter_data_dir(src, tmp_path / "dst", FilterRules(), tokenizer=tmp_path / "tok")
    assert res.dropped == {"ctc_infeasible": ["over", "rep2"]}


def test_filter_rules_from_train_config(tmp_path):
    from audiokit.data.filter import rules_from_config

    cfg = {
        "model": {"architecture": "conformer_ctc", "args": {"subsampling": "conv2d6"}},
        "frontend": {"type": "fbank", "num_mel_bins": 80, "frame_shift": 20},
        "data": {"speed_perturb": [0.9, 1.0, 1.2]},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rules = rules_from_config(tmp_path / "c.yaml", max_duration=15.0)
    assert (rules.subsampling, rules.needed_frames(), rules.frame_shift_ms) == ("conv2d6", 11, 20)
    assert rules.speed_factors == [0.9, 1.0, 1.2] and rules.max_duration == 15.0
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({"model": {"architecture": "conformer_ctc"}}))
    assert rules_from_config(tmp_path / "d.yaml").subsampling == "conv2d4"  # the class default


def test_filter_cli(tmp_path):
    from audiokit.cli.data import app

    src = _data_dir(tmp_path / "src", {"a": (1.0, "YES"), "b": (0.05, "NO"), "c": (0.5, "")})
    runner = CliRunner()
    res = runner.invoke(
        app, ["filter", str(src), str(tmp_path / "dst"), "--subsampling", "conv2d8"]
    )
    assert res.exit_code == 0, res.output
    assert "kept 1 of 3" in res.output and "too_short (b)" in res.output
    assert "no_text (c)" in res.output
    assert (tmp_path / "dst" / "text").read_text() == "a YES\n"
    res = runner.invoke(app, ["filter", str(src), str(tmp_path / "dst"), "--max-duration", "0.01"])
    assert res.exit_code != 0 and "every utterance was dropped" in str(res.exception)
