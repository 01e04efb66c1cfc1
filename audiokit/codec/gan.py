"""Adversarial training of codecs: the GAN side every codec model mixes in.

A codec model subclasses ``CodecTrainingMixin`` (before ``nn.Module``), sets ``sample_rate`` and
``channels``, and calls ``self.init_training(discriminator, loss)`` from its constructor with
its ``discriminator`` / ``loss`` constructor arguments. The trainer then sees two optimiser
groups, stepped in order on every batch (DAC's recipe):

1. ``"discriminator"``: the generator runs once (``forward_train``), its output is cached,
   and the discriminator takes the least-squares loss on real audio vs the *detached*
   reconstruction.
2. ``"generator"``: reuses the cached output (same batch) and minimises
   ``mel * L_mel + adv * L_adv + feature * L_fm + sum_k loss[k] * CodecOutput.losses[k]``.

Loss weights default to DAC's (mel 15, adv 1, feature 2, codebook 1, commitment 0.25); a model
adds its own defaults with ``default_loss_weights`` (e.g. ``{"kl": ...}``), the config's ``loss``
mapping overrides both. Two keys of ``loss`` are options, not weights: ``mel_options``
(arguments of :class:`MultiScaleMelLoss`) and ``disc_start_step`` (generator updates trained on
reconstruction only before the GAN starts; 0 = from the first step).

``discriminator: None`` makes an inference-only model (what packed model dirs hold: the
discriminator is training-only state, see ``training_only_prefixes``).

Batch layout: ``batch.feats`` waveforms ``(B, S)`` (mono) or ``(B, C, S)``, valid samples in
``batch.feat_lengths``; reconstructions are zeroed beyond them before any loss. Models that need
more of the batch (QDAC: transcripts in ``batch.targets``) override ``forward_train_batch``.
"""

from __future__ import annotations

import torch
from torch import nn

from audiokit.codec.base import CodecOutput
from audiokit.codec.discriminators import build_discriminator
from audiokit.codec.losses import (
    MultiScaleMelLoss,
    feature_matching_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    si_sdr,
)
from audiokit.errors import ConfigError, ModelError
from audiokit.train.interface import Batch

# DAC conf/base.yml lambdas.
DEFAULT_LOSS_WEIGHTS = {
    "mel": 15.0,
    "adv": 1.0,
    "feature": 2.0,
    "codebook": 1.0,
    "commitment": 0.25,
}
OPTION_KEYS = ("mel_options", "disc_start_step")
DISCRIMINATOR = "discriminator"
GENERATOR = "generator"


