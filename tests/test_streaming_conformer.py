"""Cache-aware streaming Conformer: masks, causal convs, streaming == offline, training."""

from __future__ import annotations

import random

import pytest
import torch

import audiokit.asr.streaming  # noqa: F401  (registers streaming_conformer)
from audiokit.asr.streaming import StreamingConformer, parse_att_context
from audiokit.errors import ConfigError
from audiokit.nn.causal_conv import CausalConv1d, CausalConvSubsampling, causal_subsampled_length
from audiokit.nn.masks import chunk_attention_mask
from audiokit.nn.streaming_conformer import (
    StreamingConformerEncoder,
    chunked_limited_mask,
    rel_shift_cached,
)
from audiokit.train.interface import Batch
from tests.conftest import shared_path

CONTEXTS = [[6, 1], [4, 0], [6, 2], [8, 3]]


def nemo_chunked_limited_loop(t: int, left: int, right: int) -> torch.Tensor:
    """NeMo ConformerEncoder._create_masks (chunked_limited), written as plain loops."""
    out = torch.zeros(t, t, dtype=torch.bool)
    for i in range(t):
        for j in range(t):
            if right == -1:
                out[i, j] = left < 0 or j >= i - left
            else:
                chunk = right + 1
                left_chunks = left // chunk if left >= 0 else 10000
                diff = i // chunk - j // chunk
                out[i, j] = 0 <= diff <= left_chunks
    return out


@pytest.mark.parametrize(
    "left,right", [(6, 1), (4, 0), (14, 6), (-1, 2), (5, -1), (-1, -1), (0, 0)]
)
def test_chunked_limited_mask_equals_nemo_loop(left, right):
    pos = torch.arange(23)
    ref = nemo_chunked_limited_loop(23, left, right)
    assert torch.equal(chunked_limited_mask(pos, pos, left, right), ref)
    if right >= 0:  # audiokit.nn.masks' WeNet-style chunk mask is the same definition
        n_left = left // (right + 1) if left >= 0 else -1
        assert torch.equal(chunk_attention_mask(23, right + 1, n_left), ref)


def test_rel_shift_cached_matches_loop():
    tq, k = 3, 7
    x = torch.randn(2, tq, 2 * k - 1)
    out = rel_shift_cached(x)
    for i in range(tq):
        for j in range(k):
            dist = (k - tq + i) - j  # query i sits at key position k - tq + i
            assert out[0, i, j] == x[0, i, (k - 1) - dist]


def test_causal_conv1d_cache_equals_offline():
    torch.manual_seed(0)
    conv = CausalConv1d(4, 4, 5, groups=4)
    x = torch.randn(2, 4, 17)
    full, _ = conv(x)
    cache, outs = torch.zeros(2, 4, 4), []
    for a in range(0, 17, 6):
        y, cache = conv(x[:, :, a : a + 6], cache)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, -1), full, atol=1e-6, rtol=0)


def test_causal_subsampling_lengths_and_causality():
    torch.manual_seed(0)
    sub = CausalConvSubsampling(20, 16, 8, 8).eval()
    x = torch.randn(1, 60, 20)
    y, n = sub(x, torch.tensor([60]))
    assert y.shape[1] == int(n) == causal_subsampled_length(60, 8) == 9  # 31, 16, 9
    # output t sees inputs <= 8t only: changing frame 41 leaves outputs 0..5 alone
    x2 = x.clone()
    x2[:, 41] += 1.0
    y2, _ = sub(x2, torch.tensor([60]))
    torch.testing.assert_close(y2[:, :6], y[:, :6])
    assert not torch.allclose(y2[:, 6], y[:, 6])


def tiny_encoder(seed: int = 0, factor: int = 8, **options) -> StreamingConformerEncoder:
    torch.manual_seed(seed)
    enc = StreamingConformerEncoder(
        20, 32, 4, 64, 2, 5, factor, 16, CONTEXTS, dropout=0.0, dropout_pre_encoder=0.0,
        dropout_att=0.0, **options,
    ).eval()  # fmt: skip
    with torch.no_grad():  # larger weights than the init: differences would show
        for p in enc.parameters():
            p.normal_(0, 0.3)
    return enc


