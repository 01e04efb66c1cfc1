"""Shared nn blocks: subsampling lengths, masks, relative positions, rel-pos attention, Conformer."""

from __future__ import annotations

import math

import pytest
import torch

from audiokit.errors import ConfigError, FeatureError
from audiokit.nn.attention import RelPositionMultiHeadAttention, rel_shift
from audiokit.nn.conformer import ConformerEncoder
from audiokit.nn.masks import (
    attention_allowed_mask,
    chunk_attention_mask,
    make_pad_mask,
    make_valid_mask,
)
from audiokit.nn.positional import RelPositionalEncoding, relative_sinusoids
from audiokit.nn.subsampling import (
    DEPTHWISE,
    Conv2dSubsampling,
    min_input_frames,
    subsampled_length,
    subsampling_factor,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _wenet_mask_length(n: int, name: str) -> int:
    """Output length by WeNet's mask slicing (x_mask[:, :, 2::2][:, :, 2::2] etc.)."""
    idx = list(range(n))
    slices = {"conv2d4": [(2, 2), (2, 2)], "conv2d6": [(2, 2), (4, 3)], "conv2d8": [(2, 2)] * 3}
    for start, step in slices[name]:
        idx = idx[start::step]
    return len(idx)


@pytest.mark.parametrize("name", ["conv2d4", "conv2d6", "conv2d8", "dw_conv2d4", "dw_conv2d8"])
def test_subsampling_shapes_and_lengths(name: str) -> None:
    torch.manual_seed(0)
    sub = Conv2dSubsampling(input_dim=23, d_model=8, name=name)
    low = min_input_frames(name)
    plain = DEPTHWISE.get(name, name)  # depthwise variants share the plain geometry
    assert low == {"conv2d4": 7, "conv2d6": 11, "conv2d8": 15}[plain]
    assert (
        sub.factor == subsampling_factor(name) == {"conv2d4": 4, "conv2d6": 6, "conv2d8": 8}[plain]
    )
    assert subsampled_length(low, name) == 1 and subsampled_length(low - 1, name) == 0
    lengths = torch.arange(low, low + 30)
    x = torch.randn(len(lengths), int(lengths.max()), 23)
    out, out_lengths = sub(x, lengths)
    assert out.shape == (len(lengths), int(out_lengths.max()), 8)
    assert out_lengths.tolist() == [_wenet_mask_length(n, plain) for n in lengths.tolist()]
    with pytest.raises(FeatureError, match=f"at least {low}"):
        sub(x[:2, : low - 1], torch.tensor([low - 1, low - 1]))
    with pytest.raises(ConfigError, match="input_dim"):
        Conv2dSubsampling(input_dim=low - 1, d_model=8, name=name)


def test_depthwise_subsampling_is_separable_and_smaller() -> None:
    plain = Conv2dSubsampling(80, 64, "conv2d8")
    dw = Conv2dSubsampling(80, 64, "dw_conv2d8")
    groups = [m.groups for m in dw.conv if isinstance(m, torch.nn.Conv2d)]
    assert groups == [1, 64, 1, 64, 1]  # full first conv, then depthwise + pointwise pairs
    count = lambda m: sum(p.numel() for p in m.conv.parameters())  # noqa: E731
    assert count(dw) * 5 < count(plain)


def test_subsampling_unknown_name() -> None:
    with pytest.raises(ConfigError, match="conv2d4"):
        Conv2dSubsampling(80, 8, "conv1d2")


def test_masks() -> None:
    lengths = torch.tensor([3, 1])
    assert make_valid_mask(lengths, 4).tolist() == [[True] * 3 + [False], [True] + [False] * 3]
    assert (make_pad_mask(lengths) == ~make_valid_mask(lengths)).all()
    chunk = chunk_attention_mask(5, 2, num_left_chunks=0)
    assert chunk.int().tolist() == [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ]
    assert chunk_attention_mask(5, 2)[4].all() and chunk_attention_mask(3, 0).all()
    # A padding query whose allowed keys are all padding gets opened rather than NaN.
    allowed = attention_allowed_mask(make_valid_mask(torch.tensor([2]), 5), chunk)
    assert allowed.shape == (1, 1, 5, 5)
    assert allowed[0, 0, 4].all() and allowed[0, 0, 0].tolist() == [True, True, False, False, False]


def test_relative_sinusoids_layout() -> None:
    table = relative_sinusoids(4, 6)
    assert table.shape == (7, 6)
    for k in range(7):
        r = 3 - k
        for i in range(3):
            w = 10000 ** (-2 * i / 6)
            assert table[k, 2 * i].item() == pytest.approx(math.sin(r * w), abs=1e-6)
            assert table[k, 2 * i + 1].item() == pytest.approx(math.cos(r * w), abs=1e-6)
    enc = RelPositionalEncoding(6, dropout=0.0, max_len=2).eval()
    x, pos = enc(torch.ones(1, 5, 6))
    assert torch.allclose(x, torch.full_like(x, math.sqrt(6)))
    assert torch.allclose(pos[0], relative_sinusoids(5, 6))  # grown cache, centred slice


def test_rel_shift_picks_distance_i_minus_j() -> None:
    t = 5
    x = torch.randn(2, 3, t, 2 * t - 1)
    out = rel_shift(x)
    for i in range(t):
        for j in range(t):
            assert torch.equal(out[..., i, j], x[..., i, t - 1 - (i - j)])


def _naive_attention(attn: RelPositionMultiHeadAttention, x, pos_emb, allowed):
    """Explicit scores (q+u).k + (q+v).p_{i-j}, softmax, weighted values."""
    b, t, d = x.shape
    h, dk = attn.h, attn.d_k
    q = attn.linear_q(x).view(b, t, h, dk)
    k = attn.linear_k(x).view(b, t, h, dk)
    v = attn.linear_v(x).view(b, t, h, dk)
    p = attn.linear_pos(pos_emb[0]).view(2 * t - 1, h, dk)
    rel = torch.arange(t)[:, None] - torch.arange(t)[None, :]  # i - j
    p_ij = p[t - 1 - rel]  # (T, T, h, dk)
    ac = torch.einsum("bihd,bjhd->bhij", q + attn.pos_bias_u, k)
    bd = torch.einsum("bihd,ijhd->bhij", q + attn.pos_bias_v, p_ij)
    scores = ((ac + bd) / math.sqrt(dk)).masked_fill(~allowed, float("-inf"))
    out = torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v)
    return attn.linear_out(out.reshape(b, t, d))


