"""CTC greedy and prefix beam search against straightforward reference implementations."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

from audiokit.asr.decode import best_path_log_prob, ctc_greedy_search, ctc_prefix_beam_search

pytestmark = pytest.mark.usefixtures("one_torch_thread")


NEG = float("-inf")


def _lae(*xs: float) -> float:
    m = max(xs)
    if m == NEG:
        return NEG
    return m + math.log(sum(math.exp(x - m) for x in xs))


def reference_prefix_beam(lp: list[list[float]], beam: int, blank: int, topk: int):
    """Dict-based prefix beam search (one utterance), the textbook/WeNet formulation."""
    hyps: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG)}
    for frame in lp:
        tokens = sorted(range(len(frame)), key=lambda c: -frame[c])[:topk]
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG, NEG])
        for prefix, (pb, pnb) in hyps.items():
            for c in tokens:
                p = frame[c]
                if c == blank:
                    nxt[prefix][0] = _lae(nxt[prefix][0], pb + p, pnb + p)
                elif prefix and c == prefix[-1]:
                    nxt[prefix][1] = _lae(nxt[prefix][1], pnb + p)
                    nxt[prefix + (c,)][1] = _lae(nxt[prefix + (c,)][1], pb + p)
                else:
                    nxt[prefix + (c,)][1] = _lae(nxt[prefix + (c,)][1], pb + p, pnb + p)
        ranked = sorted(nxt.items(), key=lambda kv: -_lae(*kv[1]))[:beam]
        hyps = {k: tuple(v) for k, v in ranked}
    out = [(list(k), _lae(*v)) for k, v in hyps.items()]
    return [h for h in sorted(out, key=lambda h: -h[1]) if h[1] > NEG]


def _random_log_probs(b: int, t: int, v: int, seed: int, peaky: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(b, t, v, generator=g, dtype=torch.float64) * peaky, -1)


def test_greedy_collapses_repeats_and_blanks() -> None:
    ids = torch.tensor([[0, 1, 1, 0, 1, 2, 2, 0, 3], [2, 2, 2, 0, 0, 0, 0, 0, 0]])
    lp = torch.nn.functional.one_hot(ids, 4).double().log()
    tokens, frames = ctc_greedy_search(lp, torch.tensor([9, 2]), return_frames=True)
    assert tokens == [[1, 1, 2, 3], [2]]
    assert frames == [[1, 4, 5, 8], [0]]
    assert ctc_greedy_search(lp, torch.tensor([3, 0])) == [[1], []]


def test_greedy_other_blank_id() -> None:
    ids = torch.tensor([[3, 1, 3, 1, 1, 0]])
    lp = torch.nn.functional.one_hot(ids, 4).float().log()
    assert ctc_greedy_search(lp, torch.tensor([6]), blank=3) == [[1, 1, 0]]


@pytest.mark.parametrize(
    ("v", "beam", "topk", "peaky"),
    [(3, 4, None, 1.0), (4, 5, 3, 2.0), (5, 3, None, 3.0), (6, 8, 4, 1.5)],
)
def test_prefix_beam_matches_reference(v: int, beam: int, topk: int | None, peaky: float) -> None:
    lengths = torch.tensor([12, 7, 1, 10, 12])
    lp = _random_log_probs(len(lengths), 12, v, seed=v * 31 + beam, peaky=peaky)
    got = ctc_prefix_beam_search(lp, lengths, beam_size=beam, blank=0, token_topk=topk)
    for i, n in enumerate(lengths.tolist()):
        want = reference_prefix_beam(lp[i, :n].tolist(), beam, 0, topk or beam)
        assert [h[0] for h in got[i]] == [h[0] for h in want]
        assert [h[1] for h in got[i]] == pytest.approx([h[1] for h in want], abs=1e-9)


def test_prefix_beam_nonzero_blank_and_float32() -> None:
    lp = _random_log_probs(3, 9, 5, seed=7, peaky=2.0)
    lengths = torch.tensor([9, 9, 4])
    got = ctc_prefix_beam_search(lp.float(), lengths, beam_size=4, blank=2)
    for i, n in enumerate(lengths.tolist()):
        want = reference_prefix_beam(lp[i, :n].tolist(), 4, 2, 4)
        assert [h[0] for h in got[i]] == [h[0] for h in want]
        assert [h[1] for h in got[i]] == pytest.approx([h[1] for h in want], abs=1e-4)


def test_prefix_beam_at_least_greedy_path() -> None:
    lp = _random_log_probs(6, 30, 7, seed=3, peaky=2.5)
    lengths = torch.tensor([30, 25, 30, 5, 17, 30])
    beams = ctc_prefix_beam_search(lp, lengths, beam_size=6)
    path = best_path_log_prob(lp, lengths)
    for i in range(len(lengths)):
        assert beams[i][0][1] >= float(path[i]) - 1e-9
        scores = [h[1] for h in beams[i]]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h[0]) for h in beams[i]}) == len(beams[i])  # merged: no duplicates


def test_prefix_beam_peaky_equals_greedy_and_zero_length() -> None:
    ids = torch.tensor([[0, 1, 1, 0, 1, 2, 0], [3, 0, 3, 3, 0, 0, 0]])
    lp = torch.log_softmax(torch.nn.functional.one_hot(ids, 4).double() * 20.0, dim=-1)
    lengths = torch.tensor([7, 4])
    beams = ctc_prefix_beam_search(lp, lengths, beam_size=3)
    assert [b[0][0] for b in beams] == ctc_greedy_search(lp, lengths)
    assert ctc_prefix_beam_search(lp, torch.tensor([0, 2]), beam_size=3)[0] == [([], 0.0)]
