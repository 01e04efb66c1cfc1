"""RNN-T parts: predictor/joint maths, loss vs torchaudio, greedy (batched, resumable), beam."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from audiokit.asr.transducer import (
    RNNTJoint,
    RNNTPredictor,
    TransducerGreedyState,
    beam_search,
    greedy_batch,
    rnnt_loss,
)
from audiokit.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

V, ENC, PRED, JOINT = 5, 6, 8, 7  # vocab without blank; blank id = V


def _model(seed: int = 0, vocab: int = V, out_scale: float = 1.0, blank_bias: float = 0.0):
    torch.manual_seed(seed)
    predictor = RNNTPredictor(vocab, PRED, num_layers=2).eval()
    joint = RNNTJoint(ENC, PRED, JOINT, vocab).eval()
    with torch.no_grad():
        joint.out.weight.mul_(out_scale)
        joint.out.bias.mul_(out_scale)
        joint.out.bias[vocab] += blank_bias
    return predictor, joint


def _enc(batch: int, frames: int, seed: int = 1, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(batch, frames, ENC, generator=torch.Generator().manual_seed(seed))


def _reference_greedy(enc, predictor, joint, max_symbols):
    """Plain per-utterance RNN-T greedy search (one frame, one label at a time)."""
    tokens, frames = [], []
    out, state = predictor.step(torch.tensor([predictor.blank_id]))
    for t in range(enc.shape[0]):
        for _ in range(max_symbols):
            logits = joint.joint(enc[t][None, None], out[:, None])[0, 0, 0]
            k = int(logits.argmax())
            if k == predictor.blank_id:
                break
            tokens.append(k)
            frames.append(t)
            out, state = predictor.step(torch.tensor([k]), state)
    return tokens, frames


# ----------------------------------------------------------------------------- modules


def test_predictor_blank_is_zero_start_and_teacher_forcing_equals_steps():
    predictor, _ = _model()
    assert torch.all(predictor.embed.weight[V] == 0)
    targets = torch.tensor([[1, 4, 2, -1], [3, 0, -7, 99]])  # padding values are ignored
    lengths = torch.tensor([3, 2])
    with torch.no_grad():
        out, _ = predictor(targets, lengths)
        assert out.shape == (2, 5, PRED)
        step_out, state = predictor.step(torch.full((2,), V))
        torch.testing.assert_close(out[:, 0], step_out)
        for u in range(2):  # positions valid in both rows
            step_out, state = predictor.step(targets[:, u], state)
            torch.testing.assert_close(out[:, u + 1], step_out, atol=1e-6, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize("rnn_hidden", [None, 12])  # 12 > hidden: NeMo's LSTM projection
def test_predictor_step_paths_agree(rnn_hidden):
    torch.manual_seed(0)
    predictor = RNNTPredictor(V, PRED, num_layers=2, rnn_hidden=rnn_hidden)
    tokens = torch.tensor([[V, 1, 3], [V, 4, 0]])  # start symbol first
    with torch.no_grad():
        full, _ = predictor.lstm(predictor.embed(tokens))
        for mode in (True, False):  # train (nn.LSTM, no dropout here) and eval (fused cells)
            predictor.train(mode)
            state = None
            for u in range(3):
                out, state = predictor.step(tokens[:, u], state)
                torch.testing.assert_close(out, full[:, u], atol=1e-6, rtol=1e-6)
            assert out.shape == (2, PRED)


def test_joint_full_grid_equals_single_steps():
    predictor, joint = _model()
    enc = _enc(2, 4)
    with torch.no_grad():
        pred, _ = predictor(torch.tensor([[1, 2], [3, 4]]), torch.tensor([2, 2]))
        grid = joint.joint(enc, pred)
        assert grid.shape == (2, 4, 3, V + 1)
        f, g = joint.project_encoder(enc), joint.project_predictor(pred)
        torch.testing.assert_close(grid[:, 2, 1], joint.step(f[:, 2], g[:, 1]))


def test_bad_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="swish"):
        RNNTJoint(4, 4, 4, 3, activation="swish")


# ----------------------------------------------------------------------------- loss


def _random_loss_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, 5, V + 1, generator=g)
    targets = torch.randint(0, V, (3, 4), generator=g, dtype=torch.int32)
    return logits, targets, torch.tensor([7, 5, 6]), torch.tensor([4, 2, 3])


@pytest.mark.parametrize("reduction", ["mean_batch", "mean", "sum", "mean_volume", "none"])
def test_loss_equals_torchaudio(reduction):
    from torchaudio.functional import rnnt_loss as ta_loss

    logits, targets, t_len, u_len = _random_loss_inputs()
    per_utt = ta_loss(logits, targets, t_len.int(), u_len.int(), blank=V, reduction="none")
    expected = {
        "mean_batch": per_utt.mean(),
        "mean": (per_utt / u_len).mean(),
        "sum": per_utt.sum(),
        "mean_volume": per_utt.sum() / u_len.sum(),
        "none": per_utt,
    }[reduction]
    padded = torch.where(torch.arange(4) < u_len[:, None], targets, -1)  # -1 padding is fine
    torch.testing.assert_close(
        rnnt_loss(logits, padded, t_len, u_len, reduction=reduction), expected
    )
    assert torch.allclose(rnnt_loss(logits, targets, t_len, u_len, reduction="mean_batch"),
                          ta_loss(logits, targets, t_len.int(), u_len.int(), blank=V, reduction="mean"))  # fmt: skip


def test_loss_equals_forward_algorithm_with_blank_last():
    logits, targets, t_len, u_len = _random_loss_inputs(1)
    lp = logits.log_softmax(-1)
    for b in range(3):
        T, U, y = int(t_len[b]), int(u_len[b]), targets[b].long()
        alpha = torch.full((T, U + 1), -float("inf"), dtype=torch.float64)
        alpha[0, 0] = 0.0
        for t in range(T):
            for u in range(U + 1):
                terms = [alpha[t, u]] if t == u == 0 else []
                if t > 0:
                    terms.append(alpha[t - 1, u] + lp[b, t - 1, u, V])
                if u > 0:
                    terms.append(alpha[t, u - 1] + lp[b, t, u - 1, y[u - 1]])
                alpha[t, u] = torch.logsumexp(torch.stack(terms), 0)
        nll = -(alpha[T - 1, U] + lp[b, T - 1, U, V])
        ours = rnnt_loss(
            logits[b : b + 1],
            targets[b : b + 1],
            t_len[b : b + 1],
            u_len[b : b + 1],
            reduction="sum",
        )
        assert float(ours) == pytest.approx(float(nll), rel=1e-5)


def test_gradient_flows_to_encoder_predictor_and_joint():
    predictor, joint = _model()
    predictor.train()
    joint.train()
    enc = _enc(2, 6).requires_grad_(True)
    targets, lengths = torch.tensor([[1, 2, 3], [4, 0, 0]]), torch.tensor([3, 1])
    pred, _ = predictor(targets, lengths)
    loss = rnnt_loss(joint(enc, pred), targets, torch.tensor([6, 4]), lengths)
    loss.backward()
    assert torch.isfinite(loss) and enc.grad.abs().sum() > 0
    for name, p in [*predictor.named_parameters(), *joint.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------- greedy


@pytest.mark.parametrize("blank_bias, max_symbols", [(0.0, 3), (-3.0, 2), (1.0, 10)])
def test_greedy_batch_equals_reference_and_single(blank_bias, max_symbols):
    predictor, joint = _model(2, out_scale=3.0, blank_bias=blank_bias)
    enc, lengths = _enc(3, 9, scale=2.0), torch.tensor([9, 4, 7])
    hyps, state = greedy_batch(enc, lengths, predictor, joint, max_symbols)
    assert state.offset.tolist() == lengths.tolist()
    assert any(h.token_ids for h in hyps)
    with torch.no_grad():
        for b in range(3):
            ref = _reference_greedy(enc[b, : lengths[b]], predictor, joint, max_symbols)
            assert (hyps[b].token_ids, hyps[b].frames) == ref
            single, _ = greedy_batch(
                enc[b : b + 1, : lengths[b]], lengths[b : b + 1], predictor, joint, max_symbols
            )
            assert single[0] == hyps[b]
    if blank_bias < 0:  # the cap binds: some frame holds exactly max_symbols labels
        counts = [hyps[0].frames.count(t) for t in set(hyps[0].frames)]
        assert max(counts) == max_symbols


@pytest.mark.parametrize("splits", [[4], [1, 2, 3], [0, 5, 5, 8]])
def test_greedy_resumed_over_chunks_equals_one_call(splits):
    predictor, joint = _model(3, out_scale=3.0, blank_bias=-1.0)
    enc, lengths = _enc(2, 10, seed=4, scale=2.0), torch.tensor([10, 7])
    whole, whole_state = greedy_batch(enc, lengths, predictor, joint, 4)
    state, bounds = None, [0, *splits, 10]
    for lo, hi in itertools.pairwise(bounds):
        chunk_len = (lengths - lo).clamp(0, hi - lo)  # streams end at different chunks
        hyps, state = greedy_batch(enc[:, lo:hi], chunk_len, predictor, joint, 4, state)
    assert hyps == whole
    assert state.offset.tolist() == lengths.tolist()
    torch.testing.assert_close(state.pred_out, whole_state.pred_out)
    assert torch.equal(state.last_token, whole_state.last_token)


def test_greedy_state_reset_restarts_only_masked_streams():
    predictor, joint = _model(3, out_scale=3.0, blank_bias=-1.0)
    enc, lengths = _enc(2, 6, seed=5, scale=2.0), torch.tensor([6, 6])
    _, state = greedy_batch(enc, lengths, predictor, joint)
    state = state.reset(torch.tensor([True, False]), predictor, joint)
    assert state.tokens[0] == [] and state.offset.tolist() == [6, 6]
    fresh = TransducerGreedyState.initial(2, predictor, joint)
    torch.testing.assert_close(state.pred_out[0], fresh.pred_out[0])
    hyps, _ = greedy_batch(enc, lengths, predictor, joint, state=state)
    alone, _ = greedy_batch(enc[:1], lengths[:1], predictor, joint)
    assert hyps[0].token_ids == alone[0].token_ids
    assert hyps[0].frames == [f + 6 for f in alone[0].frames]


# ----------------------------------------------------------------------------- beam


def _path_logprob(enc, tokens, frames, predictor, joint):
    """log P of one alignment: the tokens at their frames, a blank closing every frame."""
    with torch.no_grad():
        pred, _ = predictor(torch.tensor([tokens or [0]]), torch.tensor([len(tokens)]))
        lp = joint.joint(enc[None], pred).log_softmax(-1)[0]
    score, u = 0.0, 0
    for t in range(enc.shape[0]):
        while u < len(tokens) and frames[u] == t:
            score += float(lp[t, u, tokens[u]])
            u += 1
        score += float(lp[t, u, joint.blank_id])
    return score


def _confident_model(seed: int):
    """A hand-set model with peaky posteriors that emits at most 2 labels per frame.

    The predictor is memoryless (no recurrence, forget gate shut): its output depends on the
    last token only. Hidden joint unit 0 fires after any label but 0 and pushes blank up; unit 1
    fires after label 0 and forbids another 0. The encoder picks the labels; the blank bias is
    set so that blank wins half of the frames before the first label.
    """
    _, joint = _model(seed)
    predictor = RNNTPredictor(V, PRED, num_layers=1).eval()
    h = PRED
    with torch.no_grad():
        lstm = predictor.lstm
        lstm.weight_hh_l0.zero_()
        lstm.bias_hh_l0.zero_()
        lstm.bias_ih_l0.copy_(torch.cat([torch.full((h,), 30.0), torch.full((h,), -30.0),
                                         torch.zeros(h), torch.full((h,), 30.0)]))  # fmt: skip
        emb = predictor.embed.weight
        emb[:, :2] = 0.0
        emb[1:V, 0] = 3.0  # "a label other than 0 was just emitted"
        emb[0, 1] = 3.0  # "label 0 was just emitted"
        cell = lstm.weight_ih_l0[2 * h : 3 * h]
        cell[:2] = 0.0
        cell[0, 0] = cell[1, 1] = 3.0
        joint.pred_proj.weight[:2] = 0.0
        joint.pred_proj.weight[0, 0] = joint.pred_proj.weight[1, 1] = 5.0
        joint.pred_proj.bias[:2] = 0.0
        joint.enc_proj.weight[:2] = 0.0
        joint.enc_proj.bias[:2] = 0.0
        joint.out.weight[:, :2] = 0.0
        joint.out.weight[V, 0] = 10.0
        joint.out.weight[0, 1] = -10.0
        fresh = joint.joint(
            _enc(1, 64, seed=seed + 100), predictor.step(torch.tensor([V]))[0][:, None]
        )
        margin = fresh[..., :V].max(-1).values - fresh[..., V]
        joint.out.bias[V] += margin.median()
        joint.out.weight.mul_(20.0)
        joint.out.bias.mul_(20.0)
    return predictor, joint


def test_beam_one_equals_greedy_for_a_confident_model():
    # Peaky posteriors: no alternative path comes close, so beam 1 and 3 must follow greedy.
    per_frame = []
    for seed in range(6, 12):
        predictor, joint = _confident_model(seed)
        enc, lengths = _enc(2, 12, seed=seed), torch.tensor([12, 7])
        greedy, _ = greedy_batch(enc, lengths, predictor, joint, max_symbols=50)
        per_frame += [h.frames.count(t) for h in greedy for t in set(h.frames)]
        for beam in (1, 3):
            best = beam_search(enc, lengths, predictor, joint, beam, max_symbols=50)
            assert [h.token_ids for h in best] == [h.token_ids for h in greedy]
            assert [h.frames for h in best] == [h.frames for h in greedy]
    assert sum(per_frame) >= 8 and max(per_frame) == 2  # labels on many frames, some with two


def test_beam_scores_are_path_logprobs_and_nbest_is_sorted():
    predictor, joint = _model(7)
    enc = _enc(1, 5, seed=7)
    nbest = beam_search(enc, torch.tensor([5]), predictor, joint, 4, score_norm=False, nbest=4)[0]
    assert 1 < len(nbest) <= 4
    assert [h.score for h in nbest] == sorted((h.score for h in nbest), reverse=True)
    for h in nbest:
        assert h.score == pytest.approx(
            _path_logprob(enc[0], h.token_ids, h.frames, predictor, joint), abs=1e-4
        )


def test_wide_beam_finds_the_best_path():
    # Exhaustive: the best alignment (Viterbi) of every sequence up to 5 tokens over 2 labels.
    predictor, joint = _model(8, vocab=2, blank_bias=1.0)
    enc = torch.randn(1, 4, ENC, generator=torch.Generator().manual_seed(8))
    best_score, best_len = -float("inf"), 0
    with torch.no_grad():
        for n in range(6):
            for seq in itertools.product(range(2), repeat=n):
                pred, _ = predictor(torch.tensor([list(seq) or [0]]), torch.tensor([n]))
                lp = joint.joint(enc, pred).log_softmax(-1)[0].double()
                a = torch.full((4, n + 1), -float("inf"), dtype=torch.float64)
                for t in range(4):
                    for u in range(n + 1):
                        cands = [torch.tensor(0.0, dtype=torch.float64)] if t == u == 0 else []
                        if t > 0:
                            cands.append(a[t - 1, u] + lp[t - 1, u, 2])
                        if u > 0:
                            cands.append(a[t, u - 1] + lp[t, u - 1, seq[u - 1]])
                        a[t, u] = torch.stack(cands).max()
                score = float(a[3, n] + lp[3, n, 2])
                if score > best_score:
                    best_score, best_len = score, n
    assert best_len < 5  # the optimum lies inside the enumerated set
    hyp = beam_search(
        enc, torch.tensor([4]), predictor, joint, 16, score_norm=False, max_symbols=None
    )[0]
    assert hyp.score == pytest.approx(best_score, abs=1e-4)


def test_beam_rejects_bad_sizes():
    predictor, joint = _model()
    with pytest.raises(ConfigError, match="beam_size"):
        beam_search(_enc(1, 2), torch.tensor([2]), predictor, joint, 0)


# ----------------------------------------------------------------------------- NeMo parity


def _nemo_fixture():
    import io
    import json
    import tarfile

    from tests.conftest import shared_path

    root = shared_path("fixtures", "nemo_streaming")
    with tarfile.open(root / "model.nemo") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("model_weights.ckpt"))
        sd = torch.load(io.BytesIO(tar.extractfile(member).read()), weights_only=True)
    expected = json.loads((root / "expected.json").read_text())
    vocab = expected["model_cfg"]["decoder"]["vocab_size"]
    hidden = expected["model_cfg"]["decoder"]["prednet"]["pred_hidden"]
    jcfg = expected["model_cfg"]["joint"]["jointnet"]
    predictor = RNNTPredictor(
        vocab, hidden, expected["model_cfg"]["decoder"]["prednet"]["pred_rnn_layers"]
    )
    joint = RNNTJoint(
        jcfg["encoder_hidden"], jcfg["pred_hidden"], jcfg["joint_hidden"], vocab, jcfg["activation"]
    )
    rnn = "decoder.prediction.dec_rnn."
    predictor.load_state_dict(
        {"embed.weight": sd["decoder.prediction.embed.weight"]}
        | {k[len(rnn) :]: v for k, v in sd.items() if k.startswith(rnn)}
    )
    last = "2" if jcfg.get("dropout") else "1"
    names = {"enc_proj": "joint.enc", "pred_proj": "joint.pred", "out": f"joint.joint_net.{last}"}
    joint.load_state_dict(
        {f"{a}.{p}": sd[f"{b}.{p}"] for a, b in names.items() for p in ("weight", "bias")}
    )
    return predictor.eval(), joint.eval(), expected, np.load(root / "expected.npz")


def test_greedy_matches_nemo_greedy_batch():
    predictor, joint, expected, arrays = _nemo_fixture()
    max_symbols = expected["model_cfg"]["decoding"]["greedy"]["max_symbols"]
    for name in ("sense_0870", "goforward"):
        for ctx in range(3):
            key, ref = f"{name}/ctx{ctx}", expected["audio"][name][f"ctx{ctx}"]
            enc = torch.from_numpy(arrays[f"{key}/enc"]).T[None]  # (1, T, D)
            hyps, _ = greedy_batch(enc, torch.tensor([enc.shape[1]]), predictor, joint, max_symbols)
            assert hyps[0].token_ids == ref["rnnt_ids"], key
            assert hyps[0].frames == ref["rnnt_timestamps"], key
            # Every joint call of the path, (t, u): labels on frame t, then blank unless capped.
            path, u = [], 0
            for t in range(enc.shape[1]):
                n = hyps[0].frames.count(t)
                path += [(t, u + i) for i in range(n if n == max_symbols else n + 1)]
                u += n
            assert path == [tuple(p) for p in arrays[f"{key}/rnnt_path_tu"].tolist()], key
            with torch.no_grad():
                ids = torch.tensor([ref["rnnt_ids"]])
                pred, _ = predictor(ids, torch.tensor([ids.shape[1]]))
                np.testing.assert_allclose(
                    pred[0].numpy(), arrays[f"{key}/rnnt_pred_out"], atol=1e-4
                )
                logp = joint(enc, pred).log_softmax(-1)[0]
                tu = torch.tensor(path)
                got = logp[tu[:, 0], tu[:, 1]].numpy()
                np.testing.assert_allclose(got, arrays[f"{key}/rnnt_path_logprobs"], atol=1e-3)


def test_greedy_on_a_padded_batch_of_both_fixture_utterances():
    predictor, joint, expected, arrays = _nemo_fixture()
    encs = [torch.from_numpy(arrays[f"{n}/ctx1/enc"]).T for n in ("sense_0870", "goforward")]
    batch = torch.nn.utils.rnn.pad_sequence(encs, batch_first=True, padding_value=3.0)
    hyps, _ = greedy_batch(batch, torch.tensor([len(e) for e in encs]), predictor, joint, 10)
    for hyp, name in zip(hyps, ("sense_0870", "goforward"), strict=True):
        assert hyp.token_ids == expected["audio"][name]["ctx1"]["rnnt_ids"]
