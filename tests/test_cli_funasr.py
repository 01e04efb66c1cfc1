"""`audiokit model import --from funasr` then `audiokit asr transcribe --output json` on the fixture."""

from __future__ import annotations

import json

from tests.conftest import run_main, shared_path


def test_import_then_transcribe_gives_funasr_ids_and_text(tmp_path, capsys, one_torch_thread):
    fixture = shared_path("fixtures", "funasr_paraformer")
    expected = json.loads((fixture / "expected.json").read_text(encoding="utf-8"))
    dst = tmp_path / "paraformer"
    code, out, err = run_main(capsys, "model", "import", "--from", "funasr", fixture / "model", dst)
    assert code == 0, err
    assert "paraformer" in out and (dst / "model.safetensors").is_file()
    wavs = sorted((fixture / "inputs").glob("*.wav"))
    code, out, err = run_main(
        capsys, "asr", "transcribe", "--model", dst, "--output", "json", *wavs
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(w) for w in wavs]
    utts = expected["utterances"]
    for row, wav in zip(rows, wavs, strict=True):
        want = utts[wav.stem]
        assert row["token_ids"] == want["token_ids"], wav.stem
        assert row["text"] == want["text"], wav.stem
    # the same import again refuses to overwrite; --overwrite replaces it
    code, _, err = run_main(capsys, "model", "import", "--from", "funasr", fixture / "model", dst)
    assert code == 2 and "already exists" in err
    code, _, err = run_main(
        capsys, "model", "import", "--from", "funasr", fixture / "model", dst, "--overwrite"
    )
    assert code == 0, err
