"""CTC prefix beam search, vectorised over batch x beam (the loop runs over frames only).

Every hypothesis is a label prefix with two log-probabilities: ``pb`` (all alignments of the
prefix so far that end in blank) and ``pnb`` (those that end in its last label). At frame ``t``,
for each of the frame's ``top-k`` tokens ``c`` with log-prob ``p``:

- ``c`` blank:               prefix stays, ``pb  += (pb + pnb) * p``
- ``c`` = the prefix's last: prefix stays, ``pnb += pnb * p`` (repeat collapses) and
                             ``prefix + c`` gets ``pnb += pb * p`` (a blank separated the two)
- any other ``c``:           ``prefix + c`` gets ``pnb += (pb + pnb) * p``

(sums/products in log space). An extension ``prefix + c`` that equals another hypothesis in
the beam is merged into it. Then the best ``beam_size`` prefixes by ``pb + pnb`` survive.

Prefix identity: each hypothesis carries its tokens ``(B, W, T)``, two 31-bit polynomial
hashes of itself and of its parent (the prefix minus its last token). The hashes find, per
hypothesis, the beam entry that is its parent; the match is then confirmed by comparing the
token rows, so a hash collision can at worst miss a merge, never merge different prefixes.
"""

from __future__ import annotations

import torch

# Two Mersenne-ish primes below 2**31 and bases: h * base + token fits in int64.
_MOD = (2147483647, 2147483629)
_BASE = (1000003, 999983)


def _find_parents(
    seq: torch.Tensor,
    plen: torch.Tensor,
    hashes: torch.Tensor,
    parent_hashes: torch.Tensor,
    active: torch.Tensor,
) -> torch.Tensor:
    """``(B, W)`` index of the beam entry equal to each entry's prefix minus its last token.

    ``seq (B, W, L)`` tokens padded with -1, ``plen (B, W)``, ``hashes``/``parent_hashes``
    ``(B, W, 2)``, ``active (B, W)`` bool (finite score). -1 where there is no such entry.
    """
    b, w, length = seq.shape
    # cand[b, p, c]: entry p looks like the parent of entry c.
    cand = (
        (hashes[:, :, None, :] == parent_hashes[:, None, :, :]).all(-1)
        & (plen[:, :, None] + 1 == plen[:, None, :])
        & active[:, :, None]
        & active[:, None, :]
    )
    found = cand.any(dim=1)
    guess = cand.to(torch.uint8).argmax(dim=1)  # (B, W)
    # Confirm exactly: the child's tokens without its last one equal the guessed parent's.
    pos = torch.arange(length, device=seq.device)
    child_trunc = seq.masked_fill(pos[None, None, :] >= (plen - 1).clamp(min=0)[..., None], -1)
    parent_rows = seq.gather(1, guess[..., None].expand(b, w, length))
    same = (child_trunc == parent_rows).all(dim=-1)
    return torch.where(found & same, guess, torch.full_like(guess, -1))


