"""AISHELL-1 (OpenSLR SLR33): download, verify, extract, and make train/dev/test data dirs.

Layout: `data_aishell/wav/{train,dev,test}/<spk>/<utt>.wav` and
`data_aishell/transcript/aishell_transcript_v0.8.txt` ("UTT WORD WORD ..."). The release ships
one `<spk>.tar.gz` per speaker inside `data_aishell/wav/`; those are extracted in place first.
Transcripts are joined into character strings (the word spaces removed), speaker = the folder
(e.g. S0002). Audio without a transcript and transcript lines without audio are counted,
listed and left out.
"""

from __future__ import annotations

import os
from pathlib import Path

from audiokit.data.corpora import PreparedDir, is_prepared, read_lengths, write_prepared
from audiokit.errors import ConfigError, DataDirError

BASE_URL = "https://www.openslr.org/resources/33"
# Official md5 sums (https://www.openslr.org/33/)
MD5 = {
    "data_aishell.tgz": "2f494334227864a8a8fec932999db9d8",
    "resource_aishell.tgz": "957d480a0fcac85fc18e550756f624e5",
}
SPLITS = ("train", "dev", "test")
TRANSCRIPT = Path("transcript") / "aishell_transcript_v0.8.txt"


def download_aishell(
    download_dir: str | os.PathLike, base_url: str | None = None, progress: bool = True
) -> Path:
    """Fetch (resuming), md5-check and extract both archives; returns `download_dir`."""
    from audiokit.data.corpora.download import fetch_and_extract

    base_url = base_url or BASE_URL
    for name, md5 in MD5.items():
        fetch_and_extract(f"{base_url}/{name}", md5, download_dir, progress)
    return Path(download_dir)


def corpus_dir(data_root: Path) -> Path:
    """`DATA_ROOT/data_aishell` or `DATA_ROOT` itself when it is that folder."""
    for cand in (data_root / "data_aishell", data_root):
        if (cand / "wav").is_dir() and (cand / TRANSCRIPT).is_file():
            return cand
    raise DataDirError(
        f"{data_root}: no data_aishell/wav and data_aishell/{TRANSCRIPT}; point --data-root at "
        "the folder holding data_aishell/ or use --download-dir to fetch it"
    )


def extract_speaker_archives(corpus: Path, progress: bool = True) -> int:
    """Extract the per-speaker `wav/*.tar.gz` into `wav/` (once each); returns how many."""
    from audiokit.data.corpora.download import extract_tar

    archives = sorted((corpus / "wav").glob("*.tar.gz"))
    for archive in archives:
        extract_tar(archive, corpus / "wav", progress=False)
    return len(archives)


def read_transcript(path: Path) -> dict[str, str]:
    """{utt: characters with the word spaces removed}; lines without words are dropped."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                out[parts[0]] = "".join(parts[1:])
    return out


def prepare_aishell(
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    download_dir: str | os.PathLike | None = None,
    nj: int = 8,
    overwrite: bool = False,
    progress: bool = True,
) -> list[PreparedDir]:
    """Make `OUT/{train,dev,test}`; reuses finished dirs unless `overwrite`."""
    if (data_root is None) == (download_dir is None):
        raise ConfigError("give exactly one of --data-root (existing copy) or --download-dir")
    if download_dir is not None:
        data_root = download_aishell(download_dir, progress=progress)
    out_dir = Path(out_dir)
    if all(is_prepared(out_dir / s) for s in SPLITS) and not overwrite:
        return [PreparedDir(s, out_dir / s, _count(out_dir / s), reused=True) for s in SPLITS]
    corpus = corpus_dir(Path(data_root).resolve())
    extract_speaker_archives(corpus, progress)
    texts = read_transcript(corpus / TRANSCRIPT)
    results, seen = [], set()
    for split in SPLITS:
        audio = {p.stem: p for p in sorted((corpus / "wav" / split).glob("*/*.wav"))}
        seen.update(audio)
        problems: dict[str, list[str]] = {}
        no_text = sorted(u for u in audio if u not in texts)
        if no_text:
            problems["audio without transcript"] = [str(audio[u]) for u in no_text]
        audio = {u: p for u, p in audio.items() if u in texts}
        lengths, bad = read_lengths(audio, nj=nj, progress=progress)
        if bad:
            problems["unreadable audio"] = [bad[u] for u in sorted(bad)]
        keep = sorted(u for u in audio if u in lengths)
        if not keep:
            raise DataDirError(
                f"{corpus / 'wav' / split}: no utterance has both audio and a transcript; check "
                "that data_aishell was extracted completely"
            )
        results.append(PreparedDir(split, out_dir / split, len(keep), skipped=problems))
        write_prepared(
            out_dir / split,
            wav_scp={u: str(audio[u]) for u in keep},
            text={u: texts[u] for u in keep},
            utt2spk={u: audio[u].parent.name for u in keep},
            lengths={u: lengths[u] for u in keep},
            overwrite=overwrite,
        )
    # transcript lines whose audio is in no split: reported with the first split
    no_audio = sorted(set(texts) - seen)
    if no_audio:
        results[0].skipped["transcript line without audio"] = no_audio
    return results


def _count(path: Path) -> int:
    with open(path / "wav.scp", encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())
