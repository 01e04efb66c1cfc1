"""RNN-T (transducer) parts: LSTM prediction network, joint network, loss and greedy decoding.

Layout and maths follow NeMo's ``RNNTDecoder`` / ``RNNTJoint`` (blank = last id = vocab size,
``blank_as_pad``: the blank id embeds to a zero vector, which is also the start-of-sequence input),
so imported NeMo checkpoints decode identically. Parameter names (for importers):

- predictor: ``embed.weight`` (V+1, P) <- ``decoder.prediction.embed.weight``;
  ``lstm.*`` (``nn.LSTM``, same names) <- ``decoder.prediction.dec_rnn.lstm.*``;
- joint: ``enc_proj.*`` <- ``joint.enc.*``; ``pred_proj.*`` <- ``joint.pred.*``;
  ``out.*`` <- ``joint.joint_net.{2 with dropout, else 1}.*``.

Beam search lives in :mod:`audiokit.asr.transducer_beam` (:func:`beam_search` forwards to it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn

from audiokit.errors import ConfigError

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (layers, B, hidden)
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class RNNTPredictor(nn.Module):
    """LSTM prediction network over previously emitted tokens (NeMo ``RNNTDecoder``).

    ``vocab_size`` excludes blank; ``blank_id = vocab_size`` embeds to zeros (``padding_idx``) and
    doubles as the start symbol. Output size is ``hidden`` (the LSTM projects to it when
    ``rnn_hidden > hidden``, as NeMo's ``proj_size``).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        rnn_hidden: int | None = None,
        forget_gate_bias: float = 1.0,
    ) -> None:
        super().__init__()
        if vocab_size < 1 or hidden < 1 or num_layers < 1:
            raise ConfigError(
                f"RNNTPredictor vocab_size={vocab_size} hidden={hidden} num_layers={num_layers} "
                "must all be >= 1; fix the model config"
            )
        self.vocab_size = vocab_size
        self.blank_id = vocab_size
        self.hidden = hidden
        self.num_layers = num_layers
        rnn_hidden = rnn_hidden if rnn_hidden and rnn_hidden > 0 else hidden
        self.embed = nn.Embedding(vocab_size + 1, hidden, padding_idx=self.blank_id)
        self.lstm = nn.LSTM(
            hidden,
            rnn_hidden,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            proj_size=hidden if hidden < rnn_hidden else 0,
        )
        self.dropout = nn.Dropout(dropout)
        # NeMo's init: forget-gate bias 1 on the input side, 0 on the hidden side.
        with torch.no_grad():
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_"):
                    gate = slice(rnn_hidden, 2 * rnn_hidden)
                    p[gate] = forget_gate_bias if name.startswith("bias_ih") else 0.0

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> LSTMState:
        """Zero LSTM state for ``batch`` streams."""
        h_size = self.lstm.proj_size or self.lstm.hidden_size
        h = torch.zeros(self.num_layers, batch, h_size, device=device, dtype=dtype)
        c = torch.zeros(self.num_layers, batch, self.lstm.hidden_size, device=device, dtype=dtype)
        return h, c

    def forward(
        self, targets: torch.Tensor, lengths: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """Teacher-forced outputs with the start symbol prepended.

        targets (B, U) token ids, lengths (B,) valid tokens (positions past them are read as
        blank, so any padding value works). Returns ``(out (B, U + 1, hidden), state)``; ``out[:, u]``
        is the output after ``u`` tokens; the returned state is after all U positions.
        """
        valid = (
            torch.arange(targets.shape[1], device=targets.device)
            < lengths.to(targets.device)[:, None]
        )
        tokens = torch.where(valid, targets.long(), self.blank_id)
        sos = torch.full_like(tokens[:, :1], self.blank_id)
        out, state = self.lstm(self.embed(torch.cat([sos, tokens], dim=1)), state)
        return self.dropout(out), state

    def step(
        self, tokens: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """One step: tokens (B,) (blank = start) -> ``(out (B, hidden), state)``."""
        x = self.embed(tokens.long())
        if self.training or self.lstm.proj_size:
            out, state = self.lstm(x[:, None], state)
            return self.dropout(out[:, 0]), state
        # Inference: the fused cell per layer costs a fraction of an nn.LSTM call (same maths).
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        hs, cs = [], []
        for layer in range(self.num_layers):
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            weights = [getattr(self.lstm, f"{n}_l{layer}") for n in names]
            x, c = torch.lstm_cell(x, (state[0][layer], state[1][layer]), *weights)
            hs.append(x)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))


