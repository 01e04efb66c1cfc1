"""The CLEAR-style waveform VAE: shapes, shortcuts, KL, reparameterisation, training, packing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiokit.codec.base import CodecEncoding
from audiokit.codec.shortcut import (
    channel_to_space,
    down_shortcut,
    space_to_channel,
    up_shortcut,
)
from audiokit.codec.vae import WaveformVAE, gaussian_kl, sample_gaussian
from audiokit.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_vae(strides=(4, 4, 8, 8), **kw) -> WaveformVAE:
    torch.manual_seed(0)
    return WaveformVAE(encoder_dim=4, strides=strides, latent_dim=8, **kw)


def speechy_clip(seconds: float = 0.5, sr: int = 16000) -> torch.Tensor:
    """A voiced-speech-like clip: gliding harmonic source with formant-ish amplitudes, syllabic
    envelope and a little noise. ``(1, 1, S)``."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    amps = [1.0, 0.6, 0.5, 0.3, 0.35, 0.2, 0.1]
    x = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(amps))
    env = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) + 0.05
    x = 0.25 * x * env / np.abs(x).max() + 0.005 * rng.standard_normal(t.size)
    return torch.tensor(x, dtype=torch.float32)[None, None]


@pytest.mark.parametrize(("strides", "hop"), [((4, 4, 8, 8), 1024), ((4, 8, 8, 8), 2048)])
def test_shapes_and_hop(strides, hop):
    model = tiny_vae(strides, activation="elu").eval()
    assert model.hop_length == hop and model.kind == "latent"
    wav = 0.1 * torch.randn(2, 1, 3 * hop + 5)
    enc = model.encode(wav)
    assert enc.latents.shape == (2, 8, 4) and enc.logvar.shape == (2, 8, 4)
    assert enc.num_samples == 3 * hop + 5 and enc.codes is None
    assert model.decode(enc).shape == (2, 1, 3 * hop + 5)
    untrimmed = model.decode(CodecEncoding(latents=enc.latents))
    assert untrimmed.shape == (2, 1, 4 * hop)
    out = model.forward_train(wav)
    assert out.audio.shape == wav.shape and out.latent.shape == (2, 8, 4)
    assert set(out.losses) == {"kl"}


def test_elu_default_and_snake_option():
    assert not any(type(m).__name__ == "Snake1d" for m in tiny_vae((2, 4)).modules())
    model = tiny_vae((2, 4), activation="snake")
    assert any(type(m).__name__ == "Snake1d" for m in model.modules())
    assert model.decode(model.encode(0.1 * torch.randn(1, 1, 100))).shape == (1, 1, 100)


def test_space_to_channel_matches_hand_reference():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    s = 4
    ref = torch.empty(2, 3 * s, 2)
    for b in range(2):
        for c in range(3):
            for i in range(s):
                for t in range(2):
                    ref[b, c * s + i, t] = x[b, c, t * s + i]
    assert torch.equal(space_to_channel(x, s), ref)
    assert torch.equal(channel_to_space(ref, s), x)