def stream_encoder(enc, feats, lengths, ctx, step: int) -> list[torch.Tensor]:
    """Feed ``step`` frames at a time (lockstep, ragged ends), then flush; per-stream outputs."""
    b, t = feats.shape[:2]
    state = enc.init_state(b, ctx)
    outs: list[list[torch.Tensor]] = [[] for _ in range(b)]
    for a in range(0, t, step):
        chunk = feats[:, a : a + step]
        n = (lengths - a).clamp(0, chunk.shape[1])
        out, out_len, state = enc.stream_step(chunk, n, state)
        for i in range(b):
            outs[i].append(out[i, : out_len[i]])
        assert torch.all(state.frames_out % (ctx[1] + 1) == 0)  # whole chunks only
        assert state.attn_cache.shape == (2, b, ctx[0], 32)
        assert state.conv_cache.shape == (2, b, 32, 4)
    out, out_len, state = enc.stream_step(
        feats[:, :0], torch.zeros(b, dtype=torch.long), state, final=True
    )
    for i in range(b):
        outs[i].append(out[i, : out_len[i]])
    return [torch.cat(o) for o in outs]


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_stream_step_equals_offline(ctx, one_torch_thread):
    enc = tiny_encoder()
    feats = torch.randn(2, 157, 20)
    lengths = torch.tensor([157, 101])
    with torch.no_grad():
        offline, off_len = enc(feats, lengths, ctx)
        for step in (1, 9, 16, 40):
            streamed = stream_encoder(enc, feats, lengths, ctx, step)
            for i in range(2):
                assert streamed[i].shape[0] == int(off_len[i])
                torch.testing.assert_close(streamed[i], offline[i, : off_len[i]], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "factor,options",
    [
        (2, {}),
        (4, {"subsampling_type": "striding"}),
        (16, {"conv_norm": "batch_norm"}),
        (8, {"subsampling_type": "striding", "conv_norm": "batch_norm"}),
    ],
)
def test_stream_step_equals_offline_variants(factor, options, one_torch_thread):
    """Other subsampling factors, NeMo's full-conv ``striding`` front end and batch-norm convs:
    chunk-by-chunk still equals offline (every context, ragged batch)."""
    enc = tiny_encoder(1, factor, **options)
    for m in enc.modules():  # non-trivial running statistics for the batch norms
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    feats = torch.randn(2, 213, 20)
    lengths = torch.tensor([213, 150])
    with torch.no_grad():
        for ctx in CONTEXTS:
            offline, off_len = enc(feats, lengths, ctx)
            for step in (7, 32):
                streamed = stream_encoder(enc, feats, lengths, ctx, step)
                for i in range(2):
                    assert streamed[i].shape[0] == int(off_len[i])
                    torch.testing.assert_close(
                        streamed[i], offline[i, : off_len[i]], atol=1e-5, rtol=0
                    )


def test_offline_batch_padding_invariant(one_torch_thread):
    enc = tiny_encoder(1)
    feats = torch.randn(2, 90, 20)
    with torch.no_grad():
        both, n = enc(feats, torch.tensor([90, 61]), [6, 1])
        alone, _ = enc(feats[1:, :61], torch.tensor([61]), [6, 1])
    torch.testing.assert_close(both[1, : n[1]], alone[0], atol=1e-5, rtol=0)


def test_context_validation():
    with pytest.raises(ConfigError, match="multiple of right"):
        StreamingConformerEncoder(20, 16, 2, 32, 1, 3, 8, 8, [[5, 1]])
    enc = tiny_encoder()
    with pytest.raises(ConfigError, match="not one the model was trained for"):
        enc(torch.randn(1, 30, 20), torch.tensor([30]), [3, 3])
    assert parse_att_context("14,6") == (14, 6) and parse_att_context([70, 0]) == (70, 0)
    with pytest.raises(ConfigError, match="two integers"):
        parse_att_context("14")