def _gather_beam(x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Rows of ``x (B, W, ...)`` reordered by beam indices ``src (B, W)``."""
    if x.dim() == 2:
        return x.gather(1, src)
    return x.gather(1, src[..., None].expand(-1, -1, x.shape[2]))


def ctc_prefix_beam_search(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    beam_size: int = 10,
    blank: int = 0,
    token_topk: int | None = None,
) -> list[list[tuple[list[int], float]]]:
    """N-best prefix beam search over a padded batch.

    ``log_probs (B, T, V)`` CTC log-posteriors (float64 input is kept, anything else runs in
    float32), ``lengths (B,)`` valid frames. At each frame only the ``token_topk`` most likely
    tokens (default ``beam_size``; blank counts as one of them) are expanded, as WeNet does.
    Returns, per utterance, up to ``beam_size`` ``(token ids, log-prob)`` pairs, best first;
    the log-prob is that of the prefix summed over its surviving alignments.
    """
    lp = log_probs if log_probs.dtype == torch.float64 else log_probs.float()
    b, t_max, v = lp.shape
    w = beam_size
    k = min(token_topk or beam_size, v)
    dev = lp.device
    lengths = lengths.to(dev)
    neg = torch.tensor(float("-inf"), dtype=lp.dtype, device=dev)
    mod = torch.tensor(_MOD, device=dev)
    base = torch.tensor(_BASE, device=dev)

    seq = torch.full((b, w, max(t_max, 1)), -1, dtype=torch.long, device=dev)
    plen = torch.zeros(b, w, dtype=torch.long, device=dev)
    last = torch.full((b, w), -1, dtype=torch.long, device=dev)
    pb = torch.full((b, w), float("-inf"), dtype=lp.dtype, device=dev)
    pb[:, 0] = 0.0  # the empty prefix, alone in the beam
    pnb = torch.full_like(pb, float("-inf"))
    hashes = torch.zeros(b, w, 2, dtype=torch.long, device=dev)
    parent_hashes = torch.zeros_like(hashes)
    beam_ids = torch.arange(w, device=dev)

    steps = int(lengths.max()) if b else 0
    for t in range(steps):
        tp, tok = lp[:, t].topk(k, dim=-1)  # (B, K)
        total = torch.logaddexp(pb, pnb)
        active = total > float("-inf")
        cur = seq[:, :, : t + 1]  # prefixes have at most t tokens before this frame
        parent = _find_parents(cur, plen, hashes, parent_hashes, active)

        is_blank = tok == blank  # (B, K)
        is_last = last[:, :, None] == tok[:, None, :]  # (B, W, K)
        p_blank = torch.where(is_blank, tp, neg).amax(dim=-1)  # (B,)
        p_last = torch.where(is_last, tp[:, None, :], neg).amax(dim=-1)  # (B, W)
        stay_pb = total + p_blank[:, None]
        stay_pnb = pnb + p_last
        ext = torch.where(is_last, pb[..., None], total[..., None]) + tp[:, None, :]
        ext = ext.masked_fill(is_blank[:, None, :], float("-inf"))  # (B, W, K)

        # Extension (p, k) equals entry c when p is c's parent and token k is c's last token.
        child = parent[:, None, :] == beam_ids[None, :, None]  # (B, W parent, W child)
        merge = child[..., None] & is_last[:, None, :, :]  # (B, W, W, K)
        merged_in = torch.where(merge, ext[:, :, None, :], neg).amax(dim=(1, 3))  # (B, W)
        stay_pnb = torch.logaddexp(stay_pnb, merged_in)
        ext = ext.masked_fill(merge.any(dim=2), float("-inf")).flatten(1)  # (B, W*K)

        cand = torch.cat([torch.logaddexp(stay_pb, stay_pnb), ext], dim=1)
        _, idx = cand.topk(w, dim=1)  # (B, W), best first
        is_ext = idx >= w
        ext_idx = (idx - w).clamp(min=0)
        src = torch.where(is_ext, ext_idx // k, idx)
        new_tok = tok.gather(1, ext_idx % k)
        n_pb = torch.where(is_ext, neg, _gather_beam(stay_pb, src))
        n_pnb = torch.where(is_ext, ext.gather(1, ext_idx), _gather_beam(stay_pnb, src))
        src_len, src_hash = _gather_beam(plen, src), _gather_beam(hashes, src)
        n_seq = _gather_beam(cur, src)
        write = torch.where(is_ext, new_tok, n_seq.gather(2, src_len[..., None]).squeeze(-1))
        n_seq.scatter_(2, src_len[..., None], write[..., None])
        n_plen = src_len + is_ext.long()
        n_last = torch.where(is_ext, new_tok, _gather_beam(last, src))
        grown = (src_hash * base + (new_tok[..., None] + 1)) % mod
        n_hash = torch.where(is_ext[..., None], grown, src_hash)
        n_parent_hash = torch.where(is_ext[..., None], src_hash, _gather_beam(parent_hashes, src))

        run = (t < lengths)[:, None]  # finished utterances keep their beam
        seq[:, :, : t + 1] = torch.where(run[..., None], n_seq, cur)
        pb = torch.where(run, n_pb, pb)
        pnb = torch.where(run, n_pnb, pnb)
        plen = torch.where(run, n_plen, plen)
        last = torch.where(run, n_last, last)
        hashes = torch.where(run[..., None], n_hash, hashes)
        parent_hashes = torch.where(run[..., None], n_parent_hash, parent_hashes)

    scores, order = torch.logaddexp(pb, pnb).sort(dim=1, descending=True)
    plen = plen.gather(1, order)
    seq = seq.gather(1, order[..., None].expand_as(seq))
    results: list[list[tuple[list[int], float]]] = []
    for rows, lens, scs in zip(seq.tolist(), plen.tolist(), scores.tolist(), strict=True):
        results.append(
            [(row[:n], s) for row, n, s in zip(rows, lens, scs, strict=True) if s > float("-inf")]
        )
    return results
