"""Sizes, limits, errors and the one-line messages a user reads in the pod status."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

MAX_BYTES_ENV = "ISVC_STORAGE_MAX_BYTES"
DEFAULT_MAX_BYTES = 10 * 1024**3
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096  # bytes; the kubelet truncates there anyway
CHUNK_SIZE = 1024 * 1024
# Temporary entries inside DEST (a download, a staging directory, entries set aside while
# publishing): hidden, and removed before every attempt.
DOWNLOAD_PREFIX = ".isvc-download-"
STAGING_PREFIX = ".isvc-extract-"
PREVIOUS_PREFIX = ".isvc-previous-"
OWN_PREFIXES = (DOWNLOAD_PREFIX, STAGING_PREFIX, PREVIOUS_PREFIX)
# An all-digit directory name is a model version.
VERSION_DIR = re.compile(r"[0-9]+")


class StorageError(Exception):
    """A failure whose message is the one line the user sees in the pod status."""


def parse_size(text: str) -> int:
    """Parse a byte count, optionally with a Kubernetes-style suffix (k, M, G, T, Ki, Mi, Gi, Ti)."""
    match = re.fullmatch(r"\s*([0-9]+)\s*([kKMGT]i?)?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a size; accepted: a byte count such as 1073741824 or 1Gi, 500M")
    number, suffix = match.groups()
    multiplier = 1
    if suffix:
        power = "KMGT".index(suffix[0].upper()) + 1
        multiplier = (1024 if suffix.endswith("i") else 1000) ** power
    value = int(number) * multiplier
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive size")
    return value


def resolve_max_bytes(value: int | None = None) -> int:
    """The limit to use: the flag, else $ISVC_STORAGE_MAX_BYTES, else 10 GiB."""
    if value is not None:
        return value
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(raw)
    except ValueError as exc:
        raise StorageError(f"{MAX_BYTES_ENV}: {exc}") from None


def human_size(count: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def limit_text(max_bytes: int) -> str:
    return f"the limit of {max_bytes} bytes ({human_size(max_bytes)}; raise it with --max-bytes or {MAX_BYTES_ENV})"


def redact_uri(uri: str) -> str:
    """The URI without user-info and query: presigned URLs carry their credentials there."""
    try:
        parts = urlsplit(uri)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        if "@" in parts.netloc:
            netloc = "***@" + netloc
        query = "<redacted>" if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<unparsable URI>"


def one_line(message: str) -> str:
    return " ".join(message.split())


def write_termination_message(message: str, path: str | os.PathLike[str], *, create: bool = True) -> None:
    """Write the one-line message where the kubelet reads lastState.terminated.message.

    Errors are ignored: outside Kubernetes the path is usually not writable, and the message
    has already gone to stderr. With create=False only an existing file is written: the kubelet
    always mounts one, and a run on a workstation must not litter /dev.
    """
    data = one_line(message).encode("utf-8")[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", "ignore")
    flags = os.O_WRONLY | os.O_TRUNC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
    except OSError:
        pass
