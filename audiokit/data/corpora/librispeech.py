"""LibriSpeech (OpenSLR SLR12): download, verify, extract, and make one Kaldi data dir per part.

Layout: `LibriSpeech/<part>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`, with the transcripts
of a chapter in `<spk>-<chapter>.trans.txt` ("UTT-ID WORDS ..."). Utterance id = file stem,
speaker = `<spk>`, wav.scp names the flac file (absolute path). A transcript line without
audio, and audio without a transcript line, are listed and left out, not fatal.
"""

from __future__ import annotations

import os
from pathlib import Path

from audiokit.data.corpora import PreparedDir, is_prepared, read_lengths, write_prepared
from audiokit.errors import ConfigError, DataDirError

BASE_URL = "https://www.openslr.org/resources/12"
# Official md5 sums (https://www.openslr.org/resources/12/md5sum.txt)
MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
PARTS = tuple(MD5)


def check_parts(parts: list[str]) -> list[str]:
    bad = [p for p in parts if p not in MD5]
    if bad or not parts:
        raise ConfigError(
            f"unknown LibriSpeech part(s) {', '.join(bad) or '(none given)'}; choose from "
            f"{', '.join(PARTS)}"
        )
    return parts


def download_librispeech(
    download_dir: str | os.PathLike, parts: list[str], base_url: str | None = None,
    progress: bool = True,
) -> Path:  # fmt: skip
    """Fetch (resuming), md5-check and extract each part into `download_dir`; returns the
    folder holding `LibriSpeech/`."""
    from audiokit.data.corpora.download import fetch_and_extract

    base_url = base_url or BASE_URL
    for part in check_parts(parts):
        fetch_and_extract(f"{base_url}/{part}.tar.gz", MD5[part], download_dir, progress)
    return Path(download_dir)


def part_dir(data_root: Path, part: str) -> Path:
    """`DATA_ROOT/LibriSpeech/PART` or `DATA_ROOT/PART` (a root pointing inside LibriSpeech/)."""
    for cand in (data_root / "LibriSpeech" / part, data_root / part):
        if cand.is_dir():
            return cand
    raise DataDirError(
        f"{data_root}: no LibriSpeech/{part} folder; point --data-root at the folder holding "
        f"LibriSpeech/ or use --download-dir to fetch it"
    )


def scan_part(root: Path) -> tuple[dict[str, str], dict[str, Path], dict[str, list[str]]]:
    """Read one part: ({utt: text}, {utt: flac path}, {problem: [ids]}) for matched utterances."""
    texts: dict[str, str] = {}
    problems: dict[str, list[str]] = {}
    for trans in sorted(root.glob("*/*/*.trans.txt")):
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) < 2:
                    problems.setdefault("empty transcript", []).append(f"{trans}:{lineno}")
                    continue
                texts[parts[0]] = " ".join(parts[1].split())
    audio = {p.stem: p for p in root.glob("*/*/*.flac")}
    no_audio = sorted(set(texts) - set(audio))
    no_text = sorted(set(audio) - set(texts))
    if no_audio:
        problems["transcript line without audio"] = no_audio
    if no_text:
        problems["audio without transcript"] = [str(audio[u]) for u in no_text]
    keep = sorted(set(texts) & set(audio))
    return {u: texts[u] for u in keep}, {u: audio[u] for u in keep}, problems


def prepare_librispeech(
    out_dir: str | os.PathLike,
    parts: list[str],
    data_root: str | os.PathLike | None = None,
    download_dir: str | os.PathLike | None = None,
    nj: int = 8,
    overwrite: bool = False,
    progress: bool = True,
) -> list[PreparedDir]:
    """Make `OUT/<part with _>` (e.g. `OUT/dev_clean`) for each part; reuses finished dirs."""
    check_parts(parts)
    if (data_root is None) == (download_dir is None):
        raise ConfigError("give exactly one of --data-root (existing copy) or --download-dir")
    if download_dir is not None:
        data_root = download_librispeech(download_dir, parts, progress=progress)
    data_root, out_dir = Path(data_root).resolve(), Path(out_dir)
    results = []
    for part in parts:
        dest = out_dir / part.replace("-", "_")
        if is_prepared(dest) and not overwrite:
            results.append(PreparedDir(part, dest, len(_keys(dest / "wav.scp")), reused=True))
            continue
        texts, audio, problems = scan_part(part_dir(data_root, part))
        lengths, bad = read_lengths(audio, nj=nj, progress=progress)
        if bad:
            problems["unreadable audio"] = [bad[u] for u in sorted(bad)]
        keep = [u for u in texts if u in lengths]
        if not keep:
            raise DataDirError(
                f"{part_dir(data_root, part)}: no utterance has both audio and a transcript; "
                "check that the part was extracted completely"
            )
        write_prepared(
            dest,
            wav_scp={u: str(audio[u]) for u in keep},
            text={u: texts[u] for u in keep},
            utt2spk={u: u.split("-", 1)[0] for u in keep},
            lengths={u: lengths[u] for u in keep},
            overwrite=overwrite,
        )
        results.append(PreparedDir(part, dest, len(keep), skipped=problems))
    return results


def _keys(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]
