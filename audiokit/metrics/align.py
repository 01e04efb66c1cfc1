"""sclite-compatible minimum-cost alignment of a reference and a hypothesis.

Both sides are word networks (alternations make a side a DAG, see `transcripts.py`), aligned
with NIST sclite's network DP (SCTK `net_dp.c`, `word.c`):

- costs: correct 0, substitution 4, insertion/deletion 3; an optionally deletable `(word)`
  costs 2 to drop (and counts as correct); the empty alternative `@` costs 0.001 to drop;
  `@` against `@` costs 1 (and is not reported). Sums are float32, as in sclite.
- a DP cell is a pair of arcs (ref word, hyp word); it is reached from the cells of the arcs
  entering each word. Among predecessors the first (in network order) of the smallest wins;
  among moves: substitution/correct if it is <= both others, else deletion if strictly
  cheaper than insertion, else insertion. The end cell is the first minimum over the words
  that end each network. These ties decide which of several equal-cost alignments is shown.

The DP runs along anti-diagonals of the (ref level, hyp level) grid, vectorised over each.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from audiokit.metrics.transcripts import Alternation, Element, parse_transcript

_F = np.float32
_I = np.int32  # flat cell indices within one batch (MAX_BATCH_CELLS keeps them small)
NULL_WORD = "@"


class AlignedPair(NamedTuple):
    """One alignment column. `op` is C, S, D or I; `ref` is None for I, `hyp` None for D.

    An optionally deletable reference word that was dropped is ("C", "(word)", "").
    """

    op: str
    ref: str | None
    hyp: str | None


def _optional(word: str) -> tuple[str, bool]:
    """`(word)` -> ("word", True): optionally deletable (sclite -D); else (word, False)."""
    if len(word) >= 3 and word[0] == "(" and word[-1] == ")":
        return word[1:-1], True
    return word, False


class _Net:
    """A transcript as arcs in topological order; arc 0 is sclite's empty head arc.

    `pred_table[x]`: arcs entering the start of arc x, in sclite's list order (ties go to the
    first), padded with len(self) (an inf sentinel). `ends`: arcs entering the final node.
    `level[x]`: longest path from the head, so every predecessor has a smaller level. `value` is what is compared (an optional word's
    inside), `text` what is printed.
    """

    def __init__(self, elements: list[Element], cer: bool):
        self.value: list[str] = [""]
        self.text: list[str] = [""]
        self.opt: list[bool] = [False]
        self._cer = cer
        if all(isinstance(e, str) for e in elements):
            self._chain(elements)
        else:
            self._graph(elements)
        self.null = np.array([v == NULL_WORD for v in self.value])
        self.null[0] = False
        self.indel = np.where(self.null, 0.001, np.where(self.opt, 2.0, 3.0)).astype(_F)

    def _chain(self, words: list[str]) -> None:
        """Plain words (the usual case): arc x's only predecessor is x - 1."""
        for w in words:
            inner, opt = _optional(w)
            if self._cer and len(inner) > 1:
                self.value += inner
                self.text += [f"({ch})" for ch in inner] if opt else inner
                self.opt += [opt] * len(inner)
            else:
                self.value.append(inner)
                self.text.append(w)
                self.opt.append(opt)
        n = len(self.value)
        self.pred_table = np.arange(-1, n - 1)[:, None]
        self.pred_table[0] = n  # the head arc has none: point at the inf sentinel
        self.ends = [n - 1]
        self.level = np.arange(n)

    def _graph(self, elements: list[Element]) -> None:
        self.preds: list[list[int]] = [[]]
        self._from: list[int] = [-1]
        self._late: list[bool] = [False]
        self._in: list[list[int]] = [[], []]  # node 0 = start, node 1 = end
        self._seq(elements, 0, 1)
        for node_in in self._in:
            # sclite splits multi-character words for CER after building the network, and
            # the split words' arcs end up after the others in each node's list
            node_in.sort(key=lambda x: self._late[x])
        for x in range(1, len(self.value)):
            self.preds.append(self._in[self._from[x]] if self._from[x] != 0 else [0])
        self.ends = self._in[1] if self._in[1] else [0]
        self.pred_table = _pad(self.preds, len(self.value), max(len(p) for p in self.preds))
        level = [0] * len(self.value)
        for x in range(1, len(level)):
            level[x] = 1 + max(level[p] for p in self.preds[x])
        self.level = np.array(level)

    def __len__(self) -> int:
        return len(self.value)

    def _node(self) -> int:
        self._in.append([])
        return len(self._in) - 1

    def _seq(self, elements: list[Element] | tuple[Element, ...], frm: int, to: int) -> None:
        cur = frm
        for i, el in enumerate(elements):
            nxt = to if i == len(elements) - 1 else self._node()
            if isinstance(el, Alternation):
                for alt in el.alternatives:
                    self._seq(alt, cur, nxt)
            else:
                self._word(el, cur, nxt)
            cur = nxt

    def _arc(self, value: str, text: str, opt: bool, frm: int, to: int, late: bool) -> None:
        self._in[to].append(len(self.value))
        self.value.append(value)
        self.text.append(text)
        self.opt.append(opt)
        self._from.append(frm)
        self._late.append(late)

    def _word(self, word: str, frm: int, to: int) -> None:
        inner, opt = _optional(word)
        if not self._cer or len(inner) <= 1:
            self._arc(inner, word, opt, frm, to, False)
            return
        cur = frm
        for i, ch in enumerate(inner):
            nxt = to if i == len(inner) - 1 else self._node()
            self._arc(ch, f"({ch})" if opt else ch, opt, cur, nxt, True)
            cur = nxt


