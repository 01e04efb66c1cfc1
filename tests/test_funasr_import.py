"""FunASR Paraformer import: parity with FunASR 1.4.16's outputs on the shared fixture.

Tolerances are the fixture's (expected.json ``suggested_tolerances``): ``end_to_end`` when
everything is computed from the wav, ``stage`` when a stage is fed FunASR's own previous-stage
values from expected.npz. Integer outputs must match exactly.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audiokit.errors import ConfigError, ModelError
from audiokit.features.kaldi import fbank
from audiokit.features.lfr import apply_lfr
from audiokit.importers.funasr import import_model
from audiokit.model_dir import load_model_dir
from tests.conftest import shared_path

UTTS = ["BAC009S0764W0121", "sense_and_sensibility_01_austen_64kb-0880", "goforward"]


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return shared_path("fixtures", "funasr_paraformer")


@pytest.fixture(scope="module")
def expected(fixture_dir):
    meta = json.loads((fixture_dir / "expected.json").read_text(encoding="utf-8"))
    with np.load(fixture_dir / "expected.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


@pytest.fixture(scope="module")
def imported(fixture_dir, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixture's reference was made with 1 thread
    dst = import_model(fixture_dir / "model", tmp_path_factory.mktemp("imp") / "paraformer")
    model, cfg = load_model_dir(dst)
    yield model, cfg
    torch.set_num_threads(before)


def _wave(fixture_dir: Path, utt: str) -> torch.Tensor:
    import soundfile as sf

    pcm, rate = sf.read(fixture_dir / "inputs" / f"{utt}.wav", dtype="int16")
    assert rate == 16000
    return torch.from_numpy(pcm.astype(np.float32) / 32768.0)


def _tol(meta, key: str, kind: str) -> float:
    tol = meta["suggested_tolerances"]
    name = key if key in tol else re.sub(r"\d+$", "*", key)
    return tol[name][kind]


def _check(meta, arrays, utt, key, value, kind, report=None):
    ref = arrays[f"{utt}/{key}"]
    got = value.detach().cpu().numpy().reshape(ref.shape)
    err = float(np.abs(got.astype(np.float64) - ref).max()) if ref.size else 0.0
    if report is not None:
        report[key] = max(report.get(key, 0.0), err)
    assert err <= _tol(meta, key, kind), f"{utt} {key}: max |diff| {err:.3g} ({kind})"


@pytest.mark.parametrize("utt", UTTS)
def test_end_to_end_intermediates_and_ids(imported, expected, fixture_dir, utt, one_torch_thread):
    model, cfg = imported
    meta, arrays = expected
    wave = _wave(fixture_dir, utt)[None]
    feats, frames = fbank(wave, torch.tensor([wave.shape[1]]), cfg.fbank_options())
    chk = lambda key, v: _check(meta, arrays, utt, key, v, "end_to_end")  # noqa: E731
    with torch.no_grad():
        chk("fbank", feats[0])
        lfr, lfr_len = apply_lfr(feats, model.lfr_m, model.lfr_n, frames)
        chk("lfr", lfr[0])
        x, lengths = model.frontend(feats, frames)
        assert lengths.tolist() == arrays[f"{utt}/speech_lengths"].tolist()
        chk("frontend_out", x[0])
        chk("encoder_embed", model.encoder.embed(x)[0])
        enc, enc_lengths, layers = model.encoder(x, lengths, return_layers=True)
        for i, layer in enumerate(layers):
            chk(f"encoder_layer{i}", layer[0])
        chk("encoder_out", enc[0])
        assert enc_lengths.tolist() == arrays[f"{utt}/encoder_out_lens"].tolist()
        cif = model.predict(enc, enc_lengths)
        chk("cif_alphas", cif.alphas[0])
        chk("cif_peaks", cif.peaks[0])
        chk("cif_alphas_sum", cif.alphas[0, : int(enc_lengths[0])].double().sum())
        assert cif.token_num.tolist() == arrays[f"{utt}/cif_token_num"].tolist()
        assert cif.lengths.tolist() == arrays[f"{utt}/n_tokens"].tolist()
        chk("acoustic_embeds", cif.acoustic_embeds[0])
        logits, hidden = model.decoder(
            enc, enc_lengths, cif.acoustic_embeds, cif.lengths, return_hidden=True
        )
        for i, layer in enumerate(hidden):
            chk(f"decoder_layer{i}", layer[0])
        chk("decoder_logits", logits[0])
        logp = model.decoder_logprobs(enc, enc_lengths, cif.acoustic_embeds, cif.lengths)
        chk("decoder_logprobs", logp[0])
        assert logp[0].argmax(-1).tolist() == arrays[f"{utt}/argmax_ids"].tolist()
    hyp = model.recognize(feats, frames)[0]
    assert hyp.token_ids == arrays[f"{utt}/token_ids"].tolist()
    assert hyp.token_ids == meta["utterances"][utt]["token_ids"]
    assert len(hyp.starts) == len(hyp.ends) == len(hyp.token_ids)
    assert all(0 <= s <= e for s, e in zip(hyp.starts, hyp.ends, strict=True))


@pytest.mark.parametrize("utt", UTTS)
def test_stages_fed_funasr_values(imported, expected, utt, one_torch_thread):
    """Each stage from FunASR's own input to it, at the (tighter) stage tolerances."""
    model, _ = imported
    meta, arrays = expected
    ref = lambda key: torch.from_numpy(arrays[f"{utt}/{key}"])[None]  # noqa: E731
    chk = lambda key, v: _check(meta, arrays, utt, key, v, "stage")  # noqa: E731
    with torch.no_grad():
        fb = ref("fbank")
        lfr, lengths = apply_lfr(fb, model.lfr_m, model.lfr_n, torch.tensor([fb.shape[1]]))
        chk("lfr", lfr[0])
        chk("frontend_out", model.cmvn(ref("lfr"), lengths)[0])
        chk("encoder_embed", model.encoder.embed(ref("frontend_out"))[0])
        valid = torch.ones(1, lengths.item(), dtype=torch.bool)
        prev = ref("encoder_embed")
        for i, layer in enumerate(model.encoder.layers):
            chk(f"encoder_layer{i}", layer(prev, valid)[0])
            prev = ref(f"encoder_layer{i}")
        chk("encoder_out", model.encoder.after_norm(prev)[0])
        enc, enc_lengths = ref("encoder_out"), lengths
        cif = model.predict(enc, enc_lengths)
        chk("cif_alphas", cif.alphas[0])
        chk("cif_peaks", cif.peaks[0])
        chk("acoustic_embeds", cif.acoustic_embeds[0])
        dec = model.decoder
        n = torch.tensor(arrays[f"{utt}/n_tokens"].tolist())
        q_valid = torch.ones(1, int(n), dtype=torch.bool)
        x = ref("acoustic_embeds")
        for i, layer in enumerate(dec.layers):
            chk(f"decoder_layer{i}", layer(x, q_valid, enc, valid)[0])
            x = ref(f"decoder_layer{i}")
        last = len(dec.layers)
        chk(f"decoder_layer{last}", dec.final_ff(dec.final_norm(x))[0])
        logits = dec.output(dec.after_norm(ref(f"decoder_layer{last}")))
        chk("decoder_logits", logits[0])
        chk("decoder_logprobs", torch.log_softmax(ref("decoder_logits"), -1)[0])


