"""`audiokit score` (being built)."""

HELP = "Score hypotheses against references (WER/CER)."


def score() -> None:
    pass
