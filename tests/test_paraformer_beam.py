"""Paraformer beam search: exact N-best without CTC, CTC prefix scores against a frame loop and
torch's CTC loss, padding."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from audiokit.asr.paraformer_beam import (
    _phi,
    ctc_forward_extend,
    ctc_prefix_scores,
    paraformer_beam_search,
)

SPECIALS = (0, 1, 2)  # blank, <s>, </s>


def _logprobs(*shape: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.log_softmax(scale * torch.randn(*shape, generator=g), dim=-1)


def _ctc_logprob(lp: torch.Tensor, ids: list[int]) -> float:
    """log p(ids | lp (T, V)) from torch's CTC loss (blank 0); -inf when impossible."""
    loss = F.ctc_loss(
        lp.double()[:, None],
        torch.tensor([ids], dtype=torch.long) if ids else torch.zeros(1, 0, dtype=torch.long),
        torch.tensor([lp.shape[0]]),
        torch.tensor([len(ids)]),
        reduction="sum",
    )
    return -float(loss)


def _brute_force(dec, ctc=None, ctc_weight=0.0, top=None):
    """Every sequence of ``dec (N, V)`` scored, specials dropped, duplicates keep the best."""
    n, v = dec.shape
    best: dict[tuple[int, ...], float] = {}
    for seq in itertools.product(range(v), repeat=n):
        s = float(sum(dec[i, t] for i, t in enumerate(seq)))
        ids = tuple(t for t in seq if t not in SPECIALS)
        if ctc is not None:
            s += ctc_weight * max(_ctc_logprob(ctc, list(ids)), -1e9)
        best[ids] = max(best.get(ids, -math.inf), s)
    return sorted(best.items(), key=lambda kv: -kv[1])[:top]


def test_top1_is_greedy_argmax_and_batch_padding() -> None:
    dec = _logprobs(3, 7, 12, seed=0)
    lengths = torch.tensor([7, 4, 0])
    out = paraformer_beam_search(dec, lengths, beam_size=5, specials=(1, 2))
    for b, n in enumerate(lengths.tolist()):
        argmax = dec[b, :n].argmax(-1).tolist()
        assert out[b][0][0] == [t for t in argmax if t not in SPECIALS]
        assert math.isclose(out[b][0][1], float(dec[b, :n].max(-1).values.sum()), abs_tol=1e-5)
        single = paraformer_beam_search(
            dec[b : b + 1, : max(n, 1)], lengths[b : b + 1], beam_size=5
        )
        assert [ids for ids, _ in single[0]] == [ids for ids, _ in out[b]]
        scores = [s for _, s in out[b]]
        assert scores == sorted(scores, reverse=True)
    assert out[2] == [([], 0.0)]


def test_nbest_without_ctc_is_exact() -> None:
    dec = _logprobs(1, 3, 5, seed=1, scale=1.0)
    out = paraformer_beam_search(dec, torch.tensor([3]), beam_size=6)
    # Beam over independent positions keeps the exact top-6 sequences; duplicates after
    # dropping specials are merged afterwards, so compare against the same procedure.
    raw = sorted(
        itertools.product(range(5), repeat=3),
        key=lambda seq: -float(sum(dec[0, i, t] for i, t in enumerate(seq))),
    )[:6]
    expected: list[list[int]] = []
    for seq in raw:
        ids = [t for t in seq if t not in SPECIALS]
        if ids not in expected:
            expected.append(ids)
    assert [ids for ids, _ in out[0]] == expected


def test_ctc_rescoring_matches_exhaustive_search() -> None:
    v, n, t = 5, 3, 6
    dec = _logprobs(1, n, v, seed=2, scale=1.0)
    ctc = _logprobs(1, t, v, seed=3)
    out = paraformer_beam_search(
        dec, torch.tensor([n]), ctc, torch.tensor([t]), beam_size=v**n, ctc_weight=0.6
    )
    expected = _brute_force(dec[0], ctc[0], 0.6, top=10)
    got = out[0][:10]
    assert [ids for ids, _ in got] == [list(ids) for ids, _ in expected]
    for (_, s), (_, e) in zip(got, expected, strict=True):
        assert math.isclose(s, e, rel_tol=0, abs_tol=1e-6)


def test_ctc_prefers_the_ctc_supported_hypothesis() -> None:
    # The decoder slightly prefers [5, 4]; CTC clearly says [3, 4].
    dec = torch.full((1, 2, 6), -10.0)
    dec[0, 0, 5], dec[0, 0, 3], dec[0, 1, 4] = -0.5, -0.9, -0.1
    ctc = torch.full((1, 5, 6), -8.0)
    for frame, tok in enumerate([0, 3, 0, 4, 0]):
        ctc[0, frame, tok] = -0.01
    plain = paraformer_beam_search(dec, torch.tensor([2]), beam_size=4)
    joint = paraformer_beam_search(
        dec, torch.tensor([2]), ctc, torch.tensor([5]), beam_size=4, ctc_weight=0.3
    )
    assert plain[0][0][0] == [5, 4]
    assert joint[0][0][0] == [3, 4]