def test_down_shortcut_is_space_to_channel_then_channel_average():
    x = torch.randn(2, 3, 8)
    s, c_out = 4, 6  # 12 folded channels averaged in groups of 2
    got = down_shortcut(x, s, c_out)
    xn, ref = x.numpy(), np.empty((2, c_out, 2), dtype=np.float32)
    for b in range(2):
        for j in range(c_out):
            for t in range(2):
                # folded channels 2j, 2j+1 = channel (2j)//4, phases (2j)%4 and (2j)%4 + 1
                vals = [xn[b, (2 * j + g) // s, t * s + (2 * j + g) % s] for g in range(2)]
                ref[b, j, t] = sum(vals) / 2
    torch.testing.assert_close(got, torch.from_numpy(ref))


def test_up_shortcut_is_channel_repeat_then_channel_to_space():
    x = torch.randn(1, 4, 3)
    s, c_out = 4, 2  # 2 * 4 = 8 folded channels = each input channel twice
    got = up_shortcut(x, s, c_out)
    xn, ref = x.numpy(), np.empty((1, c_out, 3 * s), dtype=np.float32)
    for c in range(c_out):
        for t in range(3):
            for i in range(s):
                ref[0, c, t * s + i] = xn[0, (c * s + i) // 2, t]
    torch.testing.assert_close(got, torch.from_numpy(ref))
    # a constant signal passes both shortcuts unchanged (they only move and average samples)
    const = torch.full((1, 4, 16), 0.3)
    torch.testing.assert_close(up_shortcut(down_shortcut(const, 4, 8), 4, 4), const)


def test_odd_stride_is_refused_unless_shortcuts_are_off():
    with pytest.raises(ConfigError, match="stride 5"):
        WaveformVAE(encoder_dim=4, strides=(5, 4), latent_dim=8)
    plain = WaveformVAE(encoder_dim=4, strides=(5, 4), latent_dim=8, shortcuts=False).eval()
    assert plain.hop_length == 20
    assert plain.decode(plain.encode(torch.zeros(1, 1, 50))).shape == (1, 1, 50)


def test_kl_zero_for_standard_normal_and_matches_closed_form():
    zero = torch.zeros(2, 8, 5)
    assert gaussian_kl(zero, zero).item() == 0.0
    mean, logvar = torch.randn(2, 8, 5), torch.randn(2, 8, 5)
    post = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    ref = torch.distributions.kl_divergence(post, prior).mean()
    torch.testing.assert_close(gaussian_kl(mean, logvar), ref)
    assert gaussian_kl(mean, logvar) > 0


def test_reparameterised_sample_carries_gradients():
    mean = torch.randn(1, 4, 6, requires_grad=True)
    logvar = torch.randn(1, 4, 6, requires_grad=True)
    z = sample_gaussian(mean, logvar, generator=torch.Generator().manual_seed(1))
    z.square().sum().backward()
    assert mean.grad is not None and mean.grad.abs().sum() > 0
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0
    enc = CodecEncoding(latents=mean.detach(), logvar=logvar.detach())
    torch.testing.assert_close(WaveformVAE.sample_latents(enc, temperature=0.0), mean.detach())
    a = WaveformVAE.sample_latents(enc, generator=torch.Generator().manual_seed(3))
    b = WaveformVAE.sample_latents(enc, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, mean.detach())


def test_train_mode_samples_eval_mode_uses_the_mean():
    model = tiny_vae((2, 4), activation="elu")
    wav = 0.1 * torch.randn(1, 1, 64)
    out = model.forward_train(wav)
    (out.audio.square().mean() + out.losses["kl"]).backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        mean = model.encode(wav).latents
        torch.testing.assert_close(model.forward_train(wav).latent, mean)


def test_a_few_steps_reduce_the_mel_loss():
    from audiokit.codec.losses import MultiScaleMelLoss

    model = tiny_vae((4, 4, 8, 8), activation="elu")
    wav = speechy_clip()
    mel = MultiScaleMelLoss(16000, window_lengths=(64, 256, 1024), n_mels=(10, 40, 80))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        out = model.forward_train(wav)
        loss = mel(out.audio, wav)
        losses.append(loss.item())
        (loss + 1e-2 * out.losses["kl"]).backward()
        opt.step()
        opt.zero_grad()
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-5:]) < 0.6 * losses[0], losses


def test_bad_inputs_raise_one_line_errors():
    model = tiny_vae((2, 2), activation="elu")
    with pytest.raises(ConfigError, match=r"\(B, 1, S\)"):
        model.encode(torch.zeros(1, 2, 16))
    with pytest.raises(ConfigError, match="latents"):
        model.decode(CodecEncoding(codes=torch.zeros(1, 1, 4, dtype=torch.long)))
    with pytest.raises(ConfigError, match="activation"):
        WaveformVAE(encoder_dim=4, strides=(2,), latent_dim=8, activation="relu6")


TINY_DISC = {
    "mpd": {"periods": [2], "channels": [4, 4]},
    "mrd": {"window_lengths": [64], "channels": 4},
}
TINY_MEL = {"window_lengths": [64, 256], "n_mels": [10, 40]}


def test_gan_mixin_trains_with_the_kl_term():
    from audiokit.train.interface import Batch

    model = tiny_vae(
        (2, 4), activation="elu", discriminator=TINY_DISC, loss={"mel_options": TINY_MEL}
    )
    assert model.loss_weights["kl"] == 0.1
    wav = speechy_clip(0.05)[:, 0].repeat(2, 1)
    batch = Batch(wav, torch.tensor([800, 600]), torch.zeros(2, 0, dtype=torch.long),
                  torch.zeros(2, dtype=torch.long), ["a", "b"])  # fmt: skip
    d = model.training_losses(batch, group="discriminator")
    g = model.training_losses(batch, group="generator")
    assert torch.isfinite(d["loss"]) and torch.isfinite(g["loss"])
    assert {"mel", "adv", "feature", "kl"} <= set(g)
    g["loss"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_packed_dir_round_trip(tmp_path):
    from safetensors import safe_open

    from audiokit.model_dir import load_model_dir, write_model_dir

    args = dict(encoder_dim=4, strides=[2, 4], latent_dim=8, activation="elu",
                discriminator=TINY_DISC, loss={"mel_options": TINY_MEL})  # fmt: skip
    torch.manual_seed(0)
    model = WaveformVAE(**args).eval()
    out = write_model_dir(tmp_path / "vae", model, "codec_vae", args, None, 16000, None)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert not any(k.startswith("discriminator.") for k in f.keys())  # noqa: SIM118
    loaded, cfg = load_model_dir(out)
    assert isinstance(loaded, WaveformVAE) and loaded.discriminator is None
    assert cfg.args["discriminator"] is None
    wav = speechy_clip(0.02)
    with torch.no_grad():
        a, b = model.encode(wav), loaded.encode(wav)
        torch.testing.assert_close(a.latents, b.latents)
        torch.testing.assert_close(a.logvar, b.logvar)
        torch.testing.assert_close(model.decode(a), loaded.decode(b))
