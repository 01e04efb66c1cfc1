"""DAC-style RVQ codec (Kumar et al. 2023, "High-Fidelity Audio Compression with Improved RVQGAN").

Weight-normed convolutions, Snake activations, strided encoder blocks, transposed-conv decoder
blocks and a factorised residual VQ (:mod:`audiokit.codec.quantizer`). Module names follow
descript-audio-codec exactly (``encoder.block.*``, ``quantizer.quantizers.*``, ``decoder.model.*``,
``weight_g``/``weight_v``/``alpha``), so a DAC state dict loads with no renaming.

Every block takes ``padding: bool`` (default True). ``padding=False`` runs every convolution with
zero padding removed, as DAC's chunked ``compress`` does by mutating its layers; here it is a
plain argument, so the model is never changed under other callers (see
:mod:`audiokit.codec.dac_chunked`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.codec.base import CodecEncoding, CodecOutput, bitrate_kbps
from audiokit.codec.gan import CodecTrainingMixin
from audiokit.codec.quantizer import FactorizedResidualVQ
from audiokit.errors import AudioError, ConfigError
from audiokit.nn.snake import Snake1d
from audiokit.nn.weight_norm import WNConv1d, WNConvTranspose1d
from audiokit.registry import register_model


def conv_unpadded(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a (WN) Conv1d / ConvTranspose1d with its padding set to 0, without touching `layer`."""
    weight = layer.current_weight() if hasattr(layer, "current_weight") else layer.weight
    if isinstance(layer, nn.ConvTranspose1d):
        return F.conv_transpose1d(
            x, weight, layer.bias, layer.stride, 0, layer.output_padding, layer.groups,
            layer.dilation,
        )  # fmt: skip
    return F.conv1d(x, weight, layer.bias, layer.stride, 0, layer.dilation, layer.groups)


def fit_length(audio: torch.Tensor, n: int) -> torch.Tensor:
    """(..., L) -> (..., n): trimmed, or zero-padded on the right. Odd decoder rates make the
    decoder output ``s*L - 1`` samples per block, so it can come out a few samples short."""
    if audio.shape[-1] >= n:
        return audio[..., :n]
    return F.pad(audio, (0, n - audio.shape[-1]))


def run_layers(layers: nn.Sequential, x: torch.Tensor, padding: bool) -> torch.Tensor:
    """Apply `layers` in order; convs lose their padding when `padding` is False.

    Without autograd, activations whose input was made here (not the caller's `x`) run in
    place: fewer fresh buffers keep the working set in cache."""
    x_in, owned = x, False  # owned: x is an intermediate of this call
    infer = not torch.is_grad_enabled()
    for layer in layers:
        if isinstance(layer, _Block):
            x = layer(x, padding)
        elif not padding and isinstance(layer, (nn.Conv1d, nn.ConvTranspose1d)):
            x = conv_unpadded(layer, x)
        elif infer and owned and isinstance(layer, Snake1d):
            x = layer(x, inplace=True)
        elif infer and owned and isinstance(layer, nn.Tanh):
            x = x.tanh_()
        else:
            x = layer(x)
        owned = x is not x_in
    return x


class _Block(nn.Module):
    """A block whose forward takes the padding flag (``self.block`` is its nn.Sequential)."""

    block: nn.Sequential

    def forward(self, x: torch.Tensor, padding: bool = True) -> torch.Tensor:
        """x (B, C, T) -> (B, C', T')."""
        return run_layers(self.block, x, padding)


class ResidualUnit(_Block):
    """Snake, WNConv1d(k=7, dilation), Snake, WNConv1d(k=1); residual add (x centre-cropped
    when the unpadded path is shorter)."""

    def __init__(self, dim: int, dilation: int = 1) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=7, dilation=dilation, padding=3 * dilation),
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x: torch.Tensor, padding: bool = True) -> torch.Tensor:
        """x (B, C, T) -> (B, C, T) (T - 6*dilation without padding)."""
        y = run_layers(self.block, x, padding)
        crop = (x.shape[-1] - y.shape[-1]) // 2
        if crop > 0:
            x = x[..., crop:-crop]
        return y.add_(x) if not torch.is_grad_enabled() else x + y


