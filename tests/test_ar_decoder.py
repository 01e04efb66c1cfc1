"""Autoregressive transformer decoder: KV-cached steps equal the full teacher-forced pass,
batched greedy search equals one utterance at a time."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from audiokit.nn.ar_decoder import TransformerARDecoder

V, D = 11, 16
SOS = EOS = V - 1


def _decoder(seed: int = 0) -> TransformerARDecoder:
    torch.manual_seed(seed)
    return TransformerARDecoder(V, D, num_heads=2, ff_dim=32, num_layers=2, dropout=0.1).eval()


def test_cached_steps_equal_full_pass() -> None:
    dec = _decoder()
    memory = torch.randn(2, 9, D)
    mem_len = torch.tensor([9, 5])
    tokens = torch.randint(0, V, (2, 6))
    full = F.log_softmax(dec(tokens, memory, mem_len), dim=-1)
    state = dec.init_state(memory, mem_len)
    for u in range(tokens.shape[1]):
        step, state = dec.step(tokens[:, u], state)
        torch.testing.assert_close(step, full[:, u], rtol=0, atol=1e-5)
    assert state.length == tokens.shape[1]


def test_memory_padding_is_ignored_and_prefix_is_causal() -> None:
    dec = _decoder(1)
    memory = torch.randn(1, 7, D)
    tokens = torch.randint(0, V, (1, 5))
    ref = dec(tokens, memory, torch.tensor([7]))
    padded = torch.cat([memory, 100 * torch.randn(1, 4, D)], dim=1)
    torch.testing.assert_close(dec(tokens, padded, torch.tensor([7])), ref, rtol=0, atol=1e-5)
    changed = tokens.clone()
    changed[0, 3:] = (changed[0, 3:] + 1) % V  # later tokens must not change earlier outputs
    torch.testing.assert_close(dec(changed, memory, torch.tensor([7]))[:, :3], ref[:, :3])


def _naive_greedy(dec, memory, mem_len, max_len):
    ys = [SOS]
    for _ in range(max_len):
        logits = dec(torch.tensor([ys]), memory, mem_len)
        nxt = int(logits[0, -1].argmax())
        if nxt == EOS:
            break
        ys.append(nxt)
    return ys[1:]


def test_batched_greedy_equals_naive_single() -> None:
    dec = _decoder(2)
    memory = torch.randn(3, 8, D)
    mem_len = torch.tensor([8, 6, 3])
    out = dec.greedy_decode(memory, mem_len, SOS, EOS, max_len=7)
    for b in range(3):
        single = memory[b : b + 1, : mem_len[b]]
        assert out[b] == _naive_greedy(dec, single, mem_len[b : b + 1], 7)
        assert len(out[b]) <= 7


def test_min_len_forces_length_and_training_lowers_loss() -> None:
    dec = _decoder(3)
    memory = torch.randn(2, 6, D)
    mem_len = torch.tensor([6, 4])
    forced = dec.greedy_decode(memory, mem_len, SOS, EOS, max_len=5, min_len=5)
    assert [len(x) for x in forced] == [5, 5]
    dec.train()
    target = torch.randint(0, V - 1, (2, 4))
    inp = torch.cat([torch.full((2, 1), SOS), target[:, :-1]], dim=1)
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(dec(inp, memory, mem_len).transpose(1, 2), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
