"""EnCodec-style residual vector quantiser with EMA codebooks (audiocraft's fixed estimator).

Each of the K layers quantises the residual left by the previous ones with a plain Euclidean
lookup on raw (un-normalised, un-projected) vectors: ``code = argmin |x - e|^2``. Codebooks are
not trained by gradient: in training mode each layer

* runs k-means on its first batch when ``inited`` is 0 (``kmeans_init``),
* replaces "dead" codes (EMA usage ``cluster_size`` below ``dead_code_threshold``) with random
  vectors of the current batch,
* moves ``cluster_size`` / ``embed_avg`` by an exponential moving average and sets
  ``embed = embed_avg / laplace_smoothed(cluster_size)``.

The encoder gets the commitment loss ``mse(q.detach(), x)`` per layer and the straight-through
gradient of the *total* quantised latent (audiocraft's fix of encodec issue #25: residuals are
computed from detached layer outputs, then ``z_q = z + (sum_q - z).detach()``).

Two deliberate fixes over EnCodec's training code (inference is unaffected, imported codebooks
are used as they are): after k-means ``embed_avg`` holds ``mean * count`` (a sum, as the EMA
expects; EnCodec stores the mean), and a replaced dead code also resets its ``embed_avg`` and
``cluster_size`` (EnCodec resets only ``embed``, which the same step's EMA overwrites). Both
follow lucidrains' vector-quantize-pytorch.

Buffer names follow EnCodec (``vq.layers.{i}._codebook.embed / embed_avg / cluster_size /
inited``), so EnCodec checkpoints load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _neg_sq_dist(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """x (N, D), embed (C, D) -> (N, C) negated squared Euclidean distances (EnCodec's formula)."""
    e = embed.t()
    return -(x.pow(2).sum(1, keepdim=True) - 2 * x @ e + e.pow(2).sum(0, keepdim=True))


def _sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """`num` rows of samples (N, D): without replacement when N >= num, else with."""
    n = samples.shape[0]
    if n >= num:
        idx = torch.randperm(n, device=samples.device)[:num]
    else:
        idx = torch.randint(0, n, (num,), device=samples.device)
    return samples[idx]


def kmeans(
    samples: torch.Tensor, num_clusters: int, num_iters: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on samples (N, D) -> (means (C, D), cluster sizes (C,) of the last step).

    Means start at random samples; an empty cluster keeps its previous mean (EnCodec's rule).
    """
    means = _sample_vectors(samples, num_clusters)
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        buckets = _neg_sq_dist(samples, means).argmax(dim=-1)
        bins = torch.bincount(buckets, minlength=num_clusters)
        sums = torch.zeros_like(means).index_add_(0, buckets, samples)
        new_means = sums / bins.clamp(min=1).unsqueeze(1).to(samples.dtype)
        means = torch.where((bins == 0).unsqueeze(1), means, new_means)
    return means, bins


class EMACodebook(nn.Module):
    """One codebook: ``embed`` (C, D) plus its EMA statistics (buffers, no gradient)."""

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        dead_code_threshold: float = 2,
        epsilon: float = 1e-5,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.epsilon = epsilon
        if kmeans_init:
            embed = torch.zeros(codebook_size, dim)
        else:
            embed = nn.init.kaiming_uniform_(torch.empty(codebook_size, dim))
        self.register_buffer("inited", torch.tensor([float(not kmeans_init)]))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, D) -> codes (N,) int64: nearest codebook row."""
        return _neg_sq_dist(x, self.embed).argmax(dim=-1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (...) int -> vectors (..., D)."""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def init_(self, x: torch.Tensor) -> None:
        """k-means on x (N, D) when not yet initialised; sets ``inited``."""
        if bool(self.inited.item()):
            return
        embed, sizes = kmeans(x, self.codebook_size, self.kmeans_iters)
        sizes = sizes.to(self.cluster_size.dtype)
        self.embed.copy_(embed)
        # embed_avg is a running *sum* (embed = embed_avg / cluster_size); EnCodec stores the
        # means here, which rescales every code by 1/size on the first EMA step
        self.embed_avg.copy_(embed * sizes.unsqueeze(1))
        self.cluster_size.copy_(sizes)
        self.inited.fill_(1.0)

    @torch.no_grad()
    def update_(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """Training step on x (N, D) with its codes (N,): dead-code replacement, then EMA."""
        if self.dead_code_threshold > 0:
            dead = (self.cluster_size < self.dead_code_threshold).unsqueeze(1)
            if bool(dead.any()):
                # restart a dead code at a batch vector with usage = threshold. EnCodec only
                # overwrites `embed`, which the EMA normalisation below then undoes.
                fresh = _sample_vectors(x, self.codebook_size)
                reset = float(self.dead_code_threshold)
                self.embed.copy_(torch.where(dead, fresh, self.embed))
                self.embed_avg.copy_(torch.where(dead, fresh * reset, self.embed_avg))
                self.cluster_size.copy_(torch.where(dead[:, 0], reset, self.cluster_size))
        onehot = F.one_hot(codes, self.codebook_size).to(x.dtype)  # (N, C)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
        self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))


class _VQLayer(nn.Module):
    """Holds ``_codebook`` so state-dict keys read ``layers.{i}._codebook.embed`` like EnCodec."""

    def __init__(self, codebook: EMACodebook) -> None:
        super().__init__()
        self._codebook = codebook


class EMAResidualVQ(nn.Module):
    """Residual VQ with EMA codebooks, k-means init and dead-code replacement (EnCodec/audiocraft).

    Same API as :class:`audiokit.codec.quantizer` 's factorised RVQ: ``forward(z, n_codebooks)``,
    ``encode``, ``decode``; attributes ``n_codebooks`` and ``codebook_size``.

    quantizer_dropout: fraction of the batch items that, in training, use a random number
        1..K of codebooks (bitrate scalability, DAC's scheme); 0 disables it.
    """

    def __init__(
        self,
        dim: int,
        n_codebooks: int,
        codebook_size: int,
        decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        dead_code_threshold: float = 2,
        quantizer_dropout: float = 0.0,
        epsilon: float = 1e-5,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.n_codebooks = n_codebooks
        self.codebook_size = codebook_size
        self.quantizer_dropout = quantizer_dropout
        self.vq = nn.Module()
        self.vq.layers = nn.ModuleList(
            _VQLayer(
                EMACodebook(
                    dim,
                    codebook_size,
                    decay,
                    kmeans_init,
                    kmeans_iters,
                    dead_code_threshold,
                    epsilon,
                )
            )
            for _ in range(n_codebooks)
        )

    def codebook(self, k: int) -> EMACodebook:
        return self.vq.layers[k]._codebook

    def _n(self, n_codebooks: int | None) -> int:
        n = self.n_codebooks if n_codebooks is None else int(n_codebooks)
        if not 1 <= n <= self.n_codebooks:
            raise ValueError(f"n_codebooks={n}: this quantiser has 1..{self.n_codebooks}")
        return n

    @staticmethod
    def _flat(z: torch.Tensor) -> torch.Tensor:
        return z.transpose(1, 2).reshape(-1, z.shape[1])  # (B, D, T) -> (B*T, D)

    def encode(self, z: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """z (B, D, T) -> codes (B, K, T) int64 (K = n_codebooks or all)."""
        b, _, t = z.shape
        residual = self._flat(z)
        codes = []
        for k in range(self._n(n_codebooks)):
            cb = self.codebook(k)
            idx = cb.encode(residual)
            residual = residual - cb.decode(idx)
            codes.append(idx)
        return torch.stack(codes, 0).view(-1, b, t).transpose(0, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, T) -> z_q (B, D, T): the sum of the K codebooks' rows."""
        out = torch.zeros((), dtype=self.codebook(0).embed.dtype, device=codes.device)
        for k in range(codes.shape[1]):  # K layers, each vectorised over B*T
            out = out + self.codebook(k).decode(codes[:, k])
        return out.transpose(1, 2)

    def forward(
        self, z: torch.Tensor, n_codebooks: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """z (B, D, T) -> (z_q (B, D, T), codes (B, K, T) int64, {"commitment": scalar}).

        Commitment = mean over layers of ``mse(q, residual)`` (EnCodec's penalty), each layer
        averaged over the items that use it. Training mode only: k-means init, dead-code
        replacement, EMA update, quantiser dropout and the straight-through gradient.
        """
        b, d, t = z.shape
        n = self._n(n_codebooks)
        x = self._flat(z)
        # per-item number of codebooks: n for most, random 1..n for the dropout share
        n_used = torch.full((b,), n, device=z.device)
        n_drop = int(b * self.quantizer_dropout) if self.training else 0
        if n_drop > 0:
            n_used[:n_drop] = torch.randint(1, n + 1, (n_drop,), device=z.device)
        residual = x
        z_q = torch.zeros_like(x)
        codes, commit = [], []
        for k in range(n):  # layers are sequential by nature; each is vectorised over B*T
            cb = self.codebook(k)
            r = residual.detach()
            if self.training:
                cb.init_(r)
            idx = cb.encode(r)
            q = cb.decode(idx)  # rows before this step's EMA update (EnCodec's order)
            if self.training:
                cb.update_(r, idx)
            use = (n_used > k).to(x.dtype).repeat_interleave(t).unsqueeze(1)  # (B*T, 1)
            err = (q.detach() - residual).pow(2).mean(1, keepdim=True)
            commit.append((err * use).sum() / use.sum().clamp(min=1.0))
            residual = residual - q.detach()
            z_q = z_q + q.detach() * use
            codes.append(idx)
        if self.training:
            z_q = x + (z_q - x).detach()  # straight-through on the total (encodec issue #25 fix)
        codes_t = torch.stack(codes, 0).view(n, b, t).transpose(0, 1)
        z_q = z_q.view(b, t, d).transpose(1, 2)
        return z_q, codes_t, {"commitment": torch.stack(commit).mean()}
