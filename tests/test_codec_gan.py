"""Codec GAN training: discriminators, LSGAN / feature-matching / mel losses, the mixin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiokit.codec.base import CodecEncoding, CodecOutput
from audiokit.codec.discriminators import (
    MultiBandMultiScaleSTFTDiscriminator,
    MultiPeriodDiscriminator,
    MultiScaleSTFTDiscriminator,
    build_discriminator,
)
from audiokit.codec.gan import DEFAULT_LOSS_WEIGHTS, CodecTrainingMixin
from audiokit.codec.losses import (
    MultiScaleMelLoss,
    feature_matching_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    si_sdr,
)
from audiokit.errors import ConfigError
from audiokit.train.interface import Batch

TINY_DISC = {
    "mpd": {"periods": [2, 3], "channels": [4, 4]},
    "mrd": {"window_lengths": [128, 64], "channels": 4},
}
TINY_MEL = {"window_lengths": [32, 64, 128], "n_mels": [5, 10, 20]}


class TinyCodec(CodecTrainingMixin, nn.Module):
    """A few-parameter RVQ-like codec (scalar rounding with a straight-through estimator)."""

    kind = "rvq"
    channels = 1

    def __init__(
        self,
        sample_rate: int = 8000,
        dim: int = 4,
        discriminator: dict | None = None,
        loss: dict | None = None,
    ) -> None:
        super().__init__()
        self.sample_rate, self.hop_length = sample_rate, 4
        self.n_codebooks, self.codebook_size = 1, 16
        self.encoder = nn.Conv1d(1, dim, 8, stride=4, padding=2)
        self.decoder = nn.ConvTranspose1d(dim, 1, 8, stride=4, padding=2)
        self.init_training(discriminator, loss)

    def _quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = z.clamp(-8, 7).round()
        return z + (q - z).detach(), q

    def forward_train(self, wav: torch.Tensor) -> CodecOutput:
        z = self.encoder(wav)
        zq, q = self._quantise(z)
        audio = self.decoder(zq)[..., : wav.shape[-1]]
        audio = F.pad(audio, (0, wav.shape[-1] - audio.shape[-1]))
        losses = {"commitment": F.mse_loss(z, q.detach()), "codebook": F.mse_loss(q, z.detach())}
        return CodecOutput(audio=audio, latent=zq, codes=(q[:, :1] + 8).long(), losses=losses)

    def encode(self, wav: torch.Tensor, n_codebooks: int | None = None) -> CodecEncoding:
        _, q = self._quantise(self.encoder(wav))
        return CodecEncoding(codes=(q + 8).long(), num_samples=wav.shape[-1])

    def decode(self, encoding: CodecEncoding) -> torch.Tensor:
        return self.decoder(encoding.codes.float() - 8)[..., : encoding.num_samples]


def _wave(b: int = 2, s: int = 1024, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(s) / 8000.0
    f = 200 + 400 * torch.rand(b, 1, generator=g)
    return (0.5 * torch.sin(2 * torch.pi * f * t) + 0.05 * torch.randn(b, s, generator=g)).float()


def _batch(wav: torch.Tensor, lengths: list[int] | None = None) -> Batch:
    b = wav.shape[0]
    lens = torch.tensor(lengths or [wav.shape[-1]] * b)
    empty = torch.zeros(b, 0, dtype=torch.long)
    return Batch(wav, lens, empty, torch.zeros(b, dtype=torch.long), [f"u{i}" for i in range(b)])


# ----------------------------------------------------------------- discriminators
@pytest.mark.parametrize(
    "disc, n_sub",
    [
        (MultiPeriodDiscriminator((2, 3, 5), channels=(4, 8, 8)), 3),
        (MultiBandMultiScaleSTFTDiscriminator((256, 128), channels=4), 2),
        (MultiScaleSTFTDiscriminator((128, 64), filters=4), 2),
    ],
)
def test_discriminator_outputs(disc: nn.Module, n_sub: int) -> None:
    out = disc(_wave(2, 1000).unsqueeze(1))
    assert len(out) == n_sub
    for logits, fmaps in out:
        assert logits.shape[0] == 2 and logits.shape[1] == 1 and torch.isfinite(logits).all()
        assert fmaps and all(f.shape[0] == 2 for f in fmaps)


def test_mrd_frames_match_stride() -> None:
    """audiotools' match_stride STFT: ceil(S / hop) frames, per band conv stacks over bins."""
    d = MultiBandMultiScaleSTFTDiscriminator((256,), channels=4).discriminators[0]
    spec = d.spectrogram(_wave(1, 1000).unsqueeze(1))
    assert spec.shape == (1, 2, -(-1000 // 64), 129)
    logits, fmaps = d(_wave(1, 1000).unsqueeze(1))
    assert len(fmaps) == 5 * 5  # 5 bands x 5 convs
    assert logits.shape[2] == spec.shape[2]


def test_msstft_spectrogram_matches_torchaudio() -> None:
    torchaudio = pytest.importorskip("torchaudio")
    d = MultiScaleSTFTDiscriminator((128,), filters=4).discriminators[0]
    x = _wave(2, 1000).unsqueeze(1)
    ref = torchaudio.transforms.Spectrogram(
        128, hop_length=32, normalized=True, center=False, power=None
    )(x)  # (B, 1, bins, frames) complex
    ref = torch.cat([ref.real, ref.imag], dim=1).transpose(2, 3)  # EnCodec's layout
    assert torch.allclose(d.spectrogram(x), ref, atol=1e-5)


def test_build_discriminator_and_errors() -> None:
    d = build_discriminator(TINY_DISC)
    assert len(d(_wave(2, 512))) == 4  # 2 periods + 2 resolutions
    with pytest.raises(ConfigError, match="unknown kind 'msd'"):
        build_discriminator({"msd": {}})
    with pytest.raises(ConfigError, match="mpd: bad arguments"):
        build_discriminator({"mpd": {"nope": 1}})
    with pytest.raises(ConfigError, match="enables no discriminator"):
        build_discriminator({"mpd": None})


# ----------------------------------------------------------------- losses
def test_lsgan_values_on_known_logits() -> None:
    fake = [(torch.tensor([0.0, 1.0]), []), (torch.full((2, 2), 0.5), [])]
    real = [(torch.tensor([1.0, 1.0]), []), (torch.zeros(2, 2), [])]
    # D: mean(fake^2) + mean((1-real)^2) per sub: (0.5 + 0) + (0.25 + 1) = 1.75
    assert lsgan_discriminator_loss(fake, real).item() == pytest.approx(1.75)
    # G: mean((1-fake)^2): 0.5 + 0.25
    assert lsgan_generator_loss(fake).item() == pytest.approx(0.75)
    perfect = [(torch.zeros(3), [])], [(torch.ones(3), [])]
    assert lsgan_discriminator_loss(*perfect).item() == 0.0


def test_feature_matching() -> None:
    maps = [torch.randn(2, 3, 5), torch.randn(2, 4)]
    out = [(torch.zeros(1), maps)]
    assert feature_matching_loss(out, out).item() == 0.0
    shifted = [(torch.zeros(1), [m + 0.5 for m in maps])]
    assert feature_matching_loss(shifted, out).item() == pytest.approx(1.0)  # 2 layers x 0.5
    real = [(torch.zeros(1), [m.requires_grad_() for m in maps])]
    fake = [(torch.zeros(1), [m.detach().clone().requires_grad_() + 1 for m in maps])]
    feature_matching_loss(fake, real).backward()
    assert all(m.grad is None for m in maps)  # the real side is a fixed target


def test_mel_loss_zero_for_identical_positive_otherwise() -> None:
    mel = MultiScaleMelLoss(8000, **TINY_MEL)
    x = _wave(2, 2000)
    assert mel(x, x).item() == 0.0
    assert mel(x.unsqueeze(1), x.unsqueeze(1)).item() == 0.0
    noisy = x + 0.1 * torch.randn_like(x)
    assert mel(noisy, x).item() > 0.0
    assert mel(0.5 * x, x).item() == pytest.approx(3 * 0.30103, rel=1e-3)  # log10(2) per scale


def test_mel_loss_matches_dac_definition() -> None:
    """DAC's MelSpectrogramLoss (audiotools STFT: sqrt-Hann, centred reflect padding; librosa
    Slaney mels of the magnitude; L1 of log10 clamped at 1e-5, summed over scales) via librosa."""
    librosa = pytest.importorskip("librosa")
    from scipy.signal import get_window

    x, y = _wave(1, 3000, seed=1)[0], _wave(1, 3000, seed=2)[0]
    wins, mels = (64, 256), (10, 40)
    expected = 0.0
    for w, m in zip(wins, mels, strict=True):
        win = np.sqrt(get_window("hann", w))
        basis = librosa.filters.mel(sr=8000, n_fft=w, n_mels=m)

        def logmel(a: torch.Tensor, w=w, win=win, basis=basis) -> np.ndarray:
            spec = librosa.stft(
                a.double().numpy(), n_fft=w, hop_length=w // 4, window=win, pad_mode="reflect"
            )
            return np.log10(np.maximum(basis @ np.abs(spec), 1e-5))

        expected += np.abs(logmel(x) - logmel(y)).mean()
    got = MultiScaleMelLoss(8000, window_lengths=wins, n_mels=mels)(x[None], y[None])
    assert got.item() == pytest.approx(expected, rel=1e-4)


def test_mel_filterbanks_are_not_state() -> None:
    mel = MultiScaleMelLoss(16000)
    assert mel.state_dict() == {}
    assert len(list(mel.buffers())) == 14  # window + filters per scale, built once


def test_si_sdr() -> None:
    x = _wave(2, 4000)
    n = 0.1 * torch.randn_like(x)
    assert torch.all(si_sdr(3.0 * x, x) > 60)  # scale-invariant
    assert si_sdr(x + n, x).mean().item() == pytest.approx(
        (10 * torch.log10(x.pow(2).sum(-1) / n.pow(2).sum(-1))).mean().item(), abs=0.5
    )
    padded = torch.cat([x, torch.randn(2, 500)], dim=-1)
    lens = torch.tensor([4000, 4000])
    assert torch.allclose(
        si_sdr(padded, torch.cat([x, torch.zeros(2, 500)], -1), lens), si_sdr(x, x, None)
    )


# ----------------------------------------------------------------- the mixin
def _model(**loss) -> TinyCodec:
    torch.manual_seed(0)
    return TinyCodec(discriminator=TINY_DISC, loss={"mel_options": TINY_MEL, **loss})


def test_optimizer_groups_partition_parameters() -> None:
    m = _model()
    groups = m.optimizer_groups()
    assert list(groups) == ["discriminator", "generator"]
    d, g = ({id(p) for p in ps} for ps in groups.values())
    assert not d & g and d | g == {id(p) for p in m.parameters()}
    assert d == {id(p) for p in m.discriminator.parameters()}
    with pytest.raises(ConfigError, match="add model.args.discriminator"):
        TinyCodec().optimizer_groups()


def test_discriminator_then_generator_step() -> None:
    m = _model()
    assert m.loss_weights == {**DEFAULT_LOSS_WEIGHTS}
    batch = _batch(_wave(2, 1024), [1024, 700])
    calls = []
    orig = m.forward_train
    m.forward_train = lambda wav: calls.append(1) or orig(wav)
    d = m.training_losses(batch, group="discriminator")
    assert set(d) == {"loss"} and d["loss"].item() > 0
    d["loss"].backward()
    assert all(p.grad is None for p in m.encoder.parameters())  # D loss sees detached audio
    assert any(p.grad is not None for p in m.discriminator.parameters())
    m.zero_grad()
    g = m.training_losses(batch, group="generator")
    assert len(calls) == 1  # the generator reused the cached reconstruction
    assert set(g) == {"loss", "mel", "adv", "feature", "commitment", "codebook"}
    w = DEFAULT_LOSS_WEIGHTS
    expected = sum(w[k] * g[k] for k in ("mel", "adv", "feature", "commitment", "codebook"))
    assert g["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    g["loss"].backward()
    assert all(p.grad is not None for p in m.encoder.parameters())
    assert int(m.discriminator.generator_steps) == 1
    # a new batch without a discriminator step recomputes
    m.training_losses(_batch(_wave(2, 1024, seed=1)), group="generator")
    assert len(calls) == 2


def test_padding_is_zeroed_before_losses() -> None:
    m = _model()
    wav = _wave(2, 1024)
    wav[1, 600:] = 0.0
    out = m._reconstruct(wav.unsqueeze(1), _batch(wav, [1024, 600]))
    assert out.audio[1, 0, 600:].abs().sum() == 0 and out.audio[1, 0, :600].abs().sum() > 0


def test_disc_start_step_warmup() -> None:
    m = _model(disc_start_step=2)
    batch = _batch(_wave(2, 1024))
    for step in range(3):
        d = m.training_losses(batch, group="discriminator")
        g = m.training_losses(batch, group="generator")
        d["loss"].backward()
        if step < 2:
            assert d["loss"].item() == 0.0 and "adv" not in g
        else:
            assert d["loss"].item() > 0 and "adv" in g and "feature" in g


def test_loss_weight_errors() -> None:
    class KLCodec(TinyCodec):
        def forward_train(self, wav: torch.Tensor) -> CodecOutput:
            out = super().forward_train(wav)
            out.losses = {"kl": out.latent.pow(2).mean()}
            return out

    m = KLCodec(discriminator=TINY_DISC, loss={"mel_options": TINY_MEL})
    with pytest.raises(ConfigError, match="no weight for it; add loss.kl"):
        m.training_losses(_batch(_wave(2, 512)), group="generator")
    m = KLCodec(discriminator=TINY_DISC, loss={"mel_options": TINY_MEL, "kl": 0.5})
    g = m.training_losses(_batch(_wave(2, 512)), group="generator")
    assert "kl" in g
    with pytest.raises(ConfigError, match="loss.mel='x' must be a number"):
        TinyCodec(loss={"mel": "x"})
    with pytest.raises(ConfigError, match="disc_start_step"):
        TinyCodec(loss={"disc_start_step": -1})


def test_validation_metrics() -> None:
    m = _model().eval()
    wav = _wave(2, 1024)
    v = m.validation_metrics(_batch(wav, [1024, 800]))
    assert {"loss", "mel", "si_sdr", "commitment", "codebook"} <= set(v)
    assert v["mel"].item() > 0 and torch.isfinite(v["si_sdr"])
    w = DEFAULT_LOSS_WEIGHTS
    expected = (
        w["mel"] * v["mel"] + w["commitment"] * v["commitment"] + w["codebook"] * v["codebook"]
    )
    assert v["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_gan_training_reduces_mel_loss() -> None:
    """A few Adam steps of the two-group loop lower the reconstruction loss."""
    torch.manual_seed(0)
    m = _model()
    opts = {k: torch.optim.Adam(p, lr=1e-2) for k, p in m.optimizer_groups().items()}
    batch = _batch(_wave(2, 512))
    first = m.validation_metrics(batch)["mel"].item()
    for _ in range(12):
        for name, opt in opts.items():
            m.zero_grad()
            m.training_losses(batch, group=name)["loss"].backward()
            opt.step()
    assert m.validation_metrics(batch)["mel"].item() < 0.8 * first
