"""`audiokit feats`: Kaldi-compatible feature extraction, CMVN stats and speed perturbation.

Heavy imports (torch, kaldiio) happen inside the commands so `audiokit --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from audiokit.cli._console import console, err_console

app = typer.Typer(
    help="Feature extraction (Kaldi fbank/mfcc/spectrogram), CMVN stats, speed perturbation.",
    add_completion=False,
    no_args_is_help=True,
)

_KALDI = "Kaldi options (defaults are Kaldi's)"


def _bool(value: str) -> bool:
    """typer parser for Kaldi-style booleans: `--snip-edges false` or `--snip-edges=true`."""
    from audiokit.errors import ConfigError
    from audiokit.features.extract import parse_kaldi_bool

    try:
        return parse_kaldi_bool(value)
    except ConfigError:
        raise typer.BadParameter(f"expected true or false, got {value!r}") from None


def _bool_opt(name: str, help: str):
    return typer.Option(None, name, parser=_bool, metavar="BOOL", help=help, rich_help_panel=_KALDI)


def _opt(name: str, help: str):
    return typer.Option(None, name, help=help, rich_help_panel=_KALDI)


@app.command("extract")
def extract(
    data_dir: Path = typer.Argument(..., help="Kaldi data dir (wav.scp, optional segments)."),
    out_dir: Path = typer.Argument(..., help="Where feats.scp, the arks and utt2num_frames go."),
    feat_type: str = typer.Option("fbank", "--type", help="fbank, mfcc or spectrogram."),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Kaldi config file (--name=value lines); options given here override it.",
    ),
    sample_frequency: float | None = _opt(
        "--sample-frequency",
        "Audio rate in Hz (default 16000); other rates fail unless --resample.",
    ),
    frame_length: float | None = _opt("--frame-length", "Frame length in ms (default 25)."),
    frame_shift: float | None = _opt("--frame-shift", "Frame shift in ms (default 10)."),
    dither: float | None = _opt("--dither", "Dither constant, 0 = off (default 1.0)."),
    preemphasis_coefficient: float | None = _opt(
        "--preemphasis-coefficient", "Preemphasis coefficient (default 0.97)."
    ),
    remove_dc_offset: str | None = _bool_opt(
        "--remove-dc-offset", "Subtract each frame's mean (default true)."
    ),
    window_type: str | None = _opt(
        "--window-type", "hamming|hanning|povey|rectangular|sine|blackman (default povey)."
    ),
    blackman_coeff: float | None = _opt(
        "--blackman-coeff", "Blackman window coefficient (default 0.42)."
    ),
    round_to_power_of_two: str | None = _bool_opt(
        "--round-to-power-of-two", "FFT size rounded up to a power of two (default true)."
    ),
    snip_edges: str | None = _bool_opt(
        "--snip-edges",
        "Only frames that fit in the audio (default true); false: about length/shift frames.",
    ),
    num_mel_bins: int | None = _opt("--num-mel-bins", "Mel bins (default 23)."),
    low_freq: float | None = _opt("--low-freq", "Lowest mel frequency in Hz (default 20)."),
    high_freq: float | None = _opt(
        "--high-freq", "Highest mel frequency in Hz; <= 0 is an offset from Nyquist (default 0)."
    ),
    use_energy: str | None = _bool_opt(
        "--use-energy", "Add/replace C0 with log energy (default fbank false, mfcc true)."
    ),
    energy_floor: float | None = _opt(
        "--energy-floor", "Floor on the log energy, 0 = none (default 0)."
    ),
    raw_energy: str | None = _bool_opt(
        "--raw-energy", "Energy before preemphasis/window (default true)."
    ),
    htk_compat: str | None = _bool_opt("--htk-compat", "HTK layout, energy last (default false)."),
    use_log_fbank: str | None = _bool_opt(
        "--use-log-fbank", "fbank: log of the mel energies (default true)."
    ),
    use_power: str | None = _bool_opt(
        "--use-power", "fbank: power (not magnitude) spectrum (default true)."
    ),
    num_ceps: int | None = _opt("--num-ceps", "mfcc: cepstra kept (default 13)."),
    cepstral_lifter: float | None = _opt(
        "--cepstral-lifter", "mfcc: lifter coefficient, 0 = off (default 22)."
    ),
    nj: int = typer.Option(1, "--nj", help="Parallel jobs (processes)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Utterances per feature call."),
    allow_pipes: bool = typer.Option(
        False, "--allow-pipes", help="Run piped wav.scp commands ('... |')."
    ),
    compress: str = typer.Option(
        "false",
        "--compress",
        parser=_bool,
        metavar="BOOL",
        help="Kaldi-compress the matrices (lossy, as make_fbank.sh does); off by default so "
        "the arks hold exactly what compute-*-feats would.",
    ),
    resample: bool = typer.Option(
        False,
        "--resample",
        help="Resample audio to --sample-frequency instead of failing on a mismatch.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the dither noise."),
) -> None:
    """Compute Kaldi features for a data dir: OUT_DIR/feats.scp, raw_TYPE.JOB.ark, utt2num_frames, TYPE.conf."""
    params = dict(locals())  # first statement: just the command's parameters
    from audiokit.features.extract import (
        KALDI_OPTIONS,
        build_options,
        extract_features,
        read_kaldi_conf,
    )

    given = {name: params[name.replace("-", "_")] for name in KALDI_OPTIONS}
    overrides = read_kaldi_conf(config) if config is not None else {}
    overrides.update({k: v for k, v in given.items() if v is not None})
    opts = build_options(feat_type, overrides)
    result = extract_features(
        data_dir, out_dir, feat_type, opts, nj=nj, batch_size=batch_size, allow_pipe=allow_pipes,
        compress=bool(compress), resample=resample, seed=seed, progress=True,
    )  # fmt: skip
    console.print(
        f"wrote {result.num_done} utterances ({result.num_frames} frames) to {result.feats_scp} "
        f"in {result.seconds:.1f} s"
    )
    if result.failed:
        err_console.print(f"[yellow]skipped {len(result.failed)} utterance(s):[/]", highlight=False)
        for utt, reason in result.failed:
            err_console.print(f"  {utt}: {reason}", highlight=False, soft_wrap=True)


@app.command("compute-cmvn")
def compute_cmvn_cmd(
    feats: Path = typer.Argument(..., help="A feats.scp or the folder holding one."),
    out_dir: Path = typer.Argument(..., help="Folder for cmvn.ark (Kaldi) and cmvn.npz."),
    per_utterance: bool = typer.Option(
        False, "--per-utterance", help="Also write per-utterance stats cmvn_utt.ark/.scp."
    ),
) -> None:
    """Global CMVN statistics: OUT_DIR/cmvn.ark (as compute-cmvn-stats) and OUT_DIR/cmvn.npz."""
    from audiokit.features.cmvn import compute_cmvn

    stats = compute_cmvn(feats, out_dir, per_utterance=per_utterance)
    console.print(f"CMVN stats over {stats.count} frames (dim {stats.dim}) written to {out_dir}")


@app.command("speed-perturb")
def speed_perturb_cmd(
    src: Path = typer.Argument(..., help="Input data dir."),
    dst: Path = typer.Argument(..., help="New data dir (perturbed audio goes to DST/wav/)."),
    factors: str = typer.Option("0.9,1.0,1.1", "--factors", help="Comma-separated speed factors."),
    allow_pipes: bool = typer.Option(False, "--allow-pipes", help="Run piped wav.scp commands."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty DST."),
) -> None:
    """Speed-perturbed copy of a data dir (sox `speed` style: tempo and pitch change)."""
    from audiokit.errors import ConfigError
    from audiokit.features.speed_perturb import speed_perturb_data_dir

    try:
        values = [float(x) for x in factors.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(
            f"--factors {factors!r} is not a comma-separated list of numbers; e.g. 0.9,1.0,1.1"
        ) from None
    res = speed_perturb_data_dir(
        src, dst, values, allow_pipe=allow_pipes, overwrite=overwrite, progress=True
    )
    console.print(
        f"wrote {res.num_utterances} utterances, {res.num_recordings} recordings to {res.path}"
    )
    if res.dropped_files:
        err_console.print(
            f"not carried over (recompute them): {', '.join(res.dropped_files)}", highlight=False
        )
