"""QDAC: an RVQ codec trained end to end with an ASR network on its quantised latents (QTTS).

From "Quantize More, Lose Less: Autoregressive Generation from Residually Quantized Speech
Representations" (QTTS, arXiv 2507.12197). What follows the paper (its description of QDAC is
brief, and only that description was consulted here, not the authors' code):

* a DAC-style RVQ codec (conv encoder/decoder, residual VQ with many codebooks for near-lossless
  reconstruction) trained with the GAN recipe (multi-scale mel, LSGAN, feature matching, VQ
  losses; :class:`audiokit.codec.gan.CodecTrainingMixin`);
* trained *end to end* with an ASR-based autoregressive network that reads the quantised latents
  and predicts the transcript (teacher-forced cross-entropy), so the codes carry the linguistic
  content in a form a TTS language model can predict ("semantic disentanglement").

The paper leaves the ASR network and its coupling open; our choices:

* the ASR reads exactly what the decoder reads: the quantised latent ``z_q (B, D, T)`` after
  quantiser dropout. Items cut to ``k`` codebooks are transcribed too, which should favour
  content in the first codebooks (coarse-to-fine, as TTS language models want; the intent of
  this choice, not something measured here);
* gradients of the ASR loss reach the encoder and the quantiser's projections through the
  straight-through estimator (the codebook rows themselves learn from the VQ losses);
* network: ``Linear(D -> d) + LayerNorm + sinusoidal positions``, ``encoder_layers`` pre-norm
  transformer encoder layers, then the pre-norm transformer attention decoder of
  :mod:`audiokit.nn.ar_decoder` (``layers`` layers) cross-attending to that memory; targets
  ``<sos> y`` -> ``y <eos>``, cross-entropy (optional label smoothing) averaged over tokens,
  returned as ``CodecOutput.losses["asr"]`` (weight ``loss["asr"]``, default 1.0 next to DAC's
  mel weight 15);
* the ASR branch is training-only (prefix ``asr.`` in ``training_only_prefixes``): a packed model
  dir is a plain codec (``asr: None``); :meth:`QDAC.transcribe` works while the branch is there
  (training checkpoints), for checking that the codes keep the content.

Training needs transcripts of exactly the audio the codec sees: ``forward_train_batch`` passes
``batch.targets`` / ``batch.target_lengths`` / ``batch.feat_lengths`` (so crops must be whole
utterances, not random segments of longer ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.asr.label_smoothing import label_smoothing_loss
from audiokit.codec.base import CodecEncoding, CodecOutput
from audiokit.codec.dac import RVQCodec, fit_length
from audiokit.errors import ConfigError
from audiokit.nn.ar_decoder import TransformerARDecoder, absolute_sinusoids
from audiokit.nn.masks import make_pad_mask
from audiokit.registry import register_model
from audiokit.train.interface import IGNORE_ID, Batch

ASR_DEFAULTS: dict[str, Any] = {
    "d_model": 256,
    "heads": 4,
    "ff_dim": 1024,
    "encoder_layers": 2,
    "layers": 4,
    "dropout": 0.1,
    "label_smoothing": 0.0,
}


def teacher_forcing(
    targets: torch.Tensor, target_lengths: torch.Tensor, sos: int, eos: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``targets (B, U)`` padded with -1 -> ``(ys_in, ys_out)``, each ``(B, U + 1)``.

    ``ys_in = <sos> y`` (padding filled with ``eos``, never a target); ``ys_out = y <eos>``
    padded with -1.
    """
    real = torch.arange(targets.shape[1], device=targets.device) < target_lengths[:, None]
    y = targets.masked_fill(~real, IGNORE_ID)
    ys_in = F.pad(y.masked_fill(~real, eos), (1, 0), value=sos)
    ys_out = F.pad(y, (0, 1), value=IGNORE_ID)
    ys_out = ys_out.scatter(1, target_lengths[:, None].long(), eos)
    return ys_in, ys_out


