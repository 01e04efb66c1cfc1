"""OWSM multitask data dirs (ESPnet's s2t layout): token ids and the extra batch fields.

A data dir is multitask when it has ``text.ctc`` or ``text.prev`` beside ``text``:

- ``text``: ``<lang><task> target`` (e.g. ``<eng><asr> HELLO`` or ``<eng><st_zho> 你好``);
- ``text.ctc``: the ASR transcript (absent: the target is used);
- ``text.prev``: the previous utterance's text used as prompt, ``<na>`` for none (absent: ``<na>``).

For each utterance :meth:`MultitaskText.item` gives ``targets`` = ``[lang, task] + ids(target)``
(the two prefix symbols are single tokens: they are the tokenizer's user-defined symbols) and
``extra``: ``prefix`` (2,), ``prompt`` (P,) and ``targets_asr`` (U',). ``collate_asr`` pads
them into ``Batch.extra`` as :class:`audiokit.asr.owsm_ctc.OwsmCTC` expects.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import torch

from audiokit.data.kaldi_files import read_kv_file
from audiokit.errors import DataDirError

if TYPE_CHECKING:
    from audiokit.data.data_dir import DataDir
    from audiokit.text import Tokenizer

NA = "<na>"
_PREFIX = re.compile(r"\s*(<[^<>\s]+>)\s*(<[^<>\s]+>)\s*(.*)$")


class MultitaskText:
    """Multitask fields of one data dir for one tokenizer (token list with the OWSM symbols)."""

    def __init__(
        self,
        where: str,
        text: dict[str, str],
        tokenizer: Tokenizer,
        text_ctc: dict[str, str] | None = None,
        text_prev: dict[str, str] | None = None,
    ) -> None:
        self.where, self.text, self.tokenizer = where, text, tokenizer
        self.text_ctc, self.text_prev = text_ctc, text_prev
        tl = tokenizer.token_list
        if NA not in tl:
            raise DataDirError(
                f"{where}: multitask data needs '{NA}' in the token list; train the tokenizer "
                f"with --user-defined-symbols '{NA},<nolang>,<eng>,...,<asr>'"
            )
        self.na_id = tl.id(NA)

    @classmethod
    def from_data_dir(cls, data: DataDir, tokenizer: Tokenizer | None) -> MultitaskText | None:
        """None unless `data` has text.ctc or text.prev (and a tokenizer is given)."""
        names = [n for n in ("text.ctc", "text.prev") if n in data.extra_files]
        if tokenizer is None or not names or data.path is None or data.text is None:
            return None
        files = {n: read_kv_file(data.path / n, allow_empty_value=True) for n in names}
        return cls(
            str(data.path), data.text, tokenizer, files.get("text.ctc"), files.get("text.prev")
        )

    def _symbol_id(self, utt: str, symbol: str) -> int:
        tl = self.tokenizer.token_list
        if symbol not in tl:
            raise DataDirError(
                f"{self.where}/text: utterance '{utt}' uses {symbol}, which is not in the token "
                "list; add it to the tokenizer's --user-defined-symbols and retrain it"
            )
        return tl.id(symbol)

    def _ids(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text)
        return [self.na_id] if self.na_id in ids else ids  # "<na>" anywhere: no text

    def item(self, utt: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(targets (U,), {"prefix": (2,), "prompt": (P,), "targets_asr": (U',)})`` int64."""
        m = _PREFIX.match(self.text[utt])
        if m is None:
            raise DataDirError(
                f"{self.where}/text: utterance '{utt}' does not start with <lang><task>; "
                "write multitask text as '<eng><asr> TRANSCRIPT'"
            )
        lang, task, rest = m.groups()
        prefix = [self._symbol_id(utt, lang), self._symbol_id(utt, task)]
        target = self._ids(rest) if rest.strip() else []
        asr = target
        if self.text_ctc is not None and utt in self.text_ctc:
            asr = self._ids(self.text_ctc[utt])
        prompt = [self.na_id]
        if self.text_prev is not None and self.text_prev.get(utt, NA).strip():
            prompt = self._ids(self.text_prev.get(utt, NA))
        long = lambda x: torch.tensor(x, dtype=torch.int64)  # noqa: E731
        return long(prefix + target), {
            "prefix": long(prefix),
            "prompt": long(prompt),
            "targets_asr": long(asr),
        }
