"""OWSM-CTC ``nolang_prob``: training replaces the language prefix by <nolang>, eval never does."""

from __future__ import annotations

import pytest
import torch

from audiokit.train.interface import Batch
from tests.test_owsm_ctc_model import tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch() -> Batch:
    feats, lengths = torch.randn(4, 40, 20), torch.tensor([40, 36, 40, 33])
    targets = torch.tensor([[4, 6, 10, 11], [5, 6, 12, -1], [4, 6, 13, 14], [5, 6, 15, -1]])
    prefix = torch.tensor([[4, 6], [5, 6], [4, 6], [5, 6]])
    return Batch(
        feats,
        lengths,
        targets,
        torch.tensor([4, 3, 4, 3]),
        ["a", "b", "c", "d"],
        {"prefix": prefix},
    )


@pytest.mark.parametrize(
    ("prob", "train", "expect_lang"),
    [(1.0, True, [3, 3, 3, 3]), (1.0, False, [4, 5, 4, 5]), (0.0, True, [4, 5, 4, 5])],
)
def test_nolang_prob_replaces_only_in_training(prob, train, expect_lang):
    model = tiny(nolang_prob=prob).train(train)
    seen = []
    encode = model.encode

    def spy(feats, lengths, prefix, *args, **kwargs):
        seen.append(prefix.clone())
        return encode(feats, lengths, prefix, *args, **kwargs)

    model.encode = spy
    batch = _batch()
    loss = model.training_losses(batch)["loss"]
    assert torch.isfinite(loss)
    assert seen[0][:, 0].tolist() == expect_lang and seen[0][:, 1].tolist() == [6] * 4
    assert batch.extra["prefix"][:, 0].tolist() == [4, 5, 4, 5]  # the batch itself is untouched
    assert "nolang_prob" in model.config
