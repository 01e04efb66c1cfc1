"""Cepstral mean and variance normalisation: statistics, global and per-utterance CMVN, file I/O.

File formats:

- Kaldi stats (``compute-cmvn-stats``): a ``2 x (D+1)`` float64 matrix, row 0 = per-dim sums then
  the frame count, row 1 = per-dim sums of squares then 0. Read/written with kaldiio.
- FunASR/Kaldi-nnet ``am.mvn`` text: ``<AddShift>`` holds ``-mean`` and ``<Rescale>`` holds
  ``1/std`` (each in a ``<LearnRateCoef> 0 [ ... ]`` vector).
- ``cmvn.npz`` (the packed-model format): arrays ``mean``, ``istd`` (float32, ``(D,)``) and
  ``count`` (frames the stats came from; 0 when unknown, e.g. from ``am.mvn``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audiokit.errors import FeatureError
from audiokit.utils.atomic import atomic_path, atomic_write

# Kaldi's apply-cmvn floors the variance here before taking 1/sqrt.
VAR_FLOOR = 1e-10


def _valid_mask(b: int, t: int, lengths: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """(B, T) bool, True on real (non-padding) frames."""
    if lengths is None:
        return torch.ones(b, t, dtype=torch.bool, device=device)
    return torch.arange(t, device=device)[None, :] < lengths.to(device)[:, None]


class CmvnStats:
    """Running per-dimension sum, sum of squares and frame count (float64)."""

    def __init__(self, dim: int) -> None:
        self.sum = np.zeros(dim, dtype=np.float64)
        self.sumsq = np.zeros(dim, dtype=np.float64)
        self.count = 0

    @property
    def dim(self) -> int:
        return self.sum.shape[0]

    def update(self, feats: torch.Tensor | np.ndarray, lengths: torch.Tensor | None = None) -> None:
        """Add frames from ``(T, D)`` or zero-padded ``(B, T, D)`` with ``lengths (B,)``."""
        if isinstance(feats, np.ndarray):  # copy: kaldiio hands out read-only arrays
            feats = torch.from_numpy(np.array(feats, dtype=np.float64))
        x = feats.to(torch.float64)
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.shape[-1] != self.dim:
            raise FeatureError(
                f"features have dim {x.shape[-1]} but these CMVN stats have {self.dim}"
            )
        mask = _valid_mask(x.shape[0], x.shape[1], lengths, x.device)
        x = x * mask[:, :, None]
        self.sum += x.sum(dim=(0, 1)).cpu().numpy()
        self.sumsq += (x * x).sum(dim=(0, 1)).cpu().numpy()
        self.count += int(mask.sum())

    def merge(self, other: CmvnStats) -> None:
        if other.dim != self.dim:
            raise FeatureError(f"cannot merge CMVN stats of dim {other.dim} into dim {self.dim}")
        self.sum += other.sum
        self.sumsq += other.sumsq
        self.count += other.count

    def mean_istd(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and inverse standard deviation, float32 ``(D,)`` each (variance floored as Kaldi)."""
        if self.count <= 0:
            raise FeatureError("CMVN stats hold no frames; accumulate features before using them")
        mean = self.sum / self.count
        var = np.maximum(self.sumsq / self.count - mean * mean, VAR_FLOOR)
        return mean.astype(np.float32), (1.0 / np.sqrt(var)).astype(np.float32)

    # Kaldi matrix form -------------------------------------------------------------------
    def to_kaldi(self) -> np.ndarray:
        mat = np.zeros((2, self.dim + 1), dtype=np.float64)
        mat[0, :-1], mat[0, -1] = self.sum, self.count
        mat[1, :-1] = self.sumsq
        return mat

    @classmethod
    def from_kaldi(cls, mat: np.ndarray, name: str = "cmvn stats") -> CmvnStats:
        mat = np.asarray(mat, dtype=np.float64)
        if mat.ndim != 2 or mat.shape[0] != 2 or mat.shape[1] < 2:
            raise FeatureError(
                f"{name}: expected a 2 x (D+1) Kaldi CMVN stats matrix, got shape {mat.shape}"
            )
        stats = cls(mat.shape[1] - 1)
        stats.sum[:] = mat[0, :-1]
        stats.sumsq[:] = mat[1, :-1]
        stats.count = int(round(mat[0, -1]))
        return stats

    def write_kaldi(self, path: str | os.PathLike) -> None:
        """Write one binary matrix, as ``compute-cmvn-stats scp:feats.scp cmvn.ark`` does."""
        import kaldiio

        with atomic_write(path, "wb") as f:
            kaldiio.save_mat(f, self.to_kaldi())

    def save_npz(self, path: str | os.PathLike) -> None:
        mean, istd = self.mean_istd()
        save_cmvn_npz(path, mean, istd, self.count)