class EncoderBlock(_Block):
    """Three residual units (dil 1, 3, 9) at dim/2, Snake, strided WNConv1d dim/2 -> dim."""

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            ResidualUnit(dim // 2, 1),
            ResidualUnit(dim // 2, 3),
            ResidualUnit(dim // 2, 9),
            Snake1d(dim // 2),
            WNConv1d(
                dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=math.ceil(stride / 2)
            ),
        )


class DecoderBlock(_Block):
    """Snake, WNConvTranspose1d in -> out (kernel 2s, stride s), three residual units."""

    def __init__(self, input_dim: int, output_dim: int, stride: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(input_dim),
            WNConvTranspose1d(
                input_dim,
                output_dim,
                kernel_size=2 * stride,
                stride=stride,
                padding=math.ceil(stride / 2),
            ),  # fmt: skip
            ResidualUnit(output_dim, 1),
            ResidualUnit(output_dim, 3),
            ResidualUnit(output_dim, 9),
        )


class DACEncoder(_Block):
    """Waveform (B, 1, S) -> latent (B, d_latent, S / prod(strides)); channels double per block."""

    def __init__(
        self, d_model: int = 64, strides: Sequence[int] = (2, 4, 8, 8), d_latent: int = 64
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(1, d_model, kernel_size=7, padding=3)]
        for stride in strides:
            d_model *= 2
            layers.append(EncoderBlock(d_model, stride))
        layers += [Snake1d(d_model), WNConv1d(d_model, d_latent, kernel_size=3, padding=1)]
        self.block = nn.Sequential(*layers)
        self.enc_dim = d_model


class DACDecoder(nn.Module):
    """Latent (B, input_channel, T) -> waveform (B, d_out, L) in [-1, 1]; channels halve per rate.

    With padding, L = prod over rates of (s*L - (s odd)) applied in turn (odd rates lose a sample).
    """

    def __init__(
        self, input_channel: int, channels: int, rates: Sequence[int], d_out: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [WNConv1d(input_channel, channels, kernel_size=7, padding=3)]
        output_dim = channels
        for i, stride in enumerate(rates):
            input_dim, output_dim = channels // 2**i, channels // 2 ** (i + 1)
            layers.append(DecoderBlock(input_dim, output_dim, stride))
        layers += [
            Snake1d(output_dim),
            WNConv1d(output_dim, d_out, kernel_size=7, padding=3),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, padding: bool = True) -> torch.Tensor:
        """x (B, D, T) -> (B, d_out, L)."""
        return run_layers(self.model, x, padding)


@register_model("rvq_codec")
class RVQCodec(CodecTrainingMixin, nn.Module):
    """DAC-style RVQ codec; constructor arguments are DAC's ``DAC(**kwargs)`` ones plus ours.

    Args (DAC's): encoder_dim, encoder_rates, latent_dim (None: encoder_dim * 2**len(rates)),
    decoder_dim, decoder_rates, n_codebooks, codebook_size, codebook_dim, quantizer_dropout,
    sample_rate.
    quantizer: "factorized" (DAC's) or "ema" (EnCodec-style EMA codebooks on the raw latent;
        ``ema_decay``, ``kmeans_init``, ``kmeans_iters``, ``dead_code_threshold`` apply to it).
    discriminator, loss: training setup for :class:`audiokit.codec.gan.CodecTrainingMixin`
        (None: inference only).
    """

    kind = "rvq"
    channels = 1

    def __init__(
        self,
        encoder_dim: int = 64,
        encoder_rates: Sequence[int] = (2, 4, 8, 8),
        latent_dim: int | None = None,
        decoder_dim: int = 1536,
        decoder_rates: Sequence[int] = (8, 8, 4, 2),
        n_codebooks: int = 9,
        codebook_size: int = 1024,
        codebook_dim: int | Sequence[int] = 8,
        quantizer_dropout: float = 0.0,
        sample_rate: int = 44100,
        quantizer: str = "factorized",
        ema_decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        dead_code_threshold: float = 2,
        discriminator: dict | None = None,
        loss: dict | None = None,
    ) -> None:
        super().__init__()
        if latent_dim is None:
            latent_dim = encoder_dim * 2 ** len(encoder_rates)
        self.sample_rate = int(sample_rate)
        self.hop_length = math.prod(encoder_rates)
        self.latent_dim = latent_dim
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        # registration order (encoder, quantizer, decoder) is DAC's: the chunked length
        # arithmetic walks the convolutions in module order
        self.encoder = DACEncoder(encoder_dim, encoder_rates, latent_dim)
        if quantizer == "factorized":
            self.quantizer = FactorizedResidualVQ(
                latent_dim, n_codebooks, codebook_size, codebook_dim, float(quantizer_dropout)
            )
        elif quantizer == "ema":
            from audiokit.codec.ema_quantizer import EMAResidualVQ

            self.quantizer = EMAResidualVQ(
                latent_dim, n_codebooks, codebook_size, ema_decay, kmeans_init, kmeans_iters,
                dead_code_threshold, float(quantizer_dropout),
            )  # fmt: skip
        else:
            raise ConfigError(f"rvq_codec: quantizer={quantizer!r}; use 'factorized' or 'ema'")
        self.decoder = DACDecoder(latent_dim, decoder_dim, decoder_rates)
        self.init_training(discriminator, loss)

    # ---- geometry ------------------------------------------------------------------------

    @property
    def delay(self) -> int:
        """Samples of context each side that DAC's chunked compress pads (``DAC.delay``)."""
        from audiokit.codec.dac_chunked import codec_delay

        return codec_delay(self)

    def n_codebooks_for_bandwidth(self, kbps: float) -> int:
        """Codebooks that fit in `kbps` kbit/s: floor(kbps / per-codebook rate), in [1, K]."""
        per_q = bitrate_kbps(1, self.codebook_size, self.sample_rate / self.hop_length)
        return max(1, min(self.n_codebooks, int(math.floor(kbps / per_q + 1e-9))))

    def _check_wav(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise AudioError(
                f"rvq_codec: expected mono audio (B, 1, S), got shape {tuple(wav.shape)}; "
                "downmix to one channel first"
            )
        return wav

    def pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, 1, S) -> (B, 1, ceil(S / hop) * hop), zeros on the right (DAC's preprocess)."""
        right = -wav.shape[-1] % self.hop_length
        return F.pad(wav, (0, right)) if right else wav

    # ---- inference -----------------------------------------------------------------------

    def encode(self, wav: torch.Tensor, n_codebooks: int | None = None) -> CodecEncoding:
        """wav (B, 1, S) -> codes (B, k, ceil(S / hop)); num_samples = S."""
        wav = self._check_wav(wav)
        z = self.encoder(self.pad_to_hop(wav))
        codes = self.quantizer.encode(z, n_codebooks)
        return CodecEncoding(codes=codes, num_samples=int(wav.shape[-1]))

    def decode(self, encoding: CodecEncoding) -> torch.Tensor:
        """encoding -> wav (B, 1, S), trimmed (or zero-padded) to num_samples. Encodings from
        :func:`audiokit.codec.dac_chunked.compress` (``extra["chunk_length"]``) are decompressed."""
        if "chunk_length" in encoding.extra:
            from audiokit.codec.dac_chunked import decompress

            return decompress(self, encoding)
        if encoding.codes is None:
            raise ConfigError("rvq_codec: the encoding has no codes; encode with an RVQ codec")
        audio = self.decoder(self.quantizer.decode(encoding.codes))
        if encoding.num_samples is not None:
            audio = fit_length(audio, encoding.num_samples)
        return audio

    def compress(
        self,
        wav: torch.Tensor,
        win_duration: float | None = 1.0,
        n_codebooks: int | None = None,
        normalize_db: float | None = -16.0,
    ) -> CodecEncoding:
        """DAC's chunked, loudness-normalised ``compress`` (see :mod:`audiokit.codec.dac_chunked`)."""
        from audiokit.codec.dac_chunked import compress

        return compress(self, wav, win_duration, n_codebooks, normalize_db)

    # ---- training ------------------------------------------------------------------------

    def forward_train(self, wav: torch.Tensor) -> CodecOutput:
        """wav (B, 1, S) -> reconstruction trimmed to S, quantised latent, codes, VQ losses."""
        wav = self._check_wav(wav)
        z = self.encoder(self.pad_to_hop(wav))
        z_q, codes, losses = self.quantizer(z)
        audio = fit_length(self.decoder(z_q), wav.shape[-1])
        return CodecOutput(audio=audio, latent=z_q, codes=codes, losses=losses)
