"""--cache-dir for http(s) archives: keyed by the server's ETag; a hit makes no GET, a new ETag
downloads again, and a server with neither ETag nor Last-Modified is fetched without the cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from isvc_operator.storage import fetch_model
from tests.storage.conftest import tree
from tests.storage.test_s3 import _tar


class _Archive(BaseHTTPRequestHandler):
    body = b""
    etag: str | None = None
    gets = 0

    def _head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        if self.etag:
            self.send_header("ETag", self.etag)
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._head()

    def do_GET(self) -> None:  # noqa: N802
        type(self).gets += 1
        self._head()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def archive_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Archive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Archive.gets = 0
    yield f"http://127.0.0.1:{server.server_port}/m.tgz"
    server.shutdown()
    server.server_close()


def test_http_cache_by_etag(archive_url: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _Archive.body, _Archive.etag = _tar({"1/saved_model.pb": b"v1"}), '"v1"'
    first = fetch_model(archive_url, tmp_path / "a", cache_dir=cache, layout="tensorflow")
    assert "downloaded into the cache" in first and _Archive.gets == 1
    second = fetch_model(archive_url, tmp_path / "b", cache_dir=cache, layout="tensorflow")
    assert "from cache" in second and _Archive.gets == 1, (second, _Archive.gets)
    assert tree(tmp_path / "b") == {"1/saved_model.pb": b"v1"}

    _Archive.body, _Archive.etag = _tar({"1/saved_model.pb": b"v2"}), '"v2"'
    third = fetch_model(archive_url, tmp_path / "c", cache_dir=cache)
    assert "downloaded into the cache" in third and _Archive.gets == 2
    assert tree(tmp_path / "c") == {"1/saved_model.pb": b"v2"}


def test_http_without_version_headers_is_not_cached(archive_url: str, tmp_path: Path) -> None:
    _Archive.body, _Archive.etag = _tar({"1/saved_model.pb": b"plain"}), None
    summary = fetch_model(archive_url, tmp_path / "a", cache_dir=tmp_path / "cache")
    assert "not cached: the server sends no ETag or Last-Modified" in summary
    assert tree(tmp_path / "a") == {"1/saved_model.pb": b"plain"}
    assert not (tmp_path / "a" / "1").is_symlink()