def read_kaldi_cmvn(path: str | os.PathLike) -> CmvnStats:
    """Read a global Kaldi CMVN stats matrix (binary or text) written by compute-cmvn-stats."""
    import kaldiio

    path = Path(path)
    if not path.is_file():
        raise FeatureError(
            f"{path}: CMVN stats file not found; run `audiokit feats compute-cmvn` first"
        )
    try:
        mat = kaldiio.load_mat(str(path))
    except Exception as e:  # kaldiio raises assorted errors on a malformed file
        raise FeatureError(
            f"{path}: not a Kaldi CMVN stats matrix ({e}); pass a global cmvn.ark, not a per-speaker ark"
        ) from e
    return CmvnStats.from_kaldi(mat, name=str(path))


def _bracket_vector(tokens: list[str], start: int, path: Path, tag: str) -> np.ndarray:
    """Parse ``[ v1 v2 ... ]`` beginning at or after ``tokens[start]``."""
    try:
        open_i = tokens.index("[", start)
        close_i = tokens.index("]", open_i)
        return np.array([float(v) for v in tokens[open_i + 1 : close_i]], dtype=np.float64)
    except ValueError as e:
        raise FeatureError(
            f"{path}: malformed {tag} vector in am.mvn ({e}); expected '[ v1 v2 ... ]'"
        ) from e


def read_am_mvn(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a FunASR/Kaldi-nnet ``am.mvn``; returns ``(mean, istd)`` float32 ``(D,)``."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: am.mvn not found; check the model directory")
    tokens = path.read_text(encoding="utf-8").replace("[", " [ ").replace("]", " ] ").split()
    if "<AddShift>" not in tokens or "<Rescale>" not in tokens:
        raise FeatureError(
            f"{path}: no <AddShift>/<Rescale> component; is this a FunASR am.mvn file?"
        )
    shift = _bracket_vector(tokens, tokens.index("<AddShift>"), path, "<AddShift>")
    rescale = _bracket_vector(tokens, tokens.index("<Rescale>"), path, "<Rescale>")
    if shift.shape != rescale.shape or shift.size == 0:
        raise FeatureError(
            f"{path}: <AddShift> has {shift.size} values but <Rescale> has {rescale.size}; the file is corrupt"
        )
    return (-shift).astype(np.float32), rescale.astype(np.float32)


def save_cmvn_npz(
    path: str | os.PathLike, mean: np.ndarray, istd: np.ndarray, count: int = 0
) -> None:
    """Write ``cmvn.npz`` (mean, istd, count) atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            mean=np.asarray(mean, np.float32),
            istd=np.asarray(istd, np.float32),
            count=np.int64(count),
        )


def load_cmvn(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean and istd from ``cmvn.npz``, a Kaldi stats matrix (``cmvn.ark``) or ``am.mvn``."""
    path = Path(path)
    if not path.is_file():
        raise FeatureError(f"{path}: CMVN file not found; check the path")
    if path.suffix == ".npz":
        with np.load(path) as z:
            if "mean" not in z or "istd" not in z:
                raise FeatureError(f"{path}: cmvn.npz lacks 'mean'/'istd' arrays; regenerate it")
            return z["mean"].astype(np.float32), z["istd"].astype(np.float32)
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"<AddShift>" in head or b"<Nnet>" in head:
        return read_am_mvn(path)
    return read_kaldi_cmvn(path).mean_istd()