def test_batch_of_three_padded_gives_same_ids(imported, expected, fixture_dir, one_torch_thread):
    model, cfg = imported
    meta, _ = expected
    waves = [_wave(fixture_dir, u) for u in UTTS]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    feats, frames = fbank(batch, lengths, cfg.fbank_options())
    hyps = model.recognize(feats, frames)
    for utt, hyp in zip(UTTS, hyps, strict=True):
        assert hyp.token_ids == meta["utterances"][utt]["token_ids"]
        single = model.recognize(*fbank(_wave(fixture_dir, utt)[None], None, cfg.fbank_options()))
        assert hyp.starts == single[0].starts and hyp.ends == single[0].ends


def _copy_model(fixture_dir: Path, tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(fixture_dir / "model", src)
    for p in src.iterdir():
        p.chmod(0o644)
    return src


def test_unsupported_class_is_one_line_error(fixture_dir, tmp_path):
    src = _copy_model(fixture_dir, tmp_path)
    cfg = (src / "config.yaml").read_text(encoding="utf-8")
    (src / "config.yaml").write_text(cfg.replace("SANMEncoder", "BranchformerEncoder"), "utf-8")
    with pytest.raises(ConfigError) as e:
        import_model(src, tmp_path / "out")
    assert "BranchformerEncoder" in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_corrupt_config_is_one_line_error(fixture_dir, tmp_path):
    src = _copy_model(fixture_dir, tmp_path)
    (src / "config.yaml").write_text("encoder: [unclosed\n", "utf-8")
    with pytest.raises(ConfigError) as e:
        import_model(src, tmp_path / "out")
    assert "config.yaml" in str(e.value) and "\n" not in str(e.value)


def test_missing_and_extra_keys_are_one_line_errors(fixture_dir, tmp_path):
    src = _copy_model(fixture_dir, tmp_path)
    state = torch.load(src / "model.pt", weights_only=True)
    missing = dict(state)
    del missing["decoder.decoders.1.src_attn.linear_k_v.weight"]
    torch.save({"state_dict": missing}, src / "model.pt")  # wrapper dicts are accepted
    with pytest.raises(ModelError) as e:
        import_model(src, tmp_path / "out")
    assert "decoder.layers.1.cross.kv.weight" in str(e.value) and "\n" not in str(e.value)
    extra = dict(state)
    extra["encoder.encoders.9.norm1.weight"] = torch.ones(64)
    torch.save(extra, src / "model.pt")
    with pytest.raises(ModelError) as e:
        import_model(src, tmp_path / "out")
    assert "encoder.encoders.9.norm1.weight" in str(e.value) and "\n" not in str(e.value)
    bad = dict(state)
    bad["predictor.cif_output.weight"] = torch.ones(1, 32)
    torch.save(bad, src / "model.pt")
    with pytest.raises(ModelError) as e:
        import_model(src, tmp_path / "out")
    assert "predictor.output.weight" in str(e.value) and "\n" not in str(e.value)


SAN_CONFIG = """
model: Paraformer
model_conf: {ctc_weight: 0.3, predictor_bias: 1, sampling_ratio: 0.4}
encoder: SANMEncoder
encoder_conf: {output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2,
               input_layer: pe, kernel_size: 5}
predictor: CifPredictor
predictor_conf: {idim: 16, l_order: 1, r_order: 1}
decoder: ParaformerSANDecoder
decoder_conf: {attention_heads: 2, linear_units: 32, num_blocks: 2}
frontend: WavFrontend
frontend_conf: {n_mels: 8, lfr_m: 3, lfr_n: 2, cmvn_file: am.mvn}
"""


def _funasr_names(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our weights under FunASR's names (the inverse of the importer, written out by hand)."""
    out = {}
    layer = {"attn.qkv": "self_attn.linear_q_k_v", "attn.out": "self_attn.linear_out",
             "attn.fsmn.conv": "self_attn.fsmn_block", "ff.w1": "feed_forward.w_1",
             "ff.w2": "feed_forward.w_2", "norm_attn": "norm1", "norm_ff": "norm2"}  # fmt: skip
    dec = {"self_attn.out": "self_attn.linear_out", "cross.q": "src_attn.linear_q",
           "cross.out": "src_attn.linear_out", "ff.w1": "feed_forward.w_1",
           "ff.w2": "feed_forward.w_2", "norm_self": "norm1", "norm_cross": "norm2",
           "norm_ff": "norm3"}  # fmt: skip
    top = {"encoder.after_norm": "encoder.after_norm", "predictor.conv": "predictor.cif_conv1d",
           "predictor.output": "predictor.cif_output", "decoder.embed": "decoder.embed.0",
           "decoder.after_norm": "decoder.after_norm", "decoder.output": "decoder.output_layer",
           "ctc": "ctc.ctc_lo"}  # fmt: skip
    for key, value in ours.items():
        name, part = key.rsplit(".", 1)
        if name == "cmvn":
            continue
        if name in top:
            out[f"{top[name]}.{part}"] = value
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", name):
            i = int(m.group(1))
            prefix = "encoder.encoders0.0" if i == 0 else f"encoder.encoders.{i - 1}"
            out[f"{prefix}.{layer[m.group(2)]}.{part}"] = value
        elif m := re.fullmatch(r"decoder\.layers\.(\d+)\.(.+)", name):
            prefix = f"decoder.decoders.{m.group(1)}"
            if m.group(2) in ("self_attn.qkv", "cross.kv"):
                kind = "self_attn" if m.group(2) == "self_attn.qkv" else "src_attn"
                names = "qkv" if kind == "self_attn" else "kv"
                for n, chunk in zip(names, value.chunk(len(names)), strict=True):
                    out[f"{prefix}.{kind}.linear_{n}.{part}"] = chunk
            else:
                out[f"{prefix}.{dec[m.group(2)]}.{part}"] = value
        else:
            raise AssertionError(f"unmapped {key}")
    return out


def test_transformer_decoder_and_v1_predictor_layout(tmp_path, one_torch_thread):
    """ParaformerSANDecoder + CifPredictor (AISHELL-style heads) on a SANM encoder: every
    FunASR key is consumed and the imported model computes what the source weights give."""
    from audiokit.asr.paraformer import Paraformer
    from audiokit.importers.funasr import model_args

    src = tmp_path / "src"
    src.mkdir()
    (src / "config.yaml").write_text(SAN_CONFIG, "utf-8")
    tokens = ["<blank>", "<s>", "</s>", "a", "b", "c", "<unk>"]
    (src / "tokens.json").write_text(json.dumps(tokens), "utf-8")
    dim = 8 * 3
    shift = " ".join(f"{-0.1 * i:.2f}" for i in range(dim))
    scale = " ".join(f"{1 + 0.01 * i:.2f}" for i in range(dim))
    (src / "am.mvn").write_text(
        f"<Nnet>\n<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {shift} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {scale} ]\n</Nnet>\n",
        "utf-8",
    )
    args, _ = model_args(yaml_load(SAN_CONFIG), len(tokens))
    assert args["decoder"] == "transformer" and args["predictor"] == "v1"
    assert args["tail_threshold"] == 0.45  # CifPredictor's class default
    torch.manual_seed(0)
    source = Paraformer(**args).eval()
    torch.save(_funasr_names(source.state_dict()), src / "model.pt")
    model, cfg = load_model_dir(import_model(src, tmp_path / "out"))
    assert torch.allclose(model.cmvn.mean, -torch.tensor([-0.1 * i for i in range(dim)]))
    feats, lengths = torch.randn(2, 30, 8), torch.tensor([30, 21])
    with torch.no_grad():
        source.cmvn.load_state_dict(model.cmvn.state_dict())
        pairs = zip(source.recognize(feats, lengths), model.recognize(feats, lengths), strict=True)
        for a, b in pairs:
            assert a.token_ids == b.token_ids
        enc, el = model.encode(feats, lengths)
        enc0, _ = source.encode(feats, lengths)
        assert torch.equal(enc, enc0)
        cif, cif0 = model.predict(enc, el), source.predict(enc0, el)
        assert torch.equal(cif.acoustic_embeds, cif0.acoustic_embeds)
        target = torch.tensor([4, 3])  # decoder on fixed lengths: all weights take part
        emb = model.predict(enc, el, target).acoustic_embeds
        got = model.decoder_logprobs(enc, el, emb, target)
        assert torch.equal(got, source.decoder_logprobs(enc, el, emb, target))
        assert torch.equal(model.ctc_logprobs(enc), source.ctc_logprobs(enc))


def yaml_load(text: str):
    import yaml

    return yaml.safe_load(text)
