"""`audiokit asr stream`: live recognition from the microphone, or a file at real-time pace.

Registered in :mod:`audiokit.cli.asr` as ``app.command("stream")(asr_stream.stream)``.
Argument parsing and display only; the work is :class:`audiokit.asr.stream_session.StreamSession`.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path

import typer

from audiokit.errors import ConfigError

# audiokit.cli.asr imports this module to register the command, so nothing is imported back
# from it at module level (resolve_model is imported inside the command).
_MODEL_HELP = (
    "Packed streaming model dir (default: $AUDIOKIT_MODEL or default_model in the user config)."
)


class Output(str, Enum):
    text = "text"
    json = "json"


def _emit_json(obj: dict) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))
    sys.stdout.flush()


def _list_devices() -> None:
    from audiokit.asr.stream_sources import import_sounddevice

    typer.echo(str(import_sounddevice().query_devices()))


def _latency_line(c) -> str:
    rtf = c.compute_s / c.block_s if c.block_s > 0 else 0.0
    return (
        f"chunk {c.index:4d}  audio {c.audio_s:7.2f} s  compute {1000 * c.compute_s:7.1f} ms "
        f"(RTF {rtf:.3f})  lag {c.lag_s:5.2f} s  +{c.new_tokens} token(s)"
    )


def _latency_summary(chunks) -> str:
    import numpy as np

    compute = np.array([c.compute_s for c in chunks]) * 1000
    lag = np.array([c.lag_s for c in chunks])
    audio = sum(c.block_s for c in chunks)
    rtf = compute.sum() / 1000 / audio if audio else 0.0
    return (
        f"latency: {len(chunks)} chunks, compute per chunk mean {compute.mean():.1f} ms / "
        f"p95 {np.percentile(compute, 95):.1f} ms / max {compute.max():.1f} ms; RTF {rtf:.3f}; "
        f"lag mean {lag.mean():.2f} s / max {lag.max():.2f} s"
    )


def stream(
    model: Path | None = typer.Option(None, "--model", help=_MODEL_HELP, show_default=False),
    mic: bool = typer.Option(False, "--mic", help="Recognise the microphone (needs audiokit\\[mic]); Ctrl-C ends."),
    input: Path | None = typer.Option(None, "--input", help="Recognise this audio file chunk by chunk.", show_default=False),
    realtime: bool = typer.Option(False, "--realtime", help="Feed --input at wall-clock pace, as a microphone would."),
    decoder: str | None = typer.Option(None, "--decoder", help="rnnt or ctc (default: the model's).", show_default=False),
    att_context: str | None = typer.Option(None, "--att-context", help="Attention context L,R the model was trained with (default: its first).", show_default=False),
    output: Output = typer.Option(Output.text, "--output", help="text: live display / final lines; json: partial lines, then one line with the whole result."),
    verbose: bool = typer.Option(False, "--verbose", help="Print per-chunk latency to stderr."),
    endpoint_silence: float | None = typer.Option(None, "--endpoint-silence", help="Seconds of silence after speech that end a segment (default 1.2).", show_default=False),
    max_utterance: float | None = typer.Option(None, "--max-utterance", help="Seconds after which a segment is cut (default 20; 0: never).", show_default=False),
    reset_at_endpoint: bool = typer.Option(False, "--reset-at-endpoint", help="Start the model afresh after each segment (default: carry its state on, so the result equals offline decoding)."),
    device_index: int | None = typer.Option(None, "--device-index", help="Input device number (see --list-devices).", show_default=False),
    list_devices: bool = typer.Option(False, "--list-devices", help="List audio devices and exit."),
    device: str = typer.Option("cpu", "--device", help="Compute device: cpu, cuda, cuda:N."),
) -> None:  # fmt: skip
    """Recognise live audio chunk by chunk with a streaming model (cache-aware Conformer).

    Prints partial results as they change and a final line per segment (segments end at
    endpoints: silence after speech, or a maximum length). With --output json the last line is
    one object with the whole input's text and token_ids.
    """
    from audiokit.asr.endpoint import EndpointConfig
    from audiokit.asr.stream_session import Chunk, Done, Final, Partial, StreamSession
    from audiokit.asr.stream_sources import FileSource, MicSource
    from audiokit.cli._console import console, err_console
    from audiokit.cli.asr import resolve_model

    if list_devices:
        _list_devices()
        return
    if mic == (input is not None):
        raise ConfigError("give exactly one audio source: --mic or --input FILE")
    if realtime and mic:
        raise ConfigError("--realtime paces --input files; the microphone is real time already")
    if input is not None and not input.is_file():
        raise ConfigError(f"--input {input}: no such file; check the path")
    session = StreamSession.from_model_dir(
        resolve_model(model),
        decoder=decoder,
        att_context=att_context,
        device=device,
        endpoint=EndpointConfig.from_options(endpoint_silence, max_utterance),
        reset_at_endpoint=reset_at_endpoint,
    )
    source = MicSource(device_index) if mic else FileSource(input, realtime=realtime)
    live_display = output is Output.text and console.is_terminal
    live = None
    if live_display:
        from rich.live import Live
        from rich.text import Text

        live = Live(Text(""), console=console, transient=True, auto_refresh=False)
        live.start()
    if mic:
        err_console.print(f"listening at {source.rate} Hz; Ctrl-C ends", highlight=False)
    done = None
    try:
        for event in session.run(source):
            if isinstance(event, Chunk):
                if verbose:
                    err_console.print(
                        _latency_line(event), highlight=False, markup=False, soft_wrap=True
                    )
            elif isinstance(event, Partial):
                if live is not None:
                    live.update(Text(event.text, style="dim"), refresh=True)
                elif output is Output.json:
                    _emit_json({"partial": event.text, "segment": event.segment})
            elif isinstance(event, Final):
                if live is not None:
                    live.update(Text(""), refresh=True)
                    if event.text:
                        live.console.print(event.text, markup=False, highlight=False)
                elif output is Output.json:
                    _emit_json({"final": event.text, "segment": event.segment,
                                "start": round(event.start, 3), "end": round(event.end, 3)})  # fmt: skip
                elif event.text:
                    typer.echo(event.text)
            elif isinstance(event, Done):
                done = event
    finally:
        if live is not None:
            live.stop()
    assert done is not None
    if output is Output.json:
        _emit_json(done.to_dict())
    if verbose and done.chunks:
        err_console.print(
            _latency_summary(done.chunks), highlight=False, markup=False, soft_wrap=True
        )
    if done.interrupted:
        err_console.print("stopped (Ctrl-C)", highlight=False)
