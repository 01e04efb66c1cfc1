"""Token start frames from the best (Viterbi) CTC alignment of a known token sequence."""

from __future__ import annotations

import torch


def ctc_token_start_frames(
    log_probs: torch.Tensor, lengths: torch.Tensor, tokens: list[list[int]], blank: int = 0
) -> list[list[int]]:
    """First frame of each token on the best (Viterbi) CTC alignment of given token sequences.

    ``log_probs (B, T, V)``, ``lengths (B,)``; ``tokens``: B id lists that fit in their frames
    (as any CTC decoder's output does). Vectorised over batch x states; loops over frames.
    """
    b, t_max, _ = log_probs.shape
    dev = log_probs.device
    u = torch.tensor([len(x) for x in tokens], device=dev)
    s_max = 2 * max(int(u.max()) if b else 0, 0) + 1
    labels = torch.full((b, s_max), blank, dtype=torch.long, device=dev)
    for i, x in enumerate(tokens):  # packing only
        if x:
            labels[i, 1 : 2 * len(x) : 2] = torch.tensor(x, device=dev)
    s = torch.arange(s_max, device=dev)
    valid_s = s[None, :] < (2 * u + 1)[:, None]  # (B, S) True: a state of this utterance
    prev2 = torch.nn.functional.pad(labels[:, :-2], (2, 0), value=-1)
    can_skip = (s[None, :] % 2 == 1) & (labels != prev2)  # token after blank, not a repeat
    emit = log_probs.float().gather(2, labels[:, None, :].expand(b, t_max, s_max))
    neg = torch.tensor(float("-inf"), device=dev)
    alpha = torch.where((s[None, :] < 2) & valid_s, emit[:, 0], neg)
    back = torch.zeros((b, t_max, s_max), dtype=torch.uint8, device=dev)
    lengths = lengths.to(dev)
    for t in range(1, t_max):
        one = torch.nn.functional.pad(alpha[:, :-1], (1, 0), value=float("-inf"))
        two = torch.nn.functional.pad(alpha[:, :-2], (2, 0), value=float("-inf"))
        two = torch.where(can_skip, two, neg)
        best, arg = torch.stack([alpha, one, two], dim=-1).max(dim=-1)
        new = torch.where(valid_s, best + emit[:, t], neg)
        live = (t < lengths)[:, None]
        alpha = torch.where(live, new, alpha)
        back[:, t] = torch.where(live, arg, 0).to(torch.uint8)
    last = 2 * u  # final blank state; the last token's state is one before
    end_tok = (last - 1).clamp(min=0)
    a_last = alpha.gather(1, last[:, None]).squeeze(1)
    a_tok = alpha.gather(1, end_tok[:, None]).squeeze(1)
    state = torch.where((u > 0) & (a_tok > a_last), end_tok, last)
    path = torch.zeros((b, t_max), dtype=torch.long, device=dev)
    for t in range(t_max - 1, -1, -1):
        live = t < lengths
        path[:, t] = torch.where(live, state, -1)
        step = back[:, t].gather(1, state[:, None]).squeeze(1).long()
        state = torch.where(live & (t > 0), state - step, state)
    prev = torch.nn.functional.pad(path[:, :-1], (1, 0), value=-1)
    starts = (path % 2 == 1) & (path != prev) & (path >= 0)
    counts = starts.sum(dim=1).tolist()
    return [f.tolist() for f in starts.nonzero()[:, 1].split(counts)]
