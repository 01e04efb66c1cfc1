"""Continuous integrate-and-fire (CIF) predictors for Paraformer (FunASR ``CifPredictor[V2]``).

A predictor maps encoder frames ``h (B, T, d)`` to weights ``alpha_t`` in [0, 1] (sigmoid of a
small conv net, then ``relu(alpha * smooth_factor - noise_threshold)``, zero on padding). CIF
walks the frames accumulating ``alpha``; every time the running sum crosses a multiple of
``threshold`` a token "fires", and its acoustic embedding is the ``alpha``-weighted sum of the
frames since the previous firing, the boundary frame split between the two tokens.

The walk is done without any Python loop (FunASR's ``cif_v1``): with the prefix sum ``P_t``
(accumulated in float64, then float32 as FunASR does) frame ``t`` fires when
``floor(P_t) > floor(P_{t-1})``, and with ``S_t = sum_{s<=t} alpha_s h_s`` and the mass
``r_t = frac(P_t)`` that frame ``t`` carries past the boundary, the k-th embedding is
``C_{f_k} - C_{f_{k-1}}`` where ``C_t = S_t - r_t h_t`` and ``f_k`` is the k-th firing frame
(found with ``searchsorted`` on the cumulative fire count).

Training rescales the alphas so they sum to the target length (the decoder then gets exactly
one embedding per target token; unlike FunASR, a last token left a float32 hair short of the
threshold still fires, see :func:`cif_integrate`); the raw sum is the predicted length for the
MAE loss. Alphas above 1 (possible early in training) fire once per frame, as in FunASR. At
inference, with ``tail_threshold`` > 0, a frame with ``alpha = tail_threshold`` and zero hidden
is appended at each utterance's end so that a nearly complete last token still fires, and the
token count is ``floor(sum(alphas))``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.nn.masks import make_valid_mask


@dataclass
class CifOutput:
    """What a CIF predictor returns.

    acoustic_embeds: ``(B, N, d)`` one embedding per token (zero past ``lengths``).
    token_num:       ``(B,)`` float predicted token count: ``sum(alphas)`` before rescaling in
                     training; ``floor(sum(alphas) + tail)`` at inference.
    alphas:          ``(B, T)``, or ``(B, T + 1)`` with the tail frame (inference, tail > 0).
    peaks:           same shape: the integrator's fractional value, +1 on firing frames.
    lengths:         ``(B,)`` int64 number of decoder positions per utterance.
    """

    acoustic_embeds: torch.Tensor
    token_num: torch.Tensor
    alphas: torch.Tensor
    peaks: torch.Tensor
    lengths: torch.Tensor


def cif_fire(alphas: torch.Tensor, threshold: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``alphas (B, T)`` -> ``(peaks (B, T), fired (B, T) bool)``.

    ``fired`` is True on frames where the running sum (in units of ``threshold``) crosses an
    integer; ``peaks`` = fired + fractional part of the running sum (FunASR ``cif_wo_hidden_v1``).
    """
    pos = (torch.cumsum(alphas, dim=1, dtype=torch.float64) / threshold).to(alphas.dtype)
    floor = torch.floor(pos)
    fired = floor > F.pad(floor[:, :-1], (1, 0))
    return fired.to(alphas.dtype) + pos - floor, fired


