"""Streaming feature extraction equals the offline frontend on real speech, for any chunking."""

from __future__ import annotations

import pytest
import torch

from audiokit.asr.stream_features import KaldiFbankStream, NemoMelStream, stream_features
from audiokit.errors import ConfigError, FeatureError
from audiokit.features.frontend import build_frontend
from tests.conftest import shared_path

FRONTENDS = {
    "fbank_snip": {"type": "fbank", "num_mel_bins": 80, "snip_edges": True},
    "fbank_centred": {"type": "fbank", "num_mel_bins": 40, "snip_edges": False},
    "fbank_energy": {"type": "fbank", "num_mel_bins": 23, "use_energy": True, "snip_edges": False},
    "nemo_mel": {
        "type": "nemo_mel",
        "features": 80,
        "normalize": "NA",
        "window_size": 0.025,
        "n_fft": 512,
        "pad_to": 0,
    },  # fmt: skip
}


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """(2, S): two real utterances from speech_en_dev, cut to the shorter one's length."""
    from audiokit.audio import load

    wavs = sorted(shared_path("data", "speech_en_dev", "wav").glob("*.wav"))[:2]
    x = [torch.from_numpy(load(w, sample_rate=16000, channel="mix")[0]) for w in wavs]
    n = min(len(v) for v in x)
    return torch.stack([v[:n] for v in x])


def offline(frontend, x: torch.Tensor) -> torch.Tensor:
    """(B, T_valid, D) features of each whole signal."""
    feats, frames = frontend(x, torch.full((x.shape[0],), x.shape[1]))
    assert bool((frames == frames[0]).all())
    return feats[:, : int(frames[0])]


def run_stream(frontend, x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    st = stream_features(frontend, batch_size=x.shape[0])
    outs, i = [], 0
    for k in sizes:
        outs.append(st.accept(x[:, i : i + k]))
        assert outs[-1].shape[1] >= 0
        i += k
    assert i >= x.shape[1]
    outs.append(st.finish())
    out = torch.cat(outs, 1)
    assert st.frames_out == out.shape[1]
    return out


def random_sizes(total: int, seed: int, high: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    sizes, n = [], 0
    while n < total:
        k = int(torch.randint(0, high, (1,), generator=g))  # 0-sample chunks included
        sizes.append(k)
        n += k
    return sizes


@pytest.mark.parametrize("name", list(FRONTENDS))
def test_streaming_equals_offline_random_chunks(name, speech, one_torch_thread):
    frontend = build_frontend(FRONTENDS[name], 16000)
    x = speech[:, :24000]
    ref = offline(frontend, x)
    for seed, high in [(0, 50), (1, 700), (2, 5000)]:
        got = run_stream(frontend, x, random_sizes(x.shape[1], seed, high))
        assert got.shape == ref.shape, (name, seed)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["fbank_snip", "fbank_centred", "nemo_mel"])
def test_whole_file_one_stream_and_short_signals(name, speech, one_torch_thread):
    frontend = build_frontend(FRONTENDS[name], 16000)
    x = speech[:1]
    ref = offline(frontend, x)
    got = run_stream(frontend, x, [x.shape[1]])  # a whole real file at once
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # signals around one frame: counts follow the offline frontend at the very edges
    for n in (230, 400, 401, 560):
        short = x[:, :n]
        if frontend.num_frames(n) == 0:
            assert run_stream(frontend, short, [7] * (n // 7 + 1)).shape[1] == 0
            continue
        torch.testing.assert_close(
            run_stream(frontend, short, [7] * (n // 7 + 1)), offline(frontend, short),
            atol=1e-5, rtol=1e-5,
        )  # fmt: skip


def test_buffer_stays_bounded(speech):
    frontend = build_frontend(FRONTENDS["fbank_snip"], 16000)
    st = KaldiFbankStream(frontend, batch_size=2)
    for i in range(0, speech.shape[1] - 1600, 1600):
        st.accept(speech[:, i : i + 1600])
        assert st.hist.buf.shape[1] <= 1600 + 2 * 400
    nemo = build_frontend(FRONTENDS["nemo_mel"], 16000)
    sn = NemoMelStream(nemo)
    for i in range(0, speech.shape[1] - 1600, 1600):
        sn.accept(speech[:1, i : i + 1600])
        assert sn.hist.buf.shape[1] <= 1600 + 512


def test_errors_are_one_line():
    nemo = build_frontend({"type": "nemo_mel", "normalize": "per_feature"}, 16000)
    with pytest.raises(ConfigError, match="normalize=per_feature.*cannot stream"):
        stream_features(nemo)
    st = stream_features(build_frontend(FRONTENDS["fbank_snip"], 16000), batch_size=2)
    with pytest.raises(FeatureError, match=r"\(2, S\)"):
        st.accept(torch.zeros(3, 10))
    st.finish()
    with pytest.raises(FeatureError, match="after finish"):
        st.accept(torch.zeros(2, 10))
