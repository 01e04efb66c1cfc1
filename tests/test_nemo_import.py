"""NeMo cache-aware FastConformer import against NeMo's own outputs (shared/fixtures/nemo_streaming).

Tolerances are the fixture README's: encoder/caches atol 1e-4 rtol 1e-4, CTC log-probs atol 1e-3,
ids and texts exact.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import audiokit.asr.streaming  # noqa: F401  (registers streaming_conformer)
from audiokit.errors import ConfigError, ModelError
from audiokit.importers.nemo import import_model
from audiokit.model_dir import load_model_dir, load_model_tokenizer
from tests.conftest import shared_path

AUDIO = ("sense_0870", "goforward")
TOL = {"atol": 1e-4, "rtol": 1e-4}


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return shared_path("fixtures", "nemo_streaming")


@pytest.fixture(scope="module")
def expected(fixture_dir):
    return json.loads((fixture_dir / "expected.json").read_text()), np.load(
        fixture_dir / "expected.npz"
    )


@pytest.fixture(scope="module")
def imported(fixture_dir, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixture's reference was made with 1 thread
    dst = import_model(fixture_dir / "model.nemo", tmp_path_factory.mktemp("nemo") / "model")
    model, cfg = load_model_dir(dst)
    yield model, cfg, load_model_tokenizer(cfg), dst
    torch.set_num_threads(before)


def mel_of(expected, audio: str) -> tuple[torch.Tensor, int]:
    """The fixture's mel (B=1, T, 80) cut to its valid length (the last column is padding)."""
    meta, npz = expected
    n = meta["audio"][audio]["mel_len"]
    return torch.from_numpy(npz[f"{audio}/mel"]).T[None, :n].contiguous(), n


def test_model_dir_contents(imported):
    model, cfg, tok, dst = imported
    assert cfg.architecture == "streaming_conformer"
    assert cfg.frontend["type"] == "nemo_mel" and cfg.frontend["features"] == 80
    assert cfg.decoding["method"] == "rnnt" and cfg.decoding["options"]["att_context"] == [14, 6]
    assert cfg.meta["imported_from"] == "nemo" and cfg.meta["source"].endswith("model.nemo")
    assert model.decoders[0] == "rnnt" and model.blank_id == 128 and model.vocab_size == 129
    assert tok.vocab_size == 129 and tok.token_list.blank_id == 128 and tok.token_list.unk_id == 0


def test_offline_encoder_and_ids_match_nemo(imported, expected):
    model, _, tok, _ = imported
    meta, npz = expected
    for audio in AUDIO:
        mel, n = mel_of(expected, audio)
        lengths = torch.tensor([n])
        with torch.no_grad():
            pre, _ = model.encoder.subsampling(mel, lengths)
        torch.testing.assert_close(pre[0], torch.from_numpy(npz[f"{audio}/pre_encode"]), **TOL)
        for c in range(3):
            ref = meta["audio"][audio][f"ctx{c}"]
            ctx = ref["att_context_size"]
            with torch.no_grad():
                enc, enc_len = model(mel, lengths, ctx)
                lp = model.ctc_log_probs(enc)
            torch.testing.assert_close(
                enc[0], torch.from_numpy(npz[f"{audio}/ctx{c}/enc"]).T, **TOL
            )
            torch.testing.assert_close(
                lp[0], torch.from_numpy(npz[f"{audio}/ctx{c}/ctc_logprobs"]), atol=1e-3, rtol=0
            )
            ctc = model.recognize(mel, lengths, "ctc", att_context=ctx)[0]
            rnnt = model.recognize(mel, lengths, "rnnt", att_context=ctx)[0]
            assert ctc.token_ids == ref["ctc_ids"] and tok.decode(ctc.token_ids) == ref["ctc_text"]
            assert (
                rnnt.token_ids == ref["rnnt_ids"] and tok.decode(rnnt.token_ids) == ref["rnnt_text"]
            )
            assert [s / 8 for s in rnnt.starts] == ref["rnnt_timestamps"]


def test_layer_outputs_match_nemo(imported, expected):
    model, _, _, _ = imported
    _, npz = expected
    mel, n = mel_of(expected, "sense_0870")
    outs = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o: outs.append(o[0]))
        for layer in model.encoder.layers
    ]
    with torch.no_grad():
        model(mel, torch.tensor([n]), [14, 6])
    for h in hooks:
        h.remove()
    torch.testing.assert_close(
        torch.stack(outs)[:, 0], torch.from_numpy(npz["sense_0870/layer_out"]), **TOL
    )


