"""ESPnet OWSM-CTC import against ESPnet's own inference (shared/fixtures/espnet_owsm_ctc).

Every run of expected.json is re-computed from the wav: each recorded stage within the
fixture README's suggested tolerances (section 5), argmax, token ids and interCTC tokens
identical, texts as ESPnet's sentencepiece decoding gives them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import audiokit.asr.owsm_ctc  # noqa: F401 - registers owsm_ctc
from audiokit.errors import ConfigError, ModelError
from audiokit.features.frontend import build_frontend
from audiokit.importers.espnet import import_model
from audiokit.model_dir import load_model_dir, load_model_tokenizer
from tests.conftest import run_main, shared_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# fixture README section 5
TOL = {
    "fbank": dict(atol=5e-3, rtol=0),
    "feats_norm": dict(atol=2e-3, rtol=0),
    "prompt": dict(atol=1e-5, rtol=0),
    "encoder": dict(atol=1e-4, rtol=1e-4),
    "logp": dict(atol=2e-4, rtol=0),
}
PAD30 = 480_000


@pytest.fixture(scope="module")
def fixture_dir() -> Path:
    return shared_path("fixtures", "espnet_owsm_ctc")


@pytest.fixture(scope="module")
def expected(fixture_dir):
    return json.loads((fixture_dir / "expected.json").read_text()), np.load(
        fixture_dir / "expected.npz"
    )


@pytest.fixture(scope="module")
def imported(fixture_dir, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixture's reference was made with 1 thread
    dst = import_model(fixture_dir / "model", tmp_path_factory.mktemp("espnet") / "owsm")
    model, cfg = load_model_dir(dst)
    tok = load_model_tokenizer(cfg)
    model.set_tokenizer(tok)
    yield dst, model, cfg, tok, build_frontend(cfg.frontend, cfg.sample_rate)
    torch.set_num_threads(before)


def wave_of(fixture_dir: Path, run: str) -> np.ndarray:
    wave, rate = sf.read(fixture_dir / "inputs" / f"{run.split('@')[0]}.wav", dtype="float32")
    assert rate == 16000
    return np.pad(wave, (0, PAD30 - len(wave))) if run.endswith("@pad30") else wave


def stages(model, frontend, wave, prefix_ids, prompt_ids) -> dict[str, torch.Tensor]:
    """Every stage the fixture records, captured with hooks during one ``encode``."""
    got: dict[str, torch.Tensor] = {}
    hooks = [
        model.text.encoder.register_forward_hook(lambda m, a, o: got.__setitem__("prompt_encoder_out", o)),
        model.text.prompt_proj.register_forward_hook(lambda m, a, o: got.__setitem__("prompt_memory", o)),
        model.text.embed_proj.register_forward_hook(lambda m, a, o: got.__setitem__("prefix_embeds", o)),
        model.encoder.register_forward_pre_hook(lambda m, a: got.__setitem__("encoder_embed", a[0])),
    ]  # fmt: skip
    for i, layer in enumerate(model.encoder.layers, 1):
        hooks.append(
            layer.register_forward_hook(
                lambda m, a, o, i=i: got.__setitem__(f"encoder_block{i}", o)
            )
        )
        if i - 1 in model.encoder.interctc_layers:
            key = f"encoder_block{i - 1}_conditioned"
            hooks.append(
                layer.register_forward_pre_hook(lambda m, a, k=key: got.__setitem__(k, a[0]))
            )
    try:
        with torch.no_grad():
            feats, n = frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
            got["fbank"], got["feats_norm"] = feats, model.cmvn(feats, n)
            out, _, inter = model.encode(
                feats, n, torch.tensor([prefix_ids]), torch.tensor([prompt_ids])
            )
            got["encoder_out"], got["ctc_logp"] = out, model.log_probs(out)
            for layer, h in inter:
                got[f"interctc_layer{layer}_logp"] = model.log_probs(h)
    finally:
        for h in hooks:
            h.remove()
    return {k: v[0] for k, v in got.items()}


def tolerance(stage: str) -> dict:
    if stage.startswith("encoder"):
        return TOL["encoder"]
    if stage.startswith(("prompt", "prefix")):
        return TOL["prompt"]
    if "logp" in stage:
        return TOL["logp"]
    return TOL[stage]


def test_model_dir_layout(imported, expected):
    dst, model, cfg, tok, frontend = imported
    exp, _ = expected
    assert cfg.architecture == "owsm_ctc" and cfg.frontend["type"] == "espnet_logmel"
    assert cfg.meta["imported_from"] == "espnet" and cfg.meta["source"].endswith("model")
    assert sum(p.numel() for p in model.parameters()) == exp["num_parameters"]
    assert tok.vocab_size == exp["vocab_size"] == model.vocab_size
    ids = exp["special_ids"]
    assert (model.na_id, model.nolang_id) == (ids["na"], ids["nolang"])
    assert (
        model.symbol_id("eng", "lang") == ids["eng"]
        and model.symbol_id("<zho>", "lang") == ids["zho"]
    )
    assert model.symbol_id("asr", "task") == ids["asr"]
    assert tok.token_list.symbols([ids["sos"], ids["eos"], ids["sop"]]) == [
        "<sos>",
        "<eos>",
        "<sop>",
    ]


def test_every_run_matches_espnet(imported, expected, fixture_dir):
    _, model, _, tok, frontend = imported
    exp, npz = expected
    sos, eos = exp["special_ids"]["sos"], exp["special_ids"]["eos"]
    checked: set[str] = set()
    for run, rec in exp["runs"].items():
        wave = wave_of(fixture_dir, run)
        prompt = None if rec["text_prev"] == "<na>" else rec["text_prev"]
        prompt_ids = model.prompt_ids(prompt)
        assert prompt_ids == rec["text_prev_ids"], run
        got = stages(model, frontend, wave, rec["prefix_ids"], prompt_ids)
        for key in npz.files:
            name, _, stage = key.partition("/")
            if name != run or stage not in got:
                continue
            ref = torch.from_numpy(npz[key])
            torch.testing.assert_close(got[stage], ref, **tolerance(stage), msg=f"{key}")
            checked.add(key)
        logp = got["ctc_logp"]
        assert logp.argmax(-1).tolist() == rec["ctc_argmax"], run
        if run.endswith("@pad30"):
            top2 = logp.topk(2, dim=-1).values
            for stage, value in (
                ("ctc_logp_top1", top2[:, 0]),
                ("ctc_logp_blank", logp[:, 0]),
                ("ctc_top1_minus_top2", top2[:, 0] - top2[:, 1]),
            ):
                torch.testing.assert_close(
                    value, torch.from_numpy(npz[f"{run}/{stage}"]), **TOL["logp"]
                )
                checked.add(f"{run}/{stage}")
        for layer, ref_argmax in rec.get("interctc_argmax", {}).items():
            best = got[f"interctc_layer{layer}_logp"].argmax(-1)
            assert best.tolist() == ref_argmax, (run, layer)
            merged = [t for t in torch.unique_consecutive(best).tolist() if t not in (0, sos, eos)]
            assert tok.token_list.symbols(merged) == rec["interctc_tokens_espnet"][layer]
        hyp = model.recognize(
            *frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)])),
            lang=rec["lang_sym"], task=rec["task_sym"], prompt=prompt,
        )[0]  # fmt: skip
        assert hyp.token_ids == rec["token_int"] == npz[f"{run}/token_int"].tolist(), run
        assert tok.token_list.symbols(hyp.token_ids) == rec["tokens"]
        assert not {sos, eos, exp["special_ids"]["sop"]} & set(hyp.token_ids)  # decode keeps them
        assert tok.decode(hyp.token_ids) == rec["text"], run
        plain = [
            i for i, s in zip(hyp.token_ids, rec["tokens"], strict=True) if not s.startswith("<")
        ]
        assert tok.decode(plain) == rec["text_nospecial"], run
        if run.endswith("@pad30"):
            assert rec["text_nospecial"] == exp["batch_decode_text_nospecial"][run.split("@")[0]]
    ids = ("ctc_argmax", "token_int", "text_prev_ids", "prefix_ids")
    assert checked == {k for k in npz.files if not k.endswith(ids)}  # every recorded stage


def test_batched_recognizer_equals_espnet(imported, expected, fixture_dir):
    from audiokit.asr.inference import Recognizer

    dst, *_ = imported
    exp, _ = expected
    rec = Recognizer(dst, options={"lang": "eng", "task": "asr"})
    runs = ["librivox_0870", "cards_002"]  # different lengths: one padded batch
    waves = [wave_of(fixture_dir, r) for r in runs]
    results = rec.transcribe_waves(runs, waves)
    for r, res in zip(runs, results, strict=True):
        assert res.token_ids == exp["runs"][r]["token_int"] and res.text == exp["runs"][r]["text"]
        assert res.token_times == sorted(res.token_times) and res.token_times[-1] < res.duration


def test_cli_import_and_transcribe(tmp_path, capsys, expected, fixture_dir):
    exp, _ = expected
    dst = tmp_path / "owsm"
    code, out, err = run_main(
        capsys, "model", "import", "--from", "espnet", fixture_dir / "model", dst
    )
    assert code == 0, err
    inputs = fixture_dir / "inputs"
    for lang, runs in (
        ("eng", ["librivox_0870", "cards_002"]),
        ("zho", ["aishell_BAC009S0764W0121"]),
    ):
        files = [inputs / f"{r}.wav" for r in runs]
        code, out, err = run_main(
            capsys, "asr", "transcribe", "--model", dst, "--lang", lang, "--task", "asr",
            "--output", "json", *files,
        )  # fmt: skip
        assert code == 0, err
        rows = [json.loads(line) for line in out.splitlines()]
        assert [Path(r["path"]).stem for r in rows] == runs
        for r, row in zip(runs, rows, strict=True):
            assert row["token_ids"] == exp["runs"][r]["token_int"]
            assert row["text"] == exp["runs"][r]["text"]
    code, out, err = run_main(
        capsys, "asr", "transcribe", "--model", dst, "--lang", "auto", "--output", "json",
        inputs / "cards_002.wav",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["token_ids"], err
    code, out, err = run_main(
        capsys, "asr", "transcribe", "--model", dst, "--lang", "xx", inputs / "cards_002.wav"
    )
    assert code != 0 and "--lang xx: not a language of this model" in out + err


def test_lid_reads_frame_zero_over_languages(imported, fixture_dir):
    _, model, _, _, frontend = imported
    wave = wave_of(fixture_dir, "cards_002")
    feats, n = frontend(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
    hyp = model.recognize(feats, n, lang="auto", task="asr")[0]
    with torch.no_grad():
        out, _, _ = model.encode(feats, n, torch.tensor([[model.nolang_id, 9]]))
        probs = torch.softmax(model.ctc_out(out[0, 0]), -1)
    langs = sorted(model.languages.items(), key=lambda kv: probs[kv[1]], reverse=True)
    assert hyp.info["language"] == langs[0][0].strip("<>")
    assert hyp.token_ids == model.recognize(feats, n, lang=langs[0][0], task="asr")[0].token_ids


def _copy_model(fixture_dir: Path, tmp: Path) -> Path:
    """An ESPnet model folder in tmp whose big files are links to the fixture's."""
    src = fixture_dir / "model"
    dst = tmp / "model"
    for path in src.rglob("*"):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix in (".yaml",):
                shutil.copyfile(path, target)
            else:
                target.symlink_to(path)
    return dst


