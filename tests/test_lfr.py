"""LFR stacking against a direct re-implementation of FunASR's original apply_lfr loop."""

import math

import pytest
import torch

from audiokit.errors import ConfigError
from audiokit.features.lfr import apply_lfr, lfr_lengths


def funasr_loop_lfr(inputs: torch.Tensor, lfr_m: int, lfr_n: int) -> torch.Tensor:
    """FunASR's apply_lfr (funasr/frontends/wav_frontend.py before the as_strided rewrite)."""
    outputs = []
    t = inputs.shape[0]
    t_lfr = int(math.ceil(t / lfr_n))
    left_padding = inputs[0].repeat((lfr_m - 1) // 2, 1)
    inputs = torch.vstack((left_padding, inputs))
    t = t + (lfr_m - 1) // 2
    for i in range(t_lfr):
        if lfr_m <= t - i * lfr_n:
            outputs.append(inputs[i * lfr_n : i * lfr_n + lfr_m].reshape(1, -1))
        else:
            num_padding = lfr_m - (t - i * lfr_n)
            frame = inputs[i * lfr_n :].reshape(-1)
            for _ in range(num_padding):
                frame = torch.hstack((frame, inputs[-1]))
            outputs.append(frame.reshape(1, -1))
    return torch.vstack(outputs)


@pytest.mark.parametrize("lfr_m,lfr_n", [(7, 6), (5, 3), (1, 1), (4, 2), (3, 5)])
@pytest.mark.parametrize("t", [1, 2, 6, 7, 13, 20])
def test_single_utterance_matches_funasr(lfr_m, lfr_n, t):
    x = torch.randn(t, 3)
    ours, n = apply_lfr(x, lfr_m, lfr_n)
    ref = funasr_loop_lfr(x, lfr_m, lfr_n)
    assert ours.shape == ref.shape and int(n) == ref.shape[0] == math.ceil(t / lfr_n)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_batched_with_lengths_matches_per_utterance():
    torch.manual_seed(0)
    lengths = torch.tensor([20, 7, 1, 13])
    x = torch.randn(4, 20, 4)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    out, out_len = apply_lfr(x, 7, 6, lengths)
    assert out.shape == (4, 4, 28)
    assert out_len.tolist() == [4, 2, 1, 3]
    for i, n in enumerate(lengths.tolist()):
        ref = funasr_loop_lfr(x[i, :n], 7, 6)
        torch.testing.assert_close(out[i, : ref.shape[0]], ref, rtol=0, atol=0)
        assert torch.all(out[i, ref.shape[0] :] == 0)
    assert lfr_lengths(torch.tensor([0, 1, 6, 7]), 6).tolist() == [0, 1, 1, 2]


def test_bad_arguments_raise():
    with pytest.raises(ConfigError):
        apply_lfr(torch.randn(5, 2), 0, 1)
    with pytest.raises(ConfigError):
        apply_lfr(torch.randn(2, 5, 2), 7, 6, torch.tensor([5, 0]))
