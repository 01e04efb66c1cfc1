"""Benchmark: audiokit's Paraformer vs FunASR's own implementation, audio -> token ids.

Both run in THIS process on the fixture model (``shared/fixtures/funasr_paraformer/model``, a
tiny member of the paraformer-zh family: SANM encoder, CIF v2, SANM decoder, LFR 7/6) and its
input wavs, CPU, 1 torch thread, batch 1, greedy decoding, dither 0. Waveforms are read once
before timing; each timed call starts from the float32 waveform and ends with the token ids:

- **audiokit**: the model imported with ``audiokit.importers.funasr.import_model`` into a temp
  dir, loaded with ``load_model_dir``; frontend (Kaldi fbank) + ``model.recognize`` (LFR, CMVN,
  encoder, CIF, decoder, argmax, specials dropped), timestamps off — the calls
  ``audiokit asr transcribe`` makes per batch.
- **FunASR**: ``AutoModel(model=DIR, frontend_conf={"dither": 0.0})``, then the model's own
  ``inference(data_in=[waveform], tokenizer=None, frontend=...)`` (WavFrontend fbank + LFR +
  CMVN, encode, predictor, decoder, argmax): FunASR's audio -> ids path without file reading or
  text post-processing. ``AutoModel.generate`` (which adds its batching loop, tokenizer and
  text post-processing) is timed too, for information.

The ids must be identical (and equal to the fixture's ``expected.json``) before anything is
timed. Implementations run round-robin ``--repeats`` times after a warm-up; the table gives the
min and median per utterance and the ratio of the minima.

FunASR is NOT an audiokit dependency: run this with a throwaway virtualenv that has it::

    python3 -m venv /tmp/funasr_venv
    /tmp/funasr_venv/bin/pip install funasr torch torchaudio soundfile pyyaml safetensors
    /tmp/funasr_venv/bin/python scripts/bench/paraformer_funasr.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from timing import time_interleaved  # scripts/bench/timing.py

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # audiokit from this checkout, whatever venv runs the script
DEFAULT_FIXTURE = ROOT.parent / "shared" / "fixtures" / "funasr_paraformer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", type=Path, default=DEFAULT_FIXTURE)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    try:
        import funasr
        from funasr import AutoModel
    except ImportError:
        raise SystemExit(
            "funasr is not installed in this Python; this benchmark compares against it. Make a "
            "throwaway venv: python3 -m venv /tmp/funasr_venv && /tmp/funasr_venv/bin/pip "
            "install funasr torch torchaudio soundfile pyyaml safetensors, then run the script "
            "with /tmp/funasr_venv/bin/python"
        ) from None
    import soundfile as sf
    import torch

    from audiokit.features.frontend import build_frontend
    from audiokit.importers.funasr import import_model
    from audiokit.model_dir import load_model_dir

    torch.set_num_threads(1)
    model_src = args.fixture / "model"
    if not model_src.is_dir():
        raise SystemExit(f"{model_src}: fixture model folder not found; pass --fixture DIR")
    expected = json.loads((args.fixture / "expected.json").read_text())
    wavs = sorted((args.fixture / "inputs").glob("*.wav"))
    waves = {}
    for path in wavs:
        data, sr = sf.read(path, dtype="float32")
        if sr != 16000:
            raise SystemExit(f"{path}: {sr} Hz; the fixture model expects 16 kHz")
        waves[path.stem] = torch.from_numpy(data)

    tmp = tempfile.TemporaryDirectory()
    dst = import_model(model_src, Path(tmp.name) / "paraformer")
    ak_model, cfg = load_model_dir(dst)
    frontend = build_frontend(cfg.frontend, cfg.sample_rate)

    am = AutoModel(
        model=str(model_src), device="cpu", ncpu=1, disable_update=True, disable_pbar=True,
        disable_log=True, log_level="ERROR", frontend_conf={"dither": 0.0},
    )  # fmt: skip
    torch.set_num_threads(1)  # AutoModel sets ncpu threads; keep both at one
    fa_model, fa_kwargs = am.model, am.kwargs

    @torch.inference_mode()
    def audiokit_ids(wave: torch.Tensor) -> list[int]:
        feats, frames = frontend(wave[None], torch.tensor([len(wave)]))
        return ak_model.recognize(feats, frames, method="greedy", times=False)[0].token_ids

    @torch.inference_mode()
    def funasr_ids(wave: torch.Tensor) -> list[int]:
        kwargs = {**fa_kwargs, "tokenizer": None, "frontend": fa_kwargs["frontend"]}
        res, _ = fa_model.inference(data_in=[wave], key=["utt"], **kwargs)
        return [int(t) for t in res[0]["token_int"]]

    def funasr_generate(wave: torch.Tensor) -> object:
        return am.generate(input=wave.numpy(), disable_pbar=True)

    for name, wave in waves.items():
        ours, theirs = audiokit_ids(wave), funasr_ids(wave)
        ref = expected.get("utterances", {}).get(name, {}).get("token_ids")
        if ours != theirs or (ref is not None and ours != ref):
            raise SystemExit(f"{name}: ids differ: audiokit {ours}, funasr {theirs}, fixture {ref}")
    print(
        f"ids identical for {len(waves)} utterances; torch {torch.__version__}, "
        f"funasr {funasr.__version__}, {torch.get_num_threads()} thread"
    )
    print("| utterance | audio s | audiokit min (median) ms | FunASR inference min (median) ms "
          "| speed-up | FunASR generate min ms (info) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    totals = {"ak": 0.0, "fa": 0.0}
    for name, wave in waves.items():
        times = time_interleaved(
            {
                "ak": lambda w=wave: audiokit_ids(w),
                "fa": lambda w=wave: funasr_ids(w),
                "gen": lambda w=wave: funasr_generate(w),
            },
            args.repeats,
        )
        ak, fa, gen = (min(times[k]) for k in ("ak", "fa", "gen"))
        totals["ak"] += ak
        totals["fa"] += fa
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(
            f"| {name} | {len(wave) / 16000:.2f} | {ak * 1e3:.2f} ({med['ak']:.2f}) | "
            f"{fa * 1e3:.2f} ({med['fa']:.2f}) | {fa / ak:.2f}x | {gen * 1e3:.2f} |"
        )
    print(f"| all (sum of minima) | | {totals['ak'] * 1e3:.2f} | {totals['fa'] * 1e3:.2f} | "
          f"{totals['fa'] / totals['ak']:.2f}x | |")  # fmt: skip
    tmp.cleanup()


if __name__ == "__main__":
    main()
