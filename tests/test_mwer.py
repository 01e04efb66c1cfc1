"""MWER loss, N-best lists for a NAR decoder, and MWER fine-tuning of a tiny Paraformer."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from audiokit.asr.mwer import (
    mwer_loss,
    nbest_mwer,
    negative_samples,
    paraformer_mwer_losses,
    position_nbest,
)
from audiokit.asr.paraformer import Paraformer
from audiokit.train.interface import Batch


def test_mwer_loss_value_mask_and_gradient() -> None:
    lp = torch.tensor([[-1.0, -2.0, -3.0, 0.0], [-0.5, -9.0, 0.0, 0.0]], requires_grad=True)
    err = torch.tensor([[0.0, 2.0, 4.0, 100.0], [3.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    loss = mwer_loss(lp, err, mask)
    p = torch.softmax(torch.tensor([-1.0, -2.0, -3.0]), 0)
    expected = float((p * (torch.tensor([0.0, 2.0, 4.0]) - 2.0)).sum()) / 2  # 2nd row: 0
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    g = lp.grad
    assert g[0, 0] < 0 < g[0, 2]  # raise the error-free hypothesis, lower the worst
    assert g[0, 3] == 0 and torch.all(g[1] == 0)  # masked / single-hypothesis rows


def test_negative_samples_flip_top1_to_second_best() -> None:
    lp = F.log_softmax(torch.randn(2, 6, 9, generator=torch.Generator().manual_seed(0)), -1)
    hyps = negative_samples(lp, 5, generator=torch.Generator().manual_seed(1))
    top2 = lp.topk(2, -1).indices
    assert torch.equal(hyps[:, 0], top2[..., 0])
    is_top1 = hyps == top2[:, None, :, 0]
    assert torch.all(is_top1 | (hyps == top2[:, None, :, 1]))
    assert 0 < int((~is_top1).sum()) < hyps[:, 1:].numel()


def test_position_nbest_is_exact() -> None:
    lp = F.log_softmax(torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(2)), -1)
    got = position_nbest(lp, torch.tensor([3]), 5)[0].tolist()
    ranked = sorted(
        itertools.product(range(4), repeat=3),
        key=lambda s: -float(sum(lp[0, i, t] for i, t in enumerate(s))),
    )
    assert [tuple(r) for r in got] == ranked[:5]
    short = position_nbest(lp, torch.tensor([1]), 5)[0]  # only 4 sequences of length 1
    assert sorted(set(short[:, 0].tolist())) == [0, 1, 2, 3]


def _model(ctc_weight: float = 0.0) -> Paraformer:
    torch.manual_seed(0)
    return Paraformer(
        input_dim=8, vocab_size=10, lfr_m=3, lfr_n=2, d_model=16, num_heads=2, ff_dim=32,
        num_layers=2, decoder_layers=1, decoder_heads=2, decoder_ff_dim=32, dropout=0.0,
        attn_dropout=0.0, predictor_dropout=0.0, decoder_dropout=0.0,
        decoder_self_attn_dropout=0.0, decoder_src_attn_dropout=0.0, ctc_weight=ctc_weight,
        lsm_weight=0.1, sampling_ratio=0.5,
    )  # fmt: skip


def _batch() -> Batch:
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 40, 8, generator=g)
    targets = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 3, -1, -1]])
    return Batch(feats, torch.tensor([40, 32]), targets, torch.tensor([5, 3]), ["a", "b"])


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3])
def test_mwer_losses_extend_the_ce_objective(ctc_weight: float) -> None:
    model, batch = _model(ctc_weight), _batch()
    out = paraformer_mwer_losses(model, batch, nbest=4, mwer_weight=0.0, method="beam")
    ref = model._losses(batch, glance=False)
    torch.testing.assert_close(out["loss"], ref["loss"])
    assert set(out) >= {"loss", "att", "pre", "mwer", "expected_errors", "oracle_errors"}
    assert ("ctc" in out) == (ctc_weight > 0)
    out = paraformer_mwer_losses(model, batch, nbest=4, mwer_weight=2.0)
    torch.testing.assert_close(out["loss"].detach(), ref["loss"] + 2.0 * out["mwer"])
    out["loss"].backward()
    grads = [p.grad for p in model.decoder.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_mwer_steps_lower_expected_nbest_errors(one_torch_thread) -> None:
    model, batch = _model(), _batch()
    refs = [[3, 4, 5, 6, 7], [8, 9, 3]]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def stats() -> dict[str, torch.Tensor]:
        enc, enc_lengths = model.encode(batch.feats, batch.feat_lengths)
        ys, ys_lengths = model._targets(batch)
        cif = model.predict(enc, enc_lengths, ys_lengths)
        logits = model.decoder_logits(enc, enc_lengths, cif.acoustic_embeds, ys_lengths)
        return nbest_mwer(F.log_softmax(logits, -1), ys_lengths, refs, nbest=4, method="beam")

    before = float(stats()["expected_errors"])
    for _ in range(12):
        loss = stats()["mwer"]  # MWER alone: nothing else pulls towards the reference
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = float(stats()["expected_errors"])
    assert after < before - 0.5, (before, after)
