"""`audiokit asr stream`: file at real-time pace, fake microphone, Ctrl-C, endpoints, errors.

A tiny random StreamingConformer (hybrid CTC + RNN-T) is packed into a model dir; its output
layers are calibrated on the test audio (centred, scaled, blank lifted) so both decoders emit a
varied mix of tokens and blanks instead of one token everywhere. Streaming results must equal
offline decoding (``asr transcribe`` / Recognizer) at the same decoder and attention context.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audiokit.asr.streaming  # noqa: F401  (registers streaming_conformer)
from audiokit.asr.inference import Recognizer
from audiokit.asr.stream_session import Done, Final, StreamSession
from audiokit.asr.stream_sources import BlockResampler, FileSource, import_sounddevice
from audiokit.audio import load, resample
from audiokit.data.kaldi_files import read_kv_file
from audiokit.data.synthetic import make_demo_data_dir
from audiokit.errors import ConfigError
from audiokit.features.cmvn import save_cmvn_npz
from audiokit.features.frontend import build_frontend
from audiokit.model_dir import write_model_dir
from audiokit.registry import build_model
from audiokit.text import CharTokenizer
from tests.conftest import run_main, shared_path

FRONTENDS = {
    "fbank": {"type": "fbank", "num_mel_bins": 40},
    "nemo_mel": {
        "type": "nemo_mel",
        "features": 40,
        "normalize": "NA",
        "window_size": 0.025,
        "n_fft": 512,
        "pad_to": 0,
    },  # fmt: skip
}
CONTEXTS = [[8, 3], [8, 1]]


def _calibrate(linear: torch.nn.Linear, z: torch.Tensor, blank: int, blank_share: float) -> None:
    """Centre and scale a head's logits over frames (std 3), then lift blank so it wins about
    `blank_share` of them."""
    mu, scale = z.mean(0), 3.0 / (z.std(0) + 1e-6)
    linear.weight.mul_(scale[:, None])
    linear.bias.copy_((linear.bias - mu) * scale)
    zn = (z - mu) * scale
    others = zn.clone()
    others[:, blank] = -float("inf")
    margin = others.max(1).values - zn[:, blank]
    linear.bias[blank] += torch.quantile(margin, blank_share)


def make_stream_model(root: Path, frontend: str, wav: Path, tok: CharTokenizer) -> Path:
    from audiokit.asr.transducer import TransducerGreedyState

    torch.manual_seed(0)
    model = build_model(
        "streaming_conformer", input_dim=40, vocab_size=tok.vocab_size, blank_id=0, d_model=32,
        num_heads=2, ff_dim=64, num_layers=2, conv_kernel=5, subsampling_channels=16,
        att_context_size=CONTEXTS, pred_hidden=32, joint_hidden=32, dropout=0.0,
        dropout_pre_encoder=0.0, dropout_att=0.0, pred_dropout=0.0, joint_dropout=0.0,
    ).eval()  # fmt: skip
    fe = build_frontend(FRONTENDS[frontend], 16000)
    x = torch.from_numpy(load(wav, sample_rate=16000, channel="mix")[0])[None]
    feats, n = fe(x, torch.tensor([x.shape[1]]))
    feats = feats[:, : int(n[0])]
    mean, std = feats[0].mean(0), feats[0].std(0) + 1e-3
    model.set_cmvn(mean.numpy(), (1.0 / std).numpy())
    save_cmvn_npz(
        root / f"cmvn_{frontend}.npz", mean.double().numpy(), (1 / std).double().numpy(), 1
    )
    with torch.no_grad():
        enc = model(feats, n)[0][0]
        _calibrate(model.ctc_out, model.ctc_out(enc), 0, 0.6)
        sos = TransducerGreedyState.initial(1, model.predictor, model.joint)
        f = model.joint.project_encoder(enc)
        z = model.joint.step(f, sos.pred_out.expand_as(f))
        _calibrate(model.joint.out, z, z.shape[1] - 1, 0.7)
    return write_model_dir(
        root / f"model_{frontend}", model, "streaming_conformer", model.config,
        FRONTENDS[frontend], 16000, tok, root / f"cmvn_{frontend}.npz", {"source": "test"},
        decoding={"method": "rnnt"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_cli")
    data = make_demo_data_dir(root / "data", num_utts=2)
    tok = CharTokenizer.train(read_kv_file(data / "text").values(), latin="char", space="keep")
    full, rate = sf.read(sorted((data / "wav").glob("*.wav"))[0], dtype="float32")
    wav = root / "short.wav"  # 2.2 s keeps the real-time runs short
    sf.write(wav, full[: int(2.2 * rate)], rate)
    wav44 = root / "short_44k.wav"
    sf.write(wav44, resample(full[: int(2.2 * rate)], rate, 44100), 44100)
    models = {name: make_stream_model(root, name, wav, tok) for name in FRONTENDS}
    return {"root": root, "wav": wav, "wav44": wav44, "models": models}


def last_json(out: str) -> dict:
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and all(isinstance(x, dict) for x in lines)
    assert set(lines[-1]) >= {"text", "token_ids"}
    assert all("text" not in x for x in lines[:-1])  # only the last line holds the whole result
    return lines[-1]


def test_realtime_file_json_equals_transcribe(setup, capsys, one_torch_thread):
    model, wav = setup["models"]["fbank"], setup["wav"]
    code, out, err = run_main(
        capsys, "asr", "stream", "--model", model, "--input", wav, "--realtime",
        "--output", "json", "--verbose",
    )  # fmt: skip
    assert code == 0, err
    got = last_json(out)
    code, out_off, err_off = run_main(
        capsys, "asr", "transcribe", "--model", model, "--output", "json", wav
    )
    assert code == 0, err_off
    ref = json.loads(out_off.strip())
    assert got["token_ids"] == ref["token_ids"] and got["text"] == ref["text"]
    assert 4 <= len(ref["token_ids"]) and len(set(ref["token_ids"])) >= 3  # a varied output
    np.testing.assert_allclose(got["token_times"], ref["token_times"], atol=1e-3)
    assert any(json.loads(x).get("partial") is not None for x in out.splitlines()[:-1])
    assert "chunk" in err and "compute" in err and "latency:" in err


@pytest.mark.parametrize("frontend", list(FRONTENDS))
@pytest.mark.parametrize("decoder", ["rnnt", "ctc"])
@pytest.mark.parametrize("ctx", CONTEXTS)
def test_stream_equals_offline(setup, capsys, frontend, decoder, ctx, one_torch_thread):
    model, wav = setup["models"][frontend], setup["wav"]
    code, out, err = run_main(
        capsys, "asr", "stream", "--model", model, "--input", wav, "--output", "json",
        "--decoder", decoder, "--att-context", f"{ctx[0]},{ctx[1]}",
    )  # fmt: skip
    assert code == 0, err
    ref = Recognizer(model, decoder=decoder, options={"att_context": ctx}).transcribe([wav])[0]
    got = last_json(out)
    assert got["token_ids"] == ref.token_ids and got["text"] == ref.text
    assert len(ref.token_ids) >= 2


class FakeInputStream:
    """sounddevice.InputStream stand-in: a thread calls back with a file's 44.1 kHz blocks."""

    samples: np.ndarray = np.zeros(0, np.float32)

    def __init__(self, samplerate, blocksize, device, channels, dtype, callback) -> None:
        assert channels == 1 and dtype == "float32" and samplerate == 44100
        self.blocksize, self.callback = blocksize, callback
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for i in range(0, len(self.samples), self.blocksize):
            if self.stopped.is_set():
                return
            block = self.samples[i : i + self.blocksize]
            block = np.pad(block, (0, self.blocksize - len(block)))[:, None]  # full blocks
            self.callback(block.copy(), self.blocksize, None, None)
            block[:] = 7.0  # the device reuses its buffer: the source must have copied it
        self.stopped.wait(0.3)
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()

    def close(self) -> None:
        pass