class CodecTrainingMixin:
    """GAN training for codec models (see the module docstring). Needs ``nn.Module``."""

    # Submodules that only training needs: packing a model dir drops them (and sets the
    # matching constructor argument to None).
    training_only_prefixes: tuple[str, ...] = ("discriminator.",)
    default_loss_weights: dict[str, float] = {}

    def init_training(self, discriminator: dict | None = None, loss: dict | None = None) -> None:
        """Build the discriminator (None: inference-only), loss weights and the mel loss."""
        loss = dict(loss or {})
        mel_options = loss.pop("mel_options", None) or {}
        disc_start = loss.pop("disc_start_step", 0)
        if isinstance(disc_start, bool) or not isinstance(disc_start, int) or disc_start < 0:
            raise ConfigError(
                f"model.args.loss.disc_start_step={disc_start!r} must be an integer >= 0"
            )
        weights = {**DEFAULT_LOSS_WEIGHTS, **self.default_loss_weights, **loss}
        for key, value in weights.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(
                    f"model.args.loss.{key}={value!r} must be a number (a loss weight); "
                    f"options are {', '.join(OPTION_KEYS)}"
                )
        self.loss_weights = {k: float(v) for k, v in weights.items()}
        self.disc_start_step = disc_start
        if not isinstance(mel_options, dict):
            raise ConfigError(f"model.args.loss.mel_options={mel_options!r} must be a mapping")
        try:
            self.mel_loss = MultiScaleMelLoss(self.sample_rate, **mel_options)
        except TypeError as e:
            raise ConfigError(f"model.args.loss.mel_options: bad arguments ({e})") from None
        self.discriminator = None
        if discriminator is not None:
            self.discriminator = build_discriminator(discriminator)
            # generator updates done so far: decides when the GAN starts; a buffer, so a
            # resumed run continues exactly (and packing drops it with the discriminator)
            self.discriminator.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        self._gan_cache: tuple[torch.Tensor, CodecOutput] | None = None

    # ----------------------------------------------------------------- plumbing
    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"discriminator": D params, "generator": every other parameter}, D first."""
        if self.discriminator is None:
            raise ConfigError(
                f"model {type(self).__name__} has no discriminator (inference-only); add "
                "model.args.discriminator (e.g. {mpd: {}, mrd: {}}) to train it"
            )
        disc = list(self.discriminator.parameters())
        ids = {id(p) for p in disc}
        return {DISCRIMINATOR: disc, GENERATOR: [p for p in self.parameters() if id(p) not in ids]}

    def forward_train_batch(self, wav: torch.Tensor, batch: Batch) -> CodecOutput:
        """The generator's training forward on `wav` (B, C, S); override to use more of `batch`."""
        return self.forward_train(wav)

    def _batch_wav(self, batch: Batch) -> torch.Tensor:
        """batch.feats (B, S) or (B, C, S) -> (B, C, S) float."""
        wav = batch.feats
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise ModelError(
                f"{type(self).__name__}: batch waveforms of shape {tuple(batch.feats.shape)} do "
                f"not fit a {self.channels}-channel codec; use data.task=codec with matching audio"
            )
        return wav.float()

    def _reconstruct(self, wav: torch.Tensor, batch: Batch) -> CodecOutput:
        """Generator output with the reconstruction zeroed beyond each item's length."""
        out = self.forward_train_batch(wav, batch)
        if out.audio.shape != wav.shape:
            raise ModelError(
                f"{type(self).__name__}.forward_train returned audio {tuple(out.audio.shape)} "
                f"for input {tuple(wav.shape)}; it must trim its output to the input length"
            )
        s = wav.shape[-1]
        valid = torch.arange(s, device=wav.device) < batch.feat_lengths.to(wav.device)[:, None]
        out.audio = out.audio * valid.unsqueeze(1).to(out.audio.dtype)  # True = real sample
        return out

    def _gan_active(self) -> bool:
        if self.disc_start_step == 0:
            return True
        return int(self.discriminator.generator_steps) >= self.disc_start_step

    def _aux_losses(self, out: CodecOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum of the model's own losses (codebook, commitment, kl, asr, ...)."""
        total = out.audio.new_zeros((), dtype=torch.float32)
        for key, value in out.losses.items():
            if key not in self.loss_weights:
                raise ConfigError(
                    f"{type(self).__name__} returns a '{key}' loss but model.args.loss has no "
                    f"weight for it; add loss.{key}: WEIGHT"
                )
            total = total + self.loss_weights[key] * value.float()
        return total, {k: v.detach().float() for k, v in out.losses.items()}

    # ----------------------------------------------------------------- training
    def training_losses(self, batch: Batch, group: str | None = None) -> dict[str, torch.Tensor]:
        """One optimiser group's loss on `batch` (see the module docstring)."""
        if group == DISCRIMINATOR:
            return self._discriminator_losses(batch)
        if group == GENERATOR:
            return self._generator_losses(batch)
        raise ConfigError(
            f"{type(self).__name__}.training_losses: unknown group {group!r}; codecs train with "
            f"the groups {DISCRIMINATOR!r} and {GENERATOR!r}"
        )

    def _discriminator_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        wav = self._batch_wav(batch)
        out = self._reconstruct(wav, batch)
        self._gan_cache = (batch.feats, out)
        disc = self.discriminator
        if not self._gan_active():
            # warm-up: a zero loss that still reaches D's parameters (backward needs a graph)
            zero = sum(p.reshape(-1)[0] for p in disc.parameters()) * 0.0
            return {"loss": zero}
        n = wav.shape[0]
        outs = disc(torch.cat([out.audio.detach(), wav]))  # one pass for fake and real
        fake = [(lg[:n], []) for lg, _ in outs]
        real = [(lg[n:], []) for lg, _ in outs]
        return {"loss": lsgan_discriminator_loss(fake, real)}

    def _generator_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        wav = self._batch_wav(batch)
        cached, self._gan_cache = self._gan_cache, None
        if cached is not None and cached[0] is batch.feats:
            out = cached[1]
        else:  # no discriminator step ran on this batch (or another batch): run the generator
            out = self._reconstruct(wav, batch)
        mel = self.mel_loss(out.audio, wav)
        w = self.loss_weights
        total = w["mel"] * mel
        logs = {"mel": mel.detach()}
        if self._gan_active():
            fake = self.discriminator(out.audio)
            with torch.no_grad():
                real = self.discriminator(wav)
            adv = lsgan_generator_loss(fake)
            feat = feature_matching_loss(fake, real)
            total = total + w["adv"] * adv + w["feature"] * feat
            logs.update(adv=adv.detach(), feature=feat.detach())
        aux, aux_logs = self._aux_losses(out)
        if self.training:
            self.discriminator.generator_steps += 1
        return {"loss": total + aux, **logs, **aux_logs}

    @torch.no_grad()
    def validation_metrics(self, batch: Batch) -> dict[str, torch.Tensor]:
        """{"loss": weighted mel + model losses (no adversarial terms), "mel": the multi-scale
        mel distance (the keep-best metric), "si_sdr": dB, higher is better}."""
        wav = self._batch_wav(batch)
        out = self._reconstruct(wav, batch)
        mel = self.mel_loss(out.audio, wav)
        aux, aux_logs = self._aux_losses(out)
        sdr = si_sdr(out.audio, wav, batch.feat_lengths).mean()
        return {"loss": self.loss_weights["mel"] * mel + aux, "mel": mel, "si_sdr": sdr, **aux_logs}
