"""What an ASR model's ``recognize`` returns, and the protocol :class:`Recognizer` relies on.

Every recogniser model (``conformer_ctc``, ``paraformer``, ``streaming_conformer`` ...) offers:

- ``decoders: tuple[str, ...]`` — the names ``recognize`` accepts as ``method``;
- ``subsampling_factor: int`` — input feature frames per output frame;
- ``min_input_frames: int`` — the shortest input its front layers accept;
- ``recognize(feats (B, T, D), lengths (B,), method="greedy", beam_size=10, **options)
  -> list[Hypothesis]`` — one best hypothesis per utterance; model-specific options (a
  streaming model's attention context, OWSM's language and task) arrive as keywords.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Hypothesis:
    """One utterance's best decoding.

    token_ids: ids in the model's vocabulary (specials the decoder drops are already gone).
    starts:    per token, where it starts, in input feature frames (the frontend's frame
               shift; 10 ms for fbank); fractional values are allowed.
    ends:      per token end in the same unit, when the decoder knows it (CIF does), else None.
    info:      model-specific extras (e.g. the detected language) copied into JSON output.
    """

    token_ids: list[int]
    starts: list[float]
    ends: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)
