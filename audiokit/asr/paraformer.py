"""Paraformer: non-autoregressive ASR with a CIF length predictor (registered as ``paraformer``).

Gao et al. 2022, "Paraformer: Fast and Accurate Parallel Transformer for Non-autoregressive
End-to-End Speech Recognition"; behaviour follows FunASR's ``funasr/models/paraformer``::

    fbank (B, T, 80) -> LFR(lfr_m, lfr_n) -> CMVN -> encoder (SANM | Conformer) -> enc (B, T', d)
    enc -> CIF predictor -> acoustic embeddings (B, N, d), one per token
    (enc, embeddings) -> NAR decoder (SANM | transformer) -> logits (B, N, V), all N at once

Training: the predictor's alphas are rescaled to the target length (+1 for ``</s>`` when
``predictor_bias`` = 1), the decoder gets the acoustic embeddings, of which the glancing sampler
replaces ``sampling_ratio x #errors`` randomly chosen ones by the target tokens' embeddings
(``decoder.embed``) after a first, gradient-free decoder pass. Loss = label-smoothed CE +
``predictor_weight`` x MAE(target length, predicted length) [+ CTC mixed in by ``ctc_weight``].

CMVN statistics are buffers on the LFR-stacked features (``input_dim * lfr_m``), so FunASR's
``am.mvn`` (``(x + AddShift) * Rescale``) maps to ``mean = -AddShift``, ``istd = Rescale``.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiokit.asr.cif import PREDICTORS, CifOutput
from audiokit.asr.ctc_model import token_error_rate
from audiokit.asr.hypothesis import Hypothesis
from audiokit.asr.label_smoothing import label_smoothing_loss
from audiokit.errors import ConfigError, FeatureError
from audiokit.features.cmvn import GlobalCMVN
from audiokit.features.lfr import apply_lfr
from audiokit.nn.conformer import ConformerEncoder
from audiokit.nn.masks import make_valid_mask
from audiokit.nn.sanm import SANMEncoder
from audiokit.nn.sanm_decoder import ParaformerSANMDecoder, TransformerNARDecoder
from audiokit.registry import register_model
from audiokit.train.interface import IGNORE_ID, Batch


@register_model("paraformer")
class Paraformer(nn.Module):
    """Paraformer ASR model; shapes and methods as in the module docstring.

    Every constructor argument is a plain number/string/list (``self.config`` is model.yaml's
    ``args``). ``encoder``: "sanm" | "conformer"; ``predictor``: "v1" | "v2";
    ``decoder``: "sanm" | "transformer". With the conformer encoder, ``rel_pos`` ("latest" |
    "legacy") and ``norm_eps`` select ESPnet's legacy relative positions and LayerNorm epsilon
    (FunASR's ConformerEncoder: "legacy", 1e-12).
    """

    decoders = ("greedy", "beam")

    def __init__(
        self,
        input_dim: int = 80,
        vocab_size: int = 4,
        lfr_m: int = 7,
        lfr_n: int = 6,
        encoder: str = "sanm",
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 2048,
        num_layers: int = 12,
        sanm_kernel: int = 11,
        sanm_shift: int = 0,
        conv_kernel: int = 15,
        subsampling: str = "conv2d4",
        conv_norm: str = "batch_norm",
        rel_pos: str = "latest",
        norm_eps: float = 1e-5,
        dropout: float = 0.1,
        attn_dropout: float = 0.1,
        predictor: str = "v2",
        predictor_l_order: int = 1,
        predictor_r_order: int = 1,
        predictor_dropout: float = 0.1,
        cif_threshold: float = 1.0,
        smooth_factor: float = 1.0,
        noise_threshold: float = 0.0,
        tail_threshold: float = 0.45,
        decoder: str = "sanm",
        decoder_layers: int = 6,
        decoder_fsmn_layers: int = 0,
        decoder_heads: int = 4,
        decoder_ff_dim: int = 2048,
        decoder_kernel: int = 11,
        decoder_sanm_shift: int = 0,
        decoder_dropout: float = 0.1,
        decoder_self_attn_dropout: float = 0.1,
        decoder_src_attn_dropout: float = 0.1,
        ctc_weight: float = 0.0,
        lsm_weight: float = 0.1,
        length_normalized_loss: bool = True,
        predictor_weight: float = 1.0,
        predictor_bias: int = 1,
        sampling_ratio: float = 0.75,
        blank_id: int = 0,
        sos_id: int = 1,
        eos_id: int = 2,
        train_stage: str = "ce",
        mwer_weight: float = 1.0,
        mwer_nbest: int = 4,
        mwer_method: str = "negative",
        cmvn_mean: list[float] | None = None,
        cmvn_istd: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            k: v
            for k, v in locals().items()
            if k not in ("self", "__class__", "cmvn_mean", "cmvn_istd")
        }
        self.input_dim, self.vocab_size = input_dim, vocab_size
        self.lfr_m, self.lfr_n = lfr_m, lfr_n
        self.ctc_weight, self.lsm_weight = ctc_weight, lsm_weight
        self.length_normalized_loss = length_normalized_loss
        self.predictor_weight, self.predictor_bias = predictor_weight, predictor_bias
        self.sampling_ratio = sampling_ratio
        self.blank_id, self.sos_id, self.eos_id = blank_id, sos_id, eos_id
        if train_stage not in ("ce", "mwer"):
            raise ConfigError(f"paraformer train_stage={train_stage!r} is unknown; use ce or mwer")
        if mwer_method not in ("negative", "beam") or mwer_nbest < 2:
            raise ConfigError(
                f"paraformer mwer_method={mwer_method!r}, mwer_nbest={mwer_nbest}: use negative "
                "or beam, and an N-best of at least 2"
            )
        self.train_stage, self.mwer_weight = train_stage, mwer_weight
        self.mwer_nbest, self.mwer_method = mwer_nbest, mwer_method
        stacked = input_dim * lfr_m
        self.cmvn = GlobalCMVN(np.zeros(stacked, np.float32), np.ones(stacked, np.float32))
        if cmvn_mean is not None or cmvn_istd is not None:
            self.set_cmvn(cmvn_mean, cmvn_istd)
        if encoder == "sanm":
            self.encoder = SANMEncoder(
                stacked, d_model, num_heads, ff_dim, num_layers, sanm_kernel, sanm_shift,
                dropout, attn_dropout,
            )  # fmt: skip
        elif encoder == "conformer":
            self.encoder = ConformerEncoder(
                stacked, d_model, num_heads, ff_dim, num_layers, conv_kernel, subsampling,
                dropout, attn_dropout, conv_norm, rel_pos, norm_eps,
            )  # fmt: skip
        else:
            raise ConfigError(f"paraformer encoder={encoder!r} is unknown; use sanm or conformer")
        if predictor not in PREDICTORS:
            raise ConfigError(f"paraformer predictor={predictor!r} is unknown; use v1 or v2")
        self.predictor = PREDICTORS[predictor](
            d_model, predictor_l_order, predictor_r_order, cif_threshold, predictor_dropout,
            smooth_factor, noise_threshold, tail_threshold,
        )  # fmt: skip
        if decoder == "sanm":
            self.decoder: nn.Module = ParaformerSANMDecoder(
                vocab_size, d_model, decoder_heads, decoder_ff_dim, decoder_layers,
                decoder_fsmn_layers, decoder_kernel, decoder_sanm_shift, decoder_dropout,
                decoder_self_attn_dropout, decoder_src_attn_dropout,
            )  # fmt: skip
        elif decoder == "transformer":
            self.decoder = TransformerNARDecoder(
                vocab_size, d_model, decoder_heads, decoder_ff_dim, decoder_layers,
                decoder_dropout, decoder_self_attn_dropout, decoder_src_attn_dropout,
            )  # fmt: skip
        else:
            raise ConfigError(f"paraformer decoder={decoder!r} is unknown; use sanm or transformer")
        self.ctc = nn.Linear(d_model, vocab_size) if ctc_weight > 0.0 else None
        self.subsampling_factor = lfr_n * self.encoder.subsampling_factor

    # ---- front end and encoder ---------------------------------------------------------------

    @property
    def min_input_frames(self) -> int:
        """Shortest fbank input (frames) that gives one encoder frame."""
        return (self.encoder.min_input_frames - 1) * self.lfr_n + 1

    def set_cmvn(self, mean: Any, istd: Any) -> None:
        """Global CMVN of the LFR-stacked features: ``(input_dim * lfr_m,)`` each, or
        ``(input_dim,)`` fbank stats (as a recipe's cmvn.npz), tiled ``lfr_m`` times."""
        self.cmvn.load(mean, istd, tile=self.lfr_m)

    def frontend(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``fbank (B, T, input_dim)`` -> LFR -> CMVN: ``(B, T'', input_dim*lfr_m)`` + lengths."""
        if feats.shape[-1] != self.input_dim:
            raise FeatureError(
                f"features have dim {feats.shape[-1]} but the model expects {self.input_dim}; "
                "use the model dir's frontend"
            )
        short = lengths < self.min_input_frames
        if bool(short.any()):
            raise FeatureError(
                f"an utterance has {int(lengths[short][0])} feature frames but the model needs "
                f"at least {self.min_input_frames}; drop or pad very short audio"
            )
        if (self.lfr_m, self.lfr_n) != (1, 1):
            feats, lengths = apply_lfr(feats, self.lfr_m, self.lfr_n, lengths)
        return self.cmvn(feats, lengths), lengths

    def encode(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``fbank (B, T, input_dim)`` -> ``enc (B, T', d)`` (zero past ``enc_lengths (B,)``)."""
        x, lengths = self.frontend(feats, lengths)
        return self.encoder(x, lengths)

    # ---- predictor, decoder, CTC ---------------------------------------------------------------

    def predict(
        self,
        enc: torch.Tensor,
        enc_lengths: torch.Tensor,
        target_lengths: torch.Tensor | None = None,
    ) -> CifOutput:
        """CIF over the encoder output. ``target_lengths`` (training; already including the
        ``</s>`` added by ``predictor_bias``) rescales the alphas to those lengths."""
        return self.predictor(enc, enc_lengths, target_lengths)

    def decoder_logits(
        self,
        enc: torch.Tensor,
        enc_lengths: torch.Tensor,
        queries: torch.Tensor,
        token_lengths: torch.Tensor,
    ) -> torch.Tensor:
        return self.decoder(enc, enc_lengths, queries, token_lengths)

    def decoder_logprobs(
        self,
        enc: torch.Tensor,
        enc_lengths: torch.Tensor,
        acoustic_embeds: torch.Tensor,
        token_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """``(B, N, V)`` log-probabilities of every token position at once."""
        return F.log_softmax(
            self.decoder_logits(enc, enc_lengths, acoustic_embeds, token_lengths), -1
        )

    def ctc_logprobs(self, enc: torch.Tensor) -> torch.Tensor:
        """``(B, T', V)`` CTC log-probabilities (only with ``ctc_weight`` > 0)."""
        if self.ctc is None:
            raise ConfigError("this Paraformer has no CTC head (ctc_weight 0); decode without CTC")
        return F.log_softmax(self.ctc(enc), dim=-1)

    # ---- training ------------------------------------------------------------------------------

    def _targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder targets ``(B, N)`` padded with -1 (+ ``</s>`` with predictor_bias) + lengths."""
        lengths = batch.target_lengths.long()
        n = int(lengths.max()) if len(lengths) else 0
        ys = batch.targets[:, :n].long()
        if self.predictor_bias == 1:
            ys = F.pad(ys, (0, 1), value=IGNORE_ID)
            ys = ys.scatter(1, lengths[:, None], self.eos_id)
            lengths = lengths + 1
        return ys, lengths

    def _glance(
        self,
        enc: torch.Tensor,
        enc_lengths: torch.Tensor,
        ys: torch.Tensor,
        ys_lengths: torch.Tensor,
        acoustic: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Glancing sampler: ``(queries (B, N, d), first-pass logits (B, N, V))``.

        Replaces ``floor(sampling_ratio x #wrong first-pass tokens)`` uniformly chosen real
        positions of each utterance by the target token embeddings (FunASR ``sampler``).
        """
        valid = make_valid_mask(ys_lengths, ys.shape[1])
        target_embeds = self.decoder.embed(ys.clamp_min(0) * valid)
        with torch.no_grad():
            first = self.decoder_logits(enc, enc_lengths, acoustic, ys_lengths)
            same = ((first.argmax(-1) == ys) & valid).sum(1)
            n_replace = ((ys_lengths - same).float() * self.sampling_ratio).long()
            scores = torch.rand(ys.shape, device=ys.device).masked_fill(~valid, 2.0)
            rank = scores.argsort(dim=1).argsort(dim=1)
            replace = (rank < n_replace[:, None]) & valid
        queries = torch.where(replace[:, :, None], target_embeds, acoustic)
        return queries * valid[:, :, None].to(queries.dtype), first

    def _ctc_loss(self, enc, enc_lengths, batch: Batch) -> torch.Tensor:
        logp = self.ctc_logprobs(enc)
        flat = batch.targets[batch.targets >= 0]
        loss = F.ctc_loss(
            logp.float().transpose(0, 1), flat, enc_lengths, batch.target_lengths,
            blank=self.blank_id, reduction="sum", zero_infinity=True,
        )  # fmt: skip
        return loss / logp.shape[0]

    def _losses(self, batch: Batch, glance: bool) -> dict[str, torch.Tensor]:
        """``loss`` and the logged scalars (``att``, ``pre``, ``acc`` [, ``ctc``])."""
        return self._loss_terms(batch, glance)[0]

    def _loss_terms(
        self, batch: Batch, glance: bool
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """(:meth:`_losses`' dict, enc (B, T', d), enc_lengths (B,))."""
        enc, enc_lengths = self.encode(batch.feats, batch.feat_lengths)
        ys, ys_lengths = self._targets(batch)
        cif = self.predict(enc, enc_lengths, ys_lengths)
        first = None
        queries = cif.acoustic_embeds
        if glance and self.sampling_ratio > 0.0:
            queries, first = self._glance(enc, enc_lengths, ys, ys_lengths, queries)
        logits = self.decoder_logits(enc, enc_lengths, queries, ys_lengths)
        first = logits.detach() if first is None else first
        att = label_smoothing_loss(logits, ys, self.lsm_weight, self.length_normalized_loss)
        diff = (ys_lengths.to(cif.token_num.dtype) - cif.token_num).abs().sum()
        norm = ys_lengths.sum().clamp_min(1) if self.length_normalized_loss else len(ys_lengths)
        pre = diff / norm
        real = ys != IGNORE_ID
        acc = ((first.argmax(-1) == ys) & real).sum() / real.sum().clamp_min(1)
        out = {"att": att.detach(), "pre": pre.detach(), "acc": acc.detach()}
        if self.ctc is not None:
            ctc = self._ctc_loss(enc, enc_lengths, batch)
            loss = self.ctc_weight * ctc + (1 - self.ctc_weight) * att
            out["ctc"] = ctc.detach()
        else:
            loss = att
        out["loss"] = loss + self.predictor_weight * pre
        return out, enc, enc_lengths

    def training_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``train_stage: ce``: CE (label-smoothed, glancing sampler) + predictor_weight x MAE
        [+ CTC]. ``train_stage: mwer`` (fine-tuning a CE model, see :mod:`audiokit.asr.mwer`):
        the same without the sampler + ``mwer_weight`` x MWER over an N-best of negative
        samples (or the exact beam N-best with ``mwer_method: beam``)."""
        if self.train_stage == "mwer":
            from audiokit.asr.mwer import paraformer_mwer_losses

            return paraformer_mwer_losses(
                self, batch, nbest=self.mwer_nbest, mwer_weight=self.mwer_weight,
                method=self.mwer_method,
            )  # fmt: skip
        return self._losses(batch, glance=True)

    def validation_metrics(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss`` (teacher-forced lengths, no sampler) and ``ter`` of greedy decoding."""
        out, enc, enc_lengths = self._loss_terms(batch, glance=False)
        decoded = self.recognize_encoded(enc, enc_lengths, batch.feat_lengths, times=False)
        hyps = [h.token_ids for h in decoded]
        ter = token_error_rate(hyps, batch.targets, batch.target_lengths)
        return {"loss": out["loss"].detach(), "ter": ter.to(out["loss"].device)}

    # ---- inference -----------------------------------------------------------------------------

    @torch.no_grad()
    def recognize(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        method: str = "greedy",
        beam_size: int = 10,
        **options: Any,
    ) -> list[Hypothesis]:
        """One hypothesis per utterance; ``starts``/``ends`` in input feature frames.

        ``greedy``: argmax at every CIF position. ``beam``: N-best over positions
        (``audiokit.asr.paraformer_beam``), with CTC prefix scores when the model has a CTC head
        and ``ctc_weight`` (option; default the training weight) > 0. ``<blank>``, ``<s>`` and
        ``</s>`` are dropped; ``<unk>`` is kept. Option ``times=False`` skips the timestamps.
        """
        if method not in self.decoders:
            raise ConfigError(f"paraformer decoding method {method!r}; use greedy or beam")
        enc, enc_lengths = self.encode(feats, lengths)
        return self.recognize_encoded(enc, enc_lengths, lengths, method, beam_size, **options)

    @torch.no_grad()
    def recognize_encoded(
        self,
        enc: torch.Tensor,
        enc_lengths: torch.Tensor,
        feat_lengths: torch.Tensor,
        method: str = "greedy",
        beam_size: int = 10,
        **options: Any,
    ) -> list[Hypothesis]:
        """:meth:`recognize` from the encoder output ``(B, T', d)`` (``feat_lengths``: input
        frames per utterance, which bound the token times)."""
        if method not in self.decoders:
            raise ConfigError(f"paraformer decoding method {method!r}; use greedy or beam")
        cif = self.predict(enc, enc_lengths)
        n_pos = cif.lengths.tolist()
        if cif.acoustic_embeds.shape[1] == 0:  # nothing fired anywhere (silence)
            seqs: list[list[int]] = [[] for _ in n_pos]
        elif method == "greedy":
            logp = self.decoder_logprobs(enc, enc_lengths, cif.acoustic_embeds, cif.lengths)
            best = logp.argmax(-1).tolist()
            seqs = [row[:n] for row, n in zip(best, n_pos, strict=True)]
        else:
            logp = self.decoder_logprobs(enc, enc_lengths, cif.acoustic_embeds, cif.lengths)
            seqs = self._beam(logp, cif.lengths, enc, enc_lengths, beam_size, options)
        drop = {self.blank_id, self.sos_id, self.eos_id}
        ids = [[tok for tok in seq if tok not in drop] for seq in seqs]
        if options.get("times", True):
            times = self._times(cif, enc_lengths, feat_lengths, ids)
        else:
            times = [([], []) for _ in ids]
        return [
            Hypothesis(tok, starts, ends, {"cif_tokens": n})
            for tok, (starts, ends), n in zip(ids, times, n_pos, strict=True)
        ]

    def _beam(self, logp, token_lengths, enc, enc_lengths, beam_size, options) -> list[list[int]]:
        search = importlib.import_module("audiokit.asr.paraformer_beam").paraformer_beam_search
        ctc_weight = float(options.get("ctc_weight", self.ctc_weight))
        ctc = self.ctc_logprobs(enc) if self.ctc is not None and ctc_weight > 0 else None
        nbest = search(
            logp, token_lengths, ctc, enc_lengths, beam_size,
            ctc_weight if ctc is not None else 0.0,
            blank=self.blank_id, specials=(self.sos_id, self.eos_id),
        )  # fmt: skip
        return [list(n[0][0]) if n else [] for n in nbest]

    def _times(
        self,
        cif: CifOutput,
        enc_lengths: torch.Tensor,
        feat_lengths: torch.Tensor,
        ids: list[list[int]],
    ) -> list[tuple[list[float], list[float]]]:
        """Per utterance (starts, ends) of the kept tokens in input feature frames, clipped to
        the input (FunASR's -1.5 frame shift and the tail frame can reach past either end).

        FunASR's rules (:mod:`audiokit.asr.cif_timestamps`) on the CIF alphas, tail frame
        included, rescaled to the number of kept tokens + 1. The peaks are not passed: their
        fires count the dropped specials too, so "exactly N + 1 fires" would be a coincidence.
        """
        from audiokit.asr.cif_timestamps import cif_token_times

        factor = float(self.subsampling_factor)
        rows = enc_lengths + (cif.alphas.shape[1] - int(enc_lengths.max()))  # + the tail frame
        spans = cif_token_times(cif.alphas, [len(x) for x in ids], rows.tolist())
        out = []
        for (st, en), n in zip(spans, feat_lengths.tolist(), strict=True):
            clip = lambda v, n=n: min(max(float(v) * factor, 0.0), float(n))  # noqa: E731
            out.append(([clip(v) for v in st], [clip(v) for v in en]))
        return out
