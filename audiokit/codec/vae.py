"""Continuous waveform VAE with shortcut down/up-sampling (the wav-VAE of CLEAR).

``WaveformVAE`` (registered ``codec_vae``, kind ``"latent"``) maps 16 kHz audio ``(B, C, S)`` to a
diagonal Gaussian posterior ``(mean, logvar)``, each ``(B, D, S / hop)``, at a hop of 1024-2048
samples (``strides`` (4, 4, 8, 8) = 1024, (4, 8, 8, 8) = 2048), and decodes latents back to audio.

Following CLEAR (Wu et al., 2025, "Continuous Latent Autoregressive Modeling for High-quality
and Low-latency Speech Synthesis", arXiv 2508.19098; its published description, no reference code;
the shortcut form is DC-AE's residual autoencoding, which CLEAR's description matches):

* a convolutional encoder/decoder on raw waveform with a high compression ratio (hop up to 2048,
  7.8 latent frames/s at 16 kHz);
* shortcut connections in every down/up-sampling block: space-to-channel + channel averaging
  (down), channel repetition + channel-to-space (up), added to the strided conv
  (:mod:`audiokit.codec.shortcut`);
* a VAE bottleneck trained with a KL term, plus mel reconstruction and adversarial losses
  (the latter two from :class:`audiokit.codec.gan.CodecTrainingMixin`);
* reparameterised sampling ``z = mean + exp(logvar / 2) * eps`` in training, the mean at inference.

Our choices (the paper leaves them open):

* block layout borrowed from DAC: weight-normed convs, three dilated residual units (1, 3, 9)
  per block, strided conv with kernel ``2 * stride``; widths double per down block from
  ``encoder_dim`` and halve per up block from ``decoder_dim`` (so the shortcut groups are whole;
  strides must be even);
* ELU activations (``activation="elu"``, the default; ``"snake"`` is available). Snake adds a
  positive offset (``sin^2 >= 0``) at every layer; the identity-like shortcuts carry those
  offsets to the output, where in our tests they saturated the ``tanh`` within 10 steps and
  training stalled (mel loss stuck), while ELU trained;
* the log-variance head's bias starts at ``LOGVAR_INIT = -6`` (posterior std ~0.05): with
  std ~1 at initialisation the sampled noise reaches the waveform through the repeat shortcuts
  and dominated the first updates (at hop 2048 the mel loss after 100 steps was 2.6 vs 1.2);
* ``logvar`` clamped to [-30, 20] (numerical safety); the KL term is
  ``0.5 * (mean^2 + exp(logvar) - 1 - logvar)`` averaged over every latent element (so its weight
  does not depend on ``latent_dim`` or length); its weight is ``loss["kl"]`` of the GAN mixin,
  default 0.1 next to DAC's mel weight 15 (our pick, not tuned);
* ``shortcuts=False`` builds the same network without them. Fitting one synthetic 1 s clip
  (tiny widths, 400 Adam steps, mel + KL, no GAN) the plain network reached a lower training
  mel loss (hop 2048: 0.46 vs 0.63; hop 1024: 0.50 vs 0.60); the paper's claim is about
  large-scale training, which we have not reproduced;
* a ``tanh`` output layer as in DAC; the input is right-padded to a multiple of the hop and the
  output trimmed back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.codec.base import CodecEncoding, CodecOutput
from audiokit.codec.gan import CodecTrainingMixin
from audiokit.codec.shortcut import check_shortcut, down_shortcut, up_shortcut
from audiokit.errors import ConfigError
from audiokit.nn.weight_norm import WNConv1d, WNConvTranspose1d
from audiokit.registry import register_model

LOGVAR_RANGE = (-30.0, 20.0)
LOGVAR_INIT = -6.0  # initial bias of the log-variance head: a nearly deterministic start


def make_activation(name: str, channels: int) -> nn.Module:
    """``"snake"`` (learned per-channel Snake) or ``"elu"``."""
    if name == "snake":
        from audiokit.nn.snake import Snake1d

        return Snake1d(channels)
    if name == "elu":
        return nn.ELU()
    raise ConfigError(f"activation={name!r} is not known; use 'snake' or 'elu'")


class ResidualUnit(nn.Module):
    """``x + conv1(act(conv7_dilated(act(x))))``, ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, dilation: int, activation: str) -> None:
        super().__init__()
        self.block = nn.Sequential(
            make_activation(activation, channels),
            WNConv1d(channels, channels, kernel_size=7, dilation=dilation, padding=3 * dilation),
            make_activation(activation, channels),
            WNConv1d(channels, channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class DownBlock(nn.Module):
    """Residual units, then ``strided_conv(act(x)) + down_shortcut(x)``:
    ``(B, C_in, T) -> (B, C_out, T / stride)`` (``T`` a multiple of ``stride``)."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, activation: str, shortcut: bool = True
    ) -> None:
        super().__init__()
        if shortcut:
            check_shortcut(in_ch, out_ch, stride, down=True)
        self.stride, self.out_ch, self.shortcut = stride, out_ch, shortcut
        self.res = nn.Sequential(*(ResidualUnit(in_ch, d, activation) for d in (1, 3, 9)))
        self.act = make_activation(activation, in_ch)
        self.conv = WNConv1d(
            in_ch, out_ch, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res(x)
        y = self.conv(self.act(x))
        return y + down_shortcut(x, self.stride, self.out_ch) if self.shortcut else y


class UpBlock(nn.Module):
    """``transposed_conv(act(x)) + up_shortcut(x)``, then residual units:
    ``(B, C_in, T) -> (B, C_out, T * stride)``."""

    def __init__(
        self, in_ch: int, out_ch: int, stride: int, activation: str, shortcut: bool = True
    ) -> None:
        super().__init__()
        if shortcut:
            check_shortcut(in_ch, out_ch, stride, down=False)
        self.stride, self.out_ch, self.shortcut = stride, out_ch, shortcut
        self.act = make_activation(activation, in_ch)
        self.conv = WNConvTranspose1d(
            in_ch,
            out_ch,
            kernel_size=2 * stride,
            stride=stride,
            padding=math.ceil(stride / 2),
            output_padding=stride % 2,
        )
        self.res = nn.Sequential(*(ResidualUnit(out_ch, d, activation) for d in (1, 3, 9)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(self.act(x))
        if self.shortcut:
            y = y + up_shortcut(x, self.stride, self.out_ch)
        return self.res(y)


class VAEEncoder(nn.Module):
    """``(B, C, S) -> (B, 2 * latent_dim, S / hop)``: posterior mean and logvar, concatenated."""

    def __init__(
        self,
        channels: int,
        dim: int,
        strides: tuple[int, ...],
        latent_dim: int,
        activation: str,
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(channels, dim, kernel_size=7, padding=3)]
        for s in strides:
            layers.append(DownBlock(dim, 2 * dim, s, activation, shortcut))
            dim *= 2
        head = WNConv1d(dim, 2 * latent_dim, kernel_size=3, padding=1)
        with torch.no_grad():
            head.bias[latent_dim:] = LOGVAR_INIT
        layers += [make_activation(activation, dim), head]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class VAEDecoder(nn.Module):
    """``(B, latent_dim, T) -> (B, C, T * hop)`` in [-1, 1]."""

    def __init__(
        self,
        latent_dim: int,
        dim: int,
        strides: tuple[int, ...],
        channels: int,
        activation: str,
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(latent_dim, dim, kernel_size=7, padding=3)]
        for s in strides:
            layers.append(UpBlock(dim, dim // 2, s, activation, shortcut))
            dim //= 2
        layers += [
            make_activation(activation, dim),
            WNConv1d(dim, channels, kernel_size=7, padding=3),
            nn.Tanh(),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.block(z)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per element, averaged over all elements (scalar)."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()


def sample_gaussian(
    mean: torch.Tensor,
    logvar: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reparameterised draw ``mean + temperature * exp(logvar / 2) * eps``, ``eps ~ N(0, I)``."""
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + temperature * torch.exp(0.5 * logvar) * eps


@register_model("codec_vae")
class WaveformVAE(CodecTrainingMixin, nn.Module):
    """CLEAR-style waveform VAE; see the module docstring.

    encode: ``wav (B, C, S)`` -> ``CodecEncoding(latents=mean (B, D, T), logvar (B, D, T))`` with
    ``T = ceil(S / hop_length)``; decode: latents ``(B, D, T)`` -> ``wav (B, C, T * hop)`` (trimmed
    to ``num_samples`` when set).

    Args: ``strides`` (encoder order; hop = their product), ``encoder_dim`` (first width,
    doubled per block), ``decoder_dim`` (default ``encoder_dim * 2**len(strides)``, halved per
    block), ``latent_dim``, ``activation`` ("elu" | "snake"), ``shortcuts`` (False: plain
    strided convs, the ablation baseline; any strides then), ``discriminator`` / ``loss`` for
    :class:`audiokit.codec.gan.CodecTrainingMixin` (None: inference only).
    """

    kind = "latent"
    training_only_prefixes = ("discriminator.",)
    default_loss_weights = {"kl": 0.1}  # against mel 15: see the module docstring

    def __init__(
        self,
        sample_rate: int = 16000,
        channels: int = 1,
        encoder_dim: int = 32,
        strides: tuple[int, ...] | list[int] = (4, 4, 8, 8),
        latent_dim: int = 64,
        decoder_dim: int | None = None,
        activation: str = "elu",
        shortcuts: bool = True,
        discriminator: dict | None = None,
        loss: dict | None = None,
    ) -> None:
        super().__init__()
        strides = tuple(int(s) for s in strides)
        if not strides or any(s < 2 for s in strides):
            raise ConfigError(f"strides={list(strides)}: need one or more strides >= 2")
        decoder_dim = decoder_dim if decoder_dim is not None else encoder_dim * 2 ** len(strides)
        if decoder_dim % 2 ** len(strides):
            raise ConfigError(
                f"decoder_dim={decoder_dim} must be divisible by 2**{len(strides)} "
                "(the width halves in every up block); change decoder_dim"
            )
        self.sample_rate, self.channels, self.latent_dim = sample_rate, channels, latent_dim
        self.strides = strides
        self.hop_length = math.prod(strides)
        self.encoder = VAEEncoder(channels, encoder_dim, strides, latent_dim, activation, shortcuts)
        self.decoder = VAEDecoder(
            latent_dim, decoder_dim, strides[::-1], channels, activation, shortcuts
        )
        self.init_training(discriminator, loss)

    # ---- shapes -----------------------------------------------------------------------------

    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        """Right-pad ``(B, C, S)`` with zeros to a multiple of the hop."""
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise ConfigError(
                f"codec_vae expects audio (B, {self.channels}, S), got {tuple(wav.shape)}; "
                "reshape or resample the input"
            )
        return F.pad(wav, (0, -wav.shape[-1] % self.hop_length))

    def posterior(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``wav (B, C, S)`` -> ``(mean, logvar)``, each ``(B, D, ceil(S / hop))``."""
        h = self.encoder(self._pad(wav))
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    # ---- the AudioCodec contract --------------------------------------------------------------

    def encode(self, wav: torch.Tensor, n_codebooks: int | None = None) -> CodecEncoding:
        """``wav (B, C, S)`` -> posterior mean as ``latents`` and its ``logvar`` (``n_codebooks``
        is ignored: latent codecs have no codebooks)."""
        mean, logvar = self.posterior(wav)
        return CodecEncoding(latents=mean, logvar=logvar, num_samples=int(wav.shape[-1]))

    def decode(self, encoding: CodecEncoding) -> torch.Tensor:
        """``encoding.latents (B, D, T)`` -> ``wav (B, C, T * hop)``, trimmed to ``num_samples``."""
        z = encoding.latents
        if z is None:
            raise ConfigError("codec_vae decodes latents, but the encoding has none; pass latents")
        if z.dim() != 3 or z.shape[1] != self.latent_dim:
            raise ConfigError(
                f"latents of shape {tuple(z.shape)} do not fit this VAE (B, {self.latent_dim}, T); "
                "decode with the model that encoded them"
            )
        wav = self.decoder(z)
        return wav if encoding.num_samples is None else wav[..., : encoding.num_samples]

    @staticmethod
    def sample_latents(
        encoding: CodecEncoding,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A posterior draw ``(B, D, T)``; ``temperature`` scales the std (0 gives the mean)."""
        if encoding.latents is None or encoding.logvar is None:
            raise ConfigError("sampling needs both latents (mean) and logvar; encode with the VAE")
        return sample_gaussian(encoding.latents, encoding.logvar, temperature, generator)

    def forward_train(self, wav: torch.Tensor) -> CodecOutput:
        """``wav (B, C, S)`` -> reconstruction ``(B, C, S)`` from a posterior sample (the mean in
        eval mode) and ``losses["kl"]``."""
        mean, logvar = self.posterior(wav)
        z = sample_gaussian(mean, logvar) if self.training else mean
        audio = self.decoder(z)[..., : wav.shape[-1]]
        return CodecOutput(audio=audio, latent=z, losses={"kl": gaussian_kl(mean, logvar)})
