"""Generate the tiny FunASR Conformer-Paraformer reference (run by hand, never in CI).

    /tmp/funasr_venv/bin/python tests/data/funasr_conformer/make_reference.py

Needs FunASR (tested with 1.4.16) in a throwaway venv; audiokit never depends on it. Writes
``model/`` (config.yaml, model.pt, am.mvn, tokens.json: a released-model folder) and
``reference.npz`` (FunASR's own outputs, one utterance at a time) next to this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

SEED = 20261122
OUT = Path(__file__).resolve().parent
D, N_MELS, VOCAB = 64, 80, 50

CONFIG = {
    "model": "Paraformer",
    "model_conf": {
        "ctc_weight": 0.3,
        "lsm_weight": 0.1,
        "length_normalized_loss": False,
        "predictor_weight": 1.0,
        "sampling_ratio": 0.4,
    },
    "encoder": "ConformerEncoder",
    "encoder_conf": {  # AISHELL paraformer_conformer_12e_6d_2048_256.yaml, shrunk
        "output_size": D,
        "attention_heads": 4,
        "linear_units": 128,
        "num_blocks": 2,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.0,
        "input_layer": "conv2d",
        "normalize_before": True,
        "pos_enc_layer_type": "rel_pos",
        "selfattention_layer_type": "rel_selfattn",
        "activation_type": "swish",
        "macaron_style": True,
        "use_cnn_module": True,
        "cnn_module_kernel": 15,
    },
    "decoder": "ParaformerSANDecoder",
    "decoder_conf": {
        "attention_heads": 4,
        "linear_units": 128,
        "num_blocks": 2,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "self_attention_dropout_rate": 0.0,
        "src_attention_dropout_rate": 0.0,
    },
    "predictor": "CifPredictor",
    "predictor_conf": {
        "idim": D,
        "threshold": 1.0,
        "l_order": 1,
        "r_order": 1,
        "tail_threshold": 0.45,
    },
    "frontend": "WavFrontend",
    "frontend_conf": {
        "fs": 16000,
        "window": "hamming",
        "n_mels": N_MELS,
        "frame_length": 25,
        "frame_shift": 10,
        "lfr_m": 1,
        "lfr_n": 1,
        "dither": 0.0,
    },
    "tokenizer": "CharTokenizer",
}


def tokens() -> list[str]:
    chars = [chr(0x4E00 + 7 * i) for i in range(VOCAB - 4)]
    return ["<blank>", "<s>", "</s>", *chars, "<unk>"]


def write_am_mvn(path: Path, rng: np.random.Generator) -> None:
    shift = -rng.uniform(8.0, 14.0, N_MELS)
    scale = rng.uniform(0.15, 0.4, N_MELS)
    vec = lambda v: " ".join(f"{x:.6f}" for x in v)  # noqa: E731
    path.write_text(
        f"<Nnet>\n<Splice> {N_MELS} {N_MELS}\n[ 0 ]\n<AddShift> {N_MELS} {N_MELS}\n"
        f"<LearnRateCoef> 0 [ {vec(shift)} ]\n<Rescale> {N_MELS} {N_MELS}\n"
        f"<LearnRateCoef> 0 [ {vec(scale)} ]\n</Nnet>\n"
    )


def waves(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Two deterministic 'speech-like' int16 signals: harmonic chirps with AM + noise."""
    out = {}
    for name, secs, f0 in (("utt_a", 1.05, 140.0), ("utt_b", 1.6, 210.0)):
        t = np.arange(int(secs * 16000)) / 16000
        pitch = f0 * (1 + 0.2 * np.sin(2 * np.pi * 1.3 * t))
        phase = 2 * np.pi * np.cumsum(pitch) / 16000
        sig = sum(np.sin(k * phase) / k for k in range(1, 12))
        sig *= 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
        sig += 0.05 * rng.standard_normal(t.shape)
        out[name] = np.round(sig / np.abs(sig).max() * 12000).astype(np.int16)
    return out


def main() -> None:
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.models.paraformer.model import Paraformer

    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    model_dir = OUT / "model"
    model_dir.mkdir(exist_ok=True)
    toks = tokens()
    (model_dir / "tokens.json").write_text(json.dumps(toks, ensure_ascii=False), "utf-8")
    write_am_mvn(model_dir / "am.mvn", rng)
    cfg = dict(CONFIG, frontend_conf=dict(CONFIG["frontend_conf"], cmvn_file="am.mvn"))
    (model_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), "utf-8")

    model = Paraformer(
        encoder=cfg["encoder"],
        encoder_conf=cfg["encoder_conf"],
        decoder=cfg["decoder"],
        decoder_conf=cfg["decoder_conf"],
        predictor=cfg["predictor"],
        predictor_conf=cfg["predictor_conf"],
        input_size=N_MELS,
        vocab_size=len(toks),
        **cfg["model_conf"],
    )
    # Non-trivial norms/BN statistics, so a wrong mapping cannot pass by accident.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".norm" in name and name.endswith("weight"):
                p.add_(0.1 * torch.randn_like(p))
            elif "norm" in name and name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(torch.rand_like(b) + 0.5)
        # a predictor bias that fires a handful of tokens per second
        model.predictor.cif_output.bias.fill_(-0.5)
        # fp16-exact weights, stored as fp16: halves model.pt (FunASR and audiokit load it as fp32)
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())
    model.eval()
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(half, model_dir / "model.pt")

    frontend = WavFrontend(cmvn_file=str(model_dir / "am.mvn"), **CONFIG["frontend_conf"])
    frontend.eval()
    arrays: dict[str, np.ndarray] = {}
    for name, pcm in waves(rng).items():
        arrays[f"{name}/pcm"] = pcm
        wav = torch.from_numpy(pcm.astype(np.float32) / 32768.0)[None]
        with torch.no_grad():
            feats, flen = frontend(wav, torch.tensor([wav.shape[1]]))
            enc, enc_len = model.encode(feats, flen)
            pre_emb, pre_len, alphas, _ = model.calc_predictor(enc, enc_len)
            n = pre_len.round().long()
            logp = model.cal_decoder_with_predictor(enc, enc_len, pre_emb, n)[0]
            ctc = model.ctc.log_softmax(enc)
        arrays[f"{name}/feats"] = feats[0].numpy()
        arrays[f"{name}/encoder_out"] = enc[0].numpy()
        arrays[f"{name}/encoder_out_lens"] = enc_len.numpy()
        arrays[f"{name}/alphas"] = alphas[0].numpy()
        arrays[f"{name}/n_tokens"] = n.numpy()
        arrays[f"{name}/decoder_logprobs"] = logp[0, : int(n[0])].numpy()
        arrays[f"{name}/ctc_logprobs"] = ctc[0].numpy()
        arrays[f"{name}/token_ids"] = logp[0, : int(n[0])].argmax(-1).numpy()
        print(
            name,
            "frames",
            int(flen[0]),
            "enc",
            int(enc_len[0]),
            "tokens",
            int(n[0]),
            arrays[f"{name}/token_ids"].tolist(),
        )
    np.savez_compressed(OUT / "reference.npz", **arrays)


if __name__ == "__main__":
    main()
