"""Reading the audio a Kaldi `wav.scp` entry points at.

An entry (the value column of a line) is one of:
- a path: `wav/a.flac` (relative paths resolve against the data dir);
- a piped command ending in `|`: `sox a.flac -t wav - |` (runs a shell, so only when allowed);
- a Kaldi archive offset: `raw.ark:1234` (a wav stored in an ark, read with kaldiio).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np

from audiokit.audio.io import AudioInfo, Opened, decode, describe, open_source, opened_from_array
from audiokit.errors import AudioError

PIPE_TIMEOUT_S = 600.0  # a piped command taking longer is assumed hung
_ARK_RE = re.compile(r"^(?P<path>.+):(?P<offset>\d+)$")


def _run_pipe(cmd: str, base_dir: Path, name: str) -> bytes:
    """Run `cmd` in a shell in `base_dir` and return its stdout (the audio bytes)."""
    try:
        proc = subprocess.run(
            cmd, shell=True, cwd=base_dir, capture_output=True, timeout=PIPE_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise AudioError(
            f"{name}: piped command did not finish in {PIPE_TIMEOUT_S:.0f} s; check that it runs on its own in {base_dir}"
        ) from None
    except OSError as e:
        raise AudioError(
            f"{name}: cannot run the piped command ({e}); check the data dir {base_dir}"
        ) from None
    if proc.returncode != 0:
        lines = [
            ln.strip() for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()
        ]
        tail = " / ".join(lines[-3:])[-300:] or "no stderr"
        raise AudioError(
            f"{name}: piped command failed with exit status {proc.returncode} ({tail}); run it by hand in {base_dir} to fix it"
        )
    return proc.stdout


def _open_ark(spec: str, base_dir: Path, name: str) -> Opened:
    m = _ARK_RE.match(spec)
    assert m is not None
    ark = Path(m["path"])
    if not ark.is_absolute():
        ark = base_dir / ark
    if not ark.is_file():
        raise AudioError(
            f"{name}: archive {ark} not found; check the path (relative paths resolve against the data dir)"
        )
    import kaldiio

    try:
        obj = kaldiio.load_mat(f"{ark}:{m['offset']}")
    except (
        Exception
    ) as e:  # kaldiio raises bare AssertionError/ValueError on a bad offset or corrupt ark
        raise AudioError(
            f"{name}: cannot read an object at byte {m['offset']} of {ark} ({type(e).__name__}: {e}); the offset is wrong or the ark is corrupt, regenerate wav.scp"
        ) from None
    if not (isinstance(obj, tuple) and len(obj) == 2):
        raise AudioError(
            f"{name}: {ark} holds a matrix at byte {m['offset']}, not a wav; wav.scp must point at audio"
        )
    rate, data = obj
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    x = data.astype(np.float32) / 32768.0 if data.dtype == np.int16 else data.astype(np.float32)
    if x.shape[0] == 0:
        raise AudioError(
            f"{name}: audio has no samples (valid header, 0 frames); re-create the audio or remove the entry"
        )
    return opened_from_array(x, int(rate), "WAV")


def _open_entry(
    entry: str, base_dir: str | os.PathLike, allow_pipe: bool, key: str | None
) -> tuple[Opened, str]:
    entry = entry.strip()
    base = Path(base_dir)
    if not entry:
        raise AudioError(
            f"{describe('wav.scp entry', key)}: the entry is empty; give a path or a piped command"
        )
    if entry.endswith("|"):
        name = describe(f"`{entry}`", key)
        if not allow_pipe:
            raise AudioError(
                f"{name}: piped wav.scp entries run a shell command and are off by default; "
                "allow them with `--allow-pipes` (library: allow_pipe=True) if you trust this data dir"
            )
        cmd = entry[:-1].strip()
        return open_source(_run_pipe(cmd, base, name), name), name
    path = Path(entry)
    if not path.is_absolute():
        path = base / path
    name = describe(path, key)
    if not path.exists() and _ARK_RE.match(entry):
        return _open_ark(entry, base, name), name
    return open_source(path, name), name


def load_scp_entry(
    entry: str,
    base_dir: str | os.PathLike,
    sample_rate: int | None = None,
    channel: int | str = "mix",
    start: float = 0.0,
    end: float | None = None,
    allow_pipe: bool = False,
    key: str | None = None,
) -> tuple[np.ndarray, int]:
    """Load the audio of one wav.scp value; same output and options as :func:`audiokit.audio.load`.

    `base_dir` (the data dir) anchors relative paths and is the piped command's working dir.
    `key` (utterance/recording id) is named in every error message.
    """
    opened, name = _open_entry(entry, base_dir, allow_pipe, key)
    return decode(opened, name, sample_rate, channel, start, end)


def scp_entry_info(
    entry: str, base_dir: str | os.PathLike, allow_pipe: bool = False, key: str | None = None
) -> AudioInfo:
    """Rate, length, channels and format of one wav.scp value (a piped command is run and measured)."""
    return _open_entry(entry, base_dir, allow_pipe, key)[0].info
