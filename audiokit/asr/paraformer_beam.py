"""Beam search over Paraformer's position-wise decoder posteriors, optionally with CTC prefix scores.

The NAR decoder scores the ``N`` CIF positions independently, so a hypothesis is one token per
position and its decoder score is ``sum_i log p_i(y_i)``. Without CTC the N-best is exact and its
top-1 is the per-position argmax. With a CTC head, every extension is rescored as in FunASR's
``BeamSearchPara`` + ``CTCPrefixScorer``::

    score(h) = sum_i log p_i(y_i)  +  ctc_weight * log psi_ctc(h)

where ``psi_ctc(h)`` is the CTC prefix probability (all frame alignments whose labelling starts
with ``h``). Candidates per position are the decoder's top ``1.5 x beam`` tokens (FunASR's
pre-beam). Once every position is filled, the prefix probability is replaced by the full CTC
probability of the sequence (ESPnet's end-of-sentence scoring; FunASR appends ``</s>`` without
it) and the N-best is re-sorted. Special tokens (blank, ``<s>``, ``</s>``) may fill a position:
they are invisible to CTC and dropped from the output; hypotheses that become equal after
dropping them keep the best score.

The CTC recursions over frames are first-order linear recurrences in the log semiring, solved in
closed form with ``cumsum`` + ``logcumsumexp`` (float64), so the only Python loop is over the
``N`` token positions, vectorised over batch x beam x candidates.
"""

from __future__ import annotations

import torch

_NEG = float("-inf")
_FLOOR = -1.0e4  # CTC log-probs below this are raised to it (keeps the cumsums finite)
_IMPOSSIBLE = -1.0e9  # CTC score of a prefix no alignment allows (too long for the frames)


