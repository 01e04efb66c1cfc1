"""Minimum word error rate (MWER) training for Paraformer, with N-best lists from the model.

MWER (Prabhavalkar et al. 2018) minimises the expected number of errors over an N-best list,
with the sequence probabilities renormalised over the list and the list's mean error as a
baseline::

    L_mwer = sum_k  P^(y_k | x) (W(y_k, y*) - W_mean),   P^ = softmax_k(log P(y_k | x))

Paraformer's decoder scores every token position independently, so ``log P(y_k | x)`` is the sum
of its position log-probs. N-best lists (``method``):

- ``"negative"`` (default; the Paraformer paper's negative sampling): the greedy path plus
  ``nbest - 1`` negative samples, each made by masking the top-1 token of every position with
  probability ``mask_prob`` (0.5) so that the position takes its second-best token instead;
  duplicate samples are dropped from the list.
- ``"beam"``: the exact ``nbest`` highest-scoring position sequences (deterministic).

Both are drawn at the TARGET length (the CIF alphas rescaled to the reference length, as in CE
training), so the decoder sees the same acoustic embeddings as in the CE loss, and no glancing
sampler is used (MWER trains the inference-time path). Errors are token edit distances
(:func:`audiokit.asr.ctc_model.token_edit_distance`) after dropping blank/``<s>``/``</s>``.
"""

from __future__ import annotations

import torch

from audiokit.asr.ctc_model import token_edit_distance
from audiokit.train.interface import IGNORE_ID, Batch


