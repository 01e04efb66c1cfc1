"""Boolean masks for padded batches and chunked (streaming) attention.

Convention, everywhere in :mod:`audiokit.nn`: a mask named ``valid``/``allowed`` is True where a
frame is real or a query may attend a key; a mask named ``pad`` is True on padding.
"""

from __future__ import annotations

import torch


def make_valid_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool, True on real frames (``t < lengths[b]``).

    ``T`` is ``max_len`` when given (it may exceed ``lengths.max()``), else ``lengths.max()``.
    """
    t = int(lengths.max()) if max_len is None else max_len
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


def make_pad_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool, True on padding frames (the complement of valid)."""
    return ~make_valid_mask(lengths, max_len)


def chunk_attention_mask(
    size: int,
    chunk_size: int,
    num_left_chunks: int = -1,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(T, T)`` bool, True where query frame ``i`` may attend key frame ``j`` (WeNet style).

    Frames are grouped in chunks of ``chunk_size``; a query sees every frame of its own chunk,
    and of the ``num_left_chunks`` chunks before it (all earlier chunks when negative), never
    later chunks. ``chunk_size <= 0`` means full attention (all True).
    """
    if chunk_size <= 0:
        return torch.ones(size, size, dtype=torch.bool, device=device)
    chunk = torch.arange(size, device=device) // chunk_size
    q, k = chunk[:, None], chunk[None, :]
    allowed = k <= q
    if num_left_chunks >= 0:
        allowed = allowed & (k >= q - num_left_chunks)
    return allowed


def attention_allowed_mask(
    valid: torch.Tensor, chunk_allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """Combine a ``(B, T)`` key-valid mask with an optional ``(T, T)`` chunk mask.

    Returns ``(B, 1, 1, T)`` (no chunk mask) or ``(B, 1, T, T)`` bool, broadcasting over heads
    and queries: True where query ``i`` may attend key ``j`` (``j`` is a real frame and, with a
    chunk mask, in an allowed chunk). A query row left with no allowed key (only possible for
    padding frames) is opened fully, so softmax never sees an all ``-inf`` row (NaN).
    """
    allowed = valid[:, None, None, :]
    if chunk_allowed is not None:
        allowed = allowed & chunk_allowed[None, None]
    return allowed | ~allowed.any(dim=-1, keepdim=True)