def test_streaming_steps_and_caches_match_nemo(imported, expected):
    """ctx0 on sense_0870: NeMo's own chunk layout; per-step outputs and caches vs NeMo's."""
    model, _, _, _ = imported
    meta, npz = expected
    mel, n = mel_of(expected, "sense_0870")
    steps = meta["audio"]["sense_0870"]["ctx0"]["stream_rnnt"]["steps"]
    pre = meta["streaming_cfg"]["ctx0"]["pre_encode_cache_size"][1]
    nemo_enc = torch.from_numpy(npz["sense_0870/ctx0/stream_rnnt/enc"]).T
    state = model.encoder.init_state(1, (14, 6))
    done = 0
    with torch.no_grad():
        for i, rec in enumerate(steps[:-1]):
            chunk = torch.from_numpy(npz[f"sense_0870/ctx0/stream_rnnt/step{i}/chunk_in"]).T[None]
            new = chunk if i == 0 else chunk[:, pre:]  # our state keeps the pre-encode cache
            out, out_len, state = model.encoder.stream_step(
                new, torch.tensor([new.shape[1]]), state
            )
            assert int(out_len[0]) == rec["enc_len"]
            torch.testing.assert_close(out[0], nemo_enc[done : done + rec["enc_len"]], **TOL)
            done += rec["enc_len"]
            for name in ("cache_last_channel", "cache_last_time"):
                ours = state.attn_cache if name == "cache_last_channel" else state.conv_cache
                assert list(ours.shape) == rec["cache_out"][name]
                ref = torch.from_numpy(npz[f"sense_0870/ctx0/stream_rnnt/step{i}/{name}"])
                torch.testing.assert_close(ours[:, 0], ref, **TOL)
            assert state.cache_len.tolist() == rec["cache_out"]["cache_last_channel_len"]
        # NeMo's last step holds the final 46 columns, one of them the zero-masked padding
        # column; we feed the 45 real ones and flush.
        last = torch.from_numpy(
            npz[f"sense_0870/ctx0/stream_rnnt/step{len(steps) - 1}/chunk_in"]
        ).T[None]
        rest = last[:, pre : pre + n - (state.frames_out.item() * 8 - 7)]
        out, out_len, state = model.encoder.stream_step(rest, torch.tensor([rest.shape[1]]), state)
        assert int(out_len[0]) == 0  # a partial chunk waits for more input or the flush
        out, out_len, state = model.encoder.stream_step(
            rest[:, :0], torch.tensor([0]), state, final=True
        )
    assert (
        int(out_len[0]) == steps[-1]["enc_len"] and done + steps[-1]["enc_len"] == nemo_enc.shape[0]
    )
    torch.testing.assert_close(out[0], nemo_enc[done:], **TOL)
    final = "sense_0870/ctx0/stream_rnnt/cache_last_{}_final"
    torch.testing.assert_close(
        state.attn_cache[:, 0], torch.from_numpy(npz[final.format("channel")]), **TOL
    )
    torch.testing.assert_close(
        state.conv_cache[:, 0], torch.from_numpy(npz[final.format("time")]), **TOL
    )


def test_flushed_streaming_equals_offline_everywhere(imported, expected):
    """Every wav x context x decoder, in NeMo's chunk layout: our ids == NeMo's offline ids.

    NeMo's own streaming run differs from its offline result in 5 of these 12 cases (read from
    the fixture): goforward [14,6] and [14,0] (rnnt and ctc) drop the 6-column tail, and
    sense_0870 [14,0] ctc (look-ahead 0 pads the first pre-encode cache with zero mel frames).
    We flush the tail and mask the missing left context, so all 12 match.
    """
    model, _, _, _ = imported
    meta, npz = expected
    nemo_differs = []
    for audio in AUDIO:
        mel, n = mel_of(expected, audio)
        for c in range(3):
            ref = meta["audio"][audio][f"ctx{c}"]
            first, size = meta["streaming_cfg"][f"ctx{c}"]["chunk_size"]
            bounds = [0, first, *range(first + size, n, size), n]
            for decoder in ("rnnt", "ctc"):
                state = model.init_state(1, ref["att_context_size"], decoder)
                for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                    _, state = model.step(mel[:, a:b], torch.tensor([b - a]), state)
                _, state = model.flush(state)
                assert state.token_ids[0] == ref[f"{decoder}_ids"], (audio, c, decoder)
                if not ref[f"stream_{decoder}"]["vs_offline"]["text_equal_offline"]:
                    nemo_differs.append((audio, c, decoder))
    assert sorted(nemo_differs) == sorted(
        [("goforward", 0, "rnnt"), ("goforward", 0, "ctc"), ("goforward", 2, "rnnt"),
         ("goforward", 2, "ctc"), ("sense_0870", 2, "ctc")]
    )  # fmt: skip