def fake_sounddevice(samples: np.ndarray) -> types.ModuleType:
    sd = types.ModuleType("sounddevice")
    stream = type("Stream", (FakeInputStream,), {"samples": samples})
    sd.InputStream = stream  # type: ignore[attr-defined]
    sd.query_devices = lambda device=None, kind=None: (  # type: ignore[attr-defined]
        {"name": "fake", "default_samplerate": 44100.0} if kind else "0 fake, 1 in, 0 out"
    )
    return sd


def test_mic_44k_resampled_and_ctrl_c(setup, capsys, monkeypatch, one_torch_thread):
    model, wav44 = setup["models"]["fbank"], setup["wav44"]
    samples, _ = sf.read(wav44, dtype="float32")
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(samples))
    code, out, err = run_main(
        capsys, "asr", "stream", "--model", model, "--mic", "--output", "json"
    )
    assert code == 0, err
    got = last_json(out)
    assert "listening at 44100 Hz" in err and "stopped (Ctrl-C)" in err
    # the whole file arrived (plus the zero padding of the last block), resampled to 16 kHz
    n_blocks = -(-len(samples) // 4410)
    assert got["duration"] == pytest.approx(n_blocks * 0.1, abs=0.01)
    ref = Recognizer(model).transcribe([wav44])[0]
    assert got["token_ids"][: len(ref.token_ids)] == ref.token_ids


def test_block_resampler_matches_whole_signal_resampling(setup):
    x, _ = sf.read(setup["wav44"], dtype="float32")
    r = BlockResampler(44100, 16000)
    sizes = np.random.default_rng(0).integers(1, 6000, 100)
    parts, i = [], 0
    for k in sizes:
        parts.append(r(x[i : i + k]))
        i += k
        if i >= len(x):
            break
    parts.append(r(np.zeros(0, np.float32), last=True))
    got, ref = np.concatenate(parts), resample(x, 44100, 16000)
    assert abs(len(got) - len(ref)) <= 2
    n = min(len(got), len(ref))
    np.testing.assert_allclose(got[:n], ref[:n], atol=1e-4)


def test_ctrl_c_on_realtime_file_gives_final_result(setup, one_torch_thread):
    session = StreamSession.from_model_dir(setup["models"]["fbank"])
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the test run is in the background
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    events = list(session.run(FileSource(setup["wav"], realtime=True)))
    timer.join()
    done = events[-1]
    assert isinstance(done, Done) and done.interrupted
    assert 0.5 < done.duration < 2.0  # stopped early, what arrived is decoded and flushed
    assert signal.getsignal(signal.SIGINT) is before  # handler restored


def test_endpoints_split_segments(setup, capsys, one_torch_thread):
    model, wav = setup["models"]["fbank"], setup["wav"]
    ref = Recognizer(model).transcribe([wav])[0]
    session = StreamSession.from_model_dir(model)
    session.endpoint = type(session.endpoint).from_options(0.08, 0.5)
    events = list(session.run(FileSource(wav)))
    finals = [e for e in events if isinstance(e, Final)]
    done = events[-1]
    assert len(finals) >= 3 and finals == done.segments
    assert [i for f in finals for i in f.token_ids] == done.token_ids == ref.token_ids
    ends = [f.end for f in finals]
    assert ends == sorted(ends) and all(f.end - f.start <= 0.5 + 0.6 for f in finals)
    # WeNet style: a fresh model state per segment; still one final line with everything
    code, out, err = run_main(
        capsys, "asr", "stream", "--model", model, "--input", wav, "--output", "json",
        "--endpoint-silence", "0.08", "--max-utterance", "0.5", "--reset-at-endpoint",
    )  # fmt: skip
    assert code == 0, err
    got = last_json(out)
    assert len(got["segments"]) >= 3
    joined = "".join(s["text"] for s in got["segments"])
    assert "".join(joined.split()) == "".join(got["text"].split())
    # text output (not a TTY): one line per segment (a segment's edge spaces are dropped)
    code, out, err = run_main(
        capsys, "asr", "stream", "--model", model, "--input", wav, "--max-utterance", "0.5"
    )
    assert code == 0, err
    assert "".join(out.split()) == "".join(ref.text.split()) and len(out.splitlines()) >= 2


def test_errors_are_one_line(setup, capsys, monkeypatch, tmp_path):
    model, wav = setup["models"]["fbank"], setup["wav"]
    code, _, err = run_main(capsys, "asr", "stream", "--model", model, "--mic", "--input", wav)
    assert code == 2 and "exactly one audio source" in err
    code, _, err = run_main(
        capsys, "asr", "stream", "--model", model, "--input", tmp_path / "x.wav"
    )
    assert code == 2 and "no such file" in err
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails like a missing package
    with pytest.raises(ConfigError, match=re.escape("pip install 'audiokit[mic]'")):
        import_sounddevice()
    code, _, err = run_main(capsys, "asr", "stream", "--model", model, "--mic")
    assert code == 2 and "pip install 'audiokit" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_main(
        capsys, "asr", "stream", "--model", model, "--input", wav, "--decoder", "beam"
    )
    assert code == 2 and "rnnt" in err
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(np.zeros(10, np.float32)))
    code, out, err = run_main(capsys, "asr", "stream", "--list-devices")
    assert code == 0 and "fake" in out


