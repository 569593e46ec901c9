"""Download: streaming into DEST, limits, HTTP and network errors, redacted URLs."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from isvc_operator.storage import (
    StorageError,
    fetch_archive,
)

from .helpers import MiB, Server, free_port, own_files

# --------------------------------------------------------------------------- download


def test_fetch_streams_into_a_hidden_file_in_dest(server: Server, dest: Path) -> None:
    body = os.urandom(3 * 1024 * 1024 + 7)  # several chunks
    url = server.serve("/ok.bin", body)

    path = fetch_archive(url, dest, max_bytes=10 * MiB)

    assert path.parent == dest and path.name.startswith(".isvc-download-")
    assert path.read_bytes() == body


@pytest.mark.parametrize(
    ("mode", "fragment"),
    [
        ("normal", "Content-Length 4096 bytes is over the limit of 1000 bytes"),
        ("no-length", "more than 1000 bytes received, over the limit of 1000 bytes"),
    ],
    ids=["content-length", "streamed-count"],
)
def test_fetch_refuses_downloads_over_max_bytes(server: Server, dest: Path, mode: str, fragment: str) -> None:
    url = server.serve(f"/big-{mode}.tgz", bytes(4096), mode=mode)

    with pytest.raises(StorageError) as err:
        fetch_archive(url, dest, max_bytes=1000)

    assert str(err.value).startswith(f"download failed: GET {url}: ")
    assert fragment in str(err.value)
    assert own_files(dest) == []


def test_fetch_reports_a_truncated_download(server: Server, dest: Path) -> None:
    url = server.serve("/short.tgz", b"x" * 100, mode="truncate")

    with pytest.raises(StorageError) as err:
        fetch_archive(url, dest, max_bytes=MiB)

    assert str(err.value) == (
        f"download failed: GET {url}: connection closed after 100 of 1100 bytes (truncated download)"
    )
    assert own_files(dest) == []


@pytest.mark.parametrize(("status", "reason"), [(404, "Not Found"), (500, "Internal Server Error"), (403, "Forbidden")])
def test_fetch_reports_http_errors(server: Server, dest: Path, status: int, reason: str) -> None:
    url = server.serve(f"/status-{status}.tar.gz", b"<Error/>", status=status)

    with pytest.raises(StorageError) as err:
        fetch_archive(url, dest, max_bytes=MiB)

    assert str(err.value) == f"download failed: GET {url} returned {status} {reason}"
    assert own_files(dest) == []


def test_fetch_reports_connection_refused(dest: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/m.tgz"

    with pytest.raises(StorageError) as err:
        fetch_archive(url, dest, max_bytes=MiB)

    assert str(err.value) == f"download failed: GET {url}: Connection refused"


@pytest.mark.parametrize("uri", ["s3://bucket/model.tgz", "file:///etc/passwd", "gs://b/m.tgz", "model.tgz"])
def test_fetch_refuses_other_schemes(dest: Path, uri: str) -> None:
    with pytest.raises(StorageError, match=r"unsupported URI scheme .* accepted: http://, https://"):
        fetch_archive(uri, dest, max_bytes=MiB)


def test_messages_redact_credentials_in_the_url(server: Server, dest: Path) -> None:
    url = server.serve("/private.tgz", b"", status=403)
    port = urlsplit(url).port
    signed = f"http://user:hunter2@127.0.0.1:{port}/private.tgz?X-Amz-Signature=topsecret"

    with pytest.raises(StorageError) as err:
        fetch_archive(signed, dest, max_bytes=MiB)

    assert str(err.value) == (
        f"download failed: GET http://***@127.0.0.1:{port}/private.tgz?<redacted> returned 403 Forbidden"
    )
    assert "hunter2" not in str(err.value) and "topsecret" not in str(err.value)
