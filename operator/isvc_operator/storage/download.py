"""Download: stream an http(s) URL into a hidden file inside DEST, held to the size limit."""

from __future__ import annotations

import os
import re
import tempfile
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import requests

from .errors import CHUNK_SIZE, DOWNLOAD_PREFIX, StorageError, limit_text, redact_uri

SUPPORTED_SCHEMES = ("http", "https")
# (connect, read) seconds: a read timeout is per socket read, not for the whole download.
DEFAULT_TIMEOUT = (30.0, 300.0)


def _describe_request_error(exc: requests.RequestException, timeout: tuple[float, float]) -> str:
    """The useful part of a requests error, which otherwise nests three exception reprs deep."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"connection timed out after {timeout[0]:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout) or "Read timed out" in text:
        return f"no data received for {timeout[1]:g} s (read timeout)"
    if isinstance(exc, requests.exceptions.SSLError):
        match = re.search(r"SSL: [A-Z_]+\] ([^()'\"]+)", text)
        return "TLS error: " + (match.group(1).strip() if match else text)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip()
    return f"{type(exc).__name__}: {text}"


def fetch_archive(
    uri: str,
    dest: str | os.PathLike[str],
    *,
    max_bytes: int,
    session: requests.Session | None = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
) -> Path:
    """Stream URI into a hidden temporary file inside DEST and return its path.

    Streamed so a 10 GiB model never sits in memory; written inside DEST because that is the
    only writable place in the init container besides $TMPDIR, which may be small.
    """
    shown = redact_uri(uri)
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise StorageError(f"download failed: {shown} is not a valid URI: {exc}") from None
    if parts.scheme.lower() not in SUPPORTED_SCHEMES:
        raise StorageError(
            f"download failed: unsupported URI scheme {parts.scheme or '(none)'!r} in {shown}; "
            f"accepted: {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}"
        )
    if not parts.hostname:
        raise StorageError(f"download failed: {shown} has no host")
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=DOWNLOAD_PREFIX, suffix=".part", dir=dest)
    except OSError as exc:
        raise StorageError(f"download failed: cannot write into {dest}: {exc.strerror or exc}") from None
    path = Path(name)
    own_session = session is None
    session = session or requests.Session()
    received = 0
    length: int | None = None
    resp: requests.Response | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            # identity: we want the archive's bytes, and Content-Length to count them.
            with session.get(uri, stream=True, timeout=timeout, headers={"Accept-Encoding": "identity"}) as resp:
                if resp.status_code >= 400:
                    reason = resp.reason or _status_phrase(resp.status_code)
                    raise StorageError(f"download failed: GET {shown} returned {resp.status_code} {reason}".rstrip())
                header = resp.headers.get("Content-Length", "")
                length = int(header) if header.strip().isdigit() else None
                if length is not None and length > max_bytes:
                    raise StorageError(
                        f"download failed: GET {shown}: Content-Length {length} bytes is over {limit_text(max_bytes)}"
                    )
                encoded = resp.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
                for chunk in resp.iter_content(CHUNK_SIZE):
                    received += len(chunk)
                    if received > max_bytes:
                        raise StorageError(
                            f"download failed: GET {shown}: more than {max_bytes} bytes received, "
                            f"over {limit_text(max_bytes)}"
                        )
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        raise StorageError(
                            f"download failed: writing {path} after {received - len(chunk)} bytes: "
                            f"{exc.strerror or exc}"
                        ) from None
                # urllib3 normally raises on a short body already; this covers servers it trusts.
                if length is not None and not encoded and received != length:
                    raise StorageError(
                        f"download failed: GET {shown}: received {received} of {length} bytes (truncated download)"
                    )
    except StorageError:
        path.unlink(missing_ok=True)
        raise
    except requests.exceptions.ChunkedEncodingError:
        path.unlink(missing_ok=True)
        if resp is not None:  # iter_content drops the partial chunk; the wire count keeps it
            received = max(received, resp.raw.tell())
        expected = f" of {length}" if length is not None else ""
        raise StorageError(
            f"download failed: GET {shown}: connection closed after {received}{expected} bytes (truncated download)"
        ) from None
    except requests.RequestException as exc:
        path.unlink(missing_ok=True)
        raise StorageError(f"download failed: GET {shown}: {_describe_request_error(exc, timeout)}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        if own_session:
            session.close()
    return path


def _status_phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""
