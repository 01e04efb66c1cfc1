"""QDAC: RVQ codec + training-time latent ASR (teacher forcing, losses, training, packing)."""

from __future__ import annotations

import math

import pytest
import torch

from audiokit.codec.base import CodecEncoding
from audiokit.codec.qdac import QDAC, teacher_forcing
from audiokit.errors import ConfigError
from audiokit.train.interface import Batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_DISC = {
    "mpd": {"periods": [2], "channels": [4, 4]},
    "mrd": {"window_lengths": [64], "channels": 4},
}
TINY_MEL = {"window_lengths": [64, 256, 1024], "n_mels": [10, 40, 80]}
TINY_ASR = {
    "d_model": 32,
    "heads": 2,
    "ff_dim": 64,
    "encoder_layers": 0,
    "layers": 1,
    "dropout": 0.0,
}
VOCAB, SOS_EOS = 12, 1


def tiny_qdac(asr: dict | None = TINY_ASR, **kw) -> QDAC:
    torch.manual_seed(0)
    args = dict(
        encoder_dim=4, encoder_rates=(2, 4, 5, 8), decoder_dim=32, decoder_rates=(8, 5, 4, 2),
        n_codebooks=4, codebook_size=16, codebook_dim=4, quantizer_dropout=0.0,
        vocab_size=VOCAB, sos_id=SOS_EOS, eos_id=SOS_EOS, asr=asr,
        loss={"mel_options": TINY_MEL},
    )  # fmt: skip
    args.update(kw)
    return QDAC(**args)


def two_sounds(n: int = 1600) -> torch.Tensor:
    """Two clearly different 0.1 s sounds (a sine and a buzzy square wave), ``(2, 1, n)``."""
    t = torch.arange(n) / 16000.0
    sine = 0.3 * torch.sin(2 * math.pi * 220 * t)
    square = 0.3 * torch.sign(torch.sin(2 * math.pi * 1500 * t))
    return torch.stack([sine, square])[:, None]


def test_teacher_forcing_layout():
    targets = torch.tensor([[3, 4, 5], [6, -1, -1]])
    ys_in, ys_out = teacher_forcing(targets, torch.tensor([3, 1]), sos=1, eos=2)
    assert ys_in.tolist() == [[1, 3, 4, 5], [1, 6, 2, 2]]
    assert ys_out.tolist() == [[3, 4, 5, 2], [6, 2, -1, -1]]


def test_codec_shapes_and_asr_loss_only_with_targets():
    model = tiny_qdac()
    assert model.kind == "rvq" and model.hop_length == 320 and model.sample_rate == 16000
    wav = two_sounds(1000)
    out = model.forward_train(wav)
    assert out.audio.shape == wav.shape and out.codes.shape == (2, 4, 4)
    assert "asr" not in out.losses
    targets = torch.tensor([[3, 4, 5], [6, 7, -1]])
    out = model.forward_train(wav, targets, torch.tensor([3, 2]), torch.tensor([1000, 700]))
    assert set(out.losses) == {"commitment", "codebook", "asr"}
    # the untrained ASR is close to uniform over the vocabulary
    assert abs(out.losses["asr"].item() - math.log(VOCAB)) < 1.0
    model.eval()
    enc = model.encode(wav, n_codebooks=2)
    assert enc.codes.shape == (2, 2, 4)
    assert model.decode(enc).shape == wav.shape


def test_asr_gradient_reaches_the_encoder_not_the_decoder():
    model = tiny_qdac()
    targets = torch.tensor([[3, 4], [5, 6]])
    out = model.forward_train(two_sounds(640), targets, torch.tensor([2, 2]))
    out.losses["asr"].backward()
    enc_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in enc_grads) and any(g.abs().sum() > 0 for g in enc_grads)
    assert all(p.grad is None for p in model.decoder.parameters())


