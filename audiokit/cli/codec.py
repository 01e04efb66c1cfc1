"""`audiokit codec`: encode audio to codes/latents (.npz), decode, resynthesise and evaluate.

Heavy modules (torch, the model) are imported inside the commands to keep `--help` fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import typer

from audiokit.errors import AudiokitError, ConfigError

app = typer.Typer(
    help="Neural audio codecs with a packed model dir: encode, decode, resynth, eval.",
    add_completion=False,
    no_args_is_help=True,
)

_MODEL_HELP = "Packed codec model dir (audiokit model pack / model import)."
_FILES_HELP = "IN OUT, or several inputs with --out-dir."
_OUT_DIR_HELP = (
    "Write one output per input here, named after the input (then every FILE is an input)."
)
_K_HELP = "RVQ codecs: use the first K codebooks (default all)."
_BW_HELP = "RVQ codecs: target bitrate in kbit/s; picks the codebook count (EnCodec's rule)."
_CHUNK_HELP = "Encode/decode longer audio in windows of this many seconds (0: one pass)."


class Output(str, Enum):
    table = "table"
    json = "json"


def _pairs(files: list[Path], out_dir: Path | None, suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs from `IN OUT` or `IN... --out-dir DIR`."""
    if out_dir is not None:
        pairs = [(f, out_dir / f"{f.stem}{suffix}") for f in files]
        names = [dst.name for _, dst in pairs]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ConfigError(
                f"two inputs would both write {out_dir / dup}; rename one or run them separately"
            )
        return pairs
    if len(files) != 2:
        raise ConfigError(
            f"expected IN OUT (2 paths) but got {len(files)}; for several inputs pass --out-dir DIR"
        )
    return [(files[0], files[1])]


def _note(msg: str) -> None:
    from audiokit.cli._console import err_console

    err_console.print(f"note: {msg}", markup=False, highlight=False, soft_wrap=True)


def _each(pairs: list[tuple[Path, Path]], overwrite: bool, fn: Callable[[Path, Path], str]) -> None:
    """Run `fn(in, out)` per pair, printing its result line; a failing pair prints one error
    line and the others still run. Exit status 1 when any failed."""
    from audiokit.cli._console import err_console

    failed = 0
    for src, dst in pairs:
        try:
            if dst.exists() and not overwrite:
                raise ConfigError(f"{dst} already exists; pass --overwrite to replace it")
            if src.resolve() == dst.resolve():
                raise ConfigError(
                    f"{src}: input and output are the same file; choose another output"
                )
            typer.echo(fn(src, dst))
        except (AudiokitError, OSError, ValueError, RuntimeError, IndexError) as e:
            failed += 1  # a bad item must not stop the others (nor print a traceback)
            msg = str(e) if isinstance(e, AudiokitError) else f"{src}: {e}"
            err_console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        err_console.print(f"{failed} of {len(pairs)} file(s) failed", highlight=False)
        raise typer.Exit(1)


def _chunk(seconds: float) -> float | None:
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"--chunk-seconds {seconds} must be >= 0 (0: one pass)")
    return seconds or None


def _check_audio_suffix(path: Path) -> None:
    if path.suffix.lower() not in (".wav", ".flac"):
        raise ConfigError(f"{path}: output audio must end in .wav or .flac")