def _pad(preds: list[list[int]], fill: int, width: int) -> np.ndarray:
    """(N, width) int64 predecessor table; unused slots point at the inf sentinel `fill`."""
    out = np.full((len(preds), max(width, 1)), fill, dtype=np.int64)
    for i, p in enumerate(preds):
        out[i, : len(p)] = p
    return out


def _widen(table: np.ndarray, width: int) -> np.ndarray:
    """Add sentinel columns (the table's row count) up to `width`."""
    extra = np.full((len(table), width - table.shape[1]), len(table), dtype=table.dtype)
    return np.concatenate([table, extra], axis=1)


def _fragment_equal(r: str, h: str) -> bool:
    """sclite -F: a word fragment (`fi-`, `-icks`) matches any word it begins or ends."""
    if len(r) > 1 and r[0] == "-":
        return len(h) >= len(r) - 1 and h.endswith(r[1:])
    if len(r) > 1 and r[-1] == "-":
        return h.startswith(r[:-1])
    if len(h) > 1 and h[0] == "-":
        return len(r) >= len(h) - 1 and r.endswith(h[1:])
    if len(h) > 1 and h[-1] == "-":
        return r.startswith(h[:-1])
    return r == h


def _sub_costs(ref: _Net, hyp: _Net, fragments: bool) -> np.ndarray:
    """(Na, Nb) float32: 0 where the words match, 1 for @ against @, else 4."""
    vocab: dict[str, int] = {}
    rid = np.array([vocab.setdefault(v, len(vocab)) for v in ref.value])
    hid = np.array([vocab.setdefault(v, len(vocab)) for v in hyp.value])
    equal = rid[:, None] == hid[None, :]
    if fragments:

        def is_frag(v: str) -> bool:
            return len(v) > 1 and (v[0] == "-" or v[-1] == "-")

        for a in (a for a in range(1, len(ref)) if is_frag(ref.value[a])):
            equal[a, 1:] = [_fragment_equal(ref.value[a], h) for h in hyp.value[1:]]
        for b in (b for b in range(1, len(hyp)) if is_frag(hyp.value[b])):
            equal[1:, b] = [_fragment_equal(r, hyp.value[b]) for r in ref.value[1:]]
    cost = np.where(equal, 0.0, 4.0)
    cost[ref.null[:, None] & hyp.null[None, :]] = 1.0
    return cost.astype(_F)


MAX_BATCH_CELLS = 1_000_000  # DP cells filled together: bounds memory (~60 B per cell)