def _edit_config(model_dir: Path, edit) -> None:
    cfg_path = next(model_dir.glob("exp/*/config.yaml"))
    cfg = yaml.safe_load(cfg_path.read_text())
    edit(cfg)
    cfg_path.write_text(yaml.safe_dump(cfg))


def test_import_errors(tmp_path, fixture_dir):
    with pytest.raises(ConfigError, match="no meta.yaml or config.yaml"):
        import_model(tmp_path, tmp_path / "out")
    exp_dir = _copy_model(fixture_dir, tmp_path / "a")
    _edit_config(exp_dir, lambda c: c.update(model="espnet", encoder="conformer"))
    with pytest.raises(ConfigError, match="model='espnet' is not supported; only OWSM-CTC"):
        import_model(exp_dir, tmp_path / "out")
    exp_dir = _copy_model(fixture_dir, tmp_path / "b")
    _edit_config(exp_dir, lambda c: c["encoder_conf"].update(pos_enc_layer_type="rel_pos"))
    with pytest.raises(ConfigError, match="pos_enc_layer_type='rel_pos' is not supported"):
        import_model(exp_dir, tmp_path / "out")
    exp_dir = _copy_model(fixture_dir, tmp_path / "c")
    _edit_config(
        exp_dir, lambda c: c["encoder_conf"].update(num_blocks=5, use_cross_attention=[0] * 5)
    )
    with pytest.raises(ModelError, match="weights do not fit config.yaml"):
        import_model(exp_dir, tmp_path / "out")
    # an exp/<name>/ folder (config.yaml + one .pth) works too; paths resolve from ../..
    exp_dir = _copy_model(fixture_dir, tmp_path / "d")
    out = import_model(next(exp_dir.glob("exp/s2t_train*")), tmp_path / "ok")
    assert (out / "model.safetensors").is_file()
    with pytest.raises(ConfigError, match="already exists"):
        import_model(exp_dir, out)


def test_normalize_conf_flags_are_honoured(tmp_path, fixture_dir):
    model_dir = _copy_model(fixture_dir, tmp_path)
    _edit_config(model_dir, lambda c: c["normalize_conf"].update(norm_vars=False))
    model, _ = load_model_dir(import_model(model_dir, tmp_path / "out"))
    assert torch.equal(model.cmvn.istd, torch.ones(80)) and model.cmvn.mean.abs().min() > 1.0
