"""Conformer-CTC acoustic model (registered as ``conformer_ctc``).

``features (B, T, D) -> GlobalCMVN -> ConformerEncoder -> Linear -> log_softmax (B, T', V)``.

CMVN statistics are buffers (``cmvn.mean``, ``cmvn.istd``) and therefore part of the state
dict: a checkpoint carries them. They start as identity (mean 0, istd 1) unless ``cmvn_mean`` /
``cmvn_istd`` are passed; :meth:`ConformerCTC.set_cmvn` loads them later (e.g. from
``cmvn.npz``) so that ``model.yaml`` need not list hundreds of floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiokit.asr.decode import ctc_greedy_search, ctc_prefix_beam_search, ctc_token_start_frames
from audiokit.asr.hypothesis import Hypothesis
from audiokit.errors import ConfigError
from audiokit.features.cmvn import GlobalCMVN
from audiokit.nn.conformer import ConformerEncoder
from audiokit.registry import register_model
from audiokit.train.interface import Batch


def token_edit_distance(hyps: list[list[int]], refs: list[list[int]]) -> torch.Tensor:
    """``(B,)`` Levenshtein distances between token-id sequences, all pairs at once.

    Dynamic programming over hypothesis positions; each row is vectorised over the batch and
    the reference positions (the in-row insertion chain is a running minimum via ``cummin``).
    """
    b = len(refs)
    h_len = torch.tensor([len(h) for h in hyps], dtype=torch.long)
    r_len = torch.tensor([len(r) for r in refs], dtype=torch.long)
    hm, rm = max(int(h_len.max()) if b else 0, 1), max(int(r_len.max()) if b else 0, 1)
    hyp = torch.full((b, hm), -1, dtype=torch.long)
    ref = torch.full((b, rm), -2, dtype=torch.long)
    for i, (h, r) in enumerate(zip(hyps, refs, strict=True)):  # packing only
        hyp[i, : len(h)] = torch.tensor(h, dtype=torch.long)
        ref[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    j = torch.arange(rm + 1)
    row = j.expand(b, rm + 1).clone()  # distance from the empty hypothesis
    result = row.gather(1, r_len[:, None]).squeeze(1).clone()  # for empty hypotheses
    for i in range(hm):
        sub = row[:, :-1] + (hyp[:, i : i + 1] != ref).long()
        best = torch.minimum(row[:, 1:] + 1, sub)
        best = torch.cat([row[:, :1] + 1, best], dim=1)
        # new[j] = min_k<=j best[k] + (j - k): a running minimum of best[k] - k.
        row = torch.cummin(best - j, dim=1).values + j
        done = h_len == i + 1
        result = torch.where(done, row.gather(1, r_len[:, None]).squeeze(1), result)
    return result


def token_error_rate(
    hyps: list[list[int]], targets: torch.Tensor, target_lengths: torch.Tensor
) -> torch.Tensor:
    """Token errors of ``hyps`` / reference tokens, as a float32 scalar on ``targets``' device.

    ``targets (B, U)`` padded reference ids, ``target_lengths (B,)`` valid tokens per row.
    """
    refs = [row[:n] for row, n in zip(targets.tolist(), target_lengths.tolist(), strict=True)]
    errors = token_edit_distance(hyps, refs).sum().double()
    return (errors / max(int(target_lengths.sum()), 1)).to(targets.device, torch.float32)


@register_model("conformer_ctc")
class ConformerCTC(nn.Module):
    """Conformer encoder + CTC output layer.

    ``forward(feats (B, T, input_dim), lengths (B,)) -> (log_probs (B, T', V), out_lengths (B,))``
    with ``T'`` the subsampled length (``subsampling_factor`` 4, 6 or 8). Every constructor
    argument is a plain number/string/list, so ``self.config`` can be written to model.yaml
    and handed back to :func:`audiokit.registry.build_model`.
    """

    decoders = ("greedy", "prefix_beam")

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        num_layers: int = 12,
        conv_kernel: int = 15,
        subsampling: str = "conv2d4",
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        cmvn_mean: list[float] | None = None,
        cmvn_istd: list[float] | None = None,
        blank_id: int = 0,
        conv_norm: str = "batch_norm",
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            "input_dim": input_dim,
            "vocab_size": vocab_size,
            "d_model": d_model,
            "num_heads": num_heads,
            "ff_dim": ff_dim,
            "num_layers": num_layers,
            "conv_kernel": conv_kernel,
            "subsampling": subsampling,
            "dropout": dropout,
            "attn_dropout": attn_dropout,
            "blank_id": blank_id,
            "conv_norm": conv_norm,
        }
        self.input_dim = input_dim
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.cmvn = GlobalCMVN(np.zeros(input_dim, np.float32), np.ones(input_dim, np.float32))
        if cmvn_mean is not None or cmvn_istd is not None:
            self.set_cmvn(cmvn_mean, cmvn_istd)
        self.encoder = ConformerEncoder(
            input_dim,
            d_model,
            num_heads,
            ff_dim,
            num_layers,
            conv_kernel,
            subsampling,
            dropout,
            attn_dropout,
            conv_norm,
        )
        self.ctc_out = nn.Linear(d_model, vocab_size)
        self.subsampling_factor = self.encoder.subsampling_factor

    @property
    def min_input_frames(self) -> int:
        """Shortest input (feature frames) the subsampling accepts: 7, 11 or 15."""
        return self.encoder.min_input_frames

    def set_cmvn(self, mean: Any, istd: Any) -> None:
        """Load global CMVN statistics (``(input_dim,)`` each; lists, arrays or tensors)."""
        self.cmvn.load(mean, istd)

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.cmvn(feats, lengths)
        enc, out_lengths = self.encoder(x, lengths)
        return F.log_softmax(self.ctc_out(enc), dim=-1), out_lengths

    def ctc_loss(
        self,
        log_probs: torch.Tensor,
        out_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """Summed CTC loss / batch size (ESPnet). Utterances with fewer output frames than
        their alignment needs have infinite loss and contribute 0 (``zero_infinity``)."""
        flat = targets[targets >= 0]  # IGNORE_ID (-1) padding dropped
        loss = F.ctc_loss(
            log_probs.float().transpose(0, 1),
            flat,
            out_lengths,
            target_lengths,
            blank=self.blank_id,
            reduction="sum",
            zero_infinity=True,
        )
        return loss / log_probs.shape[0]

    def training_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.encoder.subsampling.check_lengths(batch.feat_lengths, batch.utt_ids)
        log_probs, out_lengths = self(batch.feats, batch.feat_lengths)
        loss = self.ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths)
        return {"loss": loss, "ctc": loss.detach()}

    def validation_metrics(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss`` (CTC) and ``ter``: token edit distance of greedy decoding / reference tokens."""
        self.encoder.subsampling.check_lengths(batch.feat_lengths, batch.utt_ids)
        log_probs, out_lengths = self(batch.feats, batch.feat_lengths)
        loss = self.ctc_loss(log_probs, out_lengths, batch.targets, batch.target_lengths)
        hyps = ctc_greedy_search(log_probs, out_lengths, blank=self.blank_id)
        ter = token_error_rate(hyps, batch.targets, batch.target_lengths)
        return {"loss": loss.detach(), "ter": ter.to(loss.device)}

    @torch.no_grad()
    def decode(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        method: str = "greedy",
        beam_size: int = 10,
    ) -> list[list[int]] | list[list[tuple[list[int], float]]]:
        """Token ids per utterance (``greedy``) or N-best lists (``prefix_beam``)."""
        log_probs, out_lengths = self(feats, lengths)
        if method == "greedy":
            return ctc_greedy_search(log_probs, out_lengths, blank=self.blank_id)
        if method == "prefix_beam":
            return ctc_prefix_beam_search(
                log_probs, out_lengths, beam_size=beam_size, blank=self.blank_id
            )
        raise ConfigError(f"unknown CTC decoding method '{method}'; use greedy or prefix_beam")

    @torch.no_grad()
    def recognize(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        method: str = "greedy",
        beam_size: int = 10,
        **options: Any,
    ) -> list[Hypothesis]:
        """Best hypothesis per utterance; token starts at their first CTC frame (input frames)."""
        if options:
            raise ConfigError(
                f"decoding options {', '.join(options)} do not apply to conformer_ctc; drop them"
            )
        if method not in self.decoders:
            raise ConfigError(f"unknown CTC decoding method '{method}'; use greedy or prefix_beam")
        log_probs, out_lengths = self(feats, lengths)
        if method == "greedy":
            ids, frames = ctc_greedy_search(
                log_probs, out_lengths, self.blank_id, return_frames=True
            )
        else:
            nbest = ctc_prefix_beam_search(log_probs, out_lengths, beam_size, self.blank_id)
            ids = [hyps[0][0] if hyps else [] for hyps in nbest]
            frames = ctc_token_start_frames(log_probs, out_lengths, ids, self.blank_id)
        factor = self.subsampling_factor
        return [
            Hypothesis(list(i), [float(f * factor) for f in fr])
            for i, fr in zip(ids, frames, strict=True)
        ]
