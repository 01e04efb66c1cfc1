"""Resumable md5-checked downloads against a local Range-capable HTTP server; safe tar extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from audiokit.data.corpora.download import download, extract_tar, fetch_and_extract, md5sum
from audiokit.errors import DataDirError

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes


@contextmanager
def serve(files: dict[str, bytes], honour_range: bool = True):
    """Serve `files` ({"/name": bytes}) on 127.0.0.1; yields (base_url, log of Range headers)."""
    log: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_GET(self):
            body = files.get(self.path)
            rng = self.headers.get("Range")
            log.append(rng)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if rng and honour_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_resume_after_partial_file(tmp_path):
    dest = tmp_path / "corpus.bin"
    (tmp_path / "corpus.bin.part").write_bytes(PAYLOAD[:3000])
    with serve({"/corpus.bin": PAYLOAD}) as (url, log):
        out = download(f"{url}/corpus.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert log == ["bytes=3000-"]  # only the missing tail was asked for
    assert not (tmp_path / "corpus.bin.part").exists()


def test_server_ignoring_range_restarts_cleanly(tmp_path):
    dest = tmp_path / "corpus.bin"
    (tmp_path / "corpus.bin.part").write_bytes(b"garbage that must not stay in front")
    with serve({"/corpus.bin": PAYLOAD}, honour_range=False) as (url, _):
        download(f"{url}/corpus.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_is_verified_not_refetched(tmp_path):
    dest = tmp_path / "corpus.bin"
    (tmp_path / "corpus.bin.part").write_bytes(PAYLOAD)
    with serve({"/corpus.bin": PAYLOAD}) as (url, log):
        download(f"{url}/corpus.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and log == [f"bytes={len(PAYLOAD)}-"]  # answered 416


def test_verified_file_is_kept_without_a_request(tmp_path):
    dest = tmp_path / "corpus.bin"
    dest.write_bytes(PAYLOAD)
    with serve({"/corpus.bin": PAYLOAD}) as (url, log):
        download(f"{url}/corpus.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert log == []


def test_md5_mismatch_is_an_error_and_leaves_nothing(tmp_path):
    dest = tmp_path / "corpus.bin"
    with serve({"/corpus.bin": PAYLOAD}) as (url, _):
        with pytest.raises(DataDirError, match="md5 .* does not match") as exc:
            download(f"{url}/corpus.bin", dest, md5="0" * 32, progress=False)
    assert "\n" not in str(exc.value) and str(dest) in str(exc.value)
    assert not dest.exists() and not (tmp_path / "corpus.bin.part").exists()


def test_http_error_names_url_and_status(tmp_path):
    with serve({}) as (url, _):
        with pytest.raises(DataDirError, match="HTTP 404"):
            download(f"{url}/missing.tar.gz", tmp_path / "x", progress=False)


def make_tar(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz in memory with regular files and symlinks (name -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize(
    "members,links",
    [
        ({"ok.txt": b"a", "../evil.txt": b"x"}, None),
        ({"ok.txt": b"a", "sub/../../evil.txt": b"x"}, None),
        ({"ok.txt": b"a", "/tmp/audiokit_evil_abs.txt": b"x"}, None),
        ({"ok.txt": b"a"}, {"link": "../../outside"}),
        ({"ok.txt": b"a"}, {"link": "/etc/passwd"}),
    ],
)
def test_tar_path_traversal_is_refused(tmp_path, members, links):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(make_tar(members, links))
    target = tmp_path / "deep" / "target"
    with pytest.raises(DataDirError, match="refusing to extract"):
        extract_tar(archive, target, progress=False)
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not Path("/tmp/audiokit_evil_abs.txt").exists()
    assert not (target / "ok.txt").exists()  # nothing extracted at all
    assert not (target / ".bad.tar.gz.extracted").exists()


def test_fetch_and_extract_once(tmp_path):
    data = make_tar({"top/a.txt": b"hello", "top/sub/b.txt": b"world"}, {"top/l": "a.txt"})
    with serve({"/c.tar.gz": data}) as (url, log):
        out = fetch_and_extract(f"{url}/c.tar.gz", md5(data), tmp_path, progress=False)
        assert (out / "top" / "sub" / "b.txt").read_text() == "world"
        assert (out / "top" / "l").resolve() == (out / "top" / "a.txt").resolve()
        assert md5sum(tmp_path / "c.tar.gz") == md5(data)
        fetch_and_extract(f"{url}/c.tar.gz", md5(data), tmp_path, progress=False)
    assert len(log) == 1  # the second call saw the extraction marker


def test_corrupt_archive_is_a_user_error(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataDirError, match="not a readable tar archive"):
        extract_tar(archive, tmp_path / "t", progress=False)
