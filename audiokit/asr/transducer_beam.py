"""RNN-T beam search: Graves' algorithm as NeMo / ESPnet run it (``search_type: default``).

Per frame, the most probable hypothesis in A is expanded: its blank extension goes to B (done
with this frame), its ``beam`` best non-blank extensions back to A; this repeats until at least
``beam`` hypotheses in B score above the best of A, and those become the next frame's A. Scores
are single-path log-probabilities (no merging of equal sequences). The final list is sorted by
``score / (len + 1)`` when ``score_norm`` (NeMo counts the start symbol in the length), else by
score. Utterances are searched one at a time; predictor outputs are cached per token prefix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from audiokit.asr.transducer import LSTMState, RNNTJoint, RNNTPredictor, TransducerHyp
from audiokit.errors import ConfigError


@dataclass
class _Hyp:
    score: float
    tokens: tuple[int, ...]
    frames: tuple[int, ...]
    on_frame: int  # tokens emitted on the current frame (for max_symbols)


class _PredictorCache:
    """Joint-projected predictor output (J,) and LSTM state after each token prefix."""

    def __init__(self, predictor: RNNTPredictor, joint: RNNTJoint, device, dtype) -> None:
        self.predictor, self.joint = predictor, joint
        sos = torch.tensor([predictor.blank_id], device=device)
        self.entries: dict[tuple[int, ...], tuple[torch.Tensor, LSTMState]] = {
            (): self._step(sos, predictor.init_state(1, device, dtype))
        }

    def _step(self, token: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        out, state = self.predictor.step(token, state)
        return self.joint.project_predictor(out)[0], state

    def get(self, tokens: tuple[int, ...]) -> torch.Tensor:
        if tokens not in self.entries:
            _, parent_state = self.entries[tokens[:-1]]  # the parent was expanded before its child
            token = torch.tensor([tokens[-1]], device=parent_state[0].device)
            self.entries[tokens] = self._step(token, parent_state)
        return self.entries[tokens][0]


@torch.no_grad()
def _search_one(
    f: torch.Tensor,
    predictor: RNNTPredictor,
    joint: RNNTJoint,
    beam: int,
    score_norm: bool,
    max_symbols: int | None,
) -> list[TransducerHyp]:
    """f (T, J) projected encoder frames of one utterance -> hypotheses, best first."""
    blank = predictor.blank_id
    beam_k = min(beam, predictor.vocab_size)
    cache = _PredictorCache(predictor, joint, f.device, f.dtype)
    kept = [_Hyp(0.0, (), (), 0)]
    for t in range(f.shape[0]):
        a_set = [_Hyp(h.score, h.tokens, h.frames, 0) for h in kept]
        b_set: list[_Hyp] = []
        while True:
            best = max(a_set, key=lambda h: h.score)
            a_set.remove(best)
            logp = torch.log_softmax(joint.step(f[t], cache.get(best.tokens)).float(), dim=-1)
            b_set.append(
                _Hyp(best.score + float(logp[blank]), best.tokens, best.frames, best.on_frame)
            )
            if max_symbols is None or best.on_frame < max_symbols:
                top = logp[:blank].topk(beam_k)
                for lp, k in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                    a_set.append(
                        _Hyp(
                            best.score + lp,
                            best.tokens + (k,),
                            best.frames + (t,),
                            best.on_frame + 1,
                        )
                    )
            if not a_set:  # every hypothesis hit max_symbols on this frame
                kept = sorted(b_set, key=lambda h: h.score)
                break
            a_max = max(h.score for h in a_set)
            better = sorted((h for h in b_set if h.score > a_max), key=lambda h: h.score)
            if len(better) >= beam:
                kept = better
                break
    if score_norm:
        kept.sort(key=lambda h: h.score / (len(h.tokens) + 1), reverse=True)
    else:
        kept.sort(key=lambda h: h.score, reverse=True)
    return [TransducerHyp(list(h.tokens), list(h.frames), h.score) for h in kept]


def beam_search(
    enc: torch.Tensor,
    enc_lengths: torch.Tensor,
    predictor: RNNTPredictor,
    joint: RNNTJoint,
    beam_size: int = 4,
    score_norm: bool = True,
    max_symbols: int | None = 10,
    nbest: int = 1,
) -> list[TransducerHyp] | list[list[TransducerHyp]]:
    """Beam search over enc (B, T, enc_dim) with enc_lengths (B,).

    Returns the best :class:`TransducerHyp` per utterance, or (``nbest`` > 1) a list of up to
    ``nbest`` per utterance, best first. ``max_symbols`` caps the labels a hypothesis may emit on
    one frame (None: no cap, as NeMo's default beam search, which can take very long on a model
    that keeps emitting; the default 10 matches greedy's cap and rarely binds). Each hypothesis' ``score`` is its
    path log-probability.
    """
    if beam_size < 1 or nbest < 1:
        raise ConfigError(f"beam_size {beam_size} and nbest {nbest} must be >= 1")
    lengths = enc_lengths.tolist()
    results = []
    with torch.no_grad():
        f = joint.project_encoder(enc)
        for b in range(enc.shape[0]):
            hyps = _search_one(
                f[b, : int(lengths[b])], predictor, joint, beam_size, score_norm, max_symbols
            )
            results.append(hyps[:nbest] if nbest > 1 else hyps[0])
    return results
