"""DAC's factorised residual vector quantiser (Improved RVQGAN, Kumar et al. 2023).

Each codebook works on the running residual (starting from the encoder output ``z``):

* ``e = in_proj(residual)``: weight-normed 1x1 conv, ``input_dim -> codebook_dim`` (factorised codes,
  ViT-VQGAN): the lookup happens in a tiny space, which keeps codebook usage high;
* nearest neighbour of the **L2-normalised** ``e`` among the L2-normalised codebook rows (cosine
  similarity), one matmul per codebook over all frames;
* the quantised vector is the **raw** codebook row, passed straight through
  (``e + (row - e).detach()``) and projected back by ``out_proj`` (1x1, ``codebook_dim -> input_dim``);
* ``residual -= z_q_i``; ``z_q = sum_i z_q_i``.

Losses (per codebook, DAC's): ``commitment = mse(e, row.detach())``, ``codebook = mse(row, e.detach())``,
averaged over (D, T) per item, masked by quantiser dropout, averaged over the batch and summed over
codebooks. Quantiser dropout (training only): a fraction ``quantizer_dropout`` of the batch items
(the first ones, as DAC does) uses a random number of codebooks in [1, K]; the rest use all K.

Parameter names map 1:1 onto DAC's ``quantizer.quantizers.{i}.in_proj / out_proj / codebook.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.nn.weight_norm import WNConv1d


class FactorizedVQ(nn.Module):
    """One factorised codebook: WN 1x1 ``in_proj``/``out_proj`` and ``codebook`` (N, d) rows."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.in_proj = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest(self, e: torch.Tensor) -> torch.Tensor:
        """Projected latents e (B, d, T) -> codes (B, T) int64 (cosine nearest neighbour)."""
        b, d, t = e.shape
        flat = F.normalize(e.transpose(1, 2).reshape(b * t, d))
        book = F.normalize(self.codebook.weight)
        # squared distance between unit vectors, written as DAC writes it so ties break alike
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ book.t()
            + book.pow(2).sum(1, keepdim=True).t()
        )
        return (-dist).argmax(1).view(b, t)

    def rows(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T) -> raw codebook rows (B, d, T)."""
        return F.embedding(codes, self.codebook.weight).transpose(1, 2)

    def forward(
        self, residual: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """residual (B, D, T) -> (z_q_i (B, D, T), codes (B, T), e (B, d, T),
        commitment (B,), codebook (B,)) — the losses per batch item."""
        e = self.in_proj(residual)
        codes = self.nearest(e)
        row = self.rows(codes)
        commitment = F.mse_loss(e, row.detach(), reduction="none").mean([1, 2])
        codebook = F.mse_loss(row, e.detach(), reduction="none").mean([1, 2])
        q = e + (row - e).detach()  # straight-through: forward value = row, gradient -> e
        return self.out_proj(q), codes, e, commitment, codebook


class FactorizedResidualVQ(nn.Module):
    """Residual VQ with factorised, L2-normalised codebooks (DAC's ``ResidualVectorQuantize``).

    Args:
        input_dim: latent channels D.
        n_codebooks: K.
        codebook_size: entries per codebook.
        codebook_dim: lookup dim d (an int, or one per codebook).
        quantizer_dropout: fraction of each training batch that uses a random number of codebooks.
    """

    def __init__(
        self,
        input_dim: int,
        n_codebooks: int,
        codebook_size: int,
        codebook_dim: int | Sequence[int] = 8,
        quantizer_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        dims = [codebook_dim] * n_codebooks if isinstance(codebook_dim, int) else list(codebook_dim)
        if len(dims) != n_codebooks:
            raise ValueError(f"codebook_dim has {len(dims)} entries for {n_codebooks} codebooks")
        self.input_dim = input_dim
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.codebook_dim = dims
        self.quantizer_dropout = float(quantizer_dropout)
        self.quantizers = nn.ModuleList(FactorizedVQ(input_dim, codebook_size, d) for d in dims)

    def _n(self, n_codebooks: int | None) -> int:
        if n_codebooks is None:
            return self.n_codebooks
        if not 1 <= n_codebooks <= self.n_codebooks:
            raise ValueError(f"n_codebooks={n_codebooks} outside [1, {self.n_codebooks}]")
        return int(n_codebooks)

    def _item_codebooks(self, batch: int, n: int, device: torch.device) -> torch.Tensor:
        """(B,) codebooks each item keeps: n, or in training a random 1..n for the dropout share."""
        keep = torch.full((batch,), n, dtype=torch.long)
        if self.training and self.quantizer_dropout > 0:
            n_drop = int(batch * self.quantizer_dropout)
            keep[:n_drop] = torch.randint(1, n + 1, (n_drop,))
        return keep.to(device)

    def quantize(
        self, z: torch.Tensor, n_codebooks: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """z (B, D, T) -> (z_q (B, D, T), codes (B, k, T) int64, latents (B, sum d_i, T), losses).

        ``latents`` are the projected ``in_proj`` outputs before the lookup (DAC's "latents").
        In training every item runs all k codebooks and quantiser dropout masks their
        contributions (and losses) per item; in eval the first k are used.
        """
        n = self._n(n_codebooks)
        keep = self._item_codebooks(z.shape[0], n, z.device)
        z_q = torch.zeros_like(z)
        residual = z
        commitment = z.new_zeros(())
        codebook = z.new_zeros(())
        codes, latents = [], []
        for i, vq in enumerate(self.quantizers[:n]):
            z_q_i, codes_i, e_i, commit_i, book_i = vq(residual)
            mask = (keep > i).to(z.dtype)  # (B,) True: item i still uses this codebook
            z_q = z_q + z_q_i * mask[:, None, None]
            residual = residual - z_q_i
            commitment = commitment + (commit_i * mask).mean()
            codebook = codebook + (book_i * mask).mean()
            codes.append(codes_i)
            latents.append(e_i)
        losses = {"commitment": commitment, "codebook": codebook}
        return z_q, torch.stack(codes, 1), torch.cat(latents, 1), losses

    def forward(
        self, z: torch.Tensor, n_codebooks: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """z (B, D, T) -> (z_q (B, D, T), codes (B, k, T) int64, {"commitment", "codebook"})."""
        z_q, codes, _, losses = self.quantize(z, n_codebooks)
        return z_q, codes, losses

    def encode(self, z: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """z (B, D, T) -> codes (B, k, T) int64 (no dropout, no losses needed)."""
        n = self._n(n_codebooks)
        residual = z
        codes = []
        for vq in self.quantizers[:n]:
            e = vq.in_proj(residual)
            c = vq.nearest(e)
            residual = residual - vq.out_proj(e + (vq.rows(c) - e))  # same arithmetic as forward
            codes.append(c)
        return torch.stack(codes, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, k, T) with k <= K -> z_q (B, D, T) (DAC's ``from_codes``)."""
        k = codes.shape[1]
        if not 1 <= k <= self.n_codebooks:
            raise ValueError(f"codes have {k} codebooks; this quantiser has {self.n_codebooks}")
        z_q = 0.0
        for i in range(k):
            vq = self.quantizers[i]
            z_q = z_q + vq.out_proj(vq.rows(codes[:, i]))
        return z_q