def _loop_prefix(lp: torch.Tensor, ids: list[int]):
    """Frame-loop reference (ESPnet's recursion): forward variables and prefix log-prob."""
    t_len = lp.shape[0]
    lp = lp.double()
    r_n = torch.full((t_len,), -math.inf, dtype=torch.float64)
    r_b = lp[:, 0].cumsum(0)  # empty prefix: blanks only
    psi = 0.0
    last = None
    for c in ids:
        new_n = torch.full((t_len,), -math.inf, dtype=torch.float64)
        new_b = torch.full((t_len,), -math.inf, dtype=torch.float64)
        terms = []
        for t in range(t_len):
            if t == 0:
                phi = 0.0 if last is None else -math.inf
            else:
                phi = r_b[t - 1] if c == last else torch.logaddexp(r_n[t - 1], r_b[t - 1])
            prev_n = new_n[t - 1] if t else torch.tensor(-math.inf, dtype=torch.float64)
            prev_b = new_b[t - 1] if t else torch.tensor(-math.inf, dtype=torch.float64)
            new_n[t] = torch.logaddexp(prev_n, torch.as_tensor(phi, dtype=torch.float64)) + lp[t, c]
            new_b[t] = torch.logaddexp(prev_n, prev_b) + lp[t, 0]
            terms.append(float(phi) + float(lp[t, c]))
        psi = float(torch.tensor(terms, dtype=torch.float64).logsumexp(0))
        r_n, r_b, last = new_n, new_b, c
    return r_n, r_b, psi


def test_vectorised_prefix_scorer_matches_frame_loop() -> None:
    t_len, v = 7, 6
    lp = _logprobs(t_len, v, seed=4).double()
    ids = [3, 3, 5, 1]
    r_n = torch.full((t_len + 1,), -math.inf, dtype=torch.float64)
    r_b = torch.cat([torch.zeros(1, dtype=torch.float64), lp[:, 0].cumsum(0)])
    last = -1
    valid = torch.ones(t_len, dtype=torch.bool)
    for step, c in enumerate(ids):
        phi = _phi(r_n, r_b, torch.tensor(c == last))
        psi = ctc_prefix_scores(phi, lp[:, c], valid)
        r_n, r_b = ctc_forward_extend(phi, lp[:, c], lp[:, 0])
        ref_n, ref_b, ref_psi = _loop_prefix(lp, ids[: step + 1])
        torch.testing.assert_close(r_n[1:], ref_n, rtol=0, atol=1e-9)
        torch.testing.assert_close(r_b[1:], ref_b, rtol=0, atol=1e-9)
        assert math.isclose(float(psi), ref_psi, abs_tol=1e-9)
        last = c
    full = float(torch.logaddexp(r_n[-1], r_b[-1]))
    assert math.isclose(full, _ctc_logprob(lp, ids), abs_tol=1e-9)


def test_ctc_batch_with_padding_equals_single() -> None:
    dec = _logprobs(2, 4, 9, seed=5)
    ctc = _logprobs(2, 10, 9, seed=6)
    tl, el = torch.tensor([4, 2]), torch.tensor([10, 6])
    out = paraformer_beam_search(dec, tl, ctc, el, beam_size=4, ctc_weight=0.5)
    for b in range(2):
        one = paraformer_beam_search(
            dec[b : b + 1, : tl[b]],
            tl[b : b + 1],
            ctc[b : b + 1, : el[b]],
            el[b : b + 1],
            4,
            ctc_weight=0.5,
        )
        assert [ids for ids, _ in one[0]] == [ids for ids, _ in out[b]]
        for (_, s1), (_, s2) in zip(one[0], out[b], strict=True):
            assert math.isclose(s1, s2, abs_tol=1e-9)


def test_too_short_for_ctc_still_returns_hypotheses() -> None:
    dec = _logprobs(1, 5, 8, seed=7)
    ctc = _logprobs(1, 2, 8, seed=8)  # 2 frames cannot carry 5 labels
    out = paraformer_beam_search(
        dec, torch.tensor([5]), ctc, torch.tensor([2]), beam_size=3, ctc_weight=0.5
    )
    assert len(out[0]) >= 1
    assert all(math.isfinite(s) for _, s in out[0])


def test_fixture_beam_equals_funasr_greedy_ids(tmp_path, one_torch_thread) -> None:
    """On the FunASR fixture (no CTC head) beam search gives FunASR's greedy ids."""
    import json

    import soundfile as sf

    from audiokit.features.frontend import build_frontend
    from audiokit.importers.funasr import import_model
    from audiokit.model_dir import load_model_dir
    from tests.conftest import shared_path

    fixture = shared_path("fixtures", "funasr_paraformer")
    expected = json.loads((fixture / "expected.json").read_text())["utterances"]
    model, cfg = load_model_dir(import_model(fixture / "model", tmp_path / "m"))
    frontend = build_frontend(cfg.frontend, cfg.sample_rate)
    for name, ref in expected.items():
        wave, _ = sf.read(fixture / "inputs" / f"{name}.wav", dtype="float32")
        feats, frames = frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        hyp = model.recognize(feats, frames, method="beam", beam_size=4, times=False)[0]
        assert hyp.token_ids == ref["token_ids"], name
