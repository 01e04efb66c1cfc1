"""Cache-aware streaming Conformer with CTC and RNN-T heads (registered ``streaming_conformer``).

``feats (B, T, D) -> GlobalCMVN -> StreamingConformerEncoder -> {CTC Linear, RNN-T joint}``;
NeMo's ``EncDecHybridRNNTCTCBPEModel`` layout (``heads="hybrid"``), or one head only
(``heads="ctc"`` / ``"rnnt"``). Training: hybrid loss ``(1 - ctc_weight) * rnnt + ctc_weight * ctc``
(both summed per utterance, averaged over the batch: NeMo's ``mean_batch``), the attention
context drawn per step from ``att_context_size`` (multi-lookahead).

Token ids are the tokenizer's; ``blank_id`` may sit anywhere (audiokit lists put it first,
NeMo last). The RNN-T parts (:mod:`audiokit.asr.transducer`) keep blank last, so ids are
rotated by ``blank_id + 1`` on the way in and out (the identity when blank is last).

Streaming (batch of streams, decoder state carried across chunks)::

    state = model.init_state(batch_size, att_context=(14, 6), decoder="rnnt")  # cache="kv"
    for feats, lengths in chunks:               # (B, T, D) new feature frames, (B,)
        new_ids, state = model.step(feats, lengths, state)
    new_ids, state = model.flush(state)         # the final remainder (never dropped)
    state.token_ids                             # everything so far, == offline recognize()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiokit.asr.ctc_model import token_error_rate
from audiokit.asr.hypothesis import Hypothesis
from audiokit.asr.transducer import (
    RNNTJoint,
    RNNTPredictor,
    TransducerGreedyState,
    greedy_batch,
    rnnt_loss,
)
from audiokit.errors import ConfigError
from audiokit.features.cmvn import GlobalCMVN
from audiokit.nn.streaming_conformer import EncoderState, StreamingConformerEncoder
from audiokit.registry import register_model
from audiokit.train.interface import Batch

HEADS = ("hybrid", "ctc", "rnnt")


def parse_att_context(value: Any) -> tuple[int, int] | None:
    """``None``, ``"14,6"``, ``[14, 6]`` or ``(14, 6)`` -> ``(14, 6)``."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.replace(" ", "").strip("[]()").split(",")
        try:
            left, right = (int(p) for p in parts)
        except ValueError:
            raise ConfigError(
                f"att_context {value!r}: expected two integers L,R, e.g. 14,6"
            ) from None
        return left, right
    left, right = value
    return int(left), int(right)


def ctc_collapse(
    labels: torch.Tensor, lengths: torch.Tensor, last: torch.Tensor, blank: int
) -> tuple[list[list[int]], list[list[int]], torch.Tensor]:
    """Greedy CTC over frame argmaxes ``labels (B, T)`` (``lengths (B,)`` valid), continuing
    after ``last (B,)`` (the label of each stream's previous frame; blank at the start).

    Returns per-stream token ids and their frame indices (in ``labels``), and the new ``last``.
    """
    t = torch.arange(labels.shape[1], device=labels.device)[None, :]
    valid = t < lengths[:, None]
    prev = torch.cat([last[:, None], labels[:, :-1]], dim=1)
    keep = (valid & (labels != blank) & (labels != prev)).cpu()
    lab = labels.cpu()
    ids = [lab[b, keep[b]].tolist() for b in range(labels.shape[0])]
    frames = [keep[b].nonzero()[:, 0].tolist() for b in range(labels.shape[0])]
    idx = (lengths - 1).clamp(min=0)
    tail = labels.gather(1, idx[:, None])[:, 0] if labels.shape[1] else last
    return ids, frames, torch.where(lengths > 0, tail, last)


@dataclass
class StreamState:
    """Streaming state of B streams: encoder caches + decoder state + everything emitted.

    token_ids / starts: per stream, all tokens so far (tokenizer ids) and their start in input
    feature frames. ``finished``: :meth:`StreamingConformer.flush` has run.
    """

    encoder: EncoderState
    decoder: str
    rnnt: TransducerGreedyState | None
    ctc_last: torch.Tensor  # (B,) label of the previous CTC frame
    frames_done: torch.Tensor  # (B,) encoder frames decoded
    token_ids: list[list[int]]
    starts: list[list[float]]
    finished: bool = False

    @property
    def att_context(self) -> tuple[int, int]:
        return self.encoder.att_context