@pytest.mark.parametrize("chunked", [False, True])
def test_rel_attention_matches_naive(chunked: bool) -> None:
    torch.manual_seed(0)
    b, t, d, h = 3, 7, 16, 4
    attn = RelPositionMultiHeadAttention(d, h).double()
    _, pos = RelPositionalEncoding(d, 0.0)(torch.zeros(1, t, d))
    pos = pos.double()
    x = torch.randn(b, t, d, dtype=torch.double)
    valid = make_valid_mask(torch.tensor([7, 4, 1]), t)
    allowed = attention_allowed_mask(valid, chunk_attention_mask(t, 3) if chunked else None)
    got = attn(x, pos, allowed)
    want = _naive_attention(attn, x, pos, allowed)
    assert torch.allclose(got, want, atol=1e-5)
    # Gradients flow through the rel-pos term passed to SDPA as a float mask.
    g_got = torch.autograd.grad(got[valid].sum(), [attn.pos_bias_v, attn.linear_pos.weight])
    g_want = torch.autograd.grad(want[valid].sum(), [attn.pos_bias_v, attn.linear_pos.weight])
    for a, w in zip(g_got, g_want, strict=True):
        assert torch.allclose(a, w, atol=1e-5)


@pytest.mark.parametrize(
    ("subsampling", "conv_norm"),
    [
        ("conv2d4", "batch_norm"),
        ("conv2d6", "layer_norm"),
        ("conv2d8", "batch_norm"),
        ("dw_conv2d4", "batch_norm"),
    ],
)
def test_encoder_padding_invariance(subsampling: str, conv_norm: str) -> None:
    torch.manual_seed(0)
    enc = ConformerEncoder(
        input_dim=20, d_model=32, num_heads=4, ff_dim=64, num_layers=2, conv_kernel=5,
        subsampling=subsampling, conv_norm=conv_norm,
    )  # fmt: skip
    enc.train()
    enc(torch.randn(4, 60, 20), torch.tensor([60, 50, 40, 30]))  # move BatchNorm running stats
    enc.eval()
    short, long_ = 37, 83
    feats = torch.randn(2, long_, 20)
    feats[0, short:] = 5.0  # garbage padding must not matter either
    with torch.no_grad():
        batched, lengths = enc(feats, torch.tensor([short, long_]))
        alone, alone_len = enc(feats[:1, :short], torch.tensor([short]))
    n = int(alone_len[0])
    assert lengths[0] == n and alone.shape[1] == n
    assert torch.allclose(batched[0, :n], alone[0], atol=1e-5)
    assert (batched[0, n:] == 0).all()
    assert batched.shape == (2, int(lengths[1]), 32)


def test_encoder_chunk_mask_runs() -> None:
    torch.manual_seed(0)
    enc = ConformerEncoder(20, 16, 2, 32, 1, 3).eval()
    feats = torch.randn(2, 40, 20)
    with torch.no_grad():
        out, lengths = enc(feats, torch.tensor([40, 20]), chunk_attention_mask(9, 2, 1))
    assert out.shape == (2, 9, 16) and torch.isfinite(out).all()
