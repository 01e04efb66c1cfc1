"""EMA residual VQ (EnCodec/audiocraft): lookup, k-means init, EMA, dead codes, losses, dropout."""

from __future__ import annotations

import pytest
import torch

from audiokit.codec.ema_quantizer import EMAResidualVQ, kmeans

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def clustered(n_per: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """z (B=4, D=2, T=n_per) drawn round 4 well-separated centres, and the centres (4, 2)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0], [-5.0, -5.0]])
    pts = centres.repeat_interleave(n_per, 0) + 0.1 * torch.randn(4 * n_per, 2, generator=g)
    pts = pts[torch.randperm(len(pts), generator=g)]
    return pts.view(4, n_per, 2).transpose(1, 2).contiguous(), centres


def nearest_dist(points: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(N, D), (C, D) -> (N,) distance of each point to its nearest row."""
    return torch.cdist(points, rows).min(dim=1).values


def test_state_dict_names_and_eval_lookup():
    vq = EMAResidualVQ(dim=3, n_codebooks=2, codebook_size=5)
    keys = set(vq.state_dict())
    for name in ("embed", "embed_avg", "cluster_size", "inited"):
        assert f"vq.layers.1._codebook.{name}" in keys
    g = torch.Generator().manual_seed(1)
    for k in range(2):
        vq.codebook(k).embed.copy_(torch.randn(5, 3, generator=g))
    vq.eval()
    z = torch.randn(2, 3, 7, generator=g)
    z_q, codes, losses = vq(z)
    assert codes.shape == (2, 2, 7) and codes.dtype == torch.int64
    # brute force: layer 0 nearest to z, layer 1 nearest to the residual
    flat = z.transpose(1, 2).reshape(-1, 3)
    c0 = torch.cdist(flat, vq.codebook(0).embed).argmin(1)
    r = flat - vq.codebook(0).embed[c0]
    c1 = torch.cdist(r, vq.codebook(1).embed).argmin(1)
    assert torch.equal(codes[:, 0].reshape(-1), c0) and torch.equal(codes[:, 1].reshape(-1), c1)
    assert torch.equal(vq.encode(z), codes)
    torch.testing.assert_close(vq.decode(codes), z_q)
    assert torch.equal(vq.encode(z, 1), codes[:, :1])
    assert torch.isfinite(losses["commitment"])


def test_kmeans_finds_separated_clusters():
    z, centres = clustered()
    points = z.transpose(1, 2).reshape(-1, 2)
    torch.manual_seed(0)
    # more codes than clusters (as in a real codebook), so no cluster lacks a starting sample
    means, sizes = kmeans(points, 16, 20)
    assert nearest_dist(centres, means).max() < 0.1
    assert sizes.sum().item() == len(points)
    # Lloyd's fixed point: every non-empty cluster's mean is the mean of its points
    assign = torch.cdist(points, means).argmin(1)
    for c in torch.nonzero(sizes).flatten().tolist():
        torch.testing.assert_close(means[c], points[assign == c].mean(0))


def test_kmeans_init_sets_inited_and_codebook():
    z, centres = clustered()
    torch.manual_seed(0)
    vq = EMAResidualVQ(dim=2, n_codebooks=1, codebook_size=16, kmeans_iters=20)
    cb = vq.codebook(0)
    assert cb.inited.item() == 0 and torch.count_nonzero(cb.embed) == 0
    vq.eval()
    vq(z)
    assert cb.inited.item() == 0  # eval mode never initialises
    vq.train()
    vq(z)
    assert cb.inited.item() == 1
    assert nearest_dist(centres, cb.embed).max() < 0.1
    assert cb.cluster_size.sum().item() == pytest.approx(256, rel=0.01)
    embed, live = cb.embed.clone(), cb.cluster_size >= 2
    vq(z)  # a second batch does not re-run k-means; the EMA keeps the live codes put
    assert live.sum() >= 4
    assert torch.allclose(cb.embed[live], embed[live], atol=0.05)


def test_ema_moves_codebook_towards_data():
    z, centres = clustered()
    torch.manual_seed(0)
    vq = EMAResidualVQ(
        dim=2, n_codebooks=1, codebook_size=4, kmeans_init=False, decay=0.8, dead_code_threshold=0
    )
    cb = vq.codebook(0)
    cb.embed.copy_(centres * 0.5)  # every code starts halfway to its cluster
    cb.embed_avg.copy_(cb.embed * 64)
    cb.cluster_size.fill_(64)
    vq.train()
    before = nearest_dist(centres, cb.embed).max().item()
    for _ in range(10):
        vq(z)
    after = nearest_dist(centres, cb.embed).max().item()
    assert before > 3.0 and after < 0.5


def test_dead_code_is_replaced_from_batch():
    z, centres = clustered()
    torch.manual_seed(0)
    vq = EMAResidualVQ(dim=2, n_codebooks=1, codebook_size=5, kmeans_init=False, decay=0.99)
    cb = vq.codebook(0)
    cb.embed.copy_(torch.cat([centres, torch.tensor([[1000.0, 1000.0]])]))
    cb.embed_avg.copy_(cb.embed * 50)
    cb.cluster_size.copy_(torch.tensor([50.0, 50.0, 50.0, 50.0, 0.0]))  # code 4 is dead
    vq.train()
    vq(z)
    points = z.transpose(1, 2).reshape(-1, 2)
    assert nearest_dist(cb.embed[4:], points).item() < 0.5  # now near a real batch vector
    assert cb.cluster_size[4].item() >= 1.0  # and not immediately dead again
    assert nearest_dist(centres, cb.embed[:4]).max() < 0.1  # live codes untouched


def test_commitment_and_straight_through_gradient():
    z, _ = clustered()
    z = z.clone().requires_grad_(True)
    torch.manual_seed(0)
    vq = EMAResidualVQ(dim=2, n_codebooks=3, codebook_size=4, kmeans_iters=10)
    vq.train()
    z_q, codes, losses = vq(z)
    assert set(losses) == {"commitment"}
    commit = losses["commitment"]
    assert torch.isfinite(commit) and commit.item() >= 0
    (z_q.sum() + commit).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    # d(sum z_q)/dz is exactly 1 (straight-through on the total); the commitment adds more
    z.grad = None
    z_q2, _, _ = vq(z)
    z_q2.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    assert all(vq.codebook(k).inited.item() == 1 for k in range(3))


def test_quantizer_dropout_uses_fewer_codebooks():
    torch.manual_seed(0)
    z = torch.randn(32, 4, 6)
    vq = EMAResidualVQ(dim=4, n_codebooks=4, codebook_size=8, kmeans_iters=5, quantizer_dropout=1.0)
    vq.train()
    vq(z)  # k-means init of every layer
    embeds = [vq.codebook(k).embed.clone() for k in range(4)]  # rows used by the next call
    z_q, codes, _ = vq(z)
    used = []
    for b in range(32):
        best = None
        for m in range(1, 5):
            s = sum(embeds[k][codes[b, k]] for k in range(m))  # (T, D)
            if torch.allclose(z_q[b].T, s, atol=1e-5):
                best = m
        assert best is not None, f"item {b} is not a prefix sum of its codes"
        used.append(best)
    assert min(used) < 4 and max(used) >= 2
    vq.eval()
    z_q, codes, _ = vq(z)  # no dropout in eval
    torch.testing.assert_close(z_q, vq.decode(codes))