class LatentASR(nn.Module):
    """Attention-decoder ASR on a latent sequence ``(B, D, T)``; see the module docstring."""

    def __init__(
        self,
        latent_dim: int,
        vocab_size: int,
        d_model: int,
        heads: int,
        ff_dim: int,
        encoder_layers: int,
        layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(latent_dim, d_model)
        self.norm = nn.LayerNorm(d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ff_dim, dropout, batch_first=True, norm_first=True
        )
        self.encoder = (
            nn.TransformerEncoder(layer, encoder_layers, enable_nested_tensor=False)
            if encoder_layers > 0
            else None
        )
        self.decoder = TransformerARDecoder(vocab_size, d_model, heads, ff_dim, layers, dropout)

    def memory(self, latent: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        """``latent (B, D, T)`` -> ``(B, T, d)``; frames ``>= frame_lengths`` are padding."""
        x = self.norm(self.proj(latent.transpose(1, 2)))
        x = x + absolute_sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype)
        if self.encoder is not None:
            pad = make_pad_mask(frame_lengths, x.shape[1])  # True = padding frame
            x = self.encoder(x, src_key_padding_mask=pad)
        return x

    def forward(
        self, latent: torch.Tensor, frame_lengths: torch.Tensor, ys_in: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced logits ``(B, U + 1, V)`` for ``ys_in (B, U + 1)``."""
        return self.decoder(ys_in, self.memory(latent, frame_lengths), frame_lengths)


@register_model("qdac")
class QDAC(RVQCodec):
    """RVQ codec + training-time latent ASR (see the module docstring).

    Codec args are :class:`audiokit.codec.dac.RVQCodec`'s (16 kHz defaults here). ``vocab_size``,
    ``sos_id``, ``eos_id``: the transcript tokenizer's (the trainer fills them). ``asr``: sizes
    of the ASR network (keys of ``ASR_DEFAULTS``; ``{}`` = defaults), None = no ASR branch
    (inference only, what packed dirs hold). Training (``discriminator`` set) requires it.
    """

    training_only_prefixes = ("discriminator.", "asr.")
    default_loss_weights = {"asr": 1.0}

    def __init__(
        self,
        encoder_dim: int = 64,
        encoder_rates: Sequence[int] = (2, 4, 5, 8),
        latent_dim: int | None = None,
        decoder_dim: int = 1536,
        decoder_rates: Sequence[int] = (8, 5, 4, 2),
        n_codebooks: int = 12,
        codebook_size: int = 1024,
        codebook_dim: int | Sequence[int] = 8,
        quantizer_dropout: float = 0.5,
        sample_rate: int = 16000,
        quantizer: str = "factorized",
        vocab_size: int | None = None,
        sos_id: int | None = None,
        eos_id: int | None = None,
        asr: dict | None = None,
        discriminator: dict | None = None,
        loss: dict | None = None,
    ) -> None:
        super().__init__(
            encoder_dim=encoder_dim,
            encoder_rates=encoder_rates,
            latent_dim=latent_dim,
            decoder_dim=decoder_dim,
            decoder_rates=decoder_rates,
            n_codebooks=n_codebooks,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            quantizer_dropout=quantizer_dropout,
            sample_rate=sample_rate,
            quantizer=quantizer,
            discriminator=discriminator,
            loss=loss,
        )
        self.vocab_size, self.sos_id, self.eos_id = vocab_size, sos_id, eos_id
        self.asr: LatentASR | None = None
        self.label_smoothing = 0.0
        if asr is None:
            if discriminator is not None:
                raise ConfigError(
                    "qdac: model.args.asr is not set, so this would train a plain RVQ codec; "
                    "add model.args.asr: {} (ASR sizes) or use architecture rvq_codec"
                )
            return
        unknown = sorted(set(asr) - set(ASR_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"qdac: model.args.asr.{unknown[0]} is not an option; use {', '.join(ASR_DEFAULTS)}"
            )
        if vocab_size is None or sos_id is None or eos_id is None:
            raise ConfigError(
                f"qdac: vocab_size={vocab_size}, sos_id={sos_id}, eos_id={eos_id}: the ASR branch "
                "needs all three; set data.tokenizer (with a <sos/eos> token) or model.args"
            )
        if not (0 <= sos_id < vocab_size and 0 <= eos_id < vocab_size):
            raise ConfigError(
                f"qdac: sos_id={sos_id}/eos_id={eos_id} outside the vocabulary [0, {vocab_size})"
            )
        opts = {**ASR_DEFAULTS, **asr}
        self.label_smoothing = float(opts.pop("label_smoothing"))
        self.asr = LatentASR(self.latent_dim, vocab_size, **opts)

    # ---- training ------------------------------------------------------------------------

    def frame_lengths(self, lengths: torch.Tensor | None, batch: int, frames: int, device):
        """Valid latent frames ``ceil(lengths / hop)`` per item ``(B,)`` (all when None)."""
        if lengths is None:
            return torch.full((batch,), frames, dtype=torch.long, device=device)
        n = torch.div(
            lengths.to(device) + self.hop_length - 1, self.hop_length, rounding_mode="floor"
        )
        return n.clamp(1, frames).long()

    def asr_loss(
        self,
        latent: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean token cross-entropy, token accuracy) of the transcript given ``latent (B, D, T)``.

        ``targets (B, U)`` padded with -1, ``target_lengths (B,)``, ``lengths (B,)`` samples.
        """
        if self.asr is None:
            raise ConfigError("qdac: this model has no ASR branch (asr: None); nothing to score")
        b, _, t = latent.shape
        frames = self.frame_lengths(lengths, b, t, latent.device)
        target_lengths = target_lengths.to(latent.device)
        ys_in, ys_out = teacher_forcing(
            targets.to(latent.device), target_lengths, self.sos_id, self.eos_id
        )
        logits = self.asr(latent, frames, ys_in)
        loss = label_smoothing_loss(logits, ys_out, self.label_smoothing, normalize_length=True)
        real = ys_out != IGNORE_ID
        acc = ((logits.argmax(-1) == ys_out) & real).sum() / real.sum().clamp_min(1)
        return loss, acc.detach()

    def forward_train(
        self,
        wav: torch.Tensor,
        targets: torch.Tensor | None = None,
        target_lengths: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> CodecOutput:
        """``wav (B, 1, S)`` -> reconstruction ``(B, 1, S)``, ``z_q``, codes and losses
        (``commitment``, ``codebook``, and ``asr`` when transcripts ``targets (B, U)`` padded
        with -1 + ``target_lengths (B,)`` are given; ``lengths (B,)`` = valid samples)."""
        wav = self._check_wav(wav)
        z = self.encoder(self.pad_to_hop(wav))
        z_q, codes, losses = self.quantizer(z)
        audio = fit_length(self.decoder(z_q), wav.shape[-1])
        if targets is not None and self.asr is not None:
            if target_lengths is None:
                target_lengths = (targets != IGNORE_ID).sum(1)
            losses = {**losses}
            losses["asr"], _ = self.asr_loss(z_q, targets, target_lengths, lengths)
        return CodecOutput(audio=audio, latent=z_q, codes=codes, losses=losses)

    def forward_train_batch(self, wav: torch.Tensor, batch: Batch) -> CodecOutput:
        """The GAN mixin's hook: pass the batch's transcripts and lengths to the ASR branch."""
        if self.asr is not None and batch.targets.numel() == 0:
            raise ConfigError(
                "qdac: the batch has no transcripts; set data.tokenizer so codec batches carry "
                "text targets (QDAC trains its ASR branch on them)"
            )
        return self.forward_train(wav, batch.targets, batch.target_lengths, batch.feat_lengths)

    # ---- diagnostics ---------------------------------------------------------------------

    @torch.no_grad()
    def transcribe(self, encoding: CodecEncoding, max_len: int = 200) -> list[list[int]]:
        """Greedy token ids per item from codes ``(B, k, T)`` (needs the ASR branch)."""
        if self.asr is None:
            raise ConfigError("qdac: this model has no ASR branch (packed dirs drop it)")
        if encoding.codes is None:
            raise ConfigError("qdac: transcribe needs codes; encode with an RVQ codec first")
        z_q = self.quantizer.decode(encoding.codes)
        b, _, t = z_q.shape
        lengths = None if encoding.num_samples is None else torch.full((b,), encoding.num_samples)
        frames = self.frame_lengths(lengths, b, t, z_q.device)
        memory = self.asr.memory(z_q, frames)
        return self.asr.decoder.greedy_decode(memory, frames, self.sos_id, self.eos_id, max_len)
