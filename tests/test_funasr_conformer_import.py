"""FunASR Conformer-Paraformer import (AISHELL layout, ``rel_pos_type: legacy``): parity with
FunASR 1.4.16 on the tiny generated reference in ``tests/data/funasr_conformer`` (see its
README). FunASR's outputs were computed one utterance at a time; ours must match them alone
and padded in a batch. Tolerances: about 10x the measured error (feats: fbank float32 rounding,
measured 1.5e-4; encoder/alphas/log-probs: measured <= 1.1e-5 from the wav).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from audiokit.errors import ConfigError
from audiokit.features.kaldi import fbank
from audiokit.importers.funasr import import_model
from audiokit.model_dir import load_model_dir
from audiokit.nn.legacy_relpos import legacy_rel_shift, legacy_rel_shift_padded

DATA = Path(__file__).parent / "data" / "funasr_conformer"
UTTS = ["utt_a", "utt_b"]
TOL_FEATS, TOL = 2e-3, 1e-4


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(DATA / "reference.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    dst = import_model(DATA / "model", tmp_path_factory.mktemp("imp") / "conformer")
    return load_model_dir(dst)


def _close(got: torch.Tensor, want: np.ndarray, tol: float, what: str) -> None:
    got_np = got.detach().numpy().reshape(want.shape)
    err = float(np.abs(got_np.astype(np.float64) - want).max())
    assert err <= tol, f"{what}: max |diff| {err:.3g} > {tol}"


def _fbank(ref, cfg, utts):
    waves = [torch.from_numpy(ref[f"{u}/pcm"].astype(np.float32) / 32768.0) for u in utts]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    return fbank(batch, lengths, cfg.fbank_options())


def test_model_config(imported):
    model, _ = imported
    assert model.config["encoder"] == "conformer"
    assert model.config["rel_pos"] == "legacy" and model.config["norm_eps"] == 1e-12
    assert model.config["decoder"] == "transformer" and model.config["predictor"] == "v1"


@pytest.mark.parametrize("batched", [False, True], ids=["alone", "padded_batch"])
def test_parity_from_wav(imported, ref, batched, one_torch_thread):
    model, cfg = imported
    groups = [UTTS] if batched else [[u] for u in UTTS]
    for utts in groups:
        feats, frames = _fbank(ref, cfg, utts)
        with torch.no_grad():
            x, _ = model.frontend(feats, frames)
            enc, enc_lengths = model.encode(feats, frames)
            cif = model.predict(enc, enc_lengths)
            logp = model.decoder_logprobs(enc, enc_lengths, cif.acoustic_embeds, cif.lengths)
            ctc = model.ctc_logprobs(enc)
        hyps = model.recognize(feats, frames)
        for b, u in enumerate(utts):
            t, n = int(frames[b]), int(enc_lengths[b])
            assert [n] == ref[f"{u}/encoder_out_lens"].tolist()
            assert [int(cif.lengths[b])] == ref[f"{u}/n_tokens"].tolist()
            _close(x[b, :t], ref[f"{u}/feats"], TOL_FEATS, f"{u} feats")
            _close(enc[b, :n], ref[f"{u}/encoder_out"], TOL, f"{u} encoder_out")
            _close(cif.alphas[b, : n + 1], ref[f"{u}/alphas"], TOL, f"{u} alphas")
            _close(ctc[b, :n], ref[f"{u}/ctc_logprobs"], TOL, f"{u} ctc")
            k = int(cif.lengths[b])
            _close(logp[b, :k], ref[f"{u}/decoder_logprobs"], TOL, f"{u} logprobs")
            assert hyps[b].token_ids == ref[f"{u}/token_ids"].tolist()


def test_encoder_fed_funasr_features(imported, ref, one_torch_thread):
    """The encoder alone, on FunASR's own (CMVN'd) features, padded in one batch."""
    model, _ = imported
    feats = [torch.from_numpy(ref[f"{u}/feats"]) for u in UTTS]
    lengths = torch.tensor([len(f) for f in feats])
    with torch.no_grad():
        enc, enc_lengths = model.encoder(torch.nn.utils.rnn.pad_sequence(feats, True), lengths)
    for b, u in enumerate(UTTS):
        n = int(enc_lengths[b])
        _close(enc[b, :n], ref[f"{u}/encoder_out"], 1e-5, f"{u} encoder_out (stage)")


def test_padded_shift_is_the_per_utterance_legacy_shift():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 6, 6)
    lengths = torch.tensor([6, 4, 1])
    out = legacy_rel_shift_padded(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        want = legacy_rel_shift(x[b : b + 1, :, :n, :n])[0]
        assert torch.equal(out[b, :, :n, :n], want)
    # the legacy shift itself: j <= i reads column T-1-(i-j), j = i+1 is 0, j > i+1 row i+1
    s = legacy_rel_shift(x[:1])[0, 0]
    assert s[3, 1] == x[0, 0, 3, 6 - 1 - 2] and s[2, 3] == 0 and s[1, 4] == x[0, 0, 2, 1]


def _copy_with(tmp_path: Path, **encoder_conf) -> Path:
    src = tmp_path / "src"
    shutil.copytree(DATA / "model", src)
    cfg = yaml.safe_load((src / "config.yaml").read_text(encoding="utf-8"))
    cfg["encoder_conf"].update(encoder_conf)
    (src / "config.yaml").write_text(yaml.safe_dump(cfg), "utf-8")
    return src


@pytest.mark.parametrize(
    "conf",
    [{"rel_pos_type": "latest"}, {"macaron_style": False}, {"activation_type": "relu"}],
    ids=["latest_rel_pos", "no_macaron", "relu"],
)
def test_unsupported_conformer_options_are_one_line_errors(tmp_path, conf):
    src = _copy_with(tmp_path, **conf)
    with pytest.raises(ConfigError) as e:
        import_model(src, tmp_path / "out")
    key = next(iter(conf))
    assert key in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()
