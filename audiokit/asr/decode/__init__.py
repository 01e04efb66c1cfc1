"""Decoding of CTC posteriors: greedy best path and prefix beam search (batch-first)."""

from audiokit.asr.decode.ctc_alignment import ctc_token_start_frames
from audiokit.asr.decode.ctc_greedy import best_path_log_prob, ctc_greedy_search
from audiokit.asr.decode.ctc_prefix_beam import ctc_prefix_beam_search

__all__ = [
    "best_path_log_prob",
    "ctc_greedy_search",
    "ctc_prefix_beam_search",
    "ctc_token_start_frames",
]