def test_recognizer_from_wav_matches_nemo_transcribe(imported, expected, fixture_dir):
    from audiokit.asr.inference import Recognizer

    _, _, _, dst = imported
    meta, _ = expected
    wavs = [fixture_dir / meta["audio"][a]["path"] for a in AUDIO]
    wavs = [w if w.is_file() else fixture_dir / "inputs" / w.name for w in wavs]
    for decoder in ("rnnt", "ctc"):
        results = list(Recognizer(dst, decoder=decoder).transcribe([str(w) for w in wavs]))
        for r, audio in zip(results, AUDIO, strict=True):
            assert r.error is None
            assert r.text == meta["audio"][audio][f"transcribe_{decoder}_text"]


# ---- other layouts and refusals (archives rebuilt in tmp_path from the fixture) -----------------


def rebuild(
    fixture_dir: Path, out: Path, edit_cfg=None, edit_sd=None, extra: dict | None = None
) -> Path:
    with tarfile.open(fixture_dir / "model.nemo") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    cfg = yaml.safe_load(members["./model_config.yaml"])
    sd = torch.load(io.BytesIO(members["./model_weights.ckpt"]), weights_only=True)
    if edit_cfg:
        edit_cfg(cfg)
    if edit_sd:
        sd = edit_sd(sd)
    buf = io.BytesIO()
    torch.save(sd, buf)
    members["./model_config.yaml"] = yaml.safe_dump(cfg).encode()
    members["./model_weights.ckpt"] = buf.getvalue()
    members.update(extra or {})
    with tarfile.open(out, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def as_ctc_only(cfg):
    cfg["target"] = "nemo.collections.asr.models.ctc_bpe_models.EncDecCTCModelBPE"
    cfg["decoder"] = cfg.pop("aux_ctc")["decoder"]
    cfg.pop("joint")


def as_rnnt_only(cfg):
    cfg["target"] = "nemo.collections.asr.models.rnnt_bpe_models.EncDecRNNTBPEModel"
    cfg.pop("aux_ctc")


@pytest.mark.parametrize("kind", ["ctc", "rnnt"])
def test_single_head_models(kind, fixture_dir, expected, tmp_path):
    if kind == "ctc":
        src = rebuild(
            fixture_dir,
            tmp_path / "ctc.nemo",
            as_ctc_only,
            lambda sd: {
                k.replace("ctc_decoder.", "decoder."): v
                for k, v in sd.items()
                if not k.startswith(("decoder.prediction", "joint."))
            },
        )
    else:
        src = rebuild(
            fixture_dir,
            tmp_path / "rnnt.nemo",
            as_rnnt_only,
            lambda sd: {k: v for k, v in sd.items() if not k.startswith("ctc_decoder.")},
        )
    model, cfg = load_model_dir(import_model(src, tmp_path / "out"))
    assert model.decoders[0] == kind and cfg.decoding["method"] == kind
    mel, n = mel_of(expected, "goforward")
    ref = expected[0]["audio"]["goforward"]["ctx1"]
    hyp = model.recognize(mel, torch.tensor([n]), kind, att_context="14,1")[0]
    assert hyp.token_ids == ref[f"{kind}_ids"]


def test_refuses_unsupported_options(fixture_dir, tmp_path):
    def regular(cfg):
        cfg["encoder"]["att_context_style"] = "regular"

    src = rebuild(fixture_dir, tmp_path / "a.nemo", regular)
    with pytest.raises(ConfigError, match="encoder.att_context_style='regular' is not supported"):
        import_model(src, tmp_path / "a")

    def char_model(cfg):
        cfg["target"] = "nemo.collections.asr.models.ctc_models.EncDecCTCModel"

    src = rebuild(fixture_dir, tmp_path / "b.nemo", char_model)
    with pytest.raises(ConfigError, match="EncDecCTCModel is not supported"):
        import_model(src, tmp_path / "b")

    src = rebuild(
        fixture_dir,
        tmp_path / "c.nemo",
        edit_sd=lambda sd: {**sd, "joint.extra.weight": torch.zeros(1)},
    )
    with pytest.raises(ModelError, match="joint.extra.weight"):
        import_model(src, tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_refuses_escaping_member_and_non_tar(fixture_dir, tmp_path):
    src = rebuild(fixture_dir, tmp_path / "evil.nemo", extra={"../evil.txt": b"x"})
    with pytest.raises(ModelError, match="suspicious member"):
        import_model(src, tmp_path / "d")
    bad = tmp_path / "bad.nemo"
    bad.write_bytes(b"not a tar")
    with pytest.raises(ModelError, match="not a readable .nemo"):
        import_model(bad, tmp_path / "e")


def assert_streaming_equals_offline(model, mel, n: int, ctx: tuple[int, int], block: int) -> None:
    """Encoder outputs fed ``block`` mel frames at a time (then flushed) == the offline pass."""
    with torch.no_grad():
        offline, lengths = model.encoder(mel, torch.tensor([n]), ctx)
        state = model.encoder.init_state(1, ctx, cache="kv")
        outs = []
        for a in range(0, n, block):
            b = min(a + block, n)
            out, _, state = model.encoder.stream_step(mel[:, a:b], torch.tensor([b - a]), state)
            outs.append(out)
        out, _, state = model.encoder.stream_step(mel[:, :0], torch.tensor([0]), state, True)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1)[:, : int(lengths[0])], offline, **TOL)