def test_offline_only_model_is_refused(capsys, tmp_path):
    from tests.test_model_dir import make_model_dir

    model = make_model_dir(tmp_path)
    wav = next((tmp_path / "data" / "wav").glob("*.wav"))
    code, _, err = run_main(capsys, "asr", "stream", "--model", model, "--input", wav)
    assert code == 2 and "cannot stream" in err and len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def nemo_model(tmp_path_factory) -> tuple[Path, Path]:
    """The NeMo fixture's cache-aware hybrid model, imported (fixture dir, model dir)."""
    fixture = shared_path("fixtures", "nemo_streaming")
    pytest.importorskip("audiokit.importers.nemo")
    from audiokit.importers import import_model

    dst = tmp_path_factory.mktemp("nemo") / "model"
    import_model("nemo", fixture / "model.nemo", dst)
    return fixture, dst


NEMO_WAVS = {
    "sense_0870": "sense_and_sensibility_01_austen_64kb-0870.wav",
    "goforward": "goforward.wav",
}


@pytest.mark.parametrize("audio", list(NEMO_WAVS))
def test_imported_nemo_model_streams_nemo_offline_ids(nemo_model, audio, capsys, one_torch_thread):
    """Every context and both decoders: streamed ids/text == NeMo's own offline ids/text, also
    where NeMo's streaming buffer dropped the tail or look-ahead 0 changed its first frames."""
    fixture, model = nemo_model
    expected = json.loads((fixture / "expected.json").read_text())["audio"][audio]
    wav = fixture / "inputs" / NEMO_WAVS[audio]
    # goforward: all contexts (NeMo's streaming dropped its 6-column tail); the longer
    # sense_0870: the default context and look-ahead 0 (where NeMo's streaming differs)
    contexts = ("ctx0", "ctx1", "ctx2") if audio == "goforward" else ("ctx0", "ctx2")
    for ctx in contexts:
        e = expected[ctx]
        for decoder in ("rnnt", "ctc"):
            session = StreamSession.from_model_dir(
                model, decoder=decoder, att_context=e["att_context_size"]
            )
            done = list(session.run(FileSource(wav)))[-1]
            assert done.token_ids == e[f"{decoder}_ids"], (ctx, decoder)
            assert done.text == e[f"{decoder}_text"], (ctx, decoder)
    # the CLI with the model's defaults (RNN-T, first context) gives the same final line
    code, out, err = run_main(
        capsys, "asr", "stream", "--model", model, "--input", wav, "--output", "json"
    )
    assert code == 0, err
    assert last_json(out)["token_ids"] == expected["ctx0"]["rnnt_ids"]