def _dp_batch(pairs: list[tuple[_Net, _Net, np.ndarray]]) -> list[tuple[np.ndarray, ...]]:
    """Fill the DP tables of several utterances at once.

    Utterance u gets a flat block of (Na+1)*(Nb+1) cells (its last row and column are an inf
    sentinel that unused predecessor slots point at). All cells with the same level sum, across
    all utterances, depend only on earlier sums, so each sum is one vectorised step.
    Returns per utterance (D, back_a, back_b), each (Na+1, Nb+1).
    """
    ka = max(r.pred_table.shape[1] for r, _, _ in pairs)
    kb = max(h.pred_table.shape[1] for _, h, _ in pairs)
    sizes = [(len(r) + 1) * (len(h) + 1) for r, h, _ in pairs]
    offsets = np.cumsum([0] + sizes)
    D = np.full(offsets[-1], np.inf, dtype=_F)
    back_a = np.zeros(offsets[-1], dtype=_I)
    back_b = np.zeros(offsets[-1], dtype=_I)
    cols: dict[str, list[np.ndarray]] = {
        k: [] for k in ("a", "b", "off", "w", "pa", "pb", "sub", "dc", "ic", "lv")
    }
    for (ref, hyp, sub), off in zip(pairs, offsets[:-1], strict=True):
        na, nb = len(ref), len(hyp)
        D[off] = 0.0
        a = np.repeat(np.arange(na, dtype=_I), nb)[1:]  # every cell but (0, 0)
        b = np.tile(np.arange(nb, dtype=_I), na)[1:]
        cols["a"].append(a)
        cols["b"].append(b)
        cols["off"].append(np.full(len(a), off, dtype=_I))
        cols["w"].append(np.full(len(a), nb + 1, dtype=_I))
        cols["pa"].append(_widen(ref.pred_table, ka)[a].astype(_I))
        cols["pb"].append(_widen(hyp.pred_table, kb)[b].astype(_I))
        cols["sub"].append(sub.ravel()[1:])
        cols["dc"].append(ref.indel[a])
        cols["ic"].append(hyp.indel[b])
        cols["lv"].append(ref.level[a] + hyp.level[b])
    order = np.argsort(np.concatenate(cols["lv"]), kind="stable")
    # sorted once, so that each level sum below is a contiguous slice
    c = {k: np.concatenate(v)[order] for k, v in cols.items()}
    bounds = np.searchsorted(c["lv"], np.arange(1, c["lv"].max(initial=0) + 2))
    chain = ka == 1 and kb == 1  # no alternations anywhere: one predecessor per word
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if lo == hi:
            continue
        a, b, off, w, pa, pb = (c[k][lo:hi] for k in ("a", "b", "off", "w", "pa", "pb"))
        base_a = off[:, None] + pa * w[:, None]  # flat index of (pred of a, column 0)
        cell = off + a * w + b
        if chain:
            pa, pb, base_a = pa[:, 0], pb[:, 0], base_a[:, 0]
            d_cost = D[base_a + b] + c["dc"][lo:hi]
            i_cost = D[cell - b + pb] + c["ic"][lo:hi]
            s_cost = D[base_a + pb] + c["sub"][lo:hi]
            sub_a, sub_b, del_a, ins_b = pa, pb, pa, pb
        else:
            rows = np.arange(hi - lo)
            dc = D[base_a + b[:, None]]
            di = dc.argmin(axis=1)
            d_cost = dc[rows, di] + c["dc"][lo:hi]
            ic = D[(cell - b)[:, None] + pb]
            ii = ic.argmin(axis=1)
            i_cost = ic[rows, ii] + c["ic"][lo:hi]
            sc = D[base_a[:, :, None] + pb[:, None, :]].reshape(hi - lo, -1)
            si = sc.argmin(axis=1)
            s_cost = sc[rows, si] + c["sub"][lo:hi]
            sub_a, sub_b = pa[rows, si // kb], pb[rows, si % kb]
            del_a, ins_b = pa[rows, di], pb[rows, ii]
        take_sub = (s_cost <= d_cost) & (s_cost <= i_cost)
        take_del = ~take_sub & (d_cost < i_cost)
        D[cell] = np.where(take_sub, s_cost, np.where(take_del, d_cost, i_cost))
        back_a[cell] = np.where(take_sub, sub_a, np.where(take_del, del_a, a))
        back_b[cell] = np.where(take_sub, sub_b, np.where(take_del, b, ins_b))
    out = []
    for (ref, hyp, _), lo, hi in zip(pairs, offsets[:-1], offsets[1:], strict=True):
        shape = (len(ref) + 1, len(hyp) + 1)
        out.append(
            (D[lo:hi].reshape(shape), back_a[lo:hi].reshape(shape), back_b[lo:hi].reshape(shape))
        )
    return out


def _trace(
    ref: _Net, hyp: _Net, sub: np.ndarray, tables: tuple[np.ndarray, ...]
) -> list[AlignedPair]:
    """Follow the back-pointers from sclite's end cell; '@' columns are dropped."""
    D, back_a, back_b = tables
    ends = D[np.ix_(ref.ends, hyp.ends)]
    first = int(ends.argmin())
    a, b = ref.ends[first // len(hyp.ends)], hyp.ends[first % len(hyp.ends)]
    out: list[AlignedPair] = []
    while a > 0 or b > 0:
        pa, pb = int(back_a[a, b]), int(back_b[a, b])
        if pa == a:  # insertion
            if not hyp.null[b]:
                out.append(
                    AlignedPair("C", "", hyp.text[b])
                    if hyp.opt[b]
                    else AlignedPair("I", None, hyp.text[b])
                )
        elif pb == b:  # deletion
            if not ref.null[a]:
                out.append(
                    AlignedPair("C", ref.text[a], "")
                    if ref.opt[a]
                    else AlignedPair("D", ref.text[a], None)
                )
        elif not (ref.null[a] and hyp.null[b]):
            out.append(AlignedPair("C" if sub[a, b] == 0 else "S", ref.text[a], hyp.text[b]))
        a, b = pa, pb
    out.reverse()
    return out


def _elements(x: str | list[str], ignore_case: bool) -> list[Element]:
    if isinstance(x, str):
        return parse_transcript(x.lower() if ignore_case else x)
    return [w.lower() if ignore_case else w for w in x]


def align_many(
    pairs: list[tuple[str | list[str], str | list[str]]],
    cer: bool = False,
    ignore_case: bool = False,
    fragments: bool = False,
) -> list[list[AlignedPair]]:
    """`align` for many (ref, hyp) pairs, vectorised across utterances (much faster)."""
    out: list[list[AlignedPair]] = []
    batch: list[tuple[_Net, _Net, np.ndarray]] = []
    cells = 0
    for i, (ref, hyp) in enumerate(pairs):
        r, h = _Net(_elements(ref, ignore_case), cer), _Net(_elements(hyp, ignore_case), cer)
        batch.append((r, h, _sub_costs(r, h, fragments)))
        cells += len(r) * len(h)
        if cells >= MAX_BATCH_CELLS or i == len(pairs) - 1:
            out += [
                _trace(r, h, s, t) for (r, h, s), t in zip(batch, _dp_batch(batch), strict=True)
            ]
            batch, cells = [], 0
    return out


def align(
    ref: str | list[str],
    hyp: str | list[str],
    cer: bool = False,
    ignore_case: bool = False,
    fragments: bool = False,
) -> list[AlignedPair]:
    """Align a reference and a hypothesis the way sclite does.

    `ref`/`hyp`: a transcript string (may use `{a / b / @}` and `(optional)` syntax) or a
    list of words. `cer`: align characters (each word split into its characters; spaces
    ignored). `fragments`: sclite's -F, a fragment like `fi-` or `-icks` is correct against
    any word it begins or ends. `ignore_case`: lower-case both sides first.
    Returns the alignment columns in order.
    """
    return align_many([(ref, hyp)], cer=cer, ignore_case=ignore_case, fragments=fragments)[0]