def tiny_model(heads: str = "hybrid", blank_id: int = 11, seed: int = 0, input_dim: int = 20):
    torch.manual_seed(seed)
    model = StreamingConformer(
        input_dim,
        vocab_size=12,
        blank_id=blank_id,
        heads=heads,
        d_model=32,
        num_heads=4,
        ff_dim=64,
        num_layers=2,
        conv_kernel=5,
        subsampling_channels=16,
        att_context_size=CONTEXTS,
        pred_hidden=24,
        joint_hidden=24,
        dropout=0.0,
        dropout_pre_encoder=0.0,
        dropout_att=0.0,
        pred_dropout=0.0,
        joint_dropout=0.0,
        max_symbols=3,
    )
    with torch.no_grad():  # spread the output layers so decisions vary over frames
        if model.ctc_out is not None:
            model.ctc_out.weight.mul_(8.0)
        if model.joint is not None:
            model.joint.out.weight.mul_(6.0)
            model.joint.out.bias[-1] += 1.5
    return model.eval()


def stream_model(model, feats, lengths, ctx, decoder: str, step: int) -> list[list[int]]:
    b, t = feats.shape[:2]
    state = model.init_state(b, ctx, decoder)
    got: list[list[int]] = [[] for _ in range(b)]
    for a in range(0, t, step):
        chunk = feats[:, a : a + step]
        new, state = model.step(chunk, (lengths - a).clamp(0, chunk.shape[1]), state)
        for i in range(b):
            got[i] += new[i]
    new, state = model.flush(state)
    for i in range(b):
        got[i] += new[i]
    assert got == state.token_ids
    return got


@pytest.mark.parametrize("decoder", ["ctc", "rnnt"])
def test_model_streaming_ids_equal_offline(decoder, one_torch_thread):
    model = tiny_model(blank_id=0)  # audiokit layout: blank first (rotated for the RNN-T parts)
    feats = torch.randn(2, 173, 20)
    lengths = torch.tensor([173, 120])
    for ctx in ([6, 1], [4, 0]):
        hyps = model.recognize(feats, lengths, decoder, att_context=ctx)
        assert any(len(h.token_ids) > 3 for h in hyps)
        assert all(0 not in h.token_ids for h in hyps)  # blank never emitted
        for step in (8, 33):
            assert stream_model(model, feats, lengths, ctx, decoder, step) == [
                h.token_ids for h in hyps
            ]


def test_flush_once_and_decoder_choice():
    model = tiny_model(heads="ctc")
    assert model.decoders == ("ctc",)
    with pytest.raises(ConfigError, match="not available"):
        model.init_state(1, None, "rnnt")
    state = model.init_state(1)
    _, state = model.flush(state)
    with pytest.raises(ConfigError, match="already flushed"):
        model.step(torch.zeros(1, 4, 20), torch.tensor([4]), state)


def make_batch(b: int = 3, t: int = 120) -> Batch:
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(b, t, 20, generator=g)
    feat_lengths = torch.tensor([t, t - 20, t - 37])[:b]
    targets = torch.full((b, 6), -1, dtype=torch.long)
    target_lengths = torch.tensor([6, 4, 5])[:b]
    for i in range(b):
        targets[i, : target_lengths[i]] = torch.randint(
            1, 12, (int(target_lengths[i]),), generator=g
        )
    return Batch(feats, feat_lengths, targets, target_lengths, [f"u{i}" for i in range(b)])


@pytest.mark.parametrize(
    "heads,blank_id", [("hybrid", 0), ("hybrid", 11), ("ctc", 0), ("rnnt", 11)]
)
def test_training_reduces_loss(heads, blank_id, one_torch_thread):
    model = tiny_model(heads, blank_id=blank_id, seed=3).train()
    batch = make_batch()
    random.seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    seen = set()
    for _ in range(12):
        out = model.training_losses(batch)
        assert torch.isfinite(out["loss"])
        assert ("ctc" in out) == (heads != "rnnt") and ("rnnt" in out) == (heads != "ctc")
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = float(out["loss"].detach()) if first is None else first
    model.eval()
    for _ in range(8):
        seen.add(model.encoder.draw_att_context())
    assert len(seen) > 1  # multi-lookahead: the context is drawn per step
    with torch.no_grad():
        metrics = model.validation_metrics(batch)
    assert float(metrics["loss"]) < first
    assert 0.0 <= float(metrics["ter"])


