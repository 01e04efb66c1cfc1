"""OWSM-CTC (Peng et al. 2024): E-Branchformer CTC encoder with self-conditioned interCTC,
a text-prompt encoder and ``<lang><task>`` prefix tokens (registered as ``owsm_ctc``).

``features (B, T, D) -> GlobalMVN -> conv2d subsampling (B, T', d) -> [prefix; x] (B, T'+2, d)
-> x * sqrt(d) + PE -> E-Branchformer (interCTC after configured layers: x += Linear(softmax(
ctc(x))); cross-attention to the prompt memory in configured layers) -> LayerNorm -> CTC``.

The two prefix frames (``embed_proj(embed([lang, task]))``) are positions 0 and 1; the output
keeps all ``T' + 2`` frames and greedy decoding reads them all, as ESPnet's
``Speech2TextGreedySearch`` does: argmax, merge repeats, drop ``<blank>`` only (language, task
and ``<sos>``/``<eos>`` ids stay). Language identification reads the CTC prediction at the
language position (frame 0) restricted to the language symbols, after encoding with
``<nolang>``.

Training batches (:class:`audiokit.train.interface.Batch`): ``targets`` is the multitask text
(``<lang><task>`` + target-language tokens: ESPnet's ``text``); ``extra`` holds

- ``prefix``: ``(B, 2)`` int64 ``[lang_id, task_id]`` (required);
- ``prompt``, ``prompt_lengths``: ``(B, P)`` ids padded with -1 and ``(B,)`` (``text.prev``;
  absent: every prompt is ``[<na>]``);
- ``targets_asr``, ``target_asr_lengths``: ``(B, U)`` / ``(B,)`` ASR transcript (``text.ctc``;
  absent: ``targets`` is used).

Layer ``k`` (interCTC layers, then the final layer) is trained on ``targets_asr`` where
``ctc_asr_only[k]`` is true, else on ``targets``; samples whose target holds ``<na>`` are left
out of that loss. ``loss = (1 - w) * final + w * mean(intermediate)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from audiokit.asr.ctc_model import token_error_rate
from audiokit.asr.decode import ctc_greedy_search
from audiokit.asr.hypothesis import Hypothesis
from audiokit.asr.owsm_prompt import AbsPositionalEncoding, PromptAndPrefix
from audiokit.errors import ConfigError
from audiokit.features.cmvn import GlobalCMVN
from audiokit.nn.e_branchformer import EBranchformerEncoder
from audiokit.nn.subsampling import Conv2dSubsampling
from audiokit.registry import register_model
from audiokit.train.interface import Batch


def _symbol(name: str) -> str:
    """``eng`` / ``<eng>`` -> ``<eng>``."""
    name = str(name).strip()
    return name if name.startswith("<") and name.endswith(">") else f"<{name}>"


@register_model("owsm_ctc")
class OwsmCTC(nn.Module):
    """OWSM-CTC encoder-only speech model: ASR, speech translation and language ID.

    ``languages`` / ``tasks`` map symbols (``"<eng>"``, ``"<asr>"``, ``"<st_zho>"``) to ids of
    the token list; ``na_id`` / ``nolang_id`` are ``<na>`` / ``<nolang>``.
    ``interctc_layers`` are 1-based; ``ctc_asr_only`` has one flag per interCTC layer plus
    one for the final layer. ``nolang_prob``: in training, the share of utterances whose
    language prefix is replaced by ``<nolang>`` (their target keeps the language), so that
    ``lang="auto"`` works on a model trained from scratch.
    """

    decoders = ("greedy",)
    num_prefix = 2

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        languages: dict[str, int],
        tasks: dict[str, int],
        na_id: int,
        nolang_id: int,
        d_model: int = 256,
        num_heads: int = 4,
        num_layers: int = 12,
        ff_units: int = 1024,
        cgmlp_units: int = 1024,
        cgmlp_kernel: int = 31,
        merge_kernel: int = 31,
        subsampling: str = "conv2d8",
        dropout: float = 0.1,
        pos_dropout: float = 0.1,
        attn_dropout: float = 0.0,
        use_ffn: bool = True,
        macaron_ffn: bool = True,
        ffn_activation: str = "swish",
        gate_activation: str = "identity",
        linear_after_conv: bool = False,
        cross_attention: list[bool] | bool = True,
        interctc_layers: list[int] | None = None,
        interctc_conditioning: bool = True,
        interctc_weight: float = 0.0,
        ctc_asr_only: list[bool] | None = None,
        prompt_d_model: int = 256,
        prompt_heads: int = 4,
        prompt_ff_units: int = 1024,
        prompt_layers: int = 4,
        prompt_dropout: float = 0.1,
        blank_id: int = 0,
        nolang_prob: float = 0.0,
    ) -> None:
        super().__init__()
        interctc_layers = list(interctc_layers or [])
        ctc_asr_only = list(ctc_asr_only or [False] * (len(interctc_layers) + 1))
        if len(ctc_asr_only) != len(interctc_layers) + 1:
            raise ConfigError(
                f"ctc_asr_only has {len(ctc_asr_only)} flags but there are "
                f"{len(interctc_layers)} interCTC layers + 1 final; give one flag per CTC layer"
            )
        if not 0.0 <= interctc_weight < 1.0:
            raise ConfigError(f"interctc_weight {interctc_weight} must be in [0, 1)")
        if isinstance(cross_attention, bool):
            cross_attention = [cross_attention] * num_layers
        self.config: dict[str, Any] = {
            k: v for k, v in locals().items() if k not in ("self", "__class__")
        }
        self.input_dim = input_dim
        self.vocab_size = vocab_size
        self.blank_id = blank_id
        self.na_id = na_id
        self.nolang_id = nolang_id
        self.languages = {_symbol(k): int(v) for k, v in languages.items()}
        self.tasks = {_symbol(k): int(v) for k, v in tasks.items()}
        self.interctc_weight = interctc_weight
        self.nolang_prob = float(nolang_prob)  # training: <nolang> prefix share (teaches LID)
        self.ctc_asr_only = [bool(x) for x in ctc_asr_only]
        self.cmvn = GlobalCMVN(np.zeros(input_dim, np.float32), np.ones(input_dim, np.float32))
        self.subsampling = Conv2dSubsampling(input_dim, d_model, subsampling)
        self.pos = AbsPositionalEncoding(d_model, pos_dropout)
        self.encoder = EBranchformerEncoder(
            d_model, num_heads, num_layers, ff_units, cgmlp_units, cgmlp_kernel, merge_kernel,
            dropout, attn_dropout, use_ffn, macaron_ffn, ffn_activation, gate_activation,
            linear_after_conv, cross_attention, interctc_layers,
        )  # fmt: skip
        self.text = PromptAndPrefix(
            vocab_size, d_model, prompt_d_model, prompt_heads, prompt_ff_units, prompt_layers,
            prompt_dropout,
        )  # fmt: skip
        self.ctc_out = nn.Linear(d_model, vocab_size)
        self.condition = nn.Linear(vocab_size, d_model) if interctc_conditioning else None
        self.subsampling_factor = self.subsampling.factor
        self.min_input_frames = self.subsampling.min_input_frames
        self.tokenizer = None  # set_tokenizer: needed only for text prompts

    def set_tokenizer(self, tokenizer: Any) -> None:
        """The model dir's tokenizer, used to encode ``prompt`` text in :meth:`recognize`."""
        self.tokenizer = tokenizer

    def set_cmvn(self, mean: Any, istd: Any) -> None:
        """Global MVN statistics (``(input_dim,)`` each): ``(x - mean) * istd``."""
        self.cmvn.load(mean, istd)

    # ---- network ---------------------------------------------------------------------------
    def _conditioning(self, h: torch.Tensor) -> torch.Tensor:
        return self.condition(F.softmax(self.ctc_out(h), dim=-1))

    def embed(
        self, feats: torch.Tensor, lengths: torch.Tensor, prefix: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D)`` features -> ``(x (B, T'+K, d), out_lengths (B,))`` with the ``K``
        prefix vectors (``prefix (B, K)`` ids) in front and positions added."""
        self.subsampling.check_lengths(lengths)
        x, out_lengths = self.subsampling(self.cmvn(feats, lengths), lengths)
        x = torch.cat([self.text.prefix(prefix), x], dim=1)
        return self.pos(x), out_lengths + prefix.shape[1]

    def encode(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        prefix: torch.Tensor,
        prompt: torch.Tensor | None = None,
        prompt_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """``(encoder_out (B, T'', d), lengths (B,), [(layer, h (B, T'', d))])``, T'' = T'+2.

        ``prompt (B, P)`` ids (-1 padding) with ``prompt_lengths (B,)``; None: ``[<na>]``.
        """
        b = feats.shape[0]
        if prompt is None:
            prompt = torch.full((b, 1), self.na_id, dtype=torch.long, device=feats.device)
            prompt_lengths = torch.ones(b, dtype=torch.long, device=feats.device)
        elif prompt_lengths is None:
            prompt_lengths = (prompt >= 0).sum(dim=1)
        memory, memory_valid = self.text.memory(prompt, prompt_lengths)
        x, out_lengths = self.embed(feats, lengths, prefix)
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < out_lengths[:, None]
        condition = self._conditioning if self.condition is not None else None
        out, inter = self.encoder(x, valid, memory, memory_valid, condition)
        return out, out_lengths, inter

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, d) -> (B, T, V)`` CTC log-probabilities (shared by all CTC layers)."""
        return F.log_softmax(self.ctc_out(h), dim=-1)

    # ---- training --------------------------------------------------------------------------
    def _ctc_loss(
        self, h: torch.Tensor, lengths: torch.Tensor, ys: torch.Tensor, ys_lengths: torch.Tensor
    ) -> torch.Tensor | None:
        """Summed CTC / utterances, over utterances whose target has no ``<na>``; None if none."""
        keep = ~(ys == self.na_id).any(dim=1)
        if not bool(keep.any()):
            return None
        lp = self.log_probs(h[keep]).float().transpose(0, 1)
        loss = F.ctc_loss(
            lp, ys[keep].clamp(min=0), lengths[keep], ys_lengths[keep],
            blank=self.blank_id, reduction="sum", zero_infinity=True,
        )  # fmt: skip
        return loss / int(keep.sum())

    def _batch_inputs(self, batch: Batch) -> dict[str, Any]:
        if "prefix" not in batch.extra:
            raise ConfigError(
                "owsm_ctc batches need extra['prefix'] (B, 2) [lang_id, task_id]; "
                "use the OWSM multitask data loader"
            )
        prefix = batch.extra["prefix"]
        if self.training and self.nolang_prob > 0.0:
            # the target keeps the true <lang>: frame 0 learns to predict it from speech alone
            drop = torch.rand(prefix.shape[0], device=prefix.device) < self.nolang_prob
            prefix = prefix.clone()
            prefix[:, 0] = torch.where(
                drop, torch.full_like(prefix[:, 0], self.nolang_id), prefix[:, 0]
            )
        return {
            "prefix": prefix,
            "prompt": batch.extra.get("prompt"),
            "prompt_lengths": batch.extra.get("prompt_lengths"),
        }

    def _losses(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        self.subsampling.check_lengths(batch.feat_lengths, batch.utt_ids)
        out, out_lengths, inter = self.encode(
            batch.feats, batch.feat_lengths, **self._batch_inputs(batch)
        )
        full = (batch.targets, batch.target_lengths)
        asr = (
            batch.extra.get("targets_asr", batch.targets),
            batch.extra.get("target_asr_lengths", batch.target_lengths),
        )
        zero = out.sum() * 0.0  # keeps the graph when every target is <na>
        final = self._ctc_loss(out, out_lengths, *(asr if self.ctc_asr_only[-1] else full))
        final = zero if final is None else final
        stats = {"ctc": final.detach()}
        loss = final
        if inter and self.interctc_weight > 0.0:
            parts = []
            for (layer, h), asr_only in zip(inter, self.ctc_asr_only, strict=False):
                part = self._ctc_loss(h, out_lengths, *(asr if asr_only else full))
                part = zero if part is None else part
                stats[f"interctc{layer}"] = part.detach()
                parts.append(part)
            inter_loss = torch.stack(parts).mean()
            loss = (1.0 - self.interctc_weight) * final + self.interctc_weight * inter_loss
        stats["loss"] = loss
        return stats, out, out_lengths

    def training_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self._losses(batch)[0]

    def validation_metrics(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``loss`` and ``ter``: greedy token errors / reference tokens of the final target."""
        stats, out, out_lengths = self._losses(batch)
        hyps = ctc_greedy_search(self.log_probs(out), out_lengths, self.blank_id)
        ys, ys_lengths = (
            (batch.extra.get("targets_asr", batch.targets), batch.extra.get("target_asr_lengths", batch.target_lengths))
            if self.ctc_asr_only[-1]
            else (batch.targets, batch.target_lengths)
        )  # fmt: skip
        metrics = {k: v.detach() for k, v in stats.items()}
        metrics["ter"] = token_error_rate(hyps, ys, ys_lengths).to(out.device)
        return metrics

    # ---- inference -------------------------------------------------------------------------
    def symbol_id(self, name: str, kind: str) -> int:
        """Id of a language (``eng``/``<eng>``/``nolang``) or task (``asr``/``st_zho``) symbol."""
        sym = _symbol(name)
        table = self.languages if kind == "lang" else self.tasks
        if kind == "lang" and sym == "<nolang>":
            return self.nolang_id
        if sym not in table:
            names = ", ".join(s.strip("<>") for s in list(table)[:12])
            more = " ..." if len(table) > 12 else ""
            raise ConfigError(
                f"--{kind} {name}: not a {'language' if kind == 'lang' else 'task'} of this model; "
                f"use one of {names}{more}" + (" or auto" if kind == "lang" else "")
            )
        return table[sym]

    def prompt_ids(self, prompt: str | list[int] | None) -> list[int]:
        """ESPnet's ``text_prev`` handling: tokenise; any ``<na>`` makes the prompt ``[<na>]``."""
        if prompt is None:
            return [self.na_id]
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise ConfigError(
                    "a text prompt needs the model's tokenizer; load the model with "
                    "Recognizer (or call model.set_tokenizer(tokenizer))"
                )
            ids = list(self.tokenizer.encode(prompt))
        else:
            ids = [int(i) for i in prompt]
        return [self.na_id] if not ids or self.na_id in ids else ids

    def detect_language(
        self, feats: torch.Tensor, lengths: torch.Tensor, task_id: int, prompt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lang ids (B,), probabilities (B,))``: frame 0's CTC distribution over the
        language symbols after encoding with ``<nolang>``."""
        b = feats.shape[0]
        prefix = torch.tensor([[self.nolang_id, task_id]], device=feats.device).expand(b, 2)
        out, _, _ = self.encode(feats, lengths, prefix, prompt)
        ids = torch.tensor(sorted(self.languages.values()), device=feats.device)
        probs = F.softmax(self.ctc_out(out[:, 0]), dim=-1)[:, ids]  # (B, L)
        best = probs.argmax(dim=-1)
        return ids[best], probs.gather(1, best[:, None])[:, 0]

    def _prefix_and_prompt(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        lang: str,
        task: str,
        prompt: str | list[int] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, Any]]]:
        """``(prefix (B, 2), prompts (B, P), info per utterance)``; ``lang="auto"`` runs LID."""
        b, dev = feats.shape[0], feats.device
        task_id = self.symbol_id(task, "task")
        ids = self.prompt_ids(prompt)
        prompts = torch.tensor(ids, dtype=torch.long, device=dev).expand(b, len(ids))
        info: list[dict[str, Any]] = [{} for _ in range(b)]
        if str(lang).strip("<>") == "auto":
            lang_ids, probs = self.detect_language(feats, lengths, task_id, prompts)
            names = {v: k for k, v in self.languages.items()}
            info = [
                {"language": names[int(i)].strip("<>"), "language_prob": round(float(p), 4)}
                for i, p in zip(lang_ids.tolist(), probs.tolist(), strict=True)
            ]
        else:
            lang_ids = torch.full((b,), self.symbol_id(lang, "lang"), device=dev)
        prefix = torch.stack([lang_ids, torch.full_like(lang_ids, task_id)], dim=1).long()
        return prefix, prompts, info

    @torch.no_grad()
    def ctc_log_probs(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        lang: str = "<nolang>",
        task: str = "<asr>",
        prompt: str | list[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(log_probs (B, T'+2, V), lengths (B,), 2)``: final CTC log-probs with the prefix
        frames first (their count is the third value), for forced alignment."""
        prefix, prompts, _ = self._prefix_and_prompt(feats, lengths, lang, task, prompt)
        out, out_lengths, _ = self.encode(feats, lengths, prefix, prompts)
        return self.log_probs(out), out_lengths, self.num_prefix

    @torch.no_grad()
    def recognize(
        self,
        feats: torch.Tensor,
        lengths: torch.Tensor,
        method: str = "greedy",
        beam_size: int = 10,
        lang: str = "<nolang>",
        task: str = "<asr>",
        prompt: str | list[int] | None = None,
        **options: Any,
    ) -> list[Hypothesis]:
        """Greedy CTC per utterance with ``<lang><task>`` prefix and optional text prompt.

        ``lang="auto"`` detects the language first (``Hypothesis.info["language"]``). Token
        starts are input feature frames (prefix frames count as frame 0).
        """
        if options:
            raise ConfigError(f"decoding options {', '.join(options)} do not apply to owsm_ctc")
        if method not in self.decoders:
            raise ConfigError(f"unknown decoding method '{method}' for owsm_ctc; use greedy")
        prefix, prompts, info = self._prefix_and_prompt(feats, lengths, lang, task, prompt)
        out, out_lengths, _ = self.encode(feats, lengths, prefix, prompts)
        tokens, frames = ctc_greedy_search(
            self.log_probs(out), out_lengths, self.blank_id, return_frames=True
        )
        k, factor = self.num_prefix, self.subsampling_factor
        return [
            Hypothesis(list(t), [float(max(f - k, 0) * factor) for f in fr], info=inf)
            for t, fr, inf in zip(tokens, frames, info, strict=True)
        ]