class GlobalCMVN(nn.Module):
    """``(x - mean) * istd`` with fixed statistics; padding frames stay zero.

    Input/output ``(B, T, D)``; ``lengths (B,)`` marks valid frames (others are set to 0).
    """

    def __init__(
        self,
        mean: np.ndarray | torch.Tensor,
        istd: np.ndarray | torch.Tensor,
        norm_means: bool = True,
        norm_vars: bool = True,
    ) -> None:
        super().__init__()
        self.norm_means = norm_means
        self.norm_vars = norm_vars
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("istd", torch.as_tensor(np.asarray(istd), dtype=torch.float32))

    @classmethod
    def from_file(
        cls, path: str | os.PathLike, norm_means: bool = True, norm_vars: bool = True
    ) -> GlobalCMVN:
        mean, istd = load_cmvn(path)
        return cls(mean, istd, norm_means, norm_vars)

    def load(self, mean: object, istd: object, tile: int = 1) -> None:
        """Replace the statistics (lists, arrays or tensors of this module's dim). With
        ``tile > 1`` stats of ``dim / tile`` are repeated ``tile`` times (fbank stats for
        LFR-stacked input)."""
        if mean is None or istd is None:
            raise FeatureError("CMVN needs both mean and istd; pass both or neither")
        dim = self.mean.shape[0]
        for name, value in (("mean", mean), ("istd", istd)):
            t = torch.as_tensor(np.asarray(value, dtype=np.float32))
            if tile > 1 and t.shape == (dim // tile,):
                t = t.repeat(tile)
            if t.shape != (dim,):
                also = f" (or {dim // tile} to be tiled {tile}x)" if tile > 1 else ""
                raise FeatureError(
                    f"CMVN {name} has shape {tuple(t.shape)} but the model takes {dim}{also}; "
                    "use the CMVN statistics computed for these features"
                )
            getattr(self, name).copy_(t)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if feats.shape[-1] != self.mean.shape[0]:
            raise FeatureError(
                f"features have dim {feats.shape[-1]} but the CMVN stats have {self.mean.shape[0]}; "
                "use the CMVN file computed for these features"
            )
        x = feats
        if self.norm_means:
            x = x - self.mean
        if self.norm_vars:
            x = x * self.istd
        if lengths is not None and x.dim() == 3:
            x = x * _valid_mask(x.shape[0], x.shape[1], lengths, x.device)[:, :, None].to(x.dtype)
        return x


def apply_utterance_cmvn(
    feats: torch.Tensor,
    lengths: torch.Tensor | None = None,
    norm_means: bool = True,
    norm_vars: bool = False,
) -> torch.Tensor:
    """Per-utterance CMVN over valid frames only; ``(B, T, D)`` in and out, padding stays zero.

    Defaults follow Kaldi's ``apply-cmvn`` (means only). Variances are floored as Kaldi does.
    """
    b, t, _ = feats.shape
    mask = _valid_mask(b, t, lengths, feats.device)[:, :, None].to(feats.dtype)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (feats * mask).sum(dim=1, keepdim=True) / count
    x = feats - mean if norm_means else feats
    if norm_vars:
        # Two-pass variance: sumsq/N - mean^2 loses digits in float32 when |mean| >> std.
        var = (((feats - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
        x = x * torch.rsqrt(var.clamp(min=VAR_FLOOR))
    return x * mask


def compute_cmvn(
    feats: str | os.PathLike, out_dir: str | os.PathLike, per_utterance: bool = False
) -> CmvnStats:
    """Global CMVN stats of a feats.scp (or its folder) -> ``out_dir/cmvn.ark`` and ``cmvn.npz``.

    ``cmvn.ark`` is one Kaldi stats matrix, as ``compute-cmvn-stats scp:feats.scp cmvn.ark``
    writes. With ``per_utterance`` also ``cmvn_utt.ark``/``.scp``: one stats matrix per utterance
    (``compute-cmvn-stats scp:feats.scp ark,scp:...``). Returns the global :class:`CmvnStats`.
    """
    import kaldiio

    from audiokit.data.kaldi_files import write_kv_file
    from audiokit.features.extract import feats_scp_path

    path = feats_scp_path(feats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total: CmvnStats | None = None
    utt_lines = []
    ark = (out / "cmvn_utt.ark").resolve()
    with atomic_write(ark, "wb") if per_utterance else contextlib.nullcontext() as f:
        for key, mat in _read_scp(path):
            if mat.ndim != 2 or mat.shape[0] == 0:
                raise FeatureError(
                    f"{path}: '{key}' is not a non-empty (frames, dim) matrix; re-extract it"
                )
            if total is None:
                total = CmvnStats(mat.shape[1])
            utt = CmvnStats(mat.shape[1])
            utt.update(mat)
            total.merge(utt)
            if per_utterance:
                offset = f.tell() + len(key.encode()) + 1
                kaldiio.save_ark(f, {key: utt.to_kaldi()})
                utt_lines.append((key, f"{ark}:{offset}"))
    if total is None:
        raise FeatureError(f"{path}: no features listed; nothing to compute CMVN from")
    total.write_kaldi(out / "cmvn.ark")
    total.save_npz(out / "cmvn.npz")
    if per_utterance:
        write_kv_file(out / "cmvn_utt.scp", utt_lines)
    return total


def _read_scp(path: Path):
    """(key, matrix) pairs of a feats.scp; FeatureError naming the file on an unreadable ark."""
    import kaldiio

    try:
        for key, mat in kaldiio.load_scp_sequential(str(path)):
            yield key, np.asarray(mat)
    except (OSError, ValueError, EOFError) as e:
        raise FeatureError(
            f"{path}: cannot read features ({e}); re-run `audiokit feats extract`"
        ) from e