def test_batch_norm_conv_and_list_conv_context(fixture_dir, expected, tmp_path):
    """``conv_norm_type: batch_norm`` (NeMo's default) with ``conv_context_size: [k-1, 0]``
    (the list spelling of causal): NeMo's BatchNorm weights and running stats land in the conv
    module, the model applies them per channel, and streaming still equals offline."""
    gen = torch.Generator().manual_seed(0)
    bn = {}

    def edit_cfg(cfg):
        cfg["encoder"]["conv_norm_type"] = "batch_norm"
        cfg["encoder"]["conv_context_size"] = [cfg["encoder"]["conv_kernel_size"] - 1, 0]

    def edit_sd(sd):
        out = {}
        for k, v in sd.items():
            if ".conv.batch_norm." in k:  # NeMo's name for the conv norm, LayerNorm or not
                out[k] = v
                if k.endswith(".weight"):
                    d = v.shape[0]
                    stem = k[: -len("weight")]
                    mean, var = torch.randn(d, generator=gen), torch.rand(d, generator=gen) + 0.5
                    out[stem + "running_mean"], out[stem + "running_var"] = mean, var
                    out[stem + "num_batches_tracked"] = torch.tensor(100)
                    bn[stem] = (v, mean, var)
            else:
                out[k] = v
        return out

    src = rebuild(fixture_dir, tmp_path / "bn.nemo", edit_cfg, edit_sd)
    model, _ = load_model_dir(import_model(src, tmp_path / "bn"))
    assert model.config["conv_norm"] == "batch_norm"
    norm = model.encoder.layers[0].conv.norm
    assert isinstance(norm, torch.nn.BatchNorm1d)
    weight, mean, var = bn["encoder.layers.0.conv.batch_norm."]
    assert torch.equal(norm.weight, weight) and torch.equal(norm.running_mean, mean)
    x = torch.randn(2, 64, 5, generator=gen)  # (B, d, T): per-channel affine at inference
    want = (x - mean[:, None]) / torch.sqrt(var[:, None] + norm.eps) * weight[:, None]
    torch.testing.assert_close(norm(x), want + norm.bias[:, None], atol=1e-5, rtol=1e-5)

    assert_streaming_equals_offline(model, *mel_of(expected, "goforward"), (14, 1), block=16)


def test_refuses_symmetric_conv_context(fixture_dir, tmp_path):
    def symmetric(cfg):
        cfg["encoder"]["conv_context_size"] = [4, 4]

    src = rebuild(fixture_dir, tmp_path / "s.nemo", symmetric)
    with pytest.raises(ConfigError, match=r"conv_context_size=\[4, 4\] is not supported"):
        import_model(src, tmp_path / "s")