class RNNTJoint(nn.Module):
    """``out(act(enc_proj(f) + pred_proj(g)))`` over every (frame, label-position) pair (NeMo ``RNNTJoint``).

    Returns logits over ``vocab_size + 1`` classes (blank last); no log-softmax (the loss and
    argmax do not need it; decoders that need log-probs take it themselves).
    """

    def __init__(
        self,
        enc_dim: int,
        pred_dim: int,
        joint_dim: int,
        vocab_size: int,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"joint activation {activation!r} unknown; use one of {', '.join(_ACTIVATIONS)}"
            )
        self.vocab_size = vocab_size
        self.blank_id = vocab_size
        self.enc_proj = nn.Linear(enc_dim, joint_dim)
        self.pred_proj = nn.Linear(pred_dim, joint_dim)
        self.activation = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(joint_dim, vocab_size + 1)

    def project_encoder(self, enc: torch.Tensor) -> torch.Tensor:
        """enc (..., enc_dim) -> (..., joint_dim)."""
        return self.enc_proj(enc)

    def project_predictor(self, pred: torch.Tensor) -> torch.Tensor:
        """pred (..., pred_dim) -> (..., joint_dim)."""
        return self.pred_proj(pred)

    def joint_projected(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """f (B, T, J), g (B, U1, J) (already projected) -> logits (B, T, U1, V + 1)."""
        return self.out(self.dropout(self.activation(f.unsqueeze(2) + g.unsqueeze(1))))

    def joint(self, enc: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """enc (B, T, enc_dim), pred (B, U + 1, pred_dim) -> logits (B, T, U + 1, V + 1)."""
        return self.joint_projected(self.project_encoder(enc), self.project_predictor(pred))

    forward = joint

    def step(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """One (frame, state) pair per stream: f (B, J), g (B, J) projected -> logits (B, V + 1)."""
        return self.out(self.dropout(self.activation(f + g)))


_REDUCTIONS = ("mean_batch", "mean", "sum", "mean_volume", "none")


def rnnt_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = -1,
    reduction: str = "mean_batch",
    clamp: float = -1.0,
) -> torch.Tensor:
    """Transducer loss through ``torchaudio.functional.rnnt_loss`` with NeMo's reductions.

    logits (B, T, U + 1, V + 1) raw joint outputs (log-softmax is fused in the loss), targets
    (B, U) (padding may hold any value), lengths (B,). ``blank=-1`` = last class. Per-utterance
    losses are -log P(y|x) summed over the utterance; ``reduction`` as NeMo's ``RNNTLoss``:
    ``mean_batch`` (NeMo's default) = mean over utterances (torchaudio's "mean"), ``mean`` =
    mean of loss / target length, ``sum``, ``mean_volume`` = sum / total target tokens, ``none``.
    NeMo's FastEmit regularisation (``fastemit_lambda``) has no torchaudio counterpart and is
    not applied; ``clamp`` > 0 clamps gradients as torchaudio does.
    """
    from torchaudio.functional import rnnt_loss as _ta_rnnt_loss

    if reduction not in _REDUCTIONS:
        raise ConfigError(
            f"rnnt loss reduction {reduction!r} unknown; use one of {', '.join(_REDUCTIONS)}"
        )
    num_classes = logits.shape[-1]
    blank = blank + num_classes if blank < 0 else blank
    logit_lengths = logit_lengths.to(logits.device, torch.int32)
    target_lengths = target_lengths.to(logits.device, torch.int32)
    max_t, max_u = int(logit_lengths.max()), int(target_lengths.max())
    # torchaudio wants the tensors no longer than the longest lengths and valid ids everywhere.
    logits = logits[:, :max_t, : max_u + 1].contiguous()
    targets = targets[:, :max_u].to(logits.device)
    keep = torch.arange(max_u, device=logits.device) < target_lengths[:, None]
    targets = torch.where(keep, targets, 0).to(torch.int32).contiguous()
    dtype = logits.dtype if logits.dtype in (torch.float32, torch.float16) else torch.float32
    losses = _ta_rnnt_loss(
        logits.to(dtype),
        targets,
        logit_lengths,
        target_lengths,
        blank=blank,
        clamp=clamp,
        reduction="none",
    )
    if reduction == "mean_batch":
        return losses.mean()
    if reduction == "mean":
        return (losses / target_lengths.to(losses.dtype)).mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean_volume":
        return losses.sum() / target_lengths.sum().to(losses.dtype)
    return losses


@dataclass
class TransducerHyp:
    """A decoded token sequence. ``frames``: encoder frame of each token, counted from the start
    of the stream (multiply by the encoder's subsampling factor for input feature frames).
    ``score``: total log-probability of the path (beam search; None from greedy)."""

    token_ids: list[int]
    frames: list[int]
    score: float | None = None


@dataclass
class TransducerGreedyState:
    """Resumable greedy decoding state of B streams (pass it back to :func:`greedy_batch`).

    pred_out:   (B, J) joint-projected predictor output after each stream's last token
    lstm:       (h, c) predictor LSTM state, each (layers, B, hidden)
    last_token: (B,) last emitted id (blank = nothing emitted yet)
    offset:     (B,) encoder frames consumed so far
    tokens / frames: per stream, every token emitted so far and its (global) encoder frame
    """

    pred_out: torch.Tensor
    lstm: LSTMState
    last_token: torch.Tensor
    offset: torch.Tensor
    tokens: list[list[int]] = field(default_factory=list)
    frames: list[list[int]] = field(default_factory=list)

    @classmethod
    @torch.no_grad()
    def initial(
        cls,
        batch: int,
        predictor: RNNTPredictor,
        joint: RNNTJoint,
        device=None,
        dtype=torch.float32,
    ) -> TransducerGreedyState:
        """State of ``batch`` fresh streams: the predictor has read the start symbol."""
        blank = torch.full((batch,), predictor.blank_id, dtype=torch.long, device=device)
        out, lstm = predictor.step(blank, predictor.init_state(batch, device, dtype))
        return cls(
            pred_out=joint.project_predictor(out),
            lstm=lstm,
            last_token=blank,
            offset=torch.zeros(batch, dtype=torch.long, device=device),
            tokens=[[] for _ in range(batch)],
            frames=[[] for _ in range(batch)],
        )

    def reset(
        self, mask: torch.Tensor, predictor: RNNTPredictor, joint: RNNTJoint
    ) -> TransducerGreedyState:
        """A copy where streams with ``mask`` True (B,) start over (e.g. after an endpoint);
        their frame offset is kept so frames stay counted from the stream start."""
        fresh = TransducerGreedyState.initial(
            len(mask), predictor, joint, self.pred_out.device, self.pred_out.dtype
        )
        m = mask.to(self.pred_out.device)
        return TransducerGreedyState(
            pred_out=torch.where(m[:, None], fresh.pred_out, self.pred_out),
            lstm=tuple(
                torch.where(m[None, :, None], a, b)
                for a, b in zip(fresh.lstm, self.lstm, strict=True)
            ),
            last_token=torch.where(m, fresh.last_token, self.last_token),
            offset=self.offset.clone(),
            tokens=[[] if r else list(t) for r, t in zip(mask.tolist(), self.tokens, strict=True)],
            frames=[[] if r else list(f) for r, f in zip(mask.tolist(), self.frames, strict=True)],
        )


@torch.no_grad()
def greedy_batch(
    enc: torch.Tensor,
    enc_lengths: torch.Tensor,
    predictor: RNNTPredictor,
    joint: RNNTJoint,
    max_symbols: int | None = 10,
    state: TransducerGreedyState | None = None,
) -> tuple[list[TransducerHyp], TransducerGreedyState]:
    """Batched greedy RNN-T decoding (NeMo ``greedy_batch`` semantics), resumable across chunks.

    enc (B, T, enc_dim) encoder outputs, enc_lengths (B,) valid frames. On each frame a stream
    emits the argmax label until blank wins or it has emitted ``max_symbols`` labels there (None:
    no cap). Frames and symbols are looped (inherent to RNN-T); all work is batched over streams.
    With ``state`` from a previous call, decoding continues where it stopped, so chunk-by-chunk
    calls give exactly the tokens of one call on the concatenated frames. Returns every token
    since the state was created (``TransducerHyp`` per stream) and the new state.
    """
    if max_symbols is not None and max_symbols < 1:
        raise ConfigError(f"max_symbols {max_symbols} must be >= 1 (or None for no cap)")
    batch = enc.shape[0]
    if state is None:
        state = TransducerGreedyState.initial(batch, predictor, joint, enc.device, enc.dtype)
    lengths = enc_lengths.to(enc.device).long()
    f = joint.project_encoder(enc)  # (B, T, J), once for all frames
    blank = predictor.blank_id
    g, (h, c), last = state.pred_out, state.lstm, state.last_token
    labels_seen, emit_seen, frame_seen = [], [], []
    for t in range(int(lengths.max()) if batch else 0):
        active = t < lengths  # streams still looking for labels on frame t
        for _ in range(max_symbols) if max_symbols is not None else itertools.count():
            labels = joint.step(f[:, t], g).argmax(-1)
            emit = active & (labels != blank)
            if not bool(emit.any()):
                break
            out, (h2, c2) = predictor.step(torch.where(emit, labels, blank), (h, c))
            g = torch.where(emit[:, None], joint.project_predictor(out), g)
            h = torch.where(emit[None, :, None], h2, h)
            c = torch.where(emit[None, :, None], c2, c)
            last = torch.where(emit, labels, last)
            labels_seen.append(labels)
            emit_seen.append(emit)
            frame_seen.append(t)
            active = emit  # a stream that chose blank moves on to the next frame
    tokens = [list(x) for x in state.tokens]
    frames = [list(x) for x in state.frames]
    if labels_seen:
        all_labels, all_emit = torch.stack(labels_seen, 1).cpu(), torch.stack(emit_seen, 1).cpu()
        all_frames = torch.tensor(frame_seen)
        offsets = state.offset.cpu()
        for b in range(batch):
            sel = all_emit[b]
            tokens[b].extend(all_labels[b, sel].tolist())
            frames[b].extend((all_frames[sel] + offsets[b]).tolist())
    new_state = TransducerGreedyState(g, (h, c), last, state.offset + lengths, tokens, frames)
    hyps = [TransducerHyp(list(t), list(fr)) for t, fr in zip(tokens, frames, strict=True)]
    return hyps, new_state


def beam_search(
    enc: torch.Tensor,
    enc_lengths: torch.Tensor,
    predictor: RNNTPredictor,
    joint: RNNTJoint,
    beam_size: int = 4,
    **options,
) -> list[TransducerHyp]:
    """RNN-T beam search; see :func:`audiokit.asr.transducer_beam.beam_search`."""
    from audiokit.asr.transducer_beam import beam_search as _beam_search

    return _beam_search(enc, enc_lengths, predictor, joint, beam_size, **options)
