"""Codec training losses: multi-scale mel L1 (DAC), least-squares GAN, feature matching.

Discriminator outputs are lists with one ``(logits, feature_maps)`` pair per sub-discriminator
(see :mod:`audiokit.codec.discriminators`); logits and feature maps have any shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.errors import ConfigError
from audiokit.features.mel import MelSpectrogram

DiscOutput = list[tuple[torch.Tensor, list[torch.Tensor]]]

# DAC conf/base.yml: seven scales, 32..2048-sample windows, 5..320 mel bands.
DAC_WINDOW_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048)
DAC_N_MELS = (5, 10, 20, 40, 80, 160, 320)


class MultiScaleMelLoss(nn.Module):
    """DAC's ``MelSpectrogramLoss``: L1 between log10 mel magnitudes at several STFT scales.

    Per scale ``w`` (window ``w``, hop ``w // 4``, centred reflect-padded STFT with
    audiotools' default window, the square root of a periodic Hann, Slaney mel filters on the
    *magnitude*), the loss is
    ``log_weight * L1(log10(clamp(mel_x, eps) ** pow), log10(clamp(mel_y, eps) ** pow))
    + mag_weight * L1(mel_x, mel_y)``; scales are summed (as DAC). The filterbanks are
    non-persistent buffers built once. Defaults are DAC's training config (mag_weight 0, pow 1).
    """

    def __init__(
        self,
        sample_rate: int,
        window_lengths: Sequence[int] = DAC_WINDOW_LENGTHS,
        n_mels: Sequence[int] = DAC_N_MELS,
        clamp_eps: float = 1e-5,
        mag_weight: float = 0.0,
        log_weight: float = 1.0,
        pow: float = 1.0,
        fmin: float = 0.0,
        fmax: float | None = None,
        window: str = "sqrt_hann",
    ) -> None:
        super().__init__()
        if window not in ("sqrt_hann", "hann"):
            raise ConfigError(f"mel loss: window={window!r}; use sqrt_hann (DAC's) or hann")
        if len(window_lengths) != len(n_mels) or not window_lengths:
            raise ConfigError(
                f"mel loss: window_lengths {list(window_lengths)} and n_mels {list(n_mels)} "
                "must be non-empty lists of the same length; fix loss.mel_options"
            )
        self.scales = nn.ModuleList(
            MelSpectrogram(
                sample_rate,
                n_fft=w,
                hop_length=w // 4,
                n_mels=m,
                fmin=fmin,
                fmax=fmax,
                center=True,
                pad_mode="reflect",
                power=1.0,
                norm="slaney",
            )
            for w, m in zip(window_lengths, n_mels, strict=True)
        )
        if window == "sqrt_hann":
            for mel in self.scales:
                mel.window = mel.window.sqrt()
        self.clamp_eps, self.mag_weight, self.log_weight, self.pow = (
            clamp_eps,
            mag_weight,
            log_weight,
            pow,
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y (B, C, S) or (B, S) -> scalar; x is the estimate, y the reference."""
        n = x.shape[0] if x.dim() == 2 else x.shape[0] * x.shape[1]
        both = torch.cat([x.reshape(n, -1), y.reshape(n, -1)]).float()  # one STFT per scale
        loss = both.new_zeros(())
        with torch.autocast(both.device.type, enabled=False):  # log10 of bf16 mels is too coarse
            for mel in self.scales:
                loss = loss + self._scale_loss(mel(both), n)
        return loss

    def _scale_loss(self, m: torch.Tensor, n: int) -> torch.Tensor:
        """m (2n, n_mels, frames): estimates then references -> this scale's loss."""
        loss = m.new_zeros(())
        mx, my = m[:n], m[n:]
        if self.log_weight:
            lx = mx.clamp(min=self.clamp_eps).pow(self.pow).log10()
            ly = my.clamp(min=self.clamp_eps).pow(self.pow).log10()
            loss = loss + self.log_weight * F.l1_loss(lx, ly)
        if self.mag_weight:
            loss = loss + self.mag_weight * F.l1_loss(mx, my)
        return loss


def lsgan_discriminator_loss(fake: DiscOutput, real: DiscOutput) -> torch.Tensor:
    """Sum over sub-discriminators of ``mean(D(fake)^2) + mean((1 - D(real))^2)``.

    `fake` must come from detached generator audio (the caller's job).
    """
    loss = fake[0][0].new_zeros((), dtype=torch.float32)
    for (lf, _), (lr, _) in zip(fake, real, strict=True):
        loss = loss + lf.float().pow(2).mean() + (1.0 - lr.float()).pow(2).mean()
    return loss


def lsgan_generator_loss(fake: DiscOutput) -> torch.Tensor:
    """Sum over sub-discriminators of ``mean((1 - D(fake))^2)``."""
    loss = fake[0][0].new_zeros((), dtype=torch.float32)
    for lf, _ in fake:
        loss = loss + (1.0 - lf.float()).pow(2).mean()
    return loss


def feature_matching_loss(fake: DiscOutput, real: DiscOutput) -> torch.Tensor:
    """Sum over sub-discriminators and layers of ``mean |f_fake - f_real|`` (real detached)."""
    loss = fake[0][0].new_zeros((), dtype=torch.float32)
    for (_, ff), (_, fr) in zip(fake, real, strict=True):
        for a, b in zip(ff, fr, strict=True):
            loss = loss + F.l1_loss(a.float(), b.detach().float())
    return loss


def si_sdr(
    estimate: torch.Tensor, reference: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """Scale-invariant SDR in dB per item, zero-mean (as audiotools' SISDRLoss).

    estimate, reference: (B, C, S) or (B, S); lengths (B,) valid samples (None: all).
    Returns (B,) dB (channels averaged).
    """
    if estimate.dim() == 2:
        estimate, reference = estimate.unsqueeze(1), reference.unsqueeze(1)
    est, ref = estimate.float(), reference.float()
    s = est.shape[-1]
    if lengths is None:
        lengths = torch.full((est.shape[0],), s, device=est.device)
    mask = (torch.arange(s, device=est.device) < lengths[:, None]).unsqueeze(1).float()  # valid
    count = lengths.clamp(min=1).float().view(-1, 1, 1)
    est = (est - (est * mask).sum(-1, keepdim=True) / count) * mask
    ref = (ref - (ref * mask).sum(-1, keepdim=True) / count) * mask
    eps = 1e-8
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    noise = est - target
    ratio = (target.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps)
    return (10.0 * torch.log10(ratio)).mean(-1)
