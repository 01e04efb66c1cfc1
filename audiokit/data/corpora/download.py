"""Resumable HTTP downloads with md5 verification, and tar extraction that stays in its folder.

A download goes to `DEST.part` first; a rerun resumes it with an HTTP `Range` request (a server
that ignores Range makes it start over). Only a complete file whose md5 matches is renamed to
`DEST`, so `DEST` existing means "downloaded and verified".
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from audiokit.errors import DataDirError

CHUNK = 1 << 20
USER_AGENT = "audiokit-corpora/1"


def md5sum(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex md5 of a file, read in chunks (a 6 GB archive never sits in memory)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _progress(enabled: bool, total: int | None, done: int, label: str):
    """A rich byte-progress bar (or None), started at `done` of `total` bytes."""
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
    )  # fmt: skip
    bar.start()
    return bar, bar.add_task(label, total=total, completed=done)


def _open(url: str, start: int, timeout: float):
    """Open `url`, asking for bytes from `start` on; returns (response, resumed?).

    A 416 (range not satisfiable) means the partial file already holds everything the server
    has: it is returned as (None, True) and the md5 check decides.
    """
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if start > 0:
        req.add_header("Range", f"bytes={start}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https only, checked)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start > 0:
            return None, True
        raise DataDirError(
            f"{url}: server answered HTTP {e.code} ({e.reason}); check the URL or try a mirror"
        ) from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataDirError(
            f"{url}: cannot connect ({reason}); check the network and rerun (a partial "
            "download resumes)"
        ) from None
    resumed = start > 0 and resp.status == 206
    if resumed and not resp.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
        resp.close()
        raise DataDirError(
            f"{url}: server resumed at the wrong offset ({resp.headers.get('Content-Range')}); "
            "delete the .part file and rerun"
        )
    return resp, resumed


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download `url` to `dest` (resuming `dest.part`), verify `md5`, return `dest`.

    An existing `dest` whose md5 matches is kept (nothing is fetched). An md5 mismatch deletes
    the bad file and raises :class:`DataDirError`, so a rerun downloads afresh.
    """
    dest = Path(dest)
    if not url.startswith(("http://", "https://")):
        raise DataDirError(f"{url}: only http(s) URLs can be downloaded; give an http(s) URL")
    if dest.is_file():
        if md5 is None or md5sum(dest) == md5:
            return dest
        dest.unlink()  # a stale or corrupt copy: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    resp, resumed = _open(url, start, timeout)
    if resp is not None:
        with resp:
            if not resumed:
                start = 0  # the server sent the whole file: start over
            length = resp.headers.get("Content-Length")
            total = start + int(length) if length and length.isdigit() else None
            bar, task = _progress(progress, total, start, dest.name)
            try:
                with open(part, "ab" if resumed else "wb") as f:
                    while block := resp.read(CHUNK):
                        f.write(block)
                        if bar is not None:
                            bar.advance(task, len(block))
            except OSError as e:  # a dropped connection: keep the part for the next run
                raise DataDirError(
                    f"{url}: download interrupted after {part.stat().st_size} bytes ({e}); "
                    "rerun to resume"
                ) from None
            finally:
                if bar is not None:
                    bar.stop()
            if total is not None and part.stat().st_size < total:
                raise DataDirError(
                    f"{url}: connection closed at {part.stat().st_size} of {total} bytes; "
                    "rerun to resume"
                )
    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink()
            raise DataDirError(
                f"{dest}: md5 {got} does not match the expected {md5}; the corrupt download "
                "was deleted: rerun to fetch it again (or check the URL/mirror)"
            )
    os.replace(part, dest)
    return dest


def _unsafe_reason(member: tarfile.TarInfo, root: Path) -> str | None:
    """Why extracting `member` under `root` would be unsafe, or None if it is fine."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        return "an absolute path or '..' component"
    if not (root / member.name).resolve().is_relative_to(root):
        return "a path outside the target folder"
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        base = root / member.name if member.issym() else root / "x"
        target = (base.parent / link).resolve() if member.issym() else (root / link).resolve()
        if link.is_absolute() or not target.is_relative_to(root):
            return f"a link to '{member.linkname}' outside the target folder"
    if member.isdev():
        return "a device file"
    return None


def extract_tar(
    archive: str | os.PathLike, target: str | os.PathLike, progress: bool = True
) -> Path:
    """Extract a (compressed) tar archive into `target`, refusing any member that would land
    outside it (absolute paths, `..`, escaping links, devices): nothing is extracted then.

    A marker `.ARCHIVE.extracted` in `target` makes a rerun skip the work.
    """
    archive, target = Path(archive), Path(target)
    marker = target / f".{archive.name}.extracted"
    if marker.is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                why = _unsafe_reason(m, root)
                if why is not None:
                    raise DataDirError(
                        f"{archive}: member '{m.name}' has {why}; refusing to extract this "
                        "archive (it may be malicious): get it from the official source"
                    )
            bar, task = _progress(progress and len(members) > 100, len(members), 0, archive.name)
            try:
                for m in members:
                    if hasattr(tarfile, "data_filter"):
                        tar.extract(m, root, filter="data")  # a second line of defence
                    else:
                        tar.extract(m, root)
                    if bar is not None:
                        bar.advance(task)
            finally:
                if bar is not None:
                    bar.stop()
    except (tarfile.TarError, EOFError) as e:
        raise DataDirError(
            f"{archive}: not a readable tar archive ({e}); delete it and download again"
        ) from None
    marker.touch()
    return target


def fetch_and_extract(
    url: str, md5: str | None, download_dir: str | os.PathLike, progress: bool = True
) -> Path:
    """Download `url` into `download_dir` (verified) and extract it there; returns the folder."""
    download_dir = Path(download_dir)
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if (download_dir / f".{name}.extracted").is_file():
        return download_dir
    archive = download(url, download_dir / name, md5=md5, progress=progress)
    return extract_tar(archive, download_dir, progress=progress)
