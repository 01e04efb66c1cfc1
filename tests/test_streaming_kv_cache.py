"""Fast streaming path (projected key/value caches + precomputed window positions) against the
NeMo-layout attention-input cache and the offline pass: same encoder outputs, same tokens."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from audiokit.errors import ConfigError
from audiokit.nn.streaming_conformer import rel_shift_cached
from tests.test_streaming_conformer import CONTEXTS, stream_model, tiny_encoder, tiny_model


def stream(enc, feats, lengths, ctx, step: int, cache: str) -> list[torch.Tensor]:
    """Per-stream concatenated outputs of ``step``-frame chunks (ragged ends) + the flush."""
    b, t = feats.shape[:2]
    state = enc.init_state(b, ctx, cache=cache)
    outs: list[list[torch.Tensor]] = [[] for _ in range(b)]
    for a in range(0, t + 1, step):
        chunk = feats[:, a : a + step]
        final = a + step > t
        n = (lengths - a).clamp(0, chunk.shape[1])
        out, out_len, state = enc.stream_step(chunk, n, state, final=final)
        assert state.cache == cache
        for i in range(b):
            outs[i].append(out[i, : out_len[i]])
    return [torch.cat(o) for o in outs]


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_kv_cache_equals_input_cache_and_offline(ctx, one_torch_thread):
    enc = tiny_encoder(2)
    feats = torch.randn(3, 150, 20)
    lengths = torch.tensor([150, 97, 8])  # the last stream ends before its first chunk
    with torch.no_grad():
        offline, off_len = enc(feats, lengths, ctx)
        for step in (1, 8 * (ctx[1] + 1), 37):  # sub-chunk, exactly one chunk, several chunks
            fast = stream(enc, feats, lengths, ctx, step, "kv")
            ref = stream(enc, feats, lengths, ctx, step, "input")
            for i in range(3):
                assert fast[i].shape[0] == ref[i].shape[0] == int(off_len[i])
                torch.testing.assert_close(fast[i], ref[i], atol=1e-5, rtol=0)
                torch.testing.assert_close(fast[i], offline[i, : off_len[i]], atol=1e-5, rtol=0)


def test_kv_state_layout():
    enc = tiny_encoder()
    left, right = 6, 2
    state = enc.init_state(2, [left, right], cache="kv")
    assert state.attn_cache is None and state.cache == "kv"
    assert state.k_cache is not None and state.v_cache is not None and state.pos_proj is not None
    assert len(state.k_cache) == len(state.v_cache) == len(state.pos_proj) == 2
    assert state.k_cache[0].shape == (2, left, 32)
    assert state.pos_proj[0].shape == (4, 8, left + 2 * (right + 1) - 1)  # (h, d_k, distances)
    assert enc.init_state(2, [left, right]).attn_cache.shape == (2, 2, left, 32)  # NeMo default
    with pytest.raises(ConfigError, match="cache='ring'"):
        enc.init_state(1, [left, right], cache="ring")


@pytest.mark.parametrize("decoder", ["ctc", "rnnt"])
def test_kv_tokens_identical(decoder, one_torch_thread, monkeypatch):
    model = tiny_model(blank_id=0)
    feats = torch.randn(2, 181, 20)
    lengths = torch.tensor([181, 126])
    for ctx in ([6, 1], [4, 0], [8, 3]):
        hyps = [h.token_ids for h in model.recognize(feats, lengths, decoder, att_context=ctx)]
        assert any(len(h) > 3 for h in hyps)
        fast = stream_model(model, feats, lengths, ctx, decoder, 11)  # model default: kv
        with monkeypatch.context() as m:  # the same run on NeMo's attention-input cache
            m.setattr(model, "init_state", partial(model.init_state, cache="input"))
            ref = stream_model(model, feats, lengths, ctx, decoder, 11)
        assert fast == ref == hyps


def test_kv_step_projects_only_new_frames():
    """FLOPs of one steady-state step: the kv path skips the cache's key/value and position
    projections (counted, not timed)."""
    enc = tiny_encoder()
    ctx, n = (8, 3), 8 * 4
    feats = torch.randn(1, 5 * n, 20)
    flops = {}
    with torch.no_grad():
        for cache in ("input", "kv"):
            state = enc.init_state(1, ctx, cache=cache)
            for a in range(0, 4 * n, n):  # fill the cache first
                _, _, state = enc.stream_step(feats[:, a : a + n], torch.tensor([n]), state)
            counter = FlopCounterMode(display=False)
            with counter:
                out, e, _ = enc.stream_step(feats[:, 4 * n :], torch.tensor([n]), state)
            assert int(e[0]) == 4
            flops[cache] = counter.get_total_flops()
    d, left, e = 32, 8, 4
    saved = 2 * 2 * (2 * d * d * left)  # k and v projections of the 8 cached frames, 2 layers
    saved += 2 * 2 * d * d * (2 * (left + e) - 1)  # position projection: precomputed
    saved += 2 * 2 * e * d * ((2 * (left + e) - 1) - (left + 2 * e - 1))  # fewer distances
    assert flops["input"] - flops["kv"] == saved


def test_rel_shift_cached_with_fewer_distances():
    tq, k = 3, 7
    x = torch.randn(2, tq, k + tq - 1)  # distances k-1 .. -(tq-1) only
    out = rel_shift_cached(x, k)
    for i in range(tq):
        for j in range(k):
            dist = (k - tq + i) - j
            assert out[0, i, j] == x[0, i, (k - 1) - dist]