def test_configuration_errors():
    with pytest.raises(ConfigError, match="model.args.asr"):
        tiny_qdac(asr=None, discriminator=TINY_DISC)
    with pytest.raises(ConfigError, match="vocab_size"):
        tiny_qdac(vocab_size=None)
    with pytest.raises(ConfigError, match="asr.depth"):
        tiny_qdac(asr={"depth": 3})
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        tiny_qdac(sos_id=VOCAB)
    bare = tiny_qdac(asr=None)
    assert bare.asr is None
    with pytest.raises(ConfigError, match="no ASR branch"):
        bare.transcribe(CodecEncoding(codes=torch.zeros(1, 4, 2, dtype=torch.long)))


def test_training_makes_the_codes_transcribable():
    """Mel + VQ + ASR on a repeated toy batch: the ASR loss falls below what a language model
    alone can reach (ln 2 / 5 per token: both transcripts have 4 tokens + eos and differ from
    the first one on), and greedy decoding from the *codes* gives each item its transcript."""
    model = tiny_qdac()
    wav = two_sounds()
    targets = torch.tensor([[3, 4, 5, 6], [7, 8, 9, 10]])
    lengths = torch.tensor([4, 4])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    asr = []
    for _ in range(60):
        out = model.forward_train(wav, targets, lengths)
        loss = (
            15 * model.mel_loss(out.audio, wav)
            + out.losses["asr"]
            + out.losses["codebook"]
            + 0.25 * out.losses["commitment"]
        )
        asr.append(out.losses["asr"].item())
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert asr[-1] < math.log(2) / 5 < asr[0], asr
    model.eval()
    assert model.transcribe(model.encode(wav)) == targets.tolist()


def _batch(wav: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor) -> Batch:
    return Batch(
        feats=wav[:, 0],
        feat_lengths=torch.full((wav.shape[0],), wav.shape[-1]),
        targets=targets,
        target_lengths=target_lengths,
        utt_ids=[f"u{i}" for i in range(wav.shape[0])],
    )


def test_gan_mixin_passes_the_transcripts():
    model = tiny_qdac(discriminator=TINY_DISC)
    assert list(model.optimizer_groups()) == ["discriminator", "generator"]
    batch = _batch(two_sounds(960), torch.tensor([[3, 4], [5, -1]]), torch.tensor([2, 1]))
    d = model.training_losses(batch, group="discriminator")
    g = model.training_losses(batch, group="generator")
    assert torch.isfinite(d["loss"]) and torch.isfinite(g["loss"])
    assert {"mel", "adv", "feature", "asr", "codebook", "commitment"} <= set(g)
    model.eval()
    assert "asr" in model.validation_metrics(batch)
    empty = _batch(two_sounds(960), torch.zeros(2, 0, dtype=torch.long), torch.zeros(2))
    with pytest.raises(ConfigError, match="data.tokenizer"):
        model.training_losses(empty, group="discriminator")


def test_packed_dir_drops_the_asr_branch(tmp_path):
    from safetensors import safe_open

    from audiokit.model_dir import load_model_dir, write_model_dir

    model = tiny_qdac(discriminator=TINY_DISC).eval()
    args = dict(
        encoder_dim=4, encoder_rates=[2, 4, 5, 8], decoder_dim=32, decoder_rates=[8, 5, 4, 2],
        n_codebooks=4, codebook_size=16, codebook_dim=4, quantizer_dropout=0.0,
        vocab_size=VOCAB, sos_id=SOS_EOS, eos_id=SOS_EOS, asr=TINY_ASR, discriminator=TINY_DISC,
    )  # fmt: skip
    out = write_model_dir(tmp_path / "qdac", model, "qdac", args, None, 16000, None)
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        keys = list(f.keys())  # noqa: SIM118
    assert keys and not any(k.startswith(("asr.", "discriminator.")) for k in keys)
    loaded, cfg = load_model_dir(out)
    assert isinstance(loaded, QDAC) and loaded.asr is None and loaded.discriminator is None
    assert cfg.args["asr"] is None and cfg.args["discriminator"] is None
    wav = two_sounds(1000)
    with torch.no_grad():
        a, b = model.encode(wav), loaded.encode(wav)
        assert torch.equal(a.codes, b.codes)
        torch.testing.assert_close(model.decode(a), loaded.decode(b))
