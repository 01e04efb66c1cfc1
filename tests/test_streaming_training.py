"""Streaming Conformer in TRAINING: padded batches, masks and gradients (issue 5).

The inference path is checked against NeMo elsewhere (tests/test_streaming_conformer.py,
tests/test_nemo_import.py); these checks cover what only matters with gradients:

- a padded batch gives each utterance the output it gets alone (eval mode), and in train mode
  (dropout 0) the batch gradient equals the sum of the per-utterance gradients, so padding
  never leaks into the loss or the update;
- the analytic gradient equals a finite difference (float64), for full and chunked context;
- the ``chunked_limited`` training mask is causal at chunk granularity: changing input after
  a chunk's receptive field does not move that chunk's training-mode output.
"""

from __future__ import annotations

import pytest
import torch

from audiokit.asr.streaming import StreamingConformer


def tiny(ctx: list[list[int]], d: int = 16, channels: int = 4) -> StreamingConformer:
    torch.manual_seed(0)
    return StreamingConformer(
        12,
        10,
        heads="ctc",
        d_model=d,
        num_heads=2,
        ff_dim=2 * d,
        num_layers=2,
        conv_kernel=3,
        subsampling_factor=4,
        subsampling_channels=channels,
        att_context_size=ctx,
        dropout=0.0,
        dropout_pre_encoder=0.0,
        dropout_att=0.0,
    ).double()


def padded(lengths: list[int], dim: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    lens = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), dim, generator=gen, dtype=torch.float64)
    x = x * (torch.arange(x.shape[1])[None, :, None] < lens[:, None, None])
    return x, lens


CTXS = [[[-1, -1]], [[4, 1]], [[3, 0]]]


@pytest.mark.parametrize("ctx", CTXS)
def test_padded_batch_equals_single_outputs_and_gradients(ctx, one_torch_thread):
    m = tiny(ctx)
    x, lens = padded([41, 26, 13])
    weight = torch.randn(20, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def grads(xx: torch.Tensor, ll: torch.Tensor) -> dict[str, torch.Tensor]:
        m.zero_grad()
        enc, _ = m(xx, ll)
        (enc * weight[: enc.shape[1]]).sum().backward()
        return {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}

    m.eval()
    with torch.no_grad():
        enc, out_len = m(x, lens)
        for i, n in enumerate(lens.tolist()):
            alone, alone_len = m(x[i : i + 1, :n], lens[i : i + 1])
            assert int(alone_len[0]) == int(out_len[i])
            torch.testing.assert_close(enc[i, : out_len[i]], alone[0], rtol=0, atol=1e-10)
            assert not enc[i, out_len[i] :].any()
    m.train()  # dropout 0: train mode must give the same gradients
    batch = grads(x, lens)
    singles = [grads(x[i : i + 1, :n], lens[i : i + 1]) for i, n in enumerate(lens.tolist())]
    for name, g in batch.items():
        torch.testing.assert_close(g, sum(s[name] for s in singles), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("ctx", [[[-1, -1]], [[4, 1]]])
def test_gradient_matches_finite_difference(ctx, one_torch_thread):
    m = tiny(ctx, d=8, channels=4)
    m.train()
    x, lens = padded([30, 21])
    weight = torch.randn(20, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    names = [n for n, _ in m.named_parameters()]
    params = {n: p.detach().clone() for n, p in m.named_parameters()}

    def loss(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        enc, _ = torch.func.functional_call(m, ps, (x, lens))
        return (enc * weight[: enc.shape[1]]).sum()

    ana = torch.func.grad(loss)(params)
    gen = torch.Generator().manual_seed(4)
    eps = 1e-6
    for name in names:
        flat = params[name].flatten()
        for j in torch.randint(flat.numel(), (2,), generator=gen).tolist():
            plus, minus = flat.clone(), flat.clone()
            plus[j] += eps
            minus[j] -= eps
            num = (
                loss({**params, name: plus.view_as(params[name])})
                - loss({**params, name: minus.view_as(params[name])})
            ) / (2 * eps)
            assert abs(float(ana[name].flatten()[j]) - float(num)) < 1e-6 + 1e-5 * abs(float(num))


def test_chunked_training_mask_hides_the_future(one_torch_thread):
    m = tiny([[4, 1]])
    m.train()
    x, lens = padded([48])
    enc, _ = m(x, lens)
    # Output frame t (factor 4) sees input frames up to 4t; chunk 0 = frames 0, 1 needs <= 4.
    y = x.clone()
    y[:, 8:] = torch.randn_like(y[:, 8:])
    enc2, _ = m(y, lens)
    torch.testing.assert_close(enc2[:, :2], enc[:, :2], rtol=0, atol=1e-12)
    assert (enc2[:, 2:] - enc[:, 2:]).abs().max() > 1e-3
