"""GAN discriminators for codec training: DAC's MPD + MRD, EnCodec's MS-STFT discriminator.

Every discriminator's ``forward(wav (B, 1, S))`` returns a list with one
``(logits, feature_maps)`` pair per sub-discriminator: ``logits`` is the last conv's output (any
shape), ``feature_maps`` the activations of every layer before it (for feature matching).
Weight-normalised convs keep the old ``weight_g``/``weight_v`` names (as DAC's checkpoints).
Channel widths are arguments so tests can build tiny ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.errors import ConfigError
from audiokit.nn.weight_norm import _init_gv

DiscOutput = list[tuple[torch.Tensor, list[torch.Tensor]]]

# DAC's MRD frequency bands, as fractions of the STFT bins.
DAC_BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))


class WNConv2d(nn.Conv2d):
    """``nn.Conv2d`` with old-style weight norm (``weight_g`` (out,1,1,1), ``weight_v``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_g, self.weight_v = _init_gv(self.weight)
        del self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, C_out, H', W')."""
        return self._conv_forward(x, torch._weight_norm(self.weight_v, self.weight_g, 0), self.bias)


def _run(layers: nn.ModuleList, x: torch.Tensor, slope: float) -> tuple[torch.Tensor, list]:
    """Conv + leaky ReLU per layer, collecting each activation."""
    fmaps = []
    for conv in layers:
        x = F.leaky_relu(conv(x), slope)
        fmaps.append(x)
    return x, fmaps


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN/DAC period discriminator: the waveform folded to (S/p, p), (5, 1) convs."""

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024)) -> None:
        super().__init__()
        self.period = period
        chans = [1, *channels]
        self.convs = nn.ModuleList(
            WNConv2d(
                chans[i],
                chans[i + 1],
                (5, 1),
                (3, 1) if i < len(channels) - 1 else 1,
                padding=(2, 0),
            )
            for i in range(len(channels))
        )
        self.conv_post = WNConv2d(chans[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 1, S) -> logits (B, 1, S'/p', p), feature maps."""
        s = x.shape[-1]
        x = F.pad(x, (0, self.period - s % self.period), mode="reflect")  # as DAC: always pads
        x = x.view(x.shape[0], 1, -1, self.period)
        x, fmaps = _run(self.convs, x, 0.1)
        return self.conv_post(x), fmaps


class MultiPeriodDiscriminator(nn.Module):
    """One :class:`PeriodDiscriminator` per period (DAC/HiFi-GAN: 2, 3, 5, 7, 11)."""

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, x: torch.Tensor) -> DiscOutput:
        return [d(x) for d in self.discriminators]


class BandSTFTDiscriminator(nn.Module):
    """DAC's MRD at one resolution: complex STFT (real, imag channels) split into frequency
    bands, a conv stack per band, outputs concatenated along frequency into a shared post conv.
    """

    def __init__(
        self,
        window_length: int,
        channels: int = 32,
        hop_factor: float = 0.25,
        bands: Sequence[Sequence[float]] = DAC_BANDS,
    ) -> None:
        super().__init__()
        self.window_length = window_length
        self.hop_length = int(window_length * hop_factor)
        n_bins = window_length // 2 + 1
        self.bands = [(int(lo * n_bins), int(hi * n_bins)) for lo, hi in bands]
        ch = channels

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                [
                    WNConv2d(2, ch, (3, 9), (1, 1), padding=(1, 4)),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(ch, ch, (3, 9), (1, 2), padding=(1, 4)),
                    WNConv2d(ch, ch, (3, 3), (1, 1), padding=(1, 1)),
                ]
            )

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.conv_post = WNConv2d(ch, 1, (3, 3), (1, 1), padding=(1, 1))
        # audiotools' default STFT window, which DAC's MRD uses: sqrt of a periodic Hann
        window = torch.hann_window(window_length).sqrt()
        self.register_buffer("window", window, persistent=False)

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, S) -> (B, 2, frames, bins): audiotools' ``match_stride`` STFT, so
        ``frames = ceil(S / hop)``."""
        s, hop, win = x.shape[-1], self.hop_length, self.window_length
        right = -(-s // hop) * hop - s
        pad = (win - hop) // 2
        x = F.pad(x, (pad, pad + right), mode="reflect").squeeze(1).float()
        spec = torch.stft(
            x, win, hop, window=self.window, center=True, pad_mode="reflect", return_complex=True
        )[..., 2:-2]  # (B, bins, frames)
        return torch.view_as_real(spec).permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 1, S) -> logits (B, 1, frames, bins'), feature maps."""
        spec = self.spectrogram(x)
        outs, fmaps = [], []
        for (lo, hi), layers in zip(self.bands, self.band_convs, strict=True):
            band, maps = _run(layers, spec[..., lo:hi], 0.1)
            outs.append(band)
            fmaps.extend(maps)
        return self.conv_post(torch.cat(outs, dim=-1)), fmaps


class MultiBandMultiScaleSTFTDiscriminator(nn.Module):
    """DAC's multi-resolution discriminator: one :class:`BandSTFTDiscriminator` per window."""

    def __init__(
        self,
        window_lengths: Sequence[int] = (2048, 1024, 512),
        channels: int = 32,
        hop_factor: float = 0.25,
        bands: Sequence[Sequence[float]] = DAC_BANDS,
    ) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            BandSTFTDiscriminator(w, channels, hop_factor, bands) for w in window_lengths
        )

    def forward(self, x: torch.Tensor) -> DiscOutput:
        return [d(x) for d in self.discriminators]


class STFTDiscriminator(nn.Module):
    """EnCodec's ``DiscriminatorSTFT``: normalised complex STFT (no centring) as 2 channels,
    (3, 9) convs dilated in time, stride 2 in frequency, leaky ReLU 0.2."""

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int,
        filters: int = 32,
        max_filters: int = 1024,
        filters_scale: int = 1,
        dilations: Sequence[int] = (1, 2, 4),
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        convs = [WNConv2d(2, filters, (3, 9), padding=(1, 4))]
        ch = filters
        for i, d in enumerate(dilations):
            out = min(filters_scale ** (i + 1) * filters, max_filters)
            convs.append(WNConv2d(ch, out, (3, 9), (1, 2), dilation=(d, 1), padding=(d, 4)))
            ch = out
        out = min(filters_scale ** (len(dilations) + 1) * filters, max_filters)
        convs.append(WNConv2d(ch, out, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = WNConv2d(out, 1, (3, 3), padding=(1, 1))

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, S) -> (B, 2, frames, bins): torchaudio's ``Spectrogram(normalized=True,
        center=False, power=None)`` as (real, imag) channels."""
        spec = torch.stft(
            x.squeeze(1).float(),
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=False,
            return_complex=True,
        )
        spec = spec / self.window.pow(2).sum().sqrt()  # torchaudio's "window" normalisation
        return torch.view_as_real(spec).permute(0, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (B, 1, S) -> logits (B, 1, frames, bins'), feature maps."""
        z, fmaps = _run(self.convs, self.spectrogram(x), 0.2)
        return self.conv_post(z), fmaps


class MultiScaleSTFTDiscriminator(nn.Module):
    """EnCodec's MS-STFT discriminator (defaults: n_fft 1024/2048/512, hop = n_fft / 4)."""

    def __init__(
        self,
        n_ffts: Sequence[int] = (1024, 2048, 512),
        hop_lengths: Sequence[int] | None = None,
        filters: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        hops = hop_lengths or [n // 4 for n in n_ffts]
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(n, h, n, filters, **kwargs) for n, h in zip(n_ffts, hops, strict=True)
        )

    def forward(self, x: torch.Tensor) -> DiscOutput:
        return [d(x) for d in self.discriminators]


KINDS = {
    "mpd": MultiPeriodDiscriminator,
    "mrd": MultiBandMultiScaleSTFTDiscriminator,
    "msstft": MultiScaleSTFTDiscriminator,
}


class CombinedDiscriminator(nn.Module):
    """Several discriminators on one input; outputs concatenated.

    With ``normalize`` (DAC), each waveform is made zero-mean and peak-scaled to 0.8 first, so
    the discriminators judge the waveform's shape, not its level. Multi-channel input
    (B, C, S) is folded to (B*C, 1, S).
    """

    def __init__(self, discriminators: dict[str, nn.Module], normalize: bool = True) -> None:
        super().__init__()
        self.discriminators = nn.ModuleDict(discriminators)
        self.normalize = normalize

    def forward(self, wav: torch.Tensor) -> DiscOutput:
        """wav (B, C, S) or (B, S) -> [(logits, feature_maps), ...]."""
        x = wav.reshape(-1, 1, wav.shape[-1]).float()
        if self.normalize:
            x = x - x.mean(dim=-1, keepdim=True)
            x = 0.8 * x / (x.abs().amax(dim=-1, keepdim=True) + 1e-9)
        out: DiscOutput = []
        for d in self.discriminators.values():
            out.extend(d(x))
        return out


def build_discriminator(cfg: dict[str, Any]) -> nn.Module:
    """A :class:`CombinedDiscriminator` from a config mapping.

    ``{"mpd": {...kwargs} | null, "mrd": {...}, "msstft": {...}, "normalize": bool}``; a kind
    that is absent or null is not used. An empty mapping means DAC's (mpd + mrd, defaults).
    """
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"model.args.discriminator={cfg!r} must be a mapping like {{mpd: {{}}, mrd: {{}}}}"
        )
    cfg = dict(cfg) or {"mpd": {}, "mrd": {}}
    normalize = bool(cfg.pop("normalize", True))
    unknown = sorted(set(cfg) - set(KINDS))
    if unknown:
        raise ConfigError(
            f"model.args.discriminator: unknown kind '{unknown[0]}'; use {', '.join(KINDS)}"
        )
    subs = {}
    for kind, args in cfg.items():
        if args is None:
            continue
        try:
            subs[kind] = KINDS[kind](**dict(args))
        except TypeError as e:
            raise ConfigError(
                f"model.args.discriminator.{kind}: bad arguments ({e}); fix the config"
            ) from None
    if not subs:
        raise ConfigError("model.args.discriminator enables no discriminator; add mpd/mrd/msstft")
    return CombinedDiscriminator(subs, normalize=normalize)