def test_real_speech_streaming_equals_offline(one_torch_thread):
    """speech_en_dev recordings, fbank, tiny random model: encoder within 1e-5, ids identical."""
    from audiokit.audio.io import load
    from audiokit.features.frontend import build_frontend

    wav_dir = shared_path("data", "speech_en_dev", "wav")
    waves = [load(wav_dir / name, 16000)[0] for name in ("ps_cards_001.wav", "ps_goforward.wav")]
    n = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(2, int(n.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w)
    frontend = build_frontend({"type": "fbank", "num_mel_bins": 40}, 16000)
    feats, lengths = frontend(batch, n)
    model = tiny_model(input_dim=40, seed=7)
    mean = feats[0, : lengths[0]].mean(0)
    std = feats[0, : lengths[0]].std(0)
    model.set_cmvn(mean, 1.0 / std)  # a global CMVN, the same for every frame and stream
    ctx = [6, 1]
    with torch.no_grad():
        offline, off_len = model(feats, lengths, ctx)
        # Random encoders put a large constant vector on every frame: centre the output layers
        # on this data (as the NeMo fixture's calibration does) so decisions vary over frames.
        frames = offline[0, : off_len[0]]
        for layer, scale in ((model.ctc_out, 3.0), (model.joint.enc_proj, 0.2)):
            w = torch.randn_like(layer.weight) * (scale / frames.std(0))
            layer.weight.copy_(w)
            layer.bias.copy_(-w @ frames.mean(0))
        model.ctc_out.bias[model.blank_id] += float(model.ctc_out(frames).std())
        model.joint.out.bias[-1] += 5.0
        x = model.cmvn(feats, lengths)
        streamed = stream_encoder(model.encoder, x, lengths, ctx, 24)
    for i in range(2):
        torch.testing.assert_close(streamed[i], offline[i, : off_len[i]], atol=1e-5, rtol=0)
    for decoder in ("ctc", "rnnt"):
        hyps = model.recognize(feats, lengths, decoder, att_context=ctx)
        assert any(len(h.token_ids) > 3 for h in hyps)
        assert stream_model(model, feats, lengths, ctx, decoder, 24) == [h.token_ids for h in hyps]


def test_reset_hypotheses_restarts_decoder_keeps_encoder(one_torch_thread):
    """After a reset, a stream decodes its remaining frames as a fresh RNN-T / CTC hypothesis."""
    from audiokit.asr.transducer import greedy_batch

    model = tiny_model(blank_id=0)
    feats = torch.randn(2, 160, 20)[1:]
    n = torch.tensor([160])
    with torch.no_grad():
        enc, enc_len = model(feats, n, [6, 1])
    for decoder in ("rnnt", "ctc"):
        state = model.init_state(1, [6, 1], decoder)
        _, state = model.step(feats[:, :64], torch.tensor([64]), state)
        cut = int(state.frames_done[0])
        state = model.reset_hypotheses(state, torch.tensor([True]))
        assert state.token_ids == [[]]
        _, state = model.step(feats[:, 64:], torch.tensor([96]), state)
        _, state = model.flush(state)
        tail = enc[:, cut : int(enc_len[0])]
        if decoder == "rnnt":
            hyps, _ = greedy_batch(
                tail, torch.tensor([tail.shape[1]]), model.predictor, model.joint, 3
            )
            want = model._from_rnnt(hyps[0].token_ids)  # RNN-T ids keep blank last
        else:
            labels = model.ctc_log_probs(tail).argmax(-1)[0].tolist()
            want = [
                x
                for i, x in enumerate(labels)
                if x != model.blank_id and (i == 0 or labels[i - 1] != x)
            ]
        assert state.token_ids[0] == want and len(want) > 0
