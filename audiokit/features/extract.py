"""Feature extraction for a Kaldi data dir into ark/scp files, as Kaldi's ``steps/make_fbank.sh``.

Writes ``OUT/raw_{type}.{job}.ark`` (+ per-job ``.scp``), the merged ``OUT/feats.scp`` and
``OUT/utt2num_frames`` (sorted), and ``OUT/{type}.conf`` (Kaldi ``--name=value`` lines, usable
with ``compute-{type}-feats --config``). Jobs run in separate processes; each job batches
utterances through one feature call. Options use Kaldi's names (``--num-mel-bins`` is
``num-mel-bins`` here) via :func:`build_options`.
"""

from __future__ import annotations

import os
import queue
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from audiokit.errors import AudiokitError, ConfigError, FeatureError

FEATURE_TYPES = ("fbank", "mfcc", "spectrogram")
_ALL, _MEL = FEATURE_TYPES, ("fbank", "mfcc")
# Kaldi option name -> (attribute path in the options dataclass, value type, feature types).
KALDI_OPTIONS: dict[str, tuple[str, type, tuple[str, ...]]] = {
    "sample-frequency": ("frame.sample_frequency", float, _ALL),
    "frame-length": ("frame.frame_length_ms", float, _ALL),
    "frame-shift": ("frame.frame_shift_ms", float, _ALL),
    "dither": ("frame.dither", float, _ALL),
    "preemphasis-coefficient": ("frame.preemphasis_coefficient", float, _ALL),
    "remove-dc-offset": ("frame.remove_dc_offset", bool, _ALL),
    "window-type": ("frame.window_type", str, _ALL),
    "blackman-coeff": ("frame.blackman_coeff", float, _ALL),
    "round-to-power-of-two": ("frame.round_to_power_of_two", bool, _ALL),
    "snip-edges": ("frame.snip_edges", bool, _ALL),
    "num-mel-bins": ("mel.num_bins", int, _MEL),
    "low-freq": ("mel.low_freq", float, _MEL),
    "high-freq": ("mel.high_freq", float, _MEL),
    "use-energy": ("use_energy", bool, _MEL),
    "energy-floor": ("energy_floor", float, _ALL),
    "raw-energy": ("raw_energy", bool, _ALL),
    "htk-compat": ("htk_compat", bool, _MEL),
    "use-log-fbank": ("use_log_fbank", bool, ("fbank",)),
    "use-power": ("use_power", bool, ("fbank",)),
    "num-ceps": ("num_ceps", int, ("mfcc",)),
    "cepstral-lifter": ("cepstral_lifter", float, ("mfcc",)),
}


