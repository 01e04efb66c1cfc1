"""OWSM-CTC model: E-Branchformer layer, padding invariance, self-conditioning, training, LID."""

from __future__ import annotations

import pytest
import torch

from audiokit.asr.owsm_ctc import OwsmCTC
from audiokit.errors import ConfigError
from audiokit.nn.e_branchformer import EBranchformerEncoder, EBranchformerLayer
from audiokit.train.interface import Batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = 24  # 0 blank, 1 unk, 2 <na>, 3 <nolang>, 4 <eng>, 5 <zho>, 6 <asr>, 7 <st_eng>, 8.. text
LANGS = {"<eng>": 4, "<zho>": 5}
TASKS = {"<asr>": 6, "<st_eng>": 7}


def tiny(**kw) -> OwsmCTC:
    args = dict(
        input_dim=20, vocab_size=VOCAB, languages=LANGS, tasks=TASKS, na_id=2, nolang_id=3,
        d_model=16, num_heads=2, num_layers=3, ff_units=24, cgmlp_units=32, cgmlp_kernel=5,
        merge_kernel=3, subsampling="conv2d4", dropout=0.0, pos_dropout=0.0,
        cross_attention=[False, True, False], interctc_layers=[1, 2], interctc_weight=0.5,
        ctc_asr_only=[True, False, False], prompt_d_model=8, prompt_heads=2, prompt_ff_units=12,
        prompt_layers=1, prompt_dropout=0.0,
    )  # fmt: skip
    args.update(kw)
    torch.manual_seed(0)
    return OwsmCTC(**args).eval()


def padded(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([f.shape[0] for f in feats])
    out = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
    return out, lengths


def test_layer_shapes_and_padding_is_invisible():
    torch.manual_seed(0)
    layer = EBranchformerLayer(16, 2, 24, 32, 5, 3, dropout=0.0, cross_attention=True).eval()
    x = torch.randn(2, 9, 16)
    valid = torch.arange(9)[None] < torch.tensor([9, 6])[:, None]
    memory, mem_valid = torch.randn(2, 4, 16), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()
    y = layer(x, valid, memory, mem_valid)
    assert y.shape == (2, 9, 16)
    # garbage in padded frames / padded memory must not reach real outputs
    x2, memory2 = x.clone(), memory.clone()
    x2[1, 6:] = 100.0
    memory2[1, 2:] = -50.0
    y2 = layer(x2, valid, memory2, mem_valid)
    torch.testing.assert_close(y2[1, :6], y[1, :6])
    alone = layer(x[1:, :6], valid[1:, :6], memory[1:, :2], mem_valid[1:, :2])
    torch.testing.assert_close(alone[0], y[1, :6], atol=1e-5, rtol=1e-5)
    # without memory the cross-attention is skipped
    assert not torch.allclose(layer(x, valid), y)


def test_encoder_returns_intermediates_and_rejects_bad_layers():
    enc = EBranchformerEncoder(16, 2, 3, 24, 32, 5, 3, dropout=0.0, interctc_layers=[1, 2]).eval()
    out, inter = enc(torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.bool))
    assert out.shape == (1, 5, 16) and [i for i, _ in inter] == [1, 2]
    with pytest.raises(ConfigError, match="interctc layer 3"):
        EBranchformerEncoder(16, 2, 3, 24, 32, 5, 3, interctc_layers=[3])
    with pytest.raises(ConfigError, match="one per layer"):
        EBranchformerEncoder(16, 2, 3, 24, 32, 5, 3, cross_attention=[True])


