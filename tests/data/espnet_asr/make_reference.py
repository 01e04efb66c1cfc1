"""Generate the tiny ESPnet ASR CTC references (run by hand, never in CI).

    cd tests/data/espnet_asr && /tmp/espnet_venv/bin/python make_reference.py

Needs ESPnet (tested with espnet 202511, torch 2.13.0+cpu) in a throwaway venv; audiokit never
depends on it. Builds four tiny ASR models with ESPnet's own ``ASRTask.build_model``, saves
them as ESPnet's trainer does (``exp/<name>/config.yaml`` = the argparse namespace,
``valid.acc.ave.pth`` = the state dict, ``data/bpe.model``, ``exp/asr_stats/train/
feats_stats.npz``), reloads each through ``espnet2.bin.asr_inference.Speech2Text`` and records
ESPnet's outputs in ``reference.npz``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, "/tmp/espnet_stubs")
# torchaudio for torch 2.13 is not on the local index; ESPnet's ASR path never calls it, but
# unrelated modules imported by espnet2.tasks.asr (BEATs encoder) import it. Stub the import.
import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402
import stub_torchaudio  # noqa: E402,F401
import torch  # noqa: E402
import yaml  # noqa: E402
from espnet2.bin.asr_inference import Speech2Text  # noqa: E402
from espnet2.tasks.asr import ASRTask  # noqa: E402

SEED = 20261122
BEAM = 10
OUT = Path(__file__).resolve().parent
D, N_MELS, SR = 32, 40, 16000
TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "she sells sea shells by the sea shore",
    "a stitch in time saves nine",
    "every cloud has a silver lining",
    "speech models turn sound into text",
]
FRONT_A = {"fs": "16k", "n_fft": 512, "win_length": 400, "hop_length": 160, "n_mels": N_MELS,
           "fmin": 20, "fmax": 7600}  # fmt: skip
FRONT_B = {"fs": 16000, "n_fft": 400, "hop_length": 128, "n_mels": N_MELS}
COMMON = {"output_size": D, "attention_heads": 4, "linear_units": 64, "num_blocks": 2}
MODELS = {
    # name: (token_type, frontend_conf, normalize, encoder, encoder_conf, decoder?, ctc_weight)
    "asr_conformer_latest": ("bpe", FRONT_A, "global_mvn", "conformer", {
        **COMMON, "input_layer": "conv2d", "rel_pos_type": "latest",
        "pos_enc_layer_type": "rel_pos", "selfattention_layer_type": "rel_selfattn",
        "macaron_style": True, "use_cnn_module": True, "cnn_module_kernel": 7,
    }, False, 1.0),
    "asr_conformer_legacy": ("bpe", FRONT_B, "global_mvn", "conformer", {
        **COMMON, "input_layer": "conv2d6", "macaron_style": False, "cnn_module_kernel": 5,
    }, True, 0.3),  # ESPnet default rel_pos_type (legacy); hybrid CTC/attention
    "asr_ebf_latest": ("bpe", FRONT_A, "global_mvn", "e_branchformer", {
        **COMMON, "input_layer": "conv2d8", "use_ffn": True, "macaron_ffn": True,
        "cgmlp_linear_units": 64, "cgmlp_conv_kernel": 7, "merge_conv_kernel": 3,
    }, False, 1.0),
    "asr_conformer_abs_char": ("char", FRONT_B, None, "conformer", {
        **COMMON, "input_layer": "conv2d", "pos_enc_layer_type": "abs_pos",
        "selfattention_layer_type": "selfattn", "macaron_style": True,
        "use_cnn_module": False, "use_flash_attn": False,
    }, False, 1.0),
}  # fmt: skip


class _NoAlias(yaml.SafeDumper):
    """ESPnet writes config.yaml without YAML aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def synth(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """int16 harmonic chirps + noise (speech-like spectrum, nothing recorded)."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = rng.uniform(90, 220) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2
    x += 0.05 * rng.standard_normal(n)
    return (x / np.abs(x).max() * 12000).astype(np.int16)


def bpe_tokens() -> list[str]:
    (OUT / "data").mkdir(exist_ok=True)
    (OUT / "data" / "train.txt").write_text("\n".join(TEXT * 4) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(OUT / "data" / "train.txt"), model_prefix=str(OUT / "data" / "bpe"),
        vocab_size=40, model_type="unigram", character_coverage=1.0,
        normalization_rule_name="identity", input_sentence_size=10**8, seed_sentencepiece_size=10**5,
        num_threads=1, minloglevel=2,
    )  # fmt: skip
    (OUT / "data" / "train.txt").unlink()
    (OUT / "data" / "bpe.vocab").unlink()
    sp = spm.SentencePieceProcessor(model_file=str(OUT / "data" / "bpe.model"))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    return ["<blank>", "<unk>", *[p for p in pieces if p not in ("<unk>", "<s>", "</s>")],
            "<sos/eos>"]  # fmt: skip


def char_tokens() -> list[str]:
    chars = sorted(set("".join(TEXT)) - {" "})
    return ["<blank>", "<unk>", "<space>", *chars, "<sos/eos>"]


def write_stats(front: dict, name: str, rng: np.random.Generator) -> str:
    """feats_stats.npz of the frontend's log-mel over a few synthetic clips (as collect_stats)."""
    from espnet2.asr.frontend.default import DefaultFrontend

    fe = DefaultFrontend(**front).eval()
    feats = []
    for _ in range(4):
        wav = torch.from_numpy(synth(rng, 1.2).astype(np.float32) / 32768)[None]
        f, n = fe(wav, torch.tensor([wav.shape[1]]))
        feats.append(f[0, : int(n[0])].double().numpy())
    x = np.concatenate(feats)
    path = OUT / "exp" / name / "train" / "feats_stats.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, count=np.array(len(x)), sum=x.sum(0), sum_square=(x * x).sum(0))
    return str(path.relative_to(OUT))


def build(name: str, spec, rng: np.random.Generator):
    token_type, front, normalize, encoder, enc_conf, with_decoder, ctc_weight = spec
    tokens = bpe_tokens() if token_type == "bpe" else char_tokens()
    args = ASRTask.get_parser().parse_args(["--output_dir", "unused", "--token_list", "x"])
    stats = write_stats(front, f"asr_stats_{name[4:]}", rng) if normalize else None
    args.__dict__.update(
        token_list=tokens, token_type=token_type,
        bpemodel="data/bpe.model" if token_type == "bpe" else None,
        input_size=None, frontend="default", frontend_conf=dict(front), specaug=None,
        normalize=normalize, normalize_conf={"stats_file": stats} if normalize else {},
        model="espnet", model_conf={"ctc_weight": ctc_weight, "lsm_weight": 0.1},
        preencoder=None, encoder=encoder, encoder_conf=dict(enc_conf), postencoder=None,
        decoder="transformer" if with_decoder else None,
        decoder_conf={"attention_heads": 4, "linear_units": 64, "num_blocks": 1}
        if with_decoder else {},
        ctc_conf={"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True,
                  "ignore_nan_grad": None, "zero_infinity": True},
    )  # fmt: skip
    torch.manual_seed(SEED)
    model = ASRTask.build_model(args).eval()
    with torch.no_grad():  # perturb what random init leaves at 1/0, so mappings are checked
        for mod in model.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.weight.uniform_(0.7, 1.3)
                mod.bias.uniform_(-0.2, 0.2)
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.7, 1.3)
                mod.bias.uniform_(-0.2, 0.2)
        # A trained CTC model is peaky and mostly blank; random weights are neither, and then
        # Speech2Text's label-synchronous search (beam 1) and the best path disagree. Sharpen
        # the posteriors and raise the blank bias until blank wins ~80 % of the frames of some
        # other synthetic clips (not the test clips).
        model.ctc.ctc_lo.weight.mul_(20.0)
        wav = torch.from_numpy(synth(rng, 2.0).astype(np.float32) / 32768)[None]
        enc, n = model.encode(wav, torch.tensor([wav.shape[1]]))
        logits = model.ctc.ctc_lo(enc[0, : int(n[0])])
        margin = logits[:, 1:].max(-1).values - logits[:, 0]
        model.ctc.ctc_lo.bias[0] += torch.quantile(margin, 0.8)
    sd = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point() and key != "frontend.logmel.melmat" and "normalize" not in key:
            value = value.half()  # fp16 storage keeps the folder small; ESPnet runs it in fp32
        sd[key] = value
    exp = OUT / "exp" / name
    exp.mkdir(parents=True, exist_ok=True)
    torch.save(sd, exp / "valid.acc.ave.pth")
    cfg = {k: v for k, v in vars(args).items()}
    cfg["token_list"] = tokens
    (exp / "config.yaml").write_text(
        yaml.dump(cfg, Dumper=_NoAlias, sort_keys=False, allow_unicode=True)
    )
    return exp


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    pcm = {"utt_a": synth(rng, 1.05), "utt_b": synth(rng, 1.6)}
    ref: dict[str, np.ndarray] = {f"{u}/pcm": x for u, x in pcm.items()}
    for name, spec in MODELS.items():
        exp = build(name, spec, rng)
        s2t = Speech2Text(
            asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / "valid.acc.ave.pth"),
            device="cpu", beam_size=1, ctc_weight=1.0, lm_weight=0.0, penalty=0.0, nbest=1,
            maxlenratio=0.0, minlenratio=0.0,
        )  # fmt: skip
        s2t_beam = Speech2Text(
            asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / "valid.acc.ave.pth"),
            device="cpu", beam_size=BEAM, ctc_weight=1.0, lm_weight=0.0, penalty=0.0, nbest=1,
            maxlenratio=0.0, minlenratio=0.0,
        )  # fmt: skip
        model = s2t.asr_model
        for utt, x in pcm.items():
            speech = torch.from_numpy(x.astype(np.float32) / 32768)
            text, _, token_int, _ = s2t(speech)[0]
            beam_int = s2t_beam(speech)[0][2]
            with torch.no_grad():
                enc, enc_lens = model.encode(speech[None], torch.tensor([len(speech)]))
                best = torch.unique_consecutive(model.ctc.argmax(enc)[0, : int(enc_lens[0])])
            best = best[best != 0]
            key = f"{name}/{utt}"
            ref[f"{key}/encoder_out"] = enc[0].numpy().astype(np.float32)
            ref[f"{key}/token_ids"] = np.array(token_int, dtype=np.int64)  # Speech2Text beam 1
            ref[f"{key}/beam_ids"] = np.array(beam_int, dtype=np.int64)  # Speech2Text beam BEAM
            ref[f"{key}/best_path_ids"] = best.numpy().astype(np.int64)
            ref[f"{key}/text"] = np.array(text)  # of token_ids
            tokens = s2t.converter.ids2tokens(best.tolist())
            ref[f"{key}/best_path_text"] = np.array(s2t.tokenizer.tokens2text(tokens))
            print(key, tuple(enc.shape), "best path", best.tolist(), "beam-1", token_int,
                  f"beam-{BEAM}", beam_int)  # fmt: skip
    np.savez_compressed(OUT / "reference.npz", **ref)
    meta = {"files": {"asr_model_file": "exp/asr_conformer_latest/valid.acc.ave.pth"},
            "yaml_files": {"asr_train_config": "exp/asr_conformer_latest/config.yaml"}}  # fmt: skip
    (OUT / "meta.yaml").write_text(yaml.safe_dump(meta))


if __name__ == "__main__":
    main()
