"""The synthetic demo corpus: a valid data dir whose audio has word-sized voiced events."""

import numpy as np

from audiokit.audio import load
from audiokit.data import DataDir, validate_data_dir
from audiokit.data.synthetic import SENTENCES, make_demo_data_dir


def test_demo_data_dir_is_valid_and_deterministic(tmp_path):
    a = make_demo_data_dir(tmp_path / "a", num_utts=4, seed=3)
    b = make_demo_data_dir(tmp_path / "b", num_utts=4, seed=3)
    assert [p for p in validate_data_dir(a) if p.level == "error"] == []
    data = DataDir.load(a)
    assert len(data.utt_ids) == 4
    for utt in data.utterances():
        assert utt.text in SENTENCES
        xa, sr = load(a / "wav" / f"{utt.utt_id}.wav")
        xb, _ = load(b / "wav" / f"{utt.utt_id}.wav")
        np.testing.assert_array_equal(xa, xb)
        assert sr == 16000
        # one voiced burst per word, separated by near-silence: count rising edges of the
        # 10 ms energy envelope
        frames = xa[: len(xa) // 160 * 160].reshape(-1, 160)
        active = (frames**2).mean(axis=1) > 1e-4
        bursts = int(np.count_nonzero(active[1:] & ~active[:-1]))
        assert bursts == len(utt.text.split())