@register_model("streaming_conformer")
class StreamingConformer(nn.Module):
    """Hybrid CTC / RNN-T cache-aware streaming Conformer (see the module doc).

    ``vocab_size`` counts every id, blank included; ``blank_id`` 0 as in audiokit's token
    lists (imported NeMo models use the last id).
    ``forward(feats (B, T, D), lengths (B,), att_context=None) -> (enc (B, T', d), lengths)``.
    """

    decoders: tuple[str, ...] = ("rnnt", "ctc", "rnnt_beam")

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        blank_id: int = 0,
        heads: str = "hybrid",
        ctc_weight: float = 0.3,
        d_model: int = 256,
        num_heads: int = 4,
        ff_dim: int = 1024,
        num_layers: int = 16,
        conv_kernel: int = 9,
        subsampling_factor: int = 8,
        subsampling_channels: int = 256,
        att_context_size: list[list[int]] | None = None,
        att_context_probs: list[float] | None = None,
        xscaling: bool = True,
        dropout: float = 0.1,
        dropout_pre_encoder: float = 0.1,
        dropout_att: float = 0.1,
        conv_norm: str = "layer_norm",
        subsampling_type: str = "dw_striding",
        pred_hidden: int = 320,
        pred_layers: int = 1,
        pred_dropout: float = 0.2,
        joint_hidden: int = 320,
        joint_activation: str = "relu",
        joint_dropout: float = 0.2,
        max_symbols: int = 10,
    ) -> None:
        super().__init__()
        if heads not in HEADS:
            raise ConfigError(f"heads={heads!r}: use one of {', '.join(HEADS)}")
        blank_id = int(blank_id)
        if not 0 <= blank_id < vocab_size:
            raise ConfigError(f"blank_id {blank_id} is outside the vocabulary (size {vocab_size})")
        if not 0.0 <= ctc_weight <= 1.0:
            raise ConfigError(f"ctc_weight {ctc_weight} must be in [0, 1]")
        if att_context_size is None:
            att_context_size = [[70, 13], [70, 6], [70, 1], [70, 0]]
        self.config: dict[str, Any] = {
            k: v for k, v in locals().items() if k not in ("self", "__class__")
        }
        self.config["att_context_size"] = [list(c) for c in att_context_size]
        self.input_dim = input_dim
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.heads = heads
        self.ctc_weight = ctc_weight if heads == "hybrid" else float(heads == "ctc")
        self.max_symbols = max_symbols
        self.cmvn = GlobalCMVN(np.zeros(input_dim, np.float32), np.ones(input_dim, np.float32))
        self.encoder = StreamingConformerEncoder(
            input_dim,
            d_model,
            num_heads,
            ff_dim,
            num_layers,
            conv_kernel,
            subsampling_factor,
            subsampling_channels,
            att_context_size,
            att_context_probs,
            xscaling,
            dropout,
            dropout_pre_encoder,
            dropout_att,
            conv_norm,
            subsampling_type,
        )
        self.ctc_out = nn.Linear(d_model, vocab_size) if heads != "rnnt" else None
        if heads != "ctc":
            self.predictor: RNNTPredictor | None = RNNTPredictor(
                vocab_size - 1, pred_hidden, pred_layers, pred_dropout
            )
            self.joint: RNNTJoint | None = RNNTJoint(
                d_model, pred_hidden, joint_hidden, vocab_size - 1, joint_activation, joint_dropout
            )
        else:
            self.predictor = self.joint = None
        names = {
            "hybrid": ("rnnt", "ctc", "rnnt_beam"),
            "ctc": ("ctc",),
            "rnnt": ("rnnt", "rnnt_beam"),
        }
        self.decoders = names[heads]
        self.subsampling_factor = subsampling_factor
        self.min_input_frames = 1

    # ------------------------------------------------------------------ helpers

    def set_cmvn(self, mean: Any, istd: Any) -> None:
        """Load global CMVN statistics (``(input_dim,)`` each)."""
        self.cmvn.load(mean, istd)

    @property
    def att_contexts(self) -> list[tuple[int, int]]:
        return list(self.encoder.att_contexts)

    def _to_rnnt(self, ids: torch.Tensor) -> torch.Tensor:
        """Tokenizer ids -> RNN-T ids (blank last)."""
        return (ids - self.blank_id - 1) % self.vocab_size

    def _from_rnnt(self, ids: list[int]) -> list[int]:
        return [(i + self.blank_id + 1) % self.vocab_size for i in ids]

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, att_context: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(self.cmvn(feats, lengths), lengths, parse_att_context(att_context))

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """``(B, T', d)`` -> ``(B, T', V)`` log-probabilities."""
        if self.ctc_out is None:
            raise ConfigError("this model has no CTC head (heads='rnnt'); use the rnnt decoder")
        return F.log_softmax(self.ctc_out(enc), dim=-1)

    # ------------------------------------------------------------------ training

    def _losses(self, batch: Batch, att_context: tuple[int, int]) -> dict[str, torch.Tensor]:
        enc, enc_len = self(batch.feats, batch.feat_lengths, att_context)
        b = enc.shape[0]
        out: dict[str, torch.Tensor] = {}
        loss = enc.new_zeros(())
        if self.ctc_out is not None:
            lp = self.ctc_log_probs(enc)
            ctc = (
                F.ctc_loss(
                    lp.float().transpose(0, 1),
                    batch.targets[batch.targets >= 0],
                    enc_len,
                    batch.target_lengths,
                    blank=self.blank_id,
                    reduction="sum",
                    zero_infinity=True,
                )
                / b
            )
            out["ctc"] = ctc.detach()
            loss = loss + self.ctc_weight * ctc
        if self.predictor is not None and self.joint is not None:
            targets = self._to_rnnt(batch.targets.clamp(min=0))
            pred, _ = self.predictor(targets, batch.target_lengths)
            logits = self.joint(enc, pred)
            rnnt = rnnt_loss(logits, targets, enc_len, batch.target_lengths)
            out["rnnt"] = rnnt.detach()
            loss = loss + (1.0 - self.ctc_weight) * rnnt
        out["loss"] = loss
        return out

    def training_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Hybrid loss at a context drawn for this step (``att_context_probs``)."""
        return self._losses(batch, self.encoder.draw_att_context())

    def validation_metrics(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss`` at the default context and ``ter``: token errors of the default decoder /
        reference tokens."""
        out = self._losses(batch, self.att_contexts[0])
        hyps = self.recognize(batch.feats, batch.feat_lengths, self.decoders[0])
        ter = token_error_rate([h.token_ids for h in hyps], batch.targets, batch.target_lengths)
        return {**{k: v.detach() for k, v in out.items()}, "ter": ter}

    # ------------------------------------------------------------------ offline decoding

    @torch.no_grad()
    def recognize(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        method: str = "rnnt",
        beam_size: int = 10,
        att_context: Any = None,
        max_symbols: int | None = None,
        **options: Any,
    ) -> list[Hypothesis]:
        """One hypothesis per utterance; ``starts`` in input feature frames.

        ``method``: ``rnnt`` (batched greedy, ``max_symbols`` per frame, default from the
        model), ``rnnt_beam`` (beam search, ``beam_size``), ``ctc`` (greedy). ``att_context``:
        ``[left, right]`` or ``"L,R"`` (default: the first trained context).
        """
        if method == "greedy":  # the generic default name
            method = self.decoders[0]
        if method not in self.decoders:
            raise ConfigError(
                f"decoder {method!r} is not available for this model; use one of {', '.join(self.decoders)}"
            )
        ctx = self.encoder.resolve_context(parse_att_context(att_context))
        enc, enc_len = self(feats, lengths, ctx)
        info = {"att_context": list(ctx)}
        s = self.subsampling_factor
        if method == "ctc":
            labels = self.ctc_log_probs(enc).argmax(-1)
            start = torch.full_like(enc_len, self.blank_id)
            ids, frames, _ = ctc_collapse(labels, enc_len, start, self.blank_id)
            return [
                Hypothesis(i, [float(f * s) for f in fr], None, dict(info))
                for i, fr in zip(ids, frames, strict=True)
            ]
        assert self.predictor is not None and self.joint is not None
        if method == "rnnt_beam":
            from audiokit.asr.transducer import beam_search

            hyps = beam_search(enc, enc_len, self.predictor, self.joint, beam_size)
        else:
            hyps, _ = greedy_batch(
                enc, enc_len, self.predictor, self.joint, max_symbols or self.max_symbols
            )
        return [
            Hypothesis(
                self._from_rnnt(h.token_ids), [float(f * s) for f in h.frames], None, dict(info)
            )
            for h in hyps
        ]

    # ------------------------------------------------------------------ streaming

    def init_state(
        self,
        batch_size: int,
        att_context: Any = None,
        decoder: str | None = None,
        cache: str = "kv",
    ) -> StreamState:
        """Fresh state for ``batch_size`` streams (decoder ``rnnt`` or ``ctc``; default: the
        model's first decoder; ``att_context`` default: the first trained context).
        ``cache``: the encoder's attention cache, ``"kv"`` (projected keys/values: fast) or
        ``"input"`` (NeMo's attention-input cache); both give the same outputs."""
        decoder = decoder or self.decoders[0]
        if decoder not in ("rnnt", "ctc") or decoder not in self.decoders:
            ok = ", ".join(d for d in self.decoders if d in ("rnnt", "ctc"))
            raise ConfigError(f"streaming decoder {decoder!r} is not available; use one of: {ok}")
        p = next(self.parameters())
        enc_state = self.encoder.init_state(
            batch_size, parse_att_context(att_context), p.device, p.dtype, cache
        )
        rnnt = None
        if decoder == "rnnt":
            assert self.predictor is not None and self.joint is not None
            with torch.no_grad():
                rnnt = TransducerGreedyState.initial(
                    batch_size, self.predictor, self.joint, p.device, p.dtype
                )
        return StreamState(
            encoder=enc_state,
            decoder=decoder,
            rnnt=rnnt,
            ctc_last=torch.full((batch_size,), self.blank_id, dtype=torch.long, device=p.device),
            frames_done=torch.zeros(batch_size, dtype=torch.long, device=p.device),
            token_ids=[[] for _ in range(batch_size)],
            starts=[[] for _ in range(batch_size)],
        )

    @torch.no_grad()
    def step(
        self, feats: torch.Tensor, lengths: torch.Tensor, state: StreamState
    ) -> tuple[list[list[int]], StreamState]:
        """Feed ``feats (B, T, D)`` new feature frames (``lengths (B,)`` real per stream; any
        T, also 0). Returns the tokens each stream gained and the new state."""
        return self._advance(feats, lengths, state, final=False)

    @torch.no_grad()
    def flush(self, state: StreamState) -> tuple[list[list[int]], StreamState]:
        """End all streams: encode the buffered remainder (a final partial chunk)."""
        b = len(state.token_ids)
        empty = torch.zeros(b, 0, self.input_dim, device=state.encoder.mel.device)
        return self._advance(empty, torch.zeros(b, dtype=torch.long), state, final=True)

    def reset_hypotheses(self, state: StreamState, mask: torch.Tensor) -> StreamState:
        """Start new hypotheses for streams with ``mask (B,)`` True (e.g. after an endpoint):
        their tokens are cleared and the RNN-T predictor restarts from the start symbol; the
        encoder caches are kept (the audio continues), and ``starts`` stay counted from the
        stream start."""
        keep = [not bool(m) for m in mask.tolist()]
        rnnt = state.rnnt
        if rnnt is not None:
            assert self.predictor is not None and self.joint is not None
            with torch.no_grad():
                rnnt = rnnt.reset(mask, self.predictor, self.joint)
        m = mask.to(state.ctc_last.device)
        return StreamState(
            encoder=state.encoder,
            decoder=state.decoder,
            rnnt=rnnt,
            ctc_last=torch.where(m, torch.full_like(state.ctc_last, self.blank_id), state.ctc_last),
            frames_done=state.frames_done,
            token_ids=[list(t) if k else [] for t, k in zip(state.token_ids, keep, strict=True)],
            starts=[list(t) if k else [] for t, k in zip(state.starts, keep, strict=True)],
            finished=state.finished,
        )

    def _advance(
        self, feats: torch.Tensor, lengths: torch.Tensor, state: StreamState, final: bool
    ) -> tuple[list[list[int]], StreamState]:
        if state.finished:
            raise ConfigError("stream already flushed; start a new one with init_state()")
        dev = state.encoder.mel.device
        feats, lengths = feats.to(dev), lengths.to(dev).long()
        x = self.cmvn(feats, lengths) if feats.shape[1] else feats
        enc, enc_len, enc_state = self.encoder.stream_step(x, lengths, state.encoder, final)
        s = self.subsampling_factor
        offset = state.frames_done
        new_ids: list[list[int]]
        rnnt, ctc_last = state.rnnt, state.ctc_last
        if enc.shape[1] == 0:
            new_ids, new_frames = [[] for _ in state.token_ids], [[] for _ in state.token_ids]
        elif state.decoder == "ctc":
            labels = self.ctc_log_probs(enc).argmax(-1)
            new_ids, frames, ctc_last = ctc_collapse(labels, enc_len, ctc_last, self.blank_id)
            new_frames = [
                [f + int(o) for f in fr] for fr, o in zip(frames, offset.tolist(), strict=True)
            ]
        else:
            assert self.predictor is not None and self.joint is not None and rnnt is not None
            before = [len(t) for t in rnnt.tokens]
            hyps, rnnt = greedy_batch(
                enc, enc_len, self.predictor, self.joint, self.max_symbols, state=rnnt
            )
            new_ids = [self._from_rnnt(h.token_ids[n:]) for h, n in zip(hyps, before, strict=True)]
            new_frames = [h.frames[n:] for h, n in zip(hyps, before, strict=True)]
        new_state = StreamState(
            encoder=enc_state,
            decoder=state.decoder,
            rnnt=rnnt,
            ctc_last=ctc_last,
            frames_done=offset + enc_len,
            token_ids=[a + n for a, n in zip(state.token_ids, new_ids, strict=True)],
            starts=[
                a + [float(f * s) for f in n] for a, n in zip(state.starts, new_frames, strict=True)
            ],
            finished=final,
        )
        return new_ids, new_state
