"""ESPnet ASR (Conformer / E-Branchformer CTC) import against ESPnet itself.

``tests/data/espnet_asr`` holds four tiny models built and run by ESPnet 202511
(``make_reference.py``, see its README): Conformer with latest and legacy relative positions
and with absolute positions (no conv module, char tokens, no MVN), and an E-Branchformer; input
layers conv2d / conv2d6 / conv2d8; one hybrid CTC/attention model. For each synthetic utterance
the encoder output must match ESPnet's within 1e-4 and the greedy CTC token ids and text must
be identical to ESPnet's CTC best path (``ctc.argmax``, merge repeats, drop blank).
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

import audiokit.asr.espnet_asr  # noqa: F401 - registers espnet_asr_ctc
from audiokit.errors import ConfigError, ModelError
from audiokit.features.frontend import build_frontend
from audiokit.importers.espnet import import_model
from audiokit.importers.espnet_asr import build_asr
from audiokit.model_dir import load_model_dir
from tests.conftest import run_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DATA = Path(__file__).parent / "data" / "espnet_asr"
MODELS = [
    "asr_conformer_latest",
    "asr_conformer_legacy",
    "asr_ebf_latest",
    "asr_conformer_abs_char",
]
UTTS = ["utt_a", "utt_b"]


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA / "reference.npz")


def _wave(ref, utt: str) -> torch.Tensor:
    return torch.from_numpy(ref[f"{utt}/pcm"].astype(np.float32) / 32768)


@pytest.mark.parametrize("name", MODELS)
def test_encoder_and_ids_match_espnet(name, ref, tmp_path):
    dst = import_model(DATA / "exp" / name, tmp_path / name)
    model, cfg = load_model_dir(dst)
    assert cfg.architecture == "espnet_asr_ctc"
    frontend = build_frontend(cfg.frontend, cfg.sample_rate)
    waves = [_wave(ref, u) for u in UTTS]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    feats, frames = frontend(batch, lengths)  # padded batch: each utterance as alone
    with torch.no_grad():
        enc, enc_lens = model.encoder(model.cmvn(feats, frames), frames)
    hyps = model.recognize(feats, frames)
    for i, utt in enumerate(UTTS):
        want = ref[f"{name}/{utt}/encoder_out"]
        assert int(enc_lens[i]) == want.shape[0]
        np.testing.assert_allclose(enc[i, : want.shape[0]].numpy(), want, atol=1e-4, rtol=0)
        assert hyps[i].token_ids == ref[f"{name}/{utt}/best_path_ids"].tolist()


def test_cli_import_and_transcribe_text(tmp_path, capsys, ref):
    """Released layout (meta.yaml naming asr_train_config) -> CLI import -> transcribe json."""
    dst = tmp_path / "m"
    code, _, err = run_main(capsys, "model", "import", "--from", "espnet", DATA, dst)
    assert code == 0, err
    files = []
    for utt in UTTS:
        sf.write(tmp_path / f"{utt}.wav", ref[f"{utt}/pcm"], 16000, subtype="PCM_16")
        files.append(tmp_path / f"{utt}.wav")
    code, out, err = run_main(
        capsys, "asr", "transcribe", "--model", dst, "--output", "json", *files
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    for utt, row in zip(UTTS, rows, strict=True):
        key = f"asr_conformer_latest/{utt}"
        assert row["token_ids"] == ref[f"{key}/best_path_ids"].tolist()
        assert row["text"] == str(ref[f"{key}/best_path_text"])
    meta = json.loads((dst / "meta.json").read_text())
    assert meta["imported_from"] == "espnet" and meta["espnet_task"] == "asr"
    assert "CTC only" in meta["decoding_note"]


def test_char_tokens_decode_like_espnet(tmp_path, ref):
    dst = import_model(DATA / "exp" / "asr_conformer_abs_char", tmp_path / "c")
    from audiokit.asr.inference import Recognizer

    rec = Recognizer(dst)
    results = rec.transcribe_waves(UTTS, [_wave(ref, u).numpy() for u in UTTS])
    for utt, res in zip(UTTS, results, strict=True):
        key = f"asr_conformer_abs_char/{utt}"
        assert res.token_ids == ref[f"{key}/best_path_ids"].tolist()
        assert res.text == str(ref[f"{key}/best_path_text"])


def _copy(tmp_path: Path, name: str) -> Path:
    root = tmp_path / "root"
    shutil.copytree(DATA, root, ignore=shutil.ignore_patterns("*.py", "*.md", "reference.npz"))
    return root / "exp" / name


def _edit(exp: Path, edit) -> None:
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    edit(cfg)
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("asr_conformer_latest", lambda c: c.update(encoder="transformer"),
         "encoder='transformer' is not supported"),
        ("asr_conformer_latest", lambda c: c["encoder_conf"].update(input_layer="vgg2l"),
         "encoder_conf.input_layer='vgg2l' is not supported"),
        ("asr_conformer_latest", lambda c: c["encoder_conf"].update(positionwise_layer_type="conv1d"),
         "encoder_conf.positionwise_layer_type='conv1d' is not supported"),
        ("asr_conformer_latest", lambda c: c["encoder_conf"].update(pos_enc_layer_type="legacy_rel_pos"),
         "encoder_conf.selfattention_layer_type='rel_selfattn' .rel_pos_type 'latest'. is not"),
        ("asr_conformer_latest", lambda c: c["encoder_conf"].update(pos_enc_layer_type="scaled_abs_pos"),
         "encoder_conf.pos_enc_layer_type='scaled_abs_pos'"),
        ("asr_conformer_latest", lambda c: c["encoder_conf"].update(interctc_use_conditioning=True),
         "encoder_conf.interctc_use_conditioning=True is not supported"),
        ("asr_ebf_latest", lambda c: c["encoder_conf"].update(attention_layer_type="fast_selfattn"),
         "encoder_conf.attention_layer_type='fast_selfattn'"),
        ("asr_ebf_latest", lambda c: c["encoder_conf"].update(some_new_option=1),
         "encoder_conf.some_new_option is not supported for e_branchformer"),
        ("asr_conformer_latest", lambda c: c.update(normalize="utterance_mvn"),
         "normalize='utterance_mvn' is not supported"),
        ("asr_conformer_latest", lambda c: c["frontend_conf"].update(window="hamming"),
         "frontend_conf.window='hamming' is not supported"),
        ("asr_conformer_latest", lambda c: c.update(token_type="word"),
         "token_type='word' is not supported"),
        ("asr_conformer_latest", lambda c: c["model_conf"].update(ctc_weight=0.0),
         "model_conf.ctc_weight=0"),
        ("asr_conformer_latest", lambda c: c.update(decoder="transducer"),
         "decoder='transducer' is not supported"),
        ("asr_conformer_latest", lambda c: c.update(preencoder="linear"),
         "preencoder='linear' is not supported"),
    ],
)  # fmt: skip
def test_unsupported_options_are_refused(tmp_path, name, edit, message):
    exp = _copy(tmp_path, name)
    _edit(exp, edit)
    with pytest.raises(ConfigError, match=message):
        import_model(exp, tmp_path / "out")


def test_weights_that_do_not_fit_are_refused(tmp_path):
    exp = _copy(tmp_path, "asr_conformer_latest")
    _edit(exp, lambda c: c["encoder_conf"].update(macaron_style=False))
    with pytest.raises(ModelError, match="weights do not fit config.yaml"):
        import_model(exp, tmp_path / "out")


def test_global_mvn_from_stats_file_when_weights_lack_it(tmp_path):
    exp = _copy(tmp_path, "asr_conformer_latest")
    root, config, pth = exp.parent.parent, exp / "config.yaml", exp / "valid.acc.ave.pth"
    cfg = yaml.safe_load(config.read_text())
    full = build_asr(root, config, pth, cfg)[0]
    sd = torch.load(pth, weights_only=True)
    torch.save({k: v for k, v in sd.items() if not k.startswith("normalize.")}, pth)
    from_stats = build_asr(root, config, pth, cfg)[0]
    for key in ("cmvn.mean", "cmvn.istd"):
        torch.testing.assert_close(from_stats.state_dict()[key], full.state_dict()[key])


def test_default_valued_frontend_options_are_accepted(tmp_path):
    exp = _copy(tmp_path, "asr_ebf_latest")
    _edit(exp, lambda c: c["frontend_conf"].update(window="hann", center=True, normalized=False))
    model, cfg = load_model_dir(import_model(exp, tmp_path / "out"))
    assert cfg.frontend["win_length"] == 400 and cfg.frontend["fmin"] == 20
