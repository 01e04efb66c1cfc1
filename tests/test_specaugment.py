"""SpecAugment: warp equals ESPnet-style per-utterance interpolation; masks respect lengths."""

import pytest
import torch
import torch.nn.functional as F

from audiokit.errors import ConfigError
from audiokit.features.specaugment import SpecAugment, mask_freq, mask_time, time_warp


def espnet_style_warp(x: torch.Tensor, center: int, warped: int, mode: str) -> torch.Tensor:
    """ESPnet's time_warp for one (T, D) utterance with the random draws fixed."""
    t, d = x.shape
    img = x[None, None]
    left = F.interpolate(img[:, :, :center], size=(warped, d), mode=mode, align_corners=False)
    right = F.interpolate(img[:, :, center:], size=(t - warped, d), mode=mode, align_corners=False)
    return torch.cat([left, right], dim=2)[0, 0]


@pytest.mark.parametrize("mode,ref_mode", [("bicubic", "bicubic"), ("linear", "bilinear")])
def test_time_warp_equals_interpolate_per_utterance(mode, ref_mode):
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([30, 22, 8])
    x = torch.randn(3, 30, 5, generator=g)
    centers = torch.tensor([12, 7, 4])
    warped = torch.tensor([16, 3, 4])
    out = time_warp(x, lengths, window=5, mode=mode, centers=centers, warped=warped)
    for i in range(2):
        n = int(lengths[i])
        ref = espnet_style_warp(x[i, :n], int(centers[i]), int(warped[i]), ref_mode)
        torch.testing.assert_close(out[i, :n], ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out[i, n:], x[i, n:])
    # length 8 <= 2 * window: untouched
    torch.testing.assert_close(out[2], x[2])


def test_random_time_warp_is_seeded_and_changes_frames():
    x = torch.randn(4, 50, 6)
    a = time_warp(x, window=5, generator=torch.Generator().manual_seed(1))
    b = time_warp(x, window=5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, x)
    # On a ramp (value = frame index) a linear warp is a monotone re-timing within [0, L-1].
    ramp = torch.arange(50.0)[None, :, None].expand(8, 50, 2).contiguous()
    lengths = torch.tensor([50, 50, 40, 30, 21, 11, 50, 45])
    w = time_warp(
        ramp, lengths, window=5, mode="linear", generator=torch.Generator().manual_seed(2)
    )
    changed = 0
    for i, n in enumerate(lengths.tolist()):
        seq = w[i, :n, 0]
        assert torch.all(seq[1:] >= seq[:-1]) and seq.min() >= 0 and seq.max() <= n - 1
        changed += not torch.equal(seq, ramp[i, :n, 0])
        assert torch.equal(w[i, n:], ramp[i, n:])  # padding untouched
    assert changed >= 4


def test_freq_masks_bounded_width():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(64, 10, 20)
    out = mask_freq(x, num_masks=1, max_width=4, generator=g)
    masked_bins = (out[:, 0, :] == 0).sum(dim=1)
    assert masked_bins.max() <= 4 and masked_bins.max() > 0
    # a mask spans every frame of an utterance
    assert torch.equal((out == 0).any(dim=1), (out == 0).all(dim=1))


def test_time_masks_stay_inside_lengths_and_respect_ratio():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([40, 10, 25] * 20)
    x = torch.ones(60, 40, 3)
    for i, n in enumerate(lengths.tolist()):
        x[i, n:] = 7.0
    out = mask_time(x, lengths, num_masks=1, max_width=30, max_ratio=0.2, value=-1.0, generator=g)
    masked = (out[:, :, 0] == -1.0).sum(dim=1)
    assert torch.all(masked <= torch.floor(lengths * 0.2))
    assert masked.max() > 0
    for i, n in enumerate(lengths.tolist()):
        assert torch.all(out[i, n:] == 7.0)


def test_module_eval_identity_train_deterministic():
    aug = SpecAugment(time_warp_window=3, freq_mask_width=5, time_mask_width=8)
    x = torch.randn(2, 40, 16)
    lengths = torch.tensor([40, 30])
    aug.eval()
    assert aug(x, lengths) is x
    aug.train()
    a = aug(x, lengths, generator=torch.Generator().manual_seed(3))
    b = aug(x, lengths, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert a.shape == x.shape and torch.all(a[1, 30:] == x[1, 30:])
    with pytest.raises(ConfigError):
        SpecAugment(time_warp_mode="nearest")  # type: ignore[arg-type]
