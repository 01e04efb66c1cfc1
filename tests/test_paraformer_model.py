"""Paraformer model pieces with tiny shapes: CIF, predictors, decoders, losses, training, decoding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import audiokit.asr.paraformer  # noqa: F401  (registers "paraformer")
from audiokit.asr.cif import CifPredictorV1, CifPredictorV2, cif_integrate
from audiokit.asr.label_smoothing import label_smoothing_loss
from audiokit.asr.paraformer import Paraformer
from audiokit.errors import ConfigError, FeatureError
from audiokit.registry import model_class
from audiokit.train.interface import IGNORE_ID, Batch


def loop_cif(hidden: torch.Tensor, alphas: torch.Tensor, threshold: float):
    """Reference integrate-and-fire, one frame at a time (alphas < threshold)."""
    embeds, peaks = [], []
    for h, a in zip(hidden, alphas, strict=True):
        acc, frame, out, row = 0.0, torch.zeros(h.shape[1], dtype=torch.float64), [], []
        for t in range(h.shape[0]):
            at = float(a[t])
            if acc + at >= threshold:
                cur = threshold - acc
                out.append(frame + cur * h[t].double())
                row.append((acc + at) / threshold)
                acc = acc + at - threshold
                frame = acc * h[t].double()
            else:
                acc += at
                row.append(acc / threshold)
                frame = frame + at * h[t].double()
        embeds.append(out)
        peaks.append(row)
    return embeds, peaks


@pytest.mark.parametrize("threshold", [1.0, 0.8])
def test_vectorised_cif_equals_loop(threshold):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 23, 5, generator=g)
    alphas = torch.rand(3, 23, generator=g) * 0.75
    alphas[1, 17:] = 0.0  # a padded utterance
    ref_embeds, ref_peaks = loop_cif(hidden, alphas, threshold)
    n = max(len(e) for e in ref_embeds)
    embeds, peaks, fires = cif_integrate(hidden, alphas, n, threshold)
    assert fires.tolist() == [len(e) for e in ref_embeds]
    for b, ref in enumerate(ref_embeds):
        assert torch.allclose(embeds[b, : len(ref)].double(), torch.stack(ref), atol=1e-5)
        assert not embeds[b, len(ref) :].any()
        assert torch.allclose(
            peaks[b].double(), torch.tensor(ref_peaks[b], dtype=torch.float64), atol=1e-5
        )


def test_training_cif_fires_every_target_token():
    """Alphas rescaled to the target length sum a hair under it in float32 for many
    utterances; ``close_at`` makes the last token fire anyway (FunASR leaves it zero)."""
    g = torch.Generator().manual_seed(0)
    alphas = torch.rand(64, 40, generator=g)
    target = torch.randint(3, 15, (64,), generator=g).float()
    alphas = alphas * (target / alphas.sum(-1))[:, None]
    hidden = torch.randn(64, 40, 3, generator=g)
    _, _, plain = cif_integrate(hidden, alphas, 15)
    assert (plain < target).any()  # the float32 near-miss this guards against
    embeds, _, fires = cif_integrate(hidden, alphas, 15, close_at=torch.full((64,), 39))
    assert torch.equal(fires, target.long())
    assert torch.allclose(embeds.sum(1), (alphas[..., None] * hidden).sum(1), atol=1e-4)


def test_cif_is_differentiable():
    hidden = torch.randn(2, 9, 4, requires_grad=True)
    logits = torch.randn(2, 9, requires_grad=True)
    embeds, _, _ = cif_integrate(hidden, torch.sigmoid(logits), 4)
    embeds.square().sum().backward()
    assert torch.isfinite(hidden.grad).all() and hidden.grad.abs().sum() > 0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("cls", [CifPredictorV1, CifPredictorV2])
def test_predictor_rescales_to_targets_and_appends_tail(cls):
    torch.manual_seed(0)
    pred = cls(8, tail_threshold=0.45).eval()
    hidden = torch.randn(2, 12, 8)
    lengths = torch.tensor([12, 7])
    target = torch.tensor([5, 3])
    out = pred(hidden, lengths, target)
    assert torch.allclose(out.alphas.sum(-1), target.float(), atol=1e-5)
    assert out.alphas[1, 7:].eq(0).all()
    assert out.acoustic_embeds.shape == (2, 5, 8) and out.lengths.tolist() == [5, 3]
    raw = pred(hidden, lengths)  # inference: tail frame at each utterance's own end
    assert raw.alphas.shape == (2, 13)
    assert raw.alphas[1, 7].item() == pytest.approx(0.45) and raw.alphas[1, 8:].eq(0).all()
    sums = raw.alphas.sum(-1)
    assert raw.token_num.tolist() == torch.floor(sums).tolist()
    assert torch.allclose(out.token_num, sums - 0.45, atol=1e-5)  # before rescaling
    # the batch gives what each utterance gives alone
    alone = pred(hidden[1:, :7], lengths[1:])
    n = int(alone.lengths[0])
    assert torch.allclose(alone.acoustic_embeds[0], raw.acoustic_embeds[1, :n], atol=1e-6)


def test_label_smoothing_matches_kl_definition():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    targets = torch.tensor([[1, 2, 3, IGNORE_ID], [4, 5, IGNORE_ID, IGNORE_ID]])
    smooth = 0.1
    true = torch.full((2, 4, 7), smooth / 6).scatter(-1, targets.clamp_min(0)[..., None], 0.9)
    kl = F.kl_div(F.log_softmax(logits, -1), true, reduction="none").sum(-1)
    kl = kl.masked_fill(targets == IGNORE_ID, 0).sum()
    assert label_smoothing_loss(logits, targets, smooth, True).item() == pytest.approx(kl / 5)
    assert label_smoothing_loss(logits, targets, smooth, False).item() == pytest.approx(kl / 2)


CONFIGS = {
    "sanm_v2_sanm": dict(encoder="sanm", predictor="v2", decoder="sanm", decoder_fsmn_layers=1),
    "conformer_v1_transformer_ctc": dict(
        encoder="conformer", predictor="v1", decoder="transformer", ctc_weight=0.3
    ),
}


def tiny(**kw) -> Paraformer:
    args = dict(
        input_dim=10, vocab_size=12, lfr_m=3, lfr_n=2, d_model=16, num_heads=2, ff_dim=32,
        num_layers=2, sanm_kernel=5, conv_kernel=5, decoder_layers=2, decoder_heads=2,
        decoder_ff_dim=32, decoder_kernel=5, dropout=0.0, attn_dropout=0.0, decoder_dropout=0.0,
        decoder_self_attn_dropout=0.0, decoder_src_attn_dropout=0.0, sampling_ratio=0.5,
    )  # fmt: skip
    args.update(kw)
    return Paraformer(**args)


def make_batch(lengths=(60, 44), targets=((3, 4, 5, 6), (7, 8, 9))) -> Batch:
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(len(lengths), max(lengths), 10, generator=g)
    for i, n in enumerate(lengths):
        feats[i, n:] = 0
    tgt = torch.full((len(targets), max(map(len, targets))), IGNORE_ID)
    for i, t in enumerate(targets):
        tgt[i, : len(t)] = torch.tensor(t)
    return Batch(
        feats,
        torch.tensor(lengths),
        tgt,
        torch.tensor([len(t) for t in targets]),
        [f"u{i}" for i in range(len(lengths))],
    )


@pytest.mark.parametrize("name", list(CONFIGS))
def test_training_reduces_loss(name, one_torch_thread):
    torch.manual_seed(0)
    model = tiny(**CONFIGS[name]).train()
    batch = make_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model.training_losses(batch)
        assert {"loss", "att", "pre", "acc"} <= set(out)
        assert ("ctc" in out) == (model.ctc is not None)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.5 * losses[0]
    metrics = model.eval().validation_metrics(batch)
    assert set(metrics) == {"loss", "ter"} and torch.isfinite(metrics["loss"])


def test_glancing_sampler_replaces_a_fraction_of_wrong_tokens():
    torch.manual_seed(0)
    model = tiny(sampling_ratio=0.5).eval()
    enc = torch.randn(2, 9, 16)
    enc_lengths = torch.tensor([9, 6])
    ys = torch.tensor([[3, 4, 5, 6, 2], [7, 8, 2, IGNORE_ID, IGNORE_ID]])
    ys_lengths = torch.tensor([5, 3])
    acoustic = torch.randn(2, 5, 16)
    queries, first = model._glance(enc, enc_lengths, ys, ys_lengths, acoustic)
    wrong = ((first.argmax(-1) != ys) & (ys != IGNORE_ID)).sum(1)
    target = model.decoder.embed(ys.clamp_min(0))
    replaced = (queries == target).all(-1) & (ys != IGNORE_ID)
    kept = (queries == acoustic).all(-1) & (ys != IGNORE_ID)
    assert replaced.sum(1).tolist() == (wrong.float() * 0.5).long().tolist()
    assert (replaced | kept)[ys != IGNORE_ID].all()
    assert queries[1, 3:].eq(0).all()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_batch_decode_equals_single(name, one_torch_thread):
    torch.manual_seed(0)
    model = tiny(**CONFIGS[name]).eval()
    with torch.no_grad():
        model.predictor.output.bias.fill_(1.0)  # make the CIF fire often
    batch = make_batch(lengths=(61, 37))
    assert model.decoders == ("greedy", "beam")
    hyps = model.recognize(batch.feats, batch.feat_lengths)
    assert sum(len(h.token_ids) for h in hyps) > 0
    for i, n in enumerate(batch.feat_lengths.tolist()):
        alone = model.recognize(batch.feats[i : i + 1, :n], batch.feat_lengths[i : i + 1])[0]
        assert alone.token_ids == hyps[i].token_ids
        assert alone.info["cif_tokens"] == hyps[i].info["cif_tokens"]
        assert alone.starts == pytest.approx(hyps[i].starts)
        assert all(0 <= s <= e <= n for s, e in zip(alone.starts, alone.ends, strict=True))
        assert set(alone.token_ids).isdisjoint({0, 1, 2})
    beam = model.recognize(batch.feats, batch.feat_lengths, method="beam", beam_size=3)
    assert len(beam) == 2 and all(set(h.token_ids).isdisjoint({0, 1, 2}) for h in beam)
    pure = model.recognize(batch.feats, batch.feat_lengths, method="beam", ctc_weight=0.0)
    assert [h.token_ids for h in pure] == [h.token_ids for h in hyps]  # top-1 = greedy


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_nothing_fires_gives_empty_hypotheses(method):
    model = tiny().eval()
    with torch.no_grad():
        model.predictor.output.bias.fill_(-30.0)
    hyps = model.recognize(torch.randn(2, 40, 10), torch.tensor([40, 30]), method=method)
    assert [(h.token_ids, h.starts, h.ends) for h in hyps] == [([], [], [])] * 2


def test_model_interface_and_errors():
    model = tiny(encoder="conformer")
    assert model_class("paraformer") is Paraformer
    rebuilt = Paraformer(**model.config)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert model.subsampling_factor == 2 * 4
    assert model.min_input_frames == (7 - 1) * 2 + 1
    with pytest.raises(FeatureError, match="at least 13"):
        model.encode(torch.zeros(1, 12, 10), torch.tensor([12]))
    with pytest.raises(FeatureError):
        model.set_cmvn([0.0] * 20, [1.0] * 20)  # needs input_dim * lfr_m = 30 (or 10)
    model.set_cmvn([0.5] * 10, [2.0] * 10)  # fbank stats are tiled lfr_m times
    assert model.cmvn.mean.shape == (30,) and model.cmvn.istd.eq(2.0).all()
    with pytest.raises(ConfigError):
        model.ctc_logprobs(torch.zeros(1, 3, 16))
    with pytest.raises(ConfigError):
        tiny(decoder="rnn")
    with pytest.raises(ConfigError):
        model.recognize(torch.zeros(1, 20, 10), torch.tensor([20]), method="prefix_beam")