def parse_kaldi_bool(value: str | bool, name: str = "option") -> bool:
    """Kaldi's boolean spelling: ``true``/``false`` (also 1/0, yes/no), any case."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in ("true", "1", "yes", "t"):
        return True
    if v in ("false", "0", "no", "f"):
        return False
    raise ConfigError(f"--{name}={value!r} is not a boolean; write --{name}=true or --{name}=false")


def read_kaldi_conf(path: str | os.PathLike) -> dict[str, str]:
    """``--name=value`` lines of a Kaldi config file (``#`` comments) -> {name: value}."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; check the --config path")
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.startswith("--"):
            raise ConfigError(
                f"{path}:{lineno}: '{line}' is not a --name=value option; fix the line"
            )
        name, _, value = line[2:].partition("=")
        out[name.strip()] = value.strip() if value else "true"
    return out


def build_options(feat_type: str, overrides: dict[str, Any] | None = None):
    """Kaldi-default options for ``feat_type`` with ``overrides`` ({kaldi-name: value}) applied."""
    from audiokit.features.kaldi_options import FbankOptions, MfccOptions, SpectrogramOptions

    classes = {"fbank": FbankOptions, "mfcc": MfccOptions, "spectrogram": SpectrogramOptions}
    if feat_type not in classes:
        raise ConfigError(
            f"feature type {feat_type!r} is unknown; use one of {', '.join(FEATURE_TYPES)}"
        )
    opts = classes[feat_type]()
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in KALDI_OPTIONS:
            raise ConfigError(
                f"--{name} is not a feature option; see `audiokit feats extract --help`"
            )
        attr, kind, types = KALDI_OPTIONS[name]
        if feat_type not in types:
            raise ConfigError(f"--{name} does not apply to {feat_type} features; drop it")
        try:
            value = parse_kaldi_bool(value, name) if kind is bool else kind(value)
        except ValueError:
            raise ConfigError(
                f"--{name}={value!r} is not a valid {kind.__name__}; fix the value"
            ) from None
        owner_path, _, leaf = attr.rpartition(".")
        owner = getattr(opts, owner_path) if owner_path else opts
        setattr(owner, leaf, value)
    opts.validate()
    return opts


def options_to_conf(feat_type: str, opts) -> str:
    """Every option that applies to ``feat_type`` as Kaldi config text."""
    lines = []
    for name, (attr, kind, types) in KALDI_OPTIONS.items():
        if feat_type not in types:
            continue
        value: Any = opts
        for part in attr.split("."):
            value = getattr(value, part)
        if kind is bool:
            value = "true" if value else "false"
        elif kind is float:
            value = f"{value:.10g}"
        lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"


@dataclass
class ExtractResult:
    """Outcome of :func:`extract_features`."""

    feats_scp: Path
    num_done: int
    num_frames: int
    failed: list[tuple[str, str]] = field(default_factory=list)  # (utt id, one-line reason)
    seconds: float = 0.0


def _feature_fn(feat_type: str):
    from audiokit.features import kaldi

    return {"fbank": kaldi.fbank, "mfcc": kaldi.mfcc, "spectrogram": kaldi.spectrogram}[feat_type]


class SampleRateMismatch(FeatureError):
    """Audio at a rate other than --sample-frequency: fatal for the whole run, as in Kaldi."""


def _load_checked(dd, utt: str, opts, resample: bool, allow_pipe: bool) -> np.ndarray:
    """Samples of ``utt`` at the configured rate; FeatureError on a rate mismatch or short audio."""
    from audiokit.features.kaldi_frames import min_samples, num_frames

    want = opts.frame.sample_frequency
    samples, sr = dd.load_audio(
        utt, sample_rate=int(want) if resample else None, allow_pipe=allow_pipe
    )
    if sr != want:
        raise SampleRateMismatch(
            f"utterance '{utt}': audio is {sr} Hz but --sample-frequency is {want:g}; "
            f"pass --sample-frequency {sr} or --resample"
        )
    if num_frames(len(samples), opts.frame) < 1:
        need = min_samples(opts.frame)
        raise FeatureError(
            f"utterance '{utt}': {len(samples)} samples is shorter than one frame ({need} samples); "
            "drop it or use --snip-edges false"
        )
    return samples


def _run_job(job: int, utts: list[str], cfg: dict, report) -> dict:
    """Extract ``utts`` into ``raw_{type}.{job}.ark``; returns scp lines, frame counts, failures."""
    import kaldiio
    import torch

    from audiokit.data import DataDir
    from audiokit.utils.atomic import atomic_write

    torch.set_num_threads(cfg["threads"])
    dd = DataDir.load(cfg["data_dir"])
    opts, fn = cfg["opts"], _feature_fn(cfg["type"])
    out_dir = Path(cfg["out_dir"]).resolve()
    ark = out_dir / f"raw_{cfg['type']}.{job}.ark"
    generator = torch.Generator().manual_seed(cfg["seed"] + job)
    method = 2 if cfg["compress"] else None  # kaldi::kSpeechFeature, as copy-feats --compress
    scp_lines, frames, failed = [], {}, []
    with atomic_write(ark, "wb") as f:
        for start in range(0, len(utts), cfg["batch_size"]):
            batch = utts[start : start + cfg["batch_size"]]
            waves, keys = [], []
            for utt in batch:
                try:
                    waves.append(_load_checked(dd, utt, opts, cfg["resample"], cfg["allow_pipe"]))
                    keys.append(utt)
                except SampleRateMismatch:
                    raise
                except AudiokitError as e:
                    failed.append((utt, str(e)))
            if keys:
                lengths = torch.tensor([len(w) for w in waves])
                padded = torch.zeros(len(waves), int(lengths.max()))
                for i, w in enumerate(waves):
                    padded[i, : len(w)] = torch.from_numpy(w)
                with torch.inference_mode():
                    feats, counts = fn(padded, lengths, opts, generator)
                for i, utt in enumerate(keys):
                    mat = feats[i, : int(counts[i])].numpy()
                    # the scp points just past "key " in the ark
                    offset = f.tell() + len(utt.encode()) + 1
                    kaldiio.save_ark(f, {utt: mat}, compression_method=method)
                    scp_lines.append((utt, f"{ark}:{offset}"))
                    frames[utt] = int(counts[i])
            report(len(batch))
    from audiokit.data.kaldi_files import write_kv_file

    write_kv_file(out_dir / f"raw_{cfg['type']}.{job}.scp", scp_lines)
    return {"scp": scp_lines, "frames": frames, "failed": failed}


def _job_process(job: int, utts: list[str], cfg: dict, q) -> None:
    try:
        result = _run_job(job, utts, cfg, lambda n: q.put(("progress", job, n)))
        q.put(("done", job, result))
    except AudiokitError as e:  # a fatal user error (e.g. wrong sample rate): pass the message
        q.put(("fatal", job, str(e)))
    except BaseException:  # a bug, not a bad utterance: hand the traceback to the parent
        q.put(("crash", job, traceback.format_exc()))


def _run_parallel(jobs: list[list[str]], cfg: dict, advance) -> list[dict]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after torch has started threads is unsafe
    q = ctx.Queue()
    procs = {
        j: ctx.Process(target=_job_process, args=(j, utts, cfg, q), daemon=True)
        for j, utts in enumerate(jobs, 1)
    }
    for p in procs.values():
        p.start()
    results: dict[int, dict] = {}
    try:
        while len(results) < len(procs):
            try:
                kind, job, payload = q.get(timeout=1.0)
            except queue.Empty:
                dead = [
                    j
                    for j, p in procs.items()
                    if j not in results and not p.is_alive() and p.exitcode != 0
                ]
                if dead:
                    code = procs[dead[0]].exitcode
                    hint = (
                        "killed by a signal (out of memory?): lower --batch-size or --nj"
                        if code < 0
                        else "run with --nj 1 to see the error"
                    )
                    raise FeatureError(
                        f"feature job {dead[0]} exited with code {code}; {hint}"
                    ) from None
                continue
            if kind == "progress":
                advance(payload)
            elif kind == "done":
                results[job] = payload
            elif kind == "fatal":
                raise FeatureError(payload)
            else:
                raise RuntimeError(f"feature job {job} crashed:\n{payload}")
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
            p.join()
    return [results[j] for j in sorted(results)]


def extract_features(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    feat_type: str = "fbank",
    opts=None,
    nj: int = 1,
    batch_size: int = 16,
    allow_pipe: bool = False,
    compress: bool = False,
    resample: bool = False,
    seed: int = 0,
    progress: bool = False,
) -> ExtractResult:
    """Compute ``feat_type`` features for every utterance of ``data_dir`` into ``out_dir``.

    ``nj`` > 1 runs that many (spawned) processes, each over a contiguous share of the sorted
    utterances; a script calling this with ``nj > 1`` needs the usual
    ``if __name__ == "__main__":`` guard. Unreadable or too-short utterances are skipped and
    listed in ``result.failed``; FeatureError if every utterance fails. Audio whose rate is
    not ``opts.frame.sample_frequency`` stops the run (as in Kaldi) unless ``resample``.
    Dither noise is seeded by ``seed`` + job: results repeat for the same ``nj``/``batch_size``.
    """
    from audiokit.data import DataDir
    from audiokit.data.kaldi_files import write_kv_file
    from audiokit.utils.atomic import atomic_write

    t0 = time.monotonic()
    opts = opts if opts is not None else build_options(feat_type)
    opts.validate()
    if nj < 1 or batch_size < 1:
        raise ConfigError(f"--nj {nj} and --batch-size {batch_size} must both be at least 1")
    utts = DataDir.load(data_dir).utt_ids
    if not utts:
        raise FeatureError(f"{data_dir}: the data dir has no utterances; nothing to extract")
    nj = min(nj, len(utts))
    bounds = np.linspace(0, len(utts), nj + 1).round().astype(int)
    jobs = [utts[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(
        data_dir=str(data_dir), out_dir=str(out), type=feat_type, opts=opts, batch_size=batch_size,
        allow_pipe=allow_pipe, compress=compress, resample=resample, seed=seed,
        threads=max(1, (os.cpu_count() or 1) // nj),
    )  # fmt: skip
    with _progress_bar(progress, len(utts), f"{feat_type} features") as advance:
        if nj == 1:
            results = [_run_job(1, jobs[0], cfg, advance)]
        else:
            results = _run_parallel(jobs, cfg, advance)
    scp = [line for r in results for line in r["scp"]]
    frames = {k: v for r in results for k, v in r["frames"].items()}
    failed = [x for r in results for x in r["failed"]]
    if not scp:
        raise FeatureError(f"all {len(failed)} utterances failed; first: {failed[0][1]}")
    write_kv_file(out / "feats.scp", scp)
    write_kv_file(out / "utt2num_frames", frames)
    with atomic_write(out / f"{feat_type}.conf") as f:
        f.write(options_to_conf(feat_type, opts))
    return ExtractResult(
        out / "feats.scp", len(scp), sum(frames.values()), failed, time.monotonic() - t0
    )


class _progress_bar:
    """Context manager yielding ``advance(n)``; a rich bar on stderr when enabled."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        )  # fmt: skip
        task = self.bar.add_task(self.label, total=self.total)
        self.bar.start()
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


def feats_scp_path(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a file, else ``path/feats.scp``; FeatureError if missing."""
    path = Path(path)
    scp = path / "feats.scp" if path.is_dir() else path
    if not scp.is_file():
        raise FeatureError(f"{scp}: feats.scp not found; run `audiokit feats extract` first")
    return scp


def read_feats(scp: str | os.PathLike) -> dict[str, np.ndarray]:
    """All matrices of a feats.scp (or a folder holding one), in file order, as float32 (T, D)."""
    import kaldiio

    path = feats_scp_path(scp)
    try:
        return {
            k: np.asarray(m, dtype=np.float32) for k, m in kaldiio.load_scp_sequential(str(path))
        }
    except (OSError, ValueError) as e:
        raise FeatureError(
            f"{path}: cannot read features ({e}); re-run `audiokit feats extract`"
        ) from e
