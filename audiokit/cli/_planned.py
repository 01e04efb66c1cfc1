"""Groups that are planned but not built yet: they say so and exit 2."""

import typer

from audiokit.errors import NotBuiltError

PLANNED = {
    "asr": ("Speech recognition: transcribe, decode, stream.", "issues 3-6"),
    "tts": ("Text-to-speech synthesis (CLEAR, ARDiT, QTTS).", "the TTS issue"),
    "codec": ("Neural audio codecs: encode, decode, resynth, eval.", "issue 7"),
    "generate": ("Audio generation (MAGNeT, SaShiMi).", "the generation issue"),
    "train": ("Train a model from a YAML config.", "issue 3"),
    "model": ("Pack, inspect and import model directories.", "issue 3"),
}


def add_planned(app: typer.Typer, name: str) -> None:
    """Register `name` as a command that accepts anything and raises :class:`NotBuiltError`."""
    help_text, where = PLANNED[name]

    def _not_built(ctx: typer.Context) -> None:
        raise NotBuiltError(
            f"'audiokit {name}' is not built yet (planned in {where}); "
            "see `audiokit --help` for the groups that work today"
        )

    app.command(
        name,
        help=f"{help_text} [not built yet]",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(_not_built)