def cif_integrate(
    hidden: torch.Tensor,
    alphas: torch.Tensor,
    num_tokens: int,
    threshold: float = 1.0,
    close_at: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrate-and-fire ``hidden (B, T, d)`` with ``alphas (B, T)``.

    ``close_at (B,)``: optional last real frame per utterance, where a token that has at least
    half its mass also fires (with everything integrated so far). Training uses it: alphas
    rescaled to sum exactly to the target length often sum to a hair under it in float32,
    and FunASR then gives the last target (``</s>``) a zero embedding (about a quarter of
    random utterances); we fire it instead.

    Returns ``embeds (B, num_tokens, d)`` (tokens past an utterance's fires are zero),
    ``peaks (B, T)`` and the number of fires ``(B,)``. Differentiable w.r.t. both inputs.
    """
    b, t, d = hidden.shape
    peaks, fired = cif_fire(alphas, threshold)
    frac = (peaks - fired.to(peaks.dtype)) * threshold  # mass past the last boundary
    total = torch.cumsum(alphas[:, :, None] * hidden, dim=1)  # (B, T, d)
    carried = total - frac[:, :, None] * hidden  # integrated up to the last boundary
    fires = fired.long().cumsum(dim=1)  # (B, T) tokens completed up to frame t
    k = torch.arange(1, num_tokens + 1, device=hidden.device).expand(b, -1).contiguous()
    frame = torch.searchsorted(fires, k).clamp(max=max(t - 1, 0))  # (B, N) k-th firing frame
    ends = carried.gather(1, frame[:, :, None].expand(-1, -1, d))
    embeds = ends - F.pad(ends[:, :-1], (0, 0, 1, 0))
    count = fires[:, -1]
    embeds = embeds * (k <= count[:, None])[:, :, None].to(embeds.dtype)
    if close_at is not None:
        last = close_at.long().clamp(0, max(t - 1, 0))[:, None]
        pending = (frac.gather(1, last)[:, 0] >= 0.5 * threshold) & (count < num_tokens)
        done = F.pad(ends, (0, 0, 1, 0)).gather(1, count[:, None, None].expand(-1, 1, d))
        closing = total.gather(1, last[:, :, None].expand(-1, 1, d)) - done  # (B, 1, d)
        slot = F.one_hot(count.clamp(max=max(num_tokens - 1, 0)), max(num_tokens, 1))
        slot = slot[:, :num_tokens] * pending[:, None]
        embeds = embeds + slot[:, :, None].to(embeds.dtype) * closing
        count = count + pending.long()
    return embeds, peaks, count


class _CifPredictor(nn.Module, abc.ABC):
    """Shared alpha post-processing, tail handling and integration (see the module docstring).

    Subclasses define :meth:`logits`, the per-frame pre-sigmoid weights ``(B, T)``."""

    def __init__(
        self,
        threshold: float = 1.0,
        smooth_factor: float = 1.0,
        noise_threshold: float = 0.0,
        tail_threshold: float = 0.45,
    ) -> None:
        super().__init__()
        self.threshold = threshold
        self.smooth_factor = smooth_factor
        self.noise_threshold = noise_threshold
        self.tail_threshold = tail_threshold

    @abc.abstractmethod
    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden (B, T, d)`` -> ``(B, T)`` logits of the firing weights."""

    def forward(
        self,
        hidden: torch.Tensor,
        lengths: torch.Tensor,
        target_lengths: torch.Tensor | None = None,
    ) -> CifOutput:
        """``hidden (B, T, d)``, ``lengths (B,)``; ``target_lengths (B,)`` in training."""
        b, t, _ = hidden.shape
        close_at = None
        valid = make_valid_mask(lengths, t)
        hidden = hidden * valid[:, :, None].to(hidden.dtype)
        alphas = torch.sigmoid(self.logits(hidden))
        alphas = torch.relu(alphas * self.smooth_factor - self.noise_threshold)
        alphas = alphas * valid.to(alphas.dtype)
        token_num = alphas.sum(dim=-1)
        if target_lengths is not None:
            target = target_lengths.to(alphas.dtype)
            alphas = alphas * (target / token_num.clamp_min(1e-6))[:, None]
            out_lengths = target_lengths.long()
            n = int(out_lengths.max()) if b else 0
            close_at = lengths - 1
        elif self.tail_threshold > 0.0:
            # A zero frame of weight tail_threshold right after each utterance's last frame.
            tail = F.one_hot(lengths.long(), t + 1).to(alphas.dtype) * self.tail_threshold
            alphas = F.pad(alphas, (0, 1)) + tail
            hidden = F.pad(hidden, (0, 0, 0, 1))
            token_num = torch.floor(alphas.sum(dim=-1))
            out_lengths = token_num.long()
            n = int(out_lengths.max()) if b else 0
        else:
            out_lengths = torch.round(token_num).long()
            n = int(out_lengths.max()) if b else 0
        embeds, peaks, _ = cif_integrate(hidden, alphas, n, self.threshold, close_at)
        return CifOutput(embeds, token_num, alphas, peaks, out_lengths)


class CifPredictorV1(_CifPredictor):
    """FunASR ``CifPredictor``: depthwise Conv1d(l+r+1) + residual -> dropout -> ReLU -> Linear."""

    def __init__(
        self,
        d: int,
        l_order: int = 1,
        r_order: int = 1,
        threshold: float = 1.0,
        dropout: float = 0.1,
        smooth_factor: float = 1.0,
        noise_threshold: float = 0.0,
        tail_threshold: float = 0.45,
    ) -> None:
        super().__init__(threshold, smooth_factor, noise_threshold, tail_threshold)
        self.pad = (l_order, r_order)
        self.conv = nn.Conv1d(d, d, l_order + r_order + 1, groups=d)
        self.output = nn.Linear(d, 1)
        self.dropout = nn.Dropout(dropout)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.transpose(1, 2)
        x = self.dropout(self.conv(F.pad(x, self.pad)) + x).transpose(1, 2)
        return self.output(torch.relu(x)).squeeze(-1)


class CifPredictorV2(_CifPredictor):
    """FunASR ``CifPredictorV2``: full Conv1d(l+r+1) -> ReLU -> Linear (no residual)."""

    def __init__(
        self,
        d: int,
        l_order: int = 1,
        r_order: int = 1,
        threshold: float = 1.0,
        dropout: float = 0.1,
        smooth_factor: float = 1.0,
        noise_threshold: float = 0.0,
        tail_threshold: float = 0.45,
    ) -> None:
        super().__init__(threshold, smooth_factor, noise_threshold, tail_threshold)
        del dropout  # FunASR's V2 builds a dropout module but never applies it
        self.pad = (l_order, r_order)
        self.conv = nn.Conv1d(d, d, l_order + r_order + 1)
        self.output = nn.Linear(d, 1)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(F.pad(hidden.transpose(1, 2), self.pad))).transpose(1, 2)
        return self.output(x).squeeze(-1)


PREDICTORS = {"v1": CifPredictorV1, "v2": CifPredictorV2}
