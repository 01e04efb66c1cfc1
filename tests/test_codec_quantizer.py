"""FactorizedResidualVQ (DAC's quantiser): lookup, straight-through, losses, dropout, API."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from audiokit.codec.quantizer import FactorizedResidualVQ

B, D, T, K, N, d = 4, 12, 7, 3, 16, 4


@pytest.fixture
def rvq(one_torch_thread):
    torch.manual_seed(0)
    return FactorizedResidualVQ(D, K, N, d).eval()


def test_shapes_and_state_dict_names(rvq):
    z = torch.randn(B, D, T)
    z_q, codes, losses = rvq(z)
    assert z_q.shape == (B, D, T) and codes.shape == (B, K, T) and codes.dtype == torch.int64
    assert set(losses) == {"commitment", "codebook"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    assert int(codes.min()) >= 0 and int(codes.max()) < N
    names = set(rvq.state_dict())
    for i in range(K):
        for proj in ("in_proj", "out_proj"):
            assert {f"quantizers.{i}.{proj}.{p}" for p in ("weight_g", "weight_v", "bias")} <= names
        assert f"quantizers.{i}.codebook.weight" in names
    assert len(names) == K * 7
    assert rvq.n_codebooks == K and rvq.codebook_size == N


def test_lookup_is_cosine_nearest_neighbour(rvq):
    z = torch.randn(B, D, T)
    vq = rvq.quantizers[0]
    e = vq.in_proj(z)
    sims = torch.einsum(
        "bdt,nd->btn", F.normalize(e, dim=1), F.normalize(vq.codebook.weight, dim=1)
    )
    assert torch.equal(vq.nearest(e), sims.argmax(-1))


def test_residual_structure_and_decode_of_encode(rvq):
    z = torch.randn(B, D, T)
    for k in (1, 2, K):
        z_q, codes, latents, _ = rvq.quantize(z, k)
        assert codes.shape == (B, k, T) and latents.shape == (B, k * d, T)
        assert torch.equal(rvq.encode(z, k), codes)
        torch.testing.assert_close(rvq.decode(codes), z_q, atol=1e-5, rtol=0)
    # more codebooks -> the first codes do not change (residual coding)
    assert torch.equal(rvq.encode(z, 1), rvq.encode(z, K)[:, :1])
    # the second codebook quantises what the first left over
    c = rvq.encode(z, 2)
    first = rvq.decode(c[:, :1])
    assert torch.equal(rvq.quantizers[1].nearest(rvq.quantizers[1].in_proj(z - first)), c[:, 1])


def test_losses_are_dacs(rvq):
    z = torch.randn(B, D, T)
    _, codes, latents, losses = rvq.quantize(z, 2)
    want = 0.0
    for i in range(2):
        e = latents[:, i * d : (i + 1) * d]
        row = rvq.quantizers[i].codebook.weight[codes[:, i]].transpose(1, 2)
        want = want + F.mse_loss(e, row)
    torch.testing.assert_close(losses["commitment"], want)
    torch.testing.assert_close(losses["codebook"], want)


def test_straight_through_gradients(rvq):
    rvq.train()
    z = torch.randn(B, D, T, requires_grad=True)
    z_q, _, losses = rvq(z)
    z_q.square().sum().backward(retain_graph=True)
    assert z.grad is not None and z.grad.abs().sum() > 0  # passes the non-differentiable lookup
    assert rvq.quantizers[0].in_proj.weight_v.grad.abs().sum() > 0
    assert rvq.quantizers[0].codebook.weight.grad is None  # rows are detached in the ST path
    rvq.zero_grad()
    losses["codebook"].backward(retain_graph=True)  # moves the codebook only
    assert rvq.quantizers[0].codebook.weight.grad.abs().sum() > 0
    assert rvq.quantizers[0].in_proj.weight_v.grad is None
    rvq.zero_grad()
    losses["commitment"].backward()  # moves the encoder side only
    assert rvq.quantizers[0].codebook.weight.grad is None
    assert rvq.quantizers[0].in_proj.weight_v.grad.abs().sum() > 0


def _codebooks_used(rvq, z, z_q):
    """Per item, the k whose eval-mode reconstruction equals z_q."""
    codes = rvq.encode(z, K)
    used = []
    for b in range(z.shape[0]):
        match = [
            k for k in range(1, K + 1)
            if torch.allclose(rvq.decode(codes[b : b + 1, :k]), z_q[b : b + 1], atol=1e-5)
        ]  # fmt: skip
        assert len(match) == 1
        used.append(match[0])
    return used


def test_quantizer_dropout(one_torch_thread):
    torch.manual_seed(1)
    rvq = FactorizedResidualVQ(D, K, N, d, quantizer_dropout=0.5).train()
    z = torch.randn(16, D, T)
    z_q, codes, losses = rvq(z)
    assert codes.shape == (16, K, T)  # training runs every codebook
    used = _codebooks_used(rvq, z, z_q)
    assert used[8:] == [K] * 8  # the second half of the batch keeps all codebooks
    assert min(used[:8]) < K  # the first half draws a random number (1..K)
    assert all(torch.isfinite(v) for v in losses.values())
    rvq.eval()
    assert _codebooks_used(rvq, z, rvq(z)[0]) == [K] * 16  # no dropout at inference
    rvq.quantizer_dropout = 0.0
    rvq.train()
    assert _codebooks_used(rvq, z, rvq(z)[0]) == [K] * 16


def test_bad_n_codebooks(rvq):
    with pytest.raises(ValueError):
        rvq.encode(torch.randn(1, D, T), K + 1)
    with pytest.raises(ValueError):
        rvq.decode(torch.zeros(1, K + 1, T, dtype=torch.long))