def mwer_loss(
    nbest_logprobs: torch.Tensor, nbest_errors: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Expected relative error over N-best lists, averaged over utterances.

    ``nbest_logprobs (B, K)`` sequence log-probs (differentiable), ``nbest_errors (B, K)`` error
    counts, ``mask (B, K)`` bool, True on real hypotheses. Utterances with fewer than two real
    hypotheses contribute zero. Returns a scalar.
    """
    if not bool(mask.any()):
        return nbest_logprobs.sum() * 0.0
    logits = nbest_logprobs.float().masked_fill(~mask, float("-inf"))
    has_any = mask.any(dim=1, keepdim=True)
    post = torch.softmax(torch.where(has_any, logits, torch.zeros_like(logits)), dim=1)
    post = post * mask
    errors = nbest_errors.to(post.dtype) * mask
    mean = errors.sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp_min(1)
    return (post * (errors - mean)).sum(1).mean()


def negative_samples(
    logprobs: torch.Tensor, nbest: int, mask_prob: float = 0.5, generator=None
) -> torch.Tensor:
    """``(B, K, N)`` token ids: row 0 the greedy path, rows 1.. with each position's top-1
    masked (probability ``mask_prob``) in favour of its second-best token."""
    top2 = logprobs.topk(min(2, logprobs.shape[-1]), dim=-1).indices  # (B, N, 2)
    b, n, _ = top2.shape
    flip = torch.rand(b, nbest, n, generator=generator, device=logprobs.device) < mask_prob
    flip[:, 0] = False
    second = top2[..., -1][:, None].expand(b, nbest, n)
    return torch.where(flip, second, top2[..., 0][:, None].expand(b, nbest, n))


def position_nbest(logprobs: torch.Tensor, lengths: torch.Tensor, nbest: int) -> torch.Tensor:
    """``(B, K, N)``: the exact ``K`` best position sequences (scores sum over ``lengths``).

    Padding positions hold the position's argmax; rows that cannot be filled (fewer than ``K``
    sequences exist) repeat row 0 and are removed as duplicates by the caller.
    """
    b, n, v = logprobs.shape
    k = min(nbest, v)
    score = torch.full((b, nbest), float("-inf"), device=logprobs.device)
    score[:, 0] = 0.0
    tokens = torch.zeros(b, nbest, n, dtype=torch.long, device=logprobs.device)
    for i in range(n):  # positions only; vectorised over batch x list x candidates
        lp, tok = logprobs[:, i].detach().float().topk(k, dim=-1)  # (B, k)
        real = (i < lengths)[:, None]
        lp = torch.where(
            real, lp, torch.where(torch.arange(k, device=lp.device) == 0, 0.0, float("-inf"))
        )
        cand = (score[..., None] + lp[:, None, :]).flatten(1)  # (B, K*k)
        best, flat = cand.topk(nbest, dim=1)
        src, pick = flat // k, flat % k
        tokens = tokens.gather(1, src[..., None].expand(b, nbest, n)).clone()
        tokens[:, :, i] = tok.gather(1, pick)
        score = best
    return torch.where(score[..., None] > float("-inf"), tokens, tokens[:, :1])


def nbest_mwer(
    logprobs: torch.Tensor,
    lengths: torch.Tensor,
    refs: list[list[int]],
    nbest: int = 4,
    method: str = "negative",
    drop_ids: tuple[int, ...] = (0, 1, 2),
    generator=None,
) -> dict[str, torch.Tensor]:
    """MWER over an N-best list drawn from ``logprobs (B, N, V)`` (positions ``< lengths (B,)``).

    ``refs``: reference ids per utterance (without specials). Returns ``mwer`` (differentiable),
    ``expected_errors`` (mean over utterances of ``sum_k P^_k W_k``, detached) and
    ``oracle_errors`` (mean of the list's minimum), for logging.
    """
    if method == "negative":
        hyps = negative_samples(logprobs.detach(), nbest, generator=generator)
    elif method == "beam":
        hyps = position_nbest(logprobs, lengths, nbest)
    else:
        raise ValueError(f"unknown MWER N-best method {method!r}; use negative or beam")
    b, k, n = hyps.shape
    valid = torch.arange(n, device=hyps.device)[None, :] < lengths[:, None]  # (B, N)
    seq_lp = logprobs[:, None].expand(b, k, n, -1).gather(3, hyps[..., None]).squeeze(-1)
    seq_lp = (seq_lp * valid[:, None]).sum(-1)  # (B, K)
    same = ((hyps[:, :, None] == hyps[:, None, :]) | ~valid[:, None, None]).all(-1)  # (B, K, K)
    earlier = torch.ones(k, k, dtype=torch.bool, device=hyps.device).tril(-1)
    mask = ~(same & earlier).any(-1)  # first occurrence of each distinct sequence
    drop = torch.tensor(drop_ids, device=hyps.device)
    keep = valid[:, None] & ~torch.isin(hyps, drop)
    flat_hyps = [
        [t for t, m in zip(row, mrow, strict=True) if m]
        for rows, mrows in zip(hyps.tolist(), keep.tolist(), strict=True)
        for row, mrow in zip(rows, mrows, strict=True)
    ]
    flat_refs = [r for r in refs for _ in range(k)]
    errors = token_edit_distance(flat_hyps, flat_refs).view(b, k).to(logprobs.device)
    loss = mwer_loss(seq_lp, errors, mask)
    with torch.no_grad():
        post = torch.softmax(seq_lp.float().masked_fill(~mask, float("-inf")), dim=1)
        expected = (post * errors).sum(1).mean()
        oracle = errors.float().masked_fill(~mask, float("inf")).amin(1).mean()
    return {"mwer": loss, "expected_errors": expected, "oracle_errors": oracle}


def paraformer_mwer_losses(
    model,
    batch: Batch,
    nbest: int = 4,
    mwer_weight: float = 1.0,
    method: str = "negative",
    generator=None,
) -> dict[str, torch.Tensor]:
    """The MWER fine-tuning stage's losses for an :class:`audiokit.asr.paraformer.Paraformer`.

    One encoder pass and one decoder pass at the target length (no glancing sampler):
    ``loss = [ctc_weight x CTC + (1 - ctc_weight)] x CE + predictor_weight x MAE
    + mwer_weight x MWER``, the CE/MAE/CTC terms exactly as in ``training_losses``.
    Returns ``loss`` and detached ``att``, ``pre``, ``mwer``, ``expected_errors``,
    ``oracle_errors`` (and ``ctc``).
    """
    from audiokit.asr.paraformer import label_smoothing_loss

    enc, enc_lengths = model.encode(batch.feats, batch.feat_lengths)
    ys, ys_lengths = model._targets(batch)
    cif = model.predict(enc, enc_lengths, ys_lengths)
    logits = model.decoder_logits(enc, enc_lengths, cif.acoustic_embeds, ys_lengths)
    att = label_smoothing_loss(logits, ys, model.lsm_weight, model.length_normalized_loss)
    diff = (ys_lengths.to(cif.token_num.dtype) - cif.token_num).abs().sum()
    norm = ys_lengths.sum().clamp_min(1) if model.length_normalized_loss else len(ys_lengths)
    pre = diff / norm
    refs = [
        [t for t in row[:n] if t != IGNORE_ID]
        for row, n in zip(batch.targets.tolist(), batch.target_lengths.tolist(), strict=True)
    ]
    drop = (model.blank_id, model.sos_id, model.eos_id)
    stats = nbest_mwer(
        torch.log_softmax(logits.float(), -1), ys_lengths, refs, nbest, method, drop, generator
    )
    out = {"att": att.detach(), "pre": pre.detach()}
    if model.ctc is not None:
        ctc = model._ctc_loss(enc, enc_lengths, batch)
        base = model.ctc_weight * ctc + (1 - model.ctc_weight) * att
        out["ctc"] = ctc.detach()
    else:
        base = att
    out["loss"] = base + model.predictor_weight * pre + mwer_weight * stats["mwer"]
    out.update({k: v.detach() for k, v in stats.items()})
    return out
