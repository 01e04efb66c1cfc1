"""ESPnet ASR CTC model (registered as ``espnet_asr_ctc``): an imported ESPnet ``asr`` task model
with a Conformer or E-Branchformer encoder, decoded with its CTC branch only.

``features (B, T, D) -> GlobalMVN -> EspnetEncoder -> Linear -> log_softmax (B, T', V)``.

It behaves as :class:`audiokit.asr.ctc_model.ConformerCTC` (same ``forward``, CTC loss,
``greedy`` / ``prefix_beam`` decoding, ``recognize``); only the encoder differs
(:class:`audiokit.asr.espnet_asr_encoder.EspnetEncoder`: ESPnet's positions, optional macaron
and conv module, LayerNorm eps 1e-12). A hybrid CTC/attention model's attention decoder is not
imported: decoding is CTC only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from audiokit.asr.ctc_model import ConformerCTC
from audiokit.asr.espnet_asr_encoder import EspnetEncoder
from audiokit.features.cmvn import GlobalCMVN
from audiokit.registry import register_model


@register_model("espnet_asr_ctc")
class EspnetASRCTC(ConformerCTC):
    """ESPnet ASR encoder + CTC output layer.

    ``forward(feats (B, T, input_dim), lengths (B,)) -> (log_probs (B, T', V), out_lengths)``.
    Encoder keyword arguments are those of :class:`EspnetEncoder`; every argument is a plain
    value so ``self.config`` round-trips through model.yaml.
    """

    decoders = ("greedy", "prefix_beam")

    def __init__(self, input_dim: int, vocab_size: int, blank_id: int = 0, **encoder: Any) -> None:
        # ConformerCTC's methods only need cmvn / encoder / ctc_out / blank_id: build those here
        # instead of ConformerCTC's own ConformerEncoder.
        nn.Module.__init__(self)
        self.config: dict[str, Any] = {
            "input_dim": input_dim, "vocab_size": vocab_size, "blank_id": blank_id, **encoder,
        }  # fmt: skip
        self.input_dim = input_dim
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.cmvn = GlobalCMVN(np.zeros(input_dim, np.float32), np.ones(input_dim, np.float32))
        self.encoder = EspnetEncoder(input_dim, **encoder)
        self.ctc_out = nn.Linear(self.encoder.after_norm.normalized_shape[0], vocab_size)
        self.subsampling_factor = self.encoder.subsampling_factor