def test_striding_subsampling(fixture_dir, expected, tmp_path):
    """``subsampling: striding`` (full causal convs, NeMo's ``conv.0/2/4`` layout) imports, its
    weights land where NeMo keeps them, and streaming equals offline."""
    gen = torch.Generator().manual_seed(1)
    convs = {}

    def edit_cfg(cfg):
        cfg["encoder"]["subsampling"] = "striding"

    def edit_sd(sd):
        out = {k: v for k, v in sd.items() if not k.startswith("encoder.pre_encode.conv.")}
        out["encoder.pre_encode.conv.0.weight"] = sd["encoder.pre_encode.conv.0.weight"]
        out["encoder.pre_encode.conv.0.bias"] = sd["encoder.pre_encode.conv.0.bias"]
        c = sd["encoder.pre_encode.conv.0.weight"].shape[0]
        for i in (2, 4):
            w = torch.randn(c, c, 3, 3, generator=gen) / (3 * c**0.5)
            out[f"encoder.pre_encode.conv.{i}.weight"] = convs[i] = w
            out[f"encoder.pre_encode.conv.{i}.bias"] = torch.zeros(c)
        return out

    src = rebuild(fixture_dir, tmp_path / "st.nemo", edit_cfg, edit_sd)
    model, _ = load_model_dir(import_model(src, tmp_path / "st"))
    sub = model.encoder.subsampling
    assert sub.kind == "striding" and torch.equal(sub.conv[4].weight, convs[4])
    assert_streaming_equals_offline(model, *mel_of(expected, "sense_0870"), (14, 0), block=13)


_NEMO_USE_BIAS = (
    ".feed_forward1.linear", ".feed_forward2.linear", ".self_attn.linear_q.",
    ".self_attn.linear_k.", ".self_attn.linear_v.", ".self_attn.linear_out.",
    ".conv.pointwise_conv1.", ".conv.depthwise_conv.", ".conv.pointwise_conv2.",
)  # fmt: skip


def _encoder_out(src: Path, dst: Path, expected) -> torch.Tensor:
    model, _ = load_model_dir(import_model(src, dst))
    mel, n = mel_of(expected, "goforward")
    with torch.no_grad():
        return model.encoder(mel, torch.tensor([n]), (14, 1))[0]


def test_use_bias_false_and_shared_pos_biases(fixture_dir, expected, tmp_path):
    """``use_bias: false`` (NeMo drops the layer Linear/conv biases: imported as zeros) and
    ``untie_biases: false`` (one pos_bias_u/v for all layers, per-layer keys or encoder-level
    ones) give exactly the encoder of an equivalent ``use_bias``/untied checkpoint."""
    is_layer_bias = lambda k: k.endswith(".bias") and any(p in k for p in _NEMO_USE_BIAS)  # noqa: E731

    def shared(sd):
        out = dict(sd)
        for k in sd:
            if k.endswith(("self_attn.pos_bias_u", "self_attn.pos_bias_v")):
                out[k] = sd["encoder.layers.0.self_attn." + k.rsplit(".", 1)[1]]
        return out

    def reference(sd):  # biases zeroed, pos biases shared, the default flags
        return {k: torch.zeros_like(v) if is_layer_bias(k) else v for k, v in shared(sd).items()}

    def no_bias(cfg):
        cfg["encoder"]["use_bias"] = False
        cfg["encoder"]["untie_biases"] = False

    def per_layer(sd):
        return {k: v for k, v in shared(sd).items() if not is_layer_bias(k)}

    def encoder_level(sd):
        out = {k: v for k, v in per_layer(sd).items() if ".pos_bias_" not in k}
        out["encoder.pos_bias_u"] = sd["encoder.layers.0.self_attn.pos_bias_u"]
        out["encoder.pos_bias_v"] = sd["encoder.layers.0.self_attn.pos_bias_v"]
        return out

    ref = _encoder_out(
        rebuild(fixture_dir, tmp_path / "r.nemo", edit_sd=reference), tmp_path / "r", expected
    )
    for name, edit in (("p", per_layer), ("e", encoder_level)):
        src = rebuild(fixture_dir, tmp_path / f"{name}.nemo", no_bias, edit)
        torch.testing.assert_close(
            _encoder_out(src, tmp_path / name, expected), ref, atol=0, rtol=0
        )
    # and the zeros matter: the fixture's own biases give another encoder output
    assert not torch.equal(ref, _encoder_out(fixture_dir / "model.nemo", tmp_path / "f", expected))