@app.command("encode")
def encode(
    files: list[Path] = typer.Argument(..., help=_FILES_HELP, show_default=False),
    model: Path = typer.Option(..., "--model", help=_MODEL_HELP, show_default=False),
    out_dir: Path | None = typer.Option(None, "--out-dir", help=_OUT_DIR_HELP, show_default=False),
    n_codebooks: int | None = typer.Option(None, "--n-codebooks", help=_K_HELP, show_default=False),
    bandwidth: float | None = typer.Option(None, "--bandwidth", help=_BW_HELP, show_default=False),
    chunk_seconds: float = typer.Option(60.0, "--chunk-seconds", help=_CHUNK_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:  # fmt: skip
    """Encode audio files to .npz (codes (K, T) for RVQ codecs, latents (D, T) for the VAE).

    Any rate or channel count is converted to the model's (a note says so)."""
    from audiokit.codec import inference as inf
    from audiokit.codec.npz_io import encoding_arrays, save_encoding

    pairs = _pairs(files, out_dir, ".npz")
    chunk = _chunk(chunk_seconds)
    codec = inf.load_codec(model, device)
    k = inf.resolve_n_codebooks(codec, n_codebooks, bandwidth)

    def one(src: Path, dst: Path) -> str:
        wav, note = inf.load_audio(src, codec)
        if note:
            _note(note)
        enc = inf.encode(codec, wav, k, chunk_seconds=chunk)
        arrays = encoding_arrays(
            enc, codec.kind, codec.sample_rate, codec.hop_length, codec.channels,
            codec.codebook_size,
        )  # fmt: skip
        save_encoding(dst, arrays)
        if codec.kind == "rvq":
            kk, t = arrays["codes"].shape
            kbps = codec.bitrate_kbps(kk)
            rate = f", {kbps:.2f} kbit/s" if kbps is not None else ""
            return f"{dst}\tcodes {kk}x{t}{rate}"
        d, t = arrays["latents"].shape
        return f"{dst}\tlatents {d}x{t}"

    _each(pairs, overwrite, one)


def _check_fits(path: Path, header: dict, codec) -> None:
    """The .npz must come from a codec like this one (kind, rate, hop, codebooks)."""
    mine = {"kind": codec.kind, "sample_rate": codec.sample_rate, "hop_length": codec.hop_length}
    mine["channels"] = getattr(codec, "channels", 1)
    bad = [f"{k} {header[k]} vs {v}" for k, v in mine.items() if header[k] != v]
    if codec.kind == "rvq" and header["n_codebooks"] > codec.n_codebooks:
        bad.append(f"{header['n_codebooks']} codebooks vs {codec.n_codebooks}")
    if bad:
        raise ConfigError(
            f"{path}: encoded by another codec ({'; '.join(bad)} in the model); "
            "decode with the model that encoded it"
        )


@app.command("decode")
def decode(
    files: list[Path] = typer.Argument(..., help="IN.npz OUT.wav, or several .npz with --out-dir.", show_default=False),
    model: Path = typer.Option(..., "--model", help=_MODEL_HELP, show_default=False),
    out_dir: Path | None = typer.Option(None, "--out-dir", help=_OUT_DIR_HELP, show_default=False),
    chunk_seconds: float = typer.Option(60.0, "--chunk-seconds", help=_CHUNK_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:  # fmt: skip
    """Decode .npz files written by `audiokit codec encode` to audio at the model's rate."""
    from audiokit.audio import save
    from audiokit.codec import inference as inf
    from audiokit.codec.npz_io import load_encoding

    pairs = _pairs(files, out_dir, ".wav")
    chunk = _chunk(chunk_seconds)
    codec = inf.load_codec(model, device)

    def one(src: Path, dst: Path) -> str:
        _check_audio_suffix(dst)
        enc, header = load_encoding(src)
        _check_fits(src, header, codec)
        if (
            enc.codes is not None
            and codec.codebook_size
            and int(enc.codes.max()) >= codec.codebook_size
        ):
            raise ConfigError(
                f"{src}: code {int(enc.codes.max())} >= codebook size {codec.codebook_size}; "
                "decode with the model that encoded it"
            )
        wav = inf.decode(codec, enc, chunk_seconds=chunk)
        save(dst, wav.clip(-1.0, 1.0), codec.sample_rate)
        return f"{dst}\t{wav.shape[-1] / codec.sample_rate:.2f} s at {codec.sample_rate} Hz"

    _each(pairs, overwrite, one)


@app.command("resynth")
def resynth(
    files: list[Path] = typer.Argument(..., help=_FILES_HELP, show_default=False),
    model: Path = typer.Option(..., "--model", help=_MODEL_HELP, show_default=False),
    out_dir: Path | None = typer.Option(None, "--out-dir", help=_OUT_DIR_HELP, show_default=False),
    n_codebooks: int | None = typer.Option(None, "--n-codebooks", help=_K_HELP, show_default=False),
    bandwidth: float | None = typer.Option(None, "--bandwidth", help=_BW_HELP, show_default=False),
    chunk_seconds: float = typer.Option(60.0, "--chunk-seconds", help=_CHUNK_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:  # fmt: skip
    """Encode and decode audio files (a round trip through the codec), written at the model's rate."""
    from audiokit.audio import save
    from audiokit.codec import inference as inf

    pairs = _pairs(files, out_dir, ".wav")
    chunk = _chunk(chunk_seconds)
    codec = inf.load_codec(model, device)
    k = inf.resolve_n_codebooks(codec, n_codebooks, bandwidth)

    def one(src: Path, dst: Path) -> str:
        _check_audio_suffix(dst)
        wav, note = inf.load_audio(src, codec)
        if note:
            _note(note)
        enc = inf.encode(codec, wav, k, chunk_seconds=chunk)
        out = inf.match_length(inf.decode(codec, enc, chunk_seconds=chunk), wav.shape[-1])
        save(dst, out.clip(-1.0, 1.0), codec.sample_rate)
        kbps = codec.bitrate_kbps(k)
        return f"{dst}\t{codec.sample_rate} Hz" + (f", {kbps:.2f} kbit/s" if kbps else "")

    _each(pairs, overwrite, one)


def _fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _print_table(result) -> None:
    from rich.table import Table

    from audiokit.cli._console import console

    kbps = "-" if result.kbps is None else f"{result.kbps:.2f}"
    table = Table(title=f"{result.system} ({kbps} kbit/s, {result.sample_rate} Hz)")
    for col in ("utterance", "seconds", "mel dist", "SI-SDR dB", "STOI", "PESQ"):
        table.add_column(col, justify="left" if col == "utterance" else "right")
    for utt, m in result.utterances.items():
        table.add_row(
            utt, _fmt(m["seconds"], 2), _fmt(m["mel_distance"]), _fmt(m["si_sdr"], 2),
            _fmt(m["stoi"]), _fmt(m["pesq"], 2),
        )  # fmt: skip
    mean = result.mean
    table.add_row(
        f"mean ({len(result.utterances)})", "", _fmt(mean["mel_distance"]),
        _fmt(mean["si_sdr"], 2), _fmt(mean["stoi"]), _fmt(mean["pesq"], 2), style="bold",
    )  # fmt: skip
    console.print(table)


@app.command("eval")
def evaluate(
    data: Path = typer.Option(..., "--data", help="Kaldi data dir (wav.scp[, segments]) of reference audio.", show_default=False),
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP, show_default=False),
    opus: float | None = typer.Option(None, "--opus", help="Evaluate the Opus baseline at this bitrate (kbit/s) instead of --model.", show_default=False),
    sample_rate: int = typer.Option(16000, "--sample-rate", help="--opus: the rate the audio is coded and scored at."),
    n_codebooks: int | None = typer.Option(None, "--n-codebooks", help=_K_HELP, show_default=False),
    bandwidth: float | None = typer.Option(None, "--bandwidth", help=_BW_HELP, show_default=False),
    output: Output = typer.Option(Output.table, "--output", help="table: a table per utterance + mean; json: one object."),
    out: Path | None = typer.Option(None, "--out", help="Also write the JSON result to this file.", show_default=False),
    chunk_seconds: float = typer.Option(60.0, "--chunk-seconds", help=_CHUNK_HELP),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
) -> None:  # fmt: skip
    """Round-trip every utterance of a data dir and score it against the input: bitrate,
    mel distance (DAC multi-scale log-mel L1; lower is better), SI-SDR, STOI, and PESQ when the
    optional `pesq` package is installed. Audio is scored at the codec's rate; utterances that
    fail are reported and skipped (exit status 1 when all fail)."""
    from rich.progress import Progress

    from audiokit.cli._console import err_console
    from audiokit.codec import inference as inf
    from audiokit.data.data_dir import DataDir
    from audiokit.utils.atomic import atomic_write

    if (model is None) == (opus is None):
        raise ConfigError("give exactly one of --model DIR or --opus KBPS")
    if opus is not None:
        if n_codebooks is not None or bandwidth is not None:
            raise ConfigError("--n-codebooks/--bandwidth apply to --model, not --opus")
        system = inf.OpusSystem(opus, sample_rate)
        if system.backend is None:
            raise ConfigError("--opus needs opusenc/opusdec (apt-get install opus-tools) or ffmpeg")
    else:
        codec = inf.load_codec(model, device)
        k = inf.resolve_n_codebooks(codec, n_codebooks, bandwidth)
        system = inf.CodecSystem(codec, k, chunk_seconds=_chunk(chunk_seconds))
    total = len(DataDir.load(data))
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task(f"evaluating {system.name}", total=total)
        result = inf.evaluate_data(system, data, progress=lambda n: bar.advance(task, n))
    for utt, msg in result.failed.items():
        err_console.print(f"warning: skipped {utt}: {msg}", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    payload = result.to_dict()
    if out is not None:
        if out.exists() and not overwrite:
            raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
        with atomic_write(out) as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
    if output is Output.json:
        typer.echo(json.dumps(payload))
    else:
        _print_table(result)
    if result.failed and not result.utterances:
        err_console.print(f"all {len(result.failed)} utterance(s) failed", highlight=False)
        raise typer.Exit(1)


@app.command("resample-data")
def resample_data(
    data: Path = typer.Argument(..., help="Kaldi data dir to convert.", show_default=False),
    out: Path = typer.Argument(..., help="New data dir (with OUT/wav/ for converted audio).", show_default=False),
    sample_rate: int = typer.Option(..., "--sample-rate", help="Target rate in Hz (the codec's).", show_default=False),
    nj: int = typer.Option(4, "--nj", help="Parallel threads."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT data dir."),
) -> None:  # fmt: skip
    """Copy a data dir for codec training at one rate: utterances at another rate, with
    segments or not plain mono files get a mono 16-bit wav at --sample-rate in OUT/wav/; the
    others keep their audio. text/utt2spk are carried over."""
    from concurrent.futures import ThreadPoolExecutor

    from audiokit.audio import save
    from audiokit.audio.scp import scp_entry_info
    from audiokit.cli._console import err_console
    from audiokit.data.data_dir import DataDir, absolute_entry, entry_kind
    from audiokit.errors import DataDirError

    if sample_rate <= 0:
        raise ConfigError(f"--sample-rate {sample_rate} must be a positive rate in Hz")
    src = DataDir.load(data)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty; pass --overwrite to replace it")

    def one(utt: str) -> tuple[str, str, bool]:
        u = src.utterance(utt)
        if src.segments is None and entry_kind(u.entry) == "path":
            info = scp_entry_info(u.entry, src.base_dir, key=u.recording)
            if info.sample_rate == sample_rate and info.num_channels == 1:
                return utt, absolute_entry(u.entry, src.path), False
        if "/" in utt or "\\" in utt or utt in ("", ".", ".."):
            raise ConfigError(f"utterance id {utt!r} cannot be a file name; rename it in wav.scp")
        x, _ = src.load_audio(utt, sample_rate=sample_rate)
        path = (out / "wav" / f"{utt}.wav").resolve()
        save(path, x.clip(-1.0, 1.0), sample_rate)
        return utt, str(path), True

    failed: dict[str, str] = {}
    wav_scp: dict[str, str] = {}
    converted = 0
    with ThreadPoolExecutor(max(1, nj)) as pool:
        futures = {utt: pool.submit(one, utt) for utt in src.utt_ids}
        for utt, fut in futures.items():
            try:
                _, entry, changed = fut.result()
                wav_scp[utt], converted = entry, converted + int(changed)
            except AudiokitError as e:
                failed[utt] = str(e)
    for utt, msg in list(failed.items())[:5]:
        err_console.print(f"warning: skipped {utt}: {msg}", markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    if not wav_scp:
        raise DataDirError(f"{data}: no utterance could be read; check wav.scp")

    def pick(m):
        return None if m is None else {k: v for k, v in m.items() if k in wav_scp}

    DataDir(path=None, wav_scp=wav_scp, text=pick(src.text), utt2spk=pick(src.utt2spk)).write(
        out, overwrite=overwrite
    )
    typer.echo(
        f"{out}: {len(wav_scp)} utterance(s), {converted} converted to {sample_rate} Hz"
        + (f", {len(failed)} skipped" if failed else "")
    )