def _linear_scan(x: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """Solve ``r_t = x_t + logaddexp(r_{t-1}, drive_{t-1})`` with ``r_{-1} = -inf``.

    ``x``/``drive`` ``(..., T)``; ``drive[..., s]`` is the log-mass entering before frame ``s``.
    Closed form: ``r_t = C_t + logcumsumexp_{s<=t}(drive_s - C_{s-1})``, ``C_t = sum_{u<=t} x_u``.
    """
    c = x.cumsum(-1)
    c_prev = torch.cat([torch.zeros_like(c[..., :1]), c[..., :-1]], dim=-1)
    return c + torch.logcumsumexp(drive - c_prev, dim=-1)


def _phi(r_n: torch.Tensor, r_b: torch.Tensor, same_as_last: torch.Tensor) -> torch.Tensor:
    """Log-mass of the parent that may be followed by the new label, frames ``-1 .. T-2``."""
    phi = torch.where(same_as_last[..., None], r_b, torch.logaddexp(r_n, r_b))
    return phi[..., :-1]


def ctc_prefix_scores(phi: torch.Tensor, lp_tok: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Prefix log-probability ``log sum_{t < L} phi_{t-1} p_t(c)`` of ``parent + c``.

    ``phi (..., T)`` from :func:`_phi`, ``lp_tok (..., T)`` log-prob of ``c`` at each frame,
    ``valid (..., T)`` bool, True on real frames (``t < L``). Returns ``(...)``.
    """
    return (phi + lp_tok).masked_fill(~valid, _NEG).logsumexp(-1).clamp(min=_IMPOSSIBLE)


def ctc_forward_extend(
    phi: torch.Tensor, lp_tok: torch.Tensor, lp_blank: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward variables ``(r_n, r_b)`` of ``parent + c`` at frames ``-1 .. T-1``, each ``(..., T+1)``.

    ``r_n_t = p_t(c) (r_n_{t-1} + phi_{t-1})`` and ``r_b_t = p_t(blank) (r_n_{t-1} + r_b_{t-1})``,
    both zero at frame -1 (a non-empty prefix has consumed at least one frame).
    """
    r_n = _linear_scan(lp_tok, phi)
    shifted = torch.cat([torch.full_like(r_n[..., :1], _NEG), r_n[..., :-1]], dim=-1)
    r_b = _linear_scan(lp_blank.expand_as(r_n), shifted)
    start = torch.full_like(r_n[..., :1], _NEG)
    return torch.cat([start, r_n], dim=-1), torch.cat([start, r_b], dim=-1)


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of ``x (B, W, ...)`` picked by ``idx (B, W')``."""
    view = idx.reshape(*idx.shape, *([1] * (x.dim() - 2)))
    return x.gather(1, view.expand(*idx.shape, *x.shape[2:]))


def paraformer_beam_search(
    decoder_logprobs: torch.Tensor,
    token_lengths: torch.Tensor,
    ctc_logprobs: torch.Tensor | None = None,
    enc_lengths: torch.Tensor | None = None,
    beam_size: int = 10,
    ctc_weight: float = 0.0,
    blank: int = 0,
    specials: tuple[int, ...] = (1, 2),
    pre_beam_ratio: float = 1.5,
) -> list[list[tuple[list[int], float]]]:
    """N-best token sequences per utterance, best first.

    ``decoder_logprobs (B, N, V)`` log-posteriors of the NAR decoder at the ``N`` CIF positions
    (padding beyond ``token_lengths (B,)`` ignored). ``ctc_logprobs (B, T, V)`` and
    ``enc_lengths (B,)``: the CTC head's log-posteriors over encoder frames, used when
    ``ctc_weight > 0``. ``blank`` and ``specials`` (``<s>``, ``</s>``) are dropped from the
    returned ids. Returns up to ``beam_size`` ``(ids, score)`` pairs per utterance.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    use_ctc = ctc_logprobs is not None and ctc_weight > 0.0
    dev = decoder_logprobs.device
    dec = decoder_logprobs.double()
    b, n_max, v = dec.shape
    w = beam_size
    lens = token_lengths.to(dev).long()
    drop = torch.zeros(v, dtype=torch.bool, device=dev)
    drop[[blank, *[s for s in specials if 0 <= s < v]]] = True
    k = min(max(int(pre_beam_ratio * w), w) if use_ctc else w, v)

    tokens = torch.full((b, w, max(n_max, 1)), -1, dtype=torch.long, device=dev)
    dec_score = torch.full((b, w), _NEG, dtype=torch.float64, device=dev)
    dec_score[:, 0] = 0.0  # the empty hypothesis, alone in the beam
    if use_ctc:
        if enc_lengths is None:
            raise ValueError("enc_lengths is required with ctc_logprobs")
        ctc = ctc_logprobs  # only the candidate columns are cast to float64, per position
        t_max = ctc.shape[1]
        valid = torch.arange(t_max, device=dev)[None, :] < enc_lengths.to(dev)[:, None]  # (B, T)
        lp_blank = ctc[..., blank].double().clamp(min=_FLOOR)  # (B, T)
        r_n = torch.full((b, w, t_max + 1), _NEG, dtype=torch.float64, device=dev)
        r_b = torch.cat(
            [torch.zeros(b, 1, dtype=torch.float64, device=dev), lp_blank.cumsum(-1)], 1
        )
        r_b = r_b[:, None].expand(b, w, t_max + 1).clone()
        psi = torch.zeros(b, w, dtype=torch.float64, device=dev)
        last = torch.full((b, w), -1, dtype=torch.long, device=dev)

    for i in range(n_max):
        tok_lp, tok = dec[:, i].topk(k, dim=-1)  # (B, K): shared by every hypothesis
        cand_dec = dec_score[..., None] + tok_lp[:, None, :]  # (B, W, K)
        total = cand_dec
        if use_ctc:
            skip = drop[tok]  # (B, K) specials leave the CTC state untouched
            lp_tok = ctc.gather(2, tok[:, None, :].expand(b, t_max, k)).transpose(1, 2)  # (B,K,T)
            lp_tok = lp_tok.double().clamp(min=_FLOOR)
            same = last[..., None] == tok[:, None, :]  # (B, W, K)
            phi = _phi(r_n[:, :, None], r_b[:, :, None], same)  # (B, W, K, T)
            cand_psi = ctc_prefix_scores(phi, lp_tok[:, None], valid[:, None, None])
            cand_psi = torch.where(skip[:, None, :], psi[..., None], cand_psi)
            total = cand_dec + ctc_weight * cand_psi
        _, flat = total.flatten(1).topk(w, dim=1)  # (B, W) best first
        src, pick = flat // k, flat % k
        run = (i < lens)[:, None]  # finished utterances keep their beam
        new_tok = tok.gather(1, pick)
        new_tokens = _gather(tokens, src)
        new_tokens[:, :, i] = new_tok
        tokens = torch.where(run[..., None], new_tokens, tokens)
        dec_score = torch.where(run, cand_dec.flatten(1).gather(1, flat), dec_score)
        if use_ctc:
            p_rn, p_rb = _gather(r_n, src), _gather(r_b, src)
            p_same = _gather(last, src) == new_tok
            new_phi = _phi(p_rn, p_rb, p_same)
            e_rn, e_rb = ctc_forward_extend(new_phi, _gather(lp_tok, pick), lp_blank[:, None, :])
            keep = skip.gather(1, pick)  # (B, W)
            new_rn = torch.where(keep[..., None], p_rn, e_rn)
            new_rb = torch.where(keep[..., None], p_rb, e_rb)
            new_last = torch.where(keep, _gather(last, src), new_tok)
            new_psi = cand_psi.flatten(1).gather(1, flat)
            r_n = torch.where(run[..., None], new_rn, r_n)
            r_b = torch.where(run[..., None], new_rb, r_b)
            last = torch.where(run, new_last, last)
            psi = torch.where(run, new_psi, psi)

    score = dec_score
    if use_ctc:
        end = (enc_lengths.to(dev).long())[:, None, None].expand(b, w, 1)  # frame L-1 is at L
        full = torch.logaddexp(r_n.gather(2, end), r_b.gather(2, end)).squeeze(-1)
        full = full.clamp(min=_IMPOSSIBLE)
        score = dec_score + ctc_weight * full
    score = score.masked_fill(dec_score == _NEG, _NEG)
    score, order = score.sort(dim=1, descending=True)
    tokens = _gather(tokens, order)
    keep_tok = (tokens >= 0) & ~drop[tokens.clamp(min=0)]
    results: list[list[tuple[list[int], float]]] = []
    for rows, masks, scores in zip(tokens.tolist(), keep_tok.tolist(), score.tolist(), strict=True):
        seen: set[tuple[int, ...]] = set()
        nbest: list[tuple[list[int], float]] = []
        for row, mask, s in zip(rows, masks, scores, strict=True):
            ids = tuple(t for t, m in zip(row, mask, strict=True) if m)
            if s == _NEG or ids in seen:
                continue
            seen.add(ids)
            nbest.append((list(ids), s))
        results.append(nbest)
    return results