def test_batch_equals_single_with_padding():
    model = tiny()
    torch.manual_seed(1)
    feats = [torch.randn(40, 20), torch.randn(23, 20), torch.randn(31, 20)]
    x, lengths = padded(feats)
    prompt = torch.tensor([[9, 10, 11], [2, -1, -1], [12, 13, -1]])
    prefix = torch.tensor([[4, 6], [5, 6], [4, 7]])
    with torch.no_grad():
        out, out_len, inter = model.encode(x, lengths, prefix, prompt)
        for i, f in enumerate(feats):
            p = prompt[i : i + 1, : int((prompt[i] >= 0).sum())]
            one, one_len, one_inter = model.encode(
                f[None], lengths[i : i + 1], prefix[i : i + 1], p
            )
            n = int(one_len)
            assert n == int(out_len[i]) == ((f.shape[0] - 1) // 2 - 1) // 2 + 2
            torch.testing.assert_close(out[i, :n], one[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(inter[1][1][i, :n], one_inter[1][1][0], atol=1e-5, rtol=1e-5)
    hyps = model.recognize(x, lengths, lang="eng", task="asr", prompt=[9, 10])
    singles = [
        model.recognize(f[None], lengths[i : i + 1], lang="<eng>", task="<asr>", prompt=[9, 10])[0]
        for i, f in enumerate(feats)
    ]
    assert [h.token_ids for h in hyps] == [h.token_ids for h in singles]
    assert all(s >= 0 and s % 4 == 0 for h in hyps for s in h.starts)


def test_prefix_is_two_frames_in_front():
    model = tiny()
    x = torch.randn(1, 30, 20)
    emb, n = model.embed(x, torch.tensor([30]), torch.tensor([[4, 6]]))
    assert emb.shape[1] == int(n) == ((30 - 1) // 2 - 1) // 2 + 2
    # position 0 holds the language vector: x * sqrt(d) + PE(0) = x * 4 + [0, 1, 0, 1, ...]
    pe0 = torch.zeros(16)
    pe0[1::2] = 1.0
    torch.testing.assert_close(emb[0, 0], model.text.prefix(torch.tensor([4]))[0] * 4.0 + pe0)


def test_self_conditioning_changes_the_output():
    model = tiny()
    x, lengths = torch.randn(1, 33, 20), torch.tensor([33])
    prefix = torch.tensor([[4, 6]])
    with torch.no_grad():
        conditioned = model.encode(x, lengths, prefix)[0]
        plain = tiny(interctc_conditioning=False)
        missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
        assert missing == [] and unexpected == ["condition.weight", "condition.bias"]
        unconditioned = plain.encode(x, lengths, prefix)[0]
        assert (conditioned - unconditioned).abs().max() > 1e-3
        model.condition.weight.zero_()
        model.condition.bias.zero_()
        torch.testing.assert_close(model.encode(x, lengths, prefix)[0], unconditioned)


def make_batch() -> Batch:
    torch.manual_seed(3)
    feats, lengths = padded([torch.randn(48, 20), torch.randn(40, 20)])
    # targets: <lang><task> + text; the ASR-only targets lack the prefix
    targets = torch.tensor([[4, 6, 9, 10, 11], [5, 6, 12, 13, -1]])
    return Batch(
        feats, lengths, targets, torch.tensor([5, 4]), ["a", "b"],
        extra={
            "prefix": torch.tensor([[4, 6], [5, 6]]),
            "prompt": torch.tensor([[2, -1], [14, 15]]),
            "prompt_lengths": torch.tensor([1, 2]),
            "targets_asr": torch.tensor([[9, 10, 11], [12, 13, -1]]),
            "target_asr_lengths": torch.tensor([3, 2]),
        },
    )  # fmt: skip


def test_training_step_reduces_loss():
    model = tiny().train()
    batch = make_batch()
    first = model.training_losses(batch)
    assert set(first) == {"loss", "ctc", "interctc1", "interctc2"}
    expected = 0.5 * first["ctc"] + 0.5 * (first["interctc1"] + first["interctc2"]) / 2
    torch.testing.assert_close(first["loss"].detach(), expected)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        opt.zero_grad()
        model.training_losses(batch)["loss"].backward()
        opt.step()
    assert float(model.training_losses(batch)["loss"].detach()) < 0.7 * float(
        first["loss"].detach()
    )
    metrics = model.eval().validation_metrics(batch)
    assert {"loss", "ter"} <= set(metrics) and 0.0 <= float(metrics["ter"])


def test_ctc_asr_only_and_na_filtering():
    model = tiny()
    batch = make_batch()
    with torch.no_grad():
        out, n, inter = model.encode(batch.feats, batch.feat_lengths, **model._batch_inputs(batch))
        stats = model.training_losses(batch)
        asr = model._ctc_loss(
            inter[0][1], n, batch.extra["targets_asr"], batch.extra["target_asr_lengths"]
        )
        full = model._ctc_loss(inter[0][1], n, batch.targets, batch.target_lengths)
        torch.testing.assert_close(stats["interctc1"], asr)  # layer 1 is ASR-only
        assert not torch.allclose(asr, full)
        # an utterance whose target is <na> (no translation available) is left out
        ys = batch.targets.clone()
        ys[1, :2] = torch.tensor([2, -1])
        only_first = model._ctc_loss(out[:1], n[:1], batch.targets[:1], batch.target_lengths[:1])
        torch.testing.assert_close(model._ctc_loss(out, n, ys, torch.tensor([5, 1])), only_first)
        assert (
            model._ctc_loss(out, n, torch.full((2, 1), 2), torch.ones(2, dtype=torch.long)) is None
        )
    with pytest.raises(ConfigError, match="prefix"):
        model.training_losses(
            Batch(batch.feats, batch.feat_lengths, batch.targets, batch.target_lengths, ["a", "b"])
        )


def test_language_identification_reads_the_language_position():
    model = tiny()
    x, lengths = torch.randn(2, 36, 20), torch.tensor([36, 30])
    with torch.no_grad():
        model.ctc_out.bias[5] += 50.0  # <zho> dominates every frame, so also frame 0
    hyps = model.recognize(x, lengths, lang="auto", task="asr")
    assert [h.info["language"] for h in hyps] == ["zho", "zho"]
    assert all(0.0 < h.info["language_prob"] <= 1.0 for h in hyps)
    forced = model.recognize(x, lengths, lang="zho", task="asr")
    assert [h.token_ids for h in hyps] == [h.token_ids for h in forced]
    with torch.no_grad():
        model.ctc_out.bias[5] -= 100.0
        model.ctc_out.bias[4] += 50.0
    assert model.recognize(x, lengths, lang="auto")[0].info["language"] == "eng"


def test_prompt_handling_and_errors():
    model = tiny()
    assert model.prompt_ids(None) == [2]
    assert model.prompt_ids([9, 2, 10]) == [2]  # any <na> -> just <na>, as ESPnet
    assert model.prompt_ids([9, 10]) == [9, 10]
    with pytest.raises(ConfigError, match="tokenizer"):
        model.prompt_ids("some text")
    x, n = torch.randn(1, 30, 20), torch.tensor([30])
    with pytest.raises(ConfigError, match="--lang fra: not a language.*eng, zho or auto"):
        model.recognize(x, n, lang="fra")
    with pytest.raises(ConfigError, match="--task st_zho: not a task"):
        model.recognize(x, n, task="st_zho")
    with pytest.raises(ConfigError, match="use greedy"):
        model.recognize(x, n, method="prefix_beam")
    with pytest.raises(ConfigError, match="att_context"):
        model.recognize(x, n, att_context="1,1")
    with pytest.raises(ConfigError, match="ctc_asr_only has 2 flags"):
        tiny(ctc_asr_only=[True, False])
