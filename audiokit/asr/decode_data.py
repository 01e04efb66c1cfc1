"""Decode a whole Kaldi data dir with a packed model, then score it like `audiokit score`.

Writes into OUT: `text` (Kaldi hypotheses), `token_ids` (`UTT ID ID ...`), `failed` (only when
some utterances could not be decoded: `UTT REASON`), and with references (DATA_DIR/text):
`result.txt` (word alignment report), `result_cer.txt` (character report), `wer` and `cer`
(the Kaldi `%SER`/`%WER`/`%CER` lines). Failed utterances are left out of `text` and so scored
as all deletions, never silently dropped from the totals.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiokit.errors import AudiokitError, ConfigError


@dataclass
class DecodeSummary:
    """What :func:`decode_data_dir` did; `lines` are the score lines to print."""

    num_utts: int
    failed: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    out_dir: Path | None = None


def _decode_job(
    model_dir: str, data_dir: str, utts: list[str], options: dict[str, Any], threads: int,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, tuple[str, list[int]]], dict[str, str]]:  # fmt: skip
    """Decode `utts` (one process): ({utt: (text, ids)}, {utt: error})."""
    import torch

    from audiokit.asr.inference import Recognizer
    from audiokit.data.data_dir import DataDir

    if threads > 0:
        torch.set_num_threads(threads)
    batch_size = options.pop("batch_size")
    rec = Recognizer(model_dir, **options)
    dd = DataDir.load(data_dir)
    done: dict[str, tuple[str, list[int]]] = {}
    failed: dict[str, str] = {}
    for i in range(0, len(utts), batch_size):
        chunk = utts[i : i + batch_size]
        names, waves, errors = [], [], []
        for utt in chunk:
            names.append(utt)
            try:
                samples, _ = dd.load_audio(utt, rec.sample_rate)
                rec.check_length(f"utterance '{utt}'", len(samples))
                waves.append(samples)
                errors.append(None)
            except AudiokitError as e:
                waves.append(None)
                errors.append(str(e))
        for r in rec.transcribe_waves(names, waves, errors):
            if r.error is not None:
                failed[r.path] = r.error
            else:
                done[r.path] = (r.text, r.token_ids)
        if progress is not None:
            progress(len(chunk))
    return done, failed


def decode_data_dir(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    nj: int = 1,
    batch_size: int = 16,
    decoder: str | None = None,
    beam_size: int | None = None,
    device: str = "cpu",
    progress: Callable[[int], None] | None = None,
) -> DecodeSummary:
    """Decode every utterance of `data_dir` (segments honoured) in `nj` processes; write and
    score the hypotheses in `out_dir`. See the module docstring for the files."""
    from audiokit.data.data_dir import DataDir, sorted_ids
    from audiokit.model_dir import read_model_config

    if nj < 1 or batch_size < 1:
        raise ConfigError(f"--nj {nj} and --batch-size {batch_size} must be at least 1")
    read_model_config(model_dir)  # fail fast on a bad model dir, before any process starts
    dd = DataDir.load(data_dir)
    utts = sorted_ids(dd.utt_ids)
    if not utts:
        raise ConfigError(f"{data_dir}: no utterances to decode; check wav.scp/segments")
    options = {
        "device": device,
        "decoder": decoder,
        "beam_size": beam_size,
        "batch_size": batch_size,
    }
    nj = min(nj, len(utts))
    jobs = [utts[j::nj] for j in range(nj)]
    done: dict[str, tuple[str, list[int]]] = {}
    failed: dict[str, str] = {}
    if nj == 1:
        d, f = _decode_job(str(model_dir), str(data_dir), utts, dict(options), 0, progress)
        done.update(d)
        failed.update(f)
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        threads = max(1, (os.cpu_count() or 1) // nj)
        # spawn: a forked child would inherit torch's thread pools and CUDA state
        with cf.ProcessPoolExecutor(nj, mp_context=mp.get_context("spawn")) as pool:
            futures = {
                pool.submit(
                    _decode_job, str(model_dir), str(data_dir), job, dict(options), threads
                ): job
                for job in jobs
            }
            for fut in cf.as_completed(futures):
                d, f = fut.result()
                done.update(d)
                failed.update(f)
                if progress is not None:
                    progress(len(futures[fut]))
    summary = DecodeSummary(len(utts), {u: failed[u] for u in sorted_ids(failed)})
    summary.out_dir = write_outputs(Path(out_dir), done, summary.failed)
    if dd.text is not None:
        summary.lines = score_outputs(
            Path(data_dir) / "text", Path(out_dir), done, dd.utt2spk, failed
        )
    return summary


def write_outputs(
    out: Path, done: dict[str, tuple[str, list[int]]], failed: dict[str, str]
) -> Path:
    """OUT/text, OUT/token_ids and (when any failed) OUT/failed, sorted by utterance id."""
    from audiokit.data.data_dir import sorted_ids
    from audiokit.data.kaldi_files import write_kv_file
    from audiokit.utils.atomic import atomic_write

    order = sorted_ids(done)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "text") as f:  # empty hypotheses keep their line ("UTT")
        for u in order:
            f.write(f"{u} {done[u][0]}".rstrip() + "\n")
    with atomic_write(out / "token_ids") as f:
        for u in order:
            f.write(" ".join([u, *map(str, done[u][1])]) + "\n")
    if failed:
        write_kv_file(out / "failed", {u: " ".join(m.split()) for u, m in failed.items()})
    else:
        (out / "failed").unlink(missing_ok=True)  # a stale list from an earlier run
    return out


def score_outputs(
    ref_path: Path,
    out: Path,
    done: dict[str, tuple[str, list[int]]],
    utt2spk: dict[str, str] | None,
    failed: dict[str, str],
) -> list[str]:
    """Score hypotheses against `ref_path` in words and characters (as `audiokit score` does,
    case-insensitive); write result.txt, result_cer.txt, wer, cer; return the Kaldi lines."""
    from audiokit.metrics import format_report, kaldi_lines, read_transcripts, score_corpus
    from audiokit.utils.atomic import atomic_write

    refs = read_transcripts(ref_path, "kaldi")
    hyps = {u: text for u, (text, _) in done.items()}
    notes = []
    if failed:
        notes.append(
            f"WARNING: {len(failed)} utterance(s) failed to decode and are scored as all "
            f"deletions: {' '.join(sorted(failed))}"
        )
    if utt2spk is not None:  # score_corpus looks speakers up by the case-folded id
        utt2spk = {u.lower(): s for u, s in utt2spk.items()}
    lines: list[str] = []
    for cer, report_name, summary_name in (
        (False, "result.txt", "wer"),
        (True, "result_cer.txt", "cer"),
    ):
        result = score_corpus(refs, hyps, cer=cer, ignore_case=True, utt2spk=utt2spk)
        unit = "characters" if cer else "words"
        title = f"{out / 'text'} vs {ref_path} ({unit}, case-insensitive)"
        with atomic_write(out / report_name) as f:
            f.write(format_report(result, title, upper_errors=True, notes=notes))
        kl = kaldi_lines(result)
        with atomic_write(out / summary_name) as f:
            f.write("\n".join(kl) + "\n")
        lines.extend(kl if not cer else kl[1:])  # %SER once
    return lines
