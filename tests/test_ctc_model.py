"""ConformerCTC: registry, shapes, CMVN, length checks, losses/metrics and a tiny overfit run."""

from __future__ import annotations

import json

import pytest
import torch

from audiokit.asr.ctc_model import ConformerCTC, token_edit_distance
from audiokit.errors import ConfigError, FeatureError
from audiokit.registry import build_model
from audiokit.train.interface import IGNORE_ID, Batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = dict(
    input_dim=20, vocab_size=8, d_model=32, num_heads=4, ff_dim=64, num_layers=2, conv_kernel=5
)


def _python_edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _batch(feats, feat_lengths, targets: list[list[int]]) -> Batch:
    u = max(len(t) for t in targets)
    padded = torch.full((len(targets), u), IGNORE_ID, dtype=torch.long)
    for i, t in enumerate(targets):
        padded[i, : len(t)] = torch.tensor(t)
    lengths = torch.tensor([len(t) for t in targets])
    return Batch(feats, feat_lengths, padded, lengths, [f"utt{i}" for i in range(len(targets))])


def test_registry_build_and_config_roundtrip() -> None:
    model = build_model("conformer_ctc", **TINY)
    assert isinstance(model, ConformerCTC)
    config = json.loads(json.dumps(model.config))  # plain, serialisable values
    again = build_model("conformer_ctc", **config)
    assert again.config == model.config
    assert model.subsampling_factor == 4 and model.min_input_frames == 7
    with pytest.raises(ConfigError, match="conformer_ctc"):
        build_model("conformer_ctc", **TINY, bogus=1)
    with pytest.raises(ConfigError, match="conv2d4"):
        build_model("conformer_ctc", **{**TINY, "subsampling": "conv2d5"})


@pytest.mark.parametrize(("subsampling", "low"), [("conv2d4", 7), ("conv2d6", 11), ("conv2d8", 15)])
def test_forward_shapes_and_min_frames(subsampling: str, low: int) -> None:
    torch.manual_seed(0)
    model = ConformerCTC(**{**TINY, "subsampling": subsampling}).eval()
    assert model.min_input_frames == low
    lengths = torch.tensor([50, low])
    log_probs, out_lengths = model(torch.randn(2, 50, 20), lengths)
    assert log_probs.shape == (2, int(out_lengths.max()), 8)
    assert out_lengths[1] == 1
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, log_probs.shape[1]), atol=1e-5)
    batch = _batch(torch.randn(2, 50, 20), torch.tensor([50, low - 1]), [[1, 2], [3]])
    with pytest.raises(FeatureError, match=rf"utt1.*{low - 1} feature frames.*at least {low}"):
        model.training_losses(batch)


def test_cmvn_buffers_and_set_cmvn() -> None:
    torch.manual_seed(0)
    mean, istd = torch.randn(20), torch.rand(20) + 0.5
    model = ConformerCTC(**TINY, cmvn_mean=mean.tolist(), cmvn_istd=istd.tolist()).eval()
    plain = ConformerCTC(**TINY).eval()
    plain.load_state_dict(model.state_dict())  # stats travel in the state dict
    assert torch.allclose(plain.cmvn.mean, mean)
    plain.set_cmvn([0.0] * 20, [1.0] * 20)
    feats, lengths = torch.randn(2, 30, 20), torch.tensor([30, 21])
    normed = (feats - mean) * istd
    normed[1, 21:] = 0.0
    with torch.no_grad():
        assert torch.allclose(model(feats, lengths)[0], plain(normed, lengths)[0], atol=1e-5)
    with pytest.raises(FeatureError, match=r"shape \(19,\) but the model takes 20"):
        model.set_cmvn([0.0] * 19, [1.0] * 19)


def test_token_edit_distance_matches_python() -> None:
    g = torch.Generator().manual_seed(0)
    hyps, refs = [], []
    for _ in range(40):
        hyps.append(
            torch.randint(
                0, 4, (int(torch.randint(0, 9, (1,), generator=g)),), generator=g
            ).tolist()
        )
        refs.append(
            torch.randint(
                0, 4, (int(torch.randint(0, 9, (1,), generator=g)),), generator=g
            ).tolist()
        )
    got = token_edit_distance(hyps, refs).tolist()
    assert got == [_python_edit_distance(h, r) for h, r in zip(hyps, refs, strict=True)]


def test_ctc_loss_sum_over_batch_and_zero_infinity() -> None:
    torch.manual_seed(0)
    model = ConformerCTC(**TINY).eval()
    feats = torch.randn(2, 40, 20)
    lengths = torch.tensor([40, 15])  # 9 and 3 output frames
    batch = _batch(feats, lengths, [[1, 2, 3], [4, 4, 5, 6]])  # 2nd: cannot fit in 3 frames
    losses = model.training_losses(batch)
    log_probs, out_lengths = model(feats, lengths)
    first = torch.nn.functional.ctc_loss(
        log_probs[:1].transpose(0, 1), torch.tensor([[1, 2, 3]]), out_lengths[:1], torch.tensor([3]),
        reduction="sum",
    )  # fmt: skip
    assert torch.isfinite(losses["loss"])
    assert losses["loss"].item() == pytest.approx(first.item() / 2, rel=1e-5)
    metrics = model.validation_metrics(batch)
    assert set(metrics) == {"loss", "ter"} and 0.0 <= metrics["ter"].item()


def test_overfits_tiny_batch_and_greedy_decodes_targets() -> None:
    torch.manual_seed(0)
    model = ConformerCTC(**{**TINY, "dropout": 0.0})
    targets = [[1, 2, 3, 4], [5, 6, 5, 7, 1], [3, 3, 2]]
    lengths = torch.tensor([64, 72, 48])
    feats = torch.randn(3, 72, 20)
    for i, n in enumerate(lengths.tolist()):
        feats[i, n:] = 0.0
    batch = _batch(feats, lengths, targets)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    first = model.training_losses(batch)["loss"].item()
    for _ in range(100):
        loss = model.training_losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        metrics = model.validation_metrics(batch)
        assert model.decode(feats, lengths) == targets
        nbest = model.decode(feats, lengths, method="prefix_beam", beam_size=4)
    assert metrics["loss"].item() < 0.1 * first
    assert metrics["ter"].item() == 0.0
    assert [n[0][0] for n in nbest] == targets
