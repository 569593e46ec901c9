"""Storage init container: download a model archive and unpack it into the model volume.

Usage (the operator puts this in the predictor pod's init container)::

    python -m isvc_operator.storage fetch URI DEST [--layout tensorflow|pytorch]
        [--max-bytes N] [--termination-log PATH]

URI is an ``http://`` or ``https://`` URL of a tar.gz/tgz, tar.bz2, tar.xz, tar or zip archive;
DEST is the (emptyDir) model volume. The container's root filesystem is read-only, so the
download is streamed to a hidden temporary file inside DEST (``.isvc-download-*``), unpacked into a
hidden staging directory inside DEST (``.isvc-extract-*``) and only then moved into place: DEST
must have room for the archive plus its content, and a failed run leaves no half-unpacked model
behind. Leftovers of a killed earlier run are removed first, so the kubelet's retries start clean.

Archive type is decided by content (magic bytes), never by file name or Content-Type, because
model URLs often lie (a zip named ``.tgz``, ``application/octet-stream`` for everything).

Single top-level directory rule: when every member sits under one directory ``foo/`` and ``foo``
is *not* all digits, ``foo/`` is stripped and its content lands directly in DEST
(``tar czf m.tgz mymodel`` -> ``DEST/1/saved_model.pb``). An all-digit top directory is a model
version directory and is kept (``tar czf m.tgz 0001`` -> ``DEST/0001/saved_model.pb``), since
stripping it would lose the version the servers need. Only one level is stripped; leading
``./`` is ignored and ``__MACOSX/`` (Finder zip metadata) is skipped.

Refused (the run fails, nothing is written to DEST): absolute member paths, ``..`` components,
symlinks and hardlinks whose target leaves DEST (checked on the path after stripping, and again
on the real resolved path once all links exist), members inside a symlink, device files, fifos,
encrypted zip members, more than ``MAX_MEMBERS`` members, and data over ``--max-bytes``
(default ``$ISVC_STORAGE_MAX_BYTES``, else 10 GiB): the download (Content-Length and the bytes
actually streamed) and the uncompressed total (the sizes members declare, and the bytes actually
written) are each held to that limit, which stops zip and gzip bombs. Query strings and
user-info are redacted from URLs in messages: presigned URLs carry credentials there.

Layout checks (``--layout``; none without it), after unpacking:

* ``tensorflow``: at least one all-digit version directory holding ``saved_model.pb``
  (``saved_model.pbtxt`` also counts).
* ``pytorch``: at least one all-digit version directory holding ``model.pt`` (TorchScript),
  a ``*.pt2`` file (exported program), or ``model.py`` plus a state dict (``model.pth``,
  ``model.pt`` or ``*.bin``). The same files directly in DEST are accepted too: the server
  serves them as version 1, and the summary says so.

Exit status: 0 on success (one summary line on stdout), 1 on any failure, 2 on bad arguments.
On failure one line goes to stderr and, truncated to 4096 bytes, to the termination-message file
(``--termination-log``; default ``/dev/termination-log``, written only if it exists, as it does
in a pod) so it shows up in the pod's ``lastState.terminated.message``.
Custom CAs: requests honours ``REQUESTS_CA_BUNDLE``.
Known limit: tar extended (pax/GNU long-name) headers are read into memory by ``tarfile``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import lzma
import os
import posixpath
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import traceback
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import IO, NoReturn
from urllib.parse import urlsplit, urlunsplit

import requests

SUPPORTED_SCHEMES = ("http", "https")
# Archive kinds detect_archive_kind() can return, i.e. everything extract_archive() unpacks.
ARCHIVE_FORMATS = ("tar.gz", "tar.bz2", "tar.xz", "tar", "zip")
LAYOUTS = ("tensorflow", "pytorch")

MAX_BYTES_ENV = "ISVC_STORAGE_MAX_BYTES"
DEFAULT_MAX_BYTES = 10 * 1024**3
# A model has tens of files; a million empty members is a header bomb, not a model.
MAX_MEMBERS = 100_000
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096  # bytes; the kubelet truncates there anyway
# (connect, read) seconds: a read timeout is per socket read, not for the whole download.
DEFAULT_TIMEOUT = (30.0, 300.0)
CHUNK_SIZE = 1024 * 1024

_DOWNLOAD_PREFIX = ".isvc-download-"
_STAGING_PREFIX = ".isvc-extract-"
_OWN_PREFIXES = (_DOWNLOAD_PREFIX, _STAGING_PREFIX)
_VERSION_DIR = re.compile(r"[0-9]+")
_HEAD_SIZE = 512

# (kind, offset, magic); "ustar" covers both POSIX and GNU tar headers.
_MAGIC = (
    ("tar.gz", 0, b"\x1f\x8b"),
    ("tar.bz2", 0, b"BZh"),
    ("tar.xz", 0, b"\xfd7zXZ\x00"),
    ("zip", 0, b"PK\x03\x04"),
    ("zip", 0, b"PK\x05\x06"),  # an empty zip is still a zip
    ("tar", 257, b"ustar"),
)
_ACCEPTED_MAGIC = (
    "tar.gz/tgz (1f 8b), tar.bz2 (42 5a 68), tar.xz (fd 37 7a 58 5a 00), "
    "zip (50 4b 03 04), tar ('ustar' at offset 257)"
)
# Formats people do upload, named so the error says what they sent.
_KNOWN_UNSUPPORTED = (
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data, which Python's tarfile cannot read: recompress as tar.gz"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)
_TAR_MODES = {"tar.gz": "r:gz", "tar.bz2": "r:bz2", "tar.xz": "r:xz", "tar": "r:"}
_SPECIAL_TAR_TYPES = {
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
    tarfile.FIFOTYPE: "fifo",
}
# What the decompressors and archive readers raise on damaged or truncated input.
_READ_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,  # gzip.BadGzipFile, bz2 "Invalid data stream"
    NotImplementedError,  # zip compression methods Python lacks (deflate64, ...)
    RuntimeError,
    ValueError,
)

_TF_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_SAFE_MEMBERS = "accepted: regular files, directories, and links that stay inside the destination"


class StorageError(Exception):
    """A failure whose message is the one line the user sees in the pod status."""


@dataclass(frozen=True)
class ExtractResult:
    """What extract_archive() put into DEST."""

    kind: str  # one of ARCHIVE_FORMATS
    files: int  # regular files, hardlinks included
    symlinks: int
    bytes: int  # uncompressed bytes written
    stripped: str | None  # the single top-level directory that was stripped, if any


@dataclass
class _Member:
    """An archive member reduced to what extraction needs, readers' quirks removed."""

    name: str  # normalized relative path ("a/b"); "" is the archive root
    kind: str  # "file" | "dir" | "symlink" | "hardlink"
    size: int
    mode: int
    link: str  # symlink target as stored; hardlink target as a normalized member path
    open: Callable[[], IO[bytes]] | None = None


# --------------------------------------------------------------------------- sizes and messages


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


def _human(count: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _limit(max_bytes: int) -> str:
    return f"the limit of {max_bytes} bytes ({_human(max_bytes)}; raise it with --max-bytes or {MAX_BYTES_ENV})"


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


def _one_line(message: str) -> str:
    return " ".join(message.split())


def write_termination_message(message: str, path: str | os.PathLike[str], *, create: bool = True) -> None:
    """Write the one-line message where the kubelet reads lastState.terminated.message.

    Errors are ignored: outside Kubernetes the path is usually not writable, and the message
    has already gone to stderr. With create=False only an existing file is written: the kubelet
    always mounts one, and a run on a workstation must not litter /dev.
    """
    data = _one_line(message).encode("utf-8")[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", "ignore")
    flags = os.O_WRONLY | os.O_TRUNC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
    except OSError:
        pass


# --------------------------------------------------------------------------- download


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
        fd, name = tempfile.mkstemp(prefix=_DOWNLOAD_PREFIX, suffix=".part", dir=dest)
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
                        f"download failed: GET {shown}: Content-Length {length} bytes is over {_limit(max_bytes)}"
                    )
                encoded = resp.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
                for chunk in resp.iter_content(CHUNK_SIZE):
                    received += len(chunk)
                    if received > max_bytes:
                        raise StorageError(
                            f"download failed: GET {shown}: more than {max_bytes} bytes received, "
                            f"over {_limit(max_bytes)}"
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


# --------------------------------------------------------------------------- archive reading


def detect_archive_kind(head: bytes) -> str:
    """Name the archive format (one of ARCHIVE_FORMATS) from the first 512 bytes of content."""
    for kind, offset, magic in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    if not head:
        raise StorageError("unsupported archive: the downloaded content is empty (0 bytes)")
    sample = head[:16]
    hex_bytes = " ".join(f"{b:02x}" for b in sample)
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in sample)
    note = ""
    for magic, what in _KNOWN_UNSUPPORTED:
        if head.startswith(magic):
            note = f", which is {what}"
    if not note and head.lstrip()[:1] == b"<":
        note = ", which looks like an HTML or XML page (an error or login page instead of the archive?)"
    raise StorageError(
        f"unsupported archive: content starts with {hex_bytes} ({text!r}){note}; accepted by content: {_ACCEPTED_MAGIC}"
    )


def _member_path(raw: str, dest: Path) -> str:
    """Normalize a member name, refusing anything that could land outside DEST."""
    if "\x00" in raw:
        raise StorageError(f"archive refused: member {raw!r} has a NUL byte in its name")
    if raw.startswith("/") or re.match(r"[A-Za-z]:", raw):
        raise StorageError(
            f"archive refused: member {raw!r} has an absolute path; accepted: relative paths such as 1/saved_model.pb"
        )
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise StorageError(
            f"archive refused: member {raw!r} contains '..' (path traversal); members must stay inside {dest}"
        )
    return "/".join(parts)


def _scan_tar(archive: tarfile.TarFile, dest: Path, max_bytes: int) -> list[_Member]:
    """List tar members, checking sizes as headers arrive so a bomb is never decompressed."""
    members: list[_Member] = []
    declared = 0
    for info in archive:  # lazily: each header is read only after the previous one passed
        if len(members) >= MAX_MEMBERS:
            raise StorageError(f"archive refused: more than {MAX_MEMBERS} members")
        name = _member_path(info.name, dest)
        if info.isreg():
            kind = "file"
        elif info.isdir():
            kind = "dir"
        elif info.issym():
            kind = "symlink"
        elif info.islnk():
            kind = "hardlink"
        else:
            what = _SPECIAL_TAR_TYPES.get(info.type, f"member of unsupported tar type {info.type!r}")
            raise StorageError(f"archive refused: member {info.name!r} is a {what}; {_SAFE_MEMBERS}")
        if kind == "file":
            declared += info.size
            if declared > max_bytes:
                raise StorageError(
                    f"archive refused: members declare more than {max_bytes} bytes uncompressed "
                    f"(at {info.name!r}), over {_limit(max_bytes)}"
                )
        members.append(
            _Member(name, kind, info.size, info.mode, info.linkname, functools.partial(archive.extractfile, info))
        )
    return members


def _scan_zip(archive: zipfile.ZipFile, dest: Path, max_bytes: int) -> list[_Member]:
    """List zip members from the central directory; unix mode bits tell links and devices apart."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise StorageError(f"archive refused: {len(infos)} members, more than {MAX_MEMBERS}")
    members: list[_Member] = []
    declared = 0
    for info in infos:
        raw = info.filename.replace("\\", "/")  # Windows zip tools write backslashes
        name = _member_path(raw, dest)
        mode = info.external_attr >> 16
        if info.flag_bits & 0x1:
            raise StorageError(f"archive refused: member {raw!r} is encrypted; accepted: unencrypted zip members")
        if raw.endswith("/") or stat.S_ISDIR(mode):
            kind = "dir"
        elif stat.S_ISLNK(mode):
            kind = "symlink"
        elif stat.S_IFMT(mode) in (0, stat.S_IFREG):
            kind = "file"
        else:
            what = "device file" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "fifo or socket"
            raise StorageError(f"archive refused: member {raw!r} is a {what}; {_SAFE_MEMBERS}")
        link = ""
        if kind == "symlink":
            if info.file_size > 4096:
                raise StorageError(f"archive refused: symlink {raw!r} has a {info.file_size}-byte target")
            link = archive.read(info).decode("utf-8")
        elif kind == "file":
            declared += info.file_size
            if declared > max_bytes:
                raise StorageError(
                    f"archive refused: members declare more than {max_bytes} bytes uncompressed "
                    f"(at {raw!r}), over {_limit(max_bytes)}"
                )
        members.append(_Member(name, kind, info.file_size, mode, link, functools.partial(archive.open, info)))
    return members


def _single_top_dir(members: list[_Member]) -> str | None:
    """The top-level directory to strip, per the rule in the module docstring, or None."""
    names = [m.name for m in members if m.name]
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) != 1:
        return None
    top = tops.pop()
    if _VERSION_DIR.fullmatch(top):
        return None  # a version directory: the servers need it
    if any(m.name == top and m.kind != "dir" for m in members):
        return None  # a lone file or link, not a directory
    if not any("/" in name for name in names):
        return None  # an empty directory: nothing to lift out
    return top


def _plan(members: list[_Member], dest: Path) -> tuple[dict[str, _Member], str | None]:
    """Final DEST-relative paths for every member, with every link and nesting checked."""
    members = [m for m in members if m.name.split("/", 1)[0] != "__MACOSX"]
    top = _single_top_dir(members)

    def strip(name: str) -> str | None:
        if top is None:
            return name
        if name == top:
            return ""
        return name[len(top) + 1 :] if name.startswith(top + "/") else None

    plan: dict[str, _Member] = {}
    for member in members:
        name = strip(member.name)
        if not name:
            if member.kind != "dir":
                raise StorageError(f"archive refused: a {member.kind} member has an empty path")
            continue  # the archive root itself ("./")
        plan[name] = dataclasses.replace(member, name=name)  # a later duplicate wins, as with tar

    for name, member in plan.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = plan.get("/".join(parts[:depth]))
            if parent is not None and parent.kind != "dir":
                raise StorageError(
                    f"archive refused: member {name!r} is inside {parent.name!r}, which is a {parent.kind}; "
                    f"{_SAFE_MEMBERS}"
                )
        if member.kind == "symlink":
            target = member.link
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            escapes = resolved == ".." or resolved.startswith("../")
            if not target or "\x00" in target or target.startswith("/") or escapes:
                raise StorageError(
                    f"archive refused: symlink {name!r} -> {target!r} points outside {dest}; {_SAFE_MEMBERS}"
                )
        elif member.kind == "hardlink":
            raw = member.link
            if not raw or "\x00" in raw or raw.startswith("/") or ".." in raw.split("/"):
                raise StorageError(
                    f"archive refused: hardlink {name!r} -> {raw!r} points outside {dest}; {_SAFE_MEMBERS}"
                )
            target = strip(_member_path(raw, dest))
            linked = plan.get(target) if target else None
            if linked is None or linked.kind not in ("file", "hardlink"):
                raise StorageError(
                    f"archive refused: hardlink {name!r} -> {raw!r} does not point to a regular file "
                    f"in the archive; {_SAFE_MEMBERS}"
                )
            member.link = target
    return plan, top


class _Writer:
    """Writes planned members into the staging directory, counting every byte against the limit."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.written = 0

    def _fail_write(self, name: str, exc: OSError) -> StorageError:
        return StorageError(f"extract failed: writing {name}: {exc.strerror or exc}")

    def directory(self, name: str) -> None:
        try:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail_write(name, exc) from None

    def file(self, member: _Member) -> None:
        assert member.open is not None
        self.directory(posixpath.dirname(member.name))
        path = self.root / member.name
        mode = 0o755 if member.mode & 0o111 else 0o644
        try:
            # O_EXCL | O_NOFOLLOW: never write through anything already there.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        except OSError as exc:
            raise self._fail_write(member.name, exc) from None
        member_bytes = 0
        with os.fdopen(fd, "wb") as out, member.open() as source:
            while True:
                chunk = source.read(CHUNK_SIZE)
                if not chunk:
                    break
                member_bytes += len(chunk)
                self.written += len(chunk)
                if member_bytes > member.size:
                    raise StorageError(
                        f"archive refused: member {member.name!r} holds more than the {member.size} bytes it declares"
                    )
                if self.written > self.max_bytes:
                    raise StorageError(
                        f"archive refused: more than {self.max_bytes} bytes uncompressed "
                        f"(while writing {member.name!r}), over {_limit(self.max_bytes)}"
                    )
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise self._fail_write(member.name, exc) from None
            try:
                os.fchmod(out.fileno(), mode)  # explicit: the umask must not hide files from the server
            except OSError as exc:
                raise self._fail_write(member.name, exc) from None

    def hardlink(self, member: _Member) -> None:
        self.directory(posixpath.dirname(member.name))
        source, path = self.root / member.link, self.root / member.name
        try:
            os.link(source, path)  # source is a regular file written above, never a link
            return
        except OSError:
            pass  # some volumes have no hardlinks: copy instead, and count the copy
        try:
            self.written += source.stat().st_size
        except OSError as exc:
            raise self._fail_write(member.name, exc) from None
        if self.written > self.max_bytes:
            raise StorageError(
                f"archive refused: more than {self.max_bytes} bytes uncompressed "
                f"(while writing {member.name!r}), over {_limit(self.max_bytes)}"
            )
        try:
            shutil.copyfile(source, path, follow_symlinks=False)
        except OSError as exc:
            raise self._fail_write(member.name, exc) from None

    def symlink(self, member: _Member) -> None:
        self.directory(posixpath.dirname(member.name))
        try:
            os.symlink(member.link, self.root / member.name)
        except OSError as exc:
            raise self._fail_write(member.name, exc) from None


def _write_plan(plan: dict[str, _Member], staging: Path, kind: str, max_bytes: int, dest: Path) -> ExtractResult:
    """Directories, then files, then links: no file is ever written through a link."""
    writer = _Writer(staging, max_bytes)
    by_kind: dict[str, list[_Member]] = {"dir": [], "file": [], "hardlink": [], "symlink": []}
    for member in plan.values():
        by_kind[member.kind].append(member)
    for member in by_kind["dir"]:
        writer.directory(member.name)
    for member in by_kind["file"]:
        writer.file(member)
    for member in by_kind["hardlink"]:
        writer.hardlink(member)
    for member in by_kind["symlink"]:
        writer.symlink(member)
    # The textual check cannot see through chains (a/l -> .., b -> a/l/..): resolve for real.
    root = os.path.realpath(staging)
    for member in by_kind["symlink"]:
        real = os.path.realpath(staging / member.name)
        if os.path.commonpath([real, root]) != root:
            raise StorageError(
                f"archive refused: symlink {member.name!r} -> {member.link!r} resolves outside {dest}; {_SAFE_MEMBERS}"
            )
    for directory, _subdirs, _files in os.walk(staging):
        os.chmod(directory, 0o755)
    return ExtractResult(
        kind=kind,
        files=len(by_kind["file"]) + len(by_kind["hardlink"]),
        symlinks=len(by_kind["symlink"]),
        bytes=writer.written,
        stripped=None,
    )


def _publish(staging: Path, dest: Path) -> None:
    """Move the staged tree into DEST, replacing same-named entries from an earlier attempt."""
    for child in sorted(staging.iterdir()):
        target = dest / child.name
        try:
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.is_dir():
                shutil.rmtree(target)
            os.replace(child, target)
        except OSError as exc:
            raise StorageError(f"extract failed: moving {child.name} into {dest}: {exc.strerror or exc}") from None


def extract_archive(path: str | os.PathLike[str], dest: str | os.PathLike[str], *, max_bytes: int) -> ExtractResult:
    """Unpack the archive at PATH into DEST safely; DEST is untouched if anything is refused."""
    path, dest = Path(path), Path(dest)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_SIZE)
    except OSError as exc:
        raise StorageError(f"extract failed: cannot read {path}: {exc.strerror or exc}") from None
    kind = detect_archive_kind(head)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=dest))
    except OSError as exc:
        raise StorageError(f"extract failed: cannot write into {dest}: {exc.strerror or exc}") from None
    try:
        stage = "open"
        try:
            if kind == "zip":
                with zipfile.ZipFile(path) as archive:
                    stage = "read"
                    plan, top = _plan(_scan_zip(archive, dest, max_bytes), dest)
                    result = _write_plan(plan, staging, kind, max_bytes, dest)
            else:
                with tarfile.open(path, mode=_TAR_MODES[kind]) as archive:
                    stage = "read"
                    plan, top = _plan(_scan_tar(archive, dest, max_bytes), dest)
                    result = _write_plan(plan, staging, kind, max_bytes, dest)
        except _READ_ERRORS as exc:
            detail = str(exc) or type(exc).__name__
            hint = ""
            if stage == "open" and kind != "tar" and kind != "zip" and isinstance(exc, tarfile.ReadError):
                hint = f" (a {kind} must hold a tar archive; a single compressed file is not supported)"
            raise StorageError(f"archive corrupt: cannot read {kind} archive: {detail}{hint}") from None
        _publish(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dataclasses.replace(result, stripped=top)


# --------------------------------------------------------------------------- layout checks


def _visible_entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith(_OWN_PREFIXES))


def _listing(directory: Path, limit: int = 12) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in _visible_entries(directory)]
    if not names:
        return "nothing (empty)"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _version_dirs(dest: Path) -> list[Path]:
    dirs = [p for p in _visible_entries(dest) if p.is_dir() and _VERSION_DIR.fullmatch(p.name)]
    return sorted(dirs, key=lambda p: int(p.name))


def _find_deeper(dest: Path, matches: Callable[[str], bool], min_depth: int, max_depth: int = 5) -> str | None:
    """The first file matching, between min_depth and max_depth levels down, to point at it."""
    for directory, subdirs, files in os.walk(dest):
        subdirs.sort()
        rel = Path(directory).relative_to(dest)
        depth = len(rel.parts)
        if depth >= max_depth:
            subdirs.clear()
        if depth >= min_depth:
            for name in sorted(files):
                if matches(name):
                    return (rel / name).as_posix()
    return None


def _tensorflow(dest: Path) -> str:
    versions = _version_dirs(dest)
    good = [v for v in versions if any((v / name).is_file() for name in _TF_MODEL_FILES)]
    if good:
        label = "version" if len(good) == 1 else "versions"
        summary = f"layout tensorflow: {label} {', '.join(v.name for v in good)} with saved_model.pb"
        empty = [v.name + "/" for v in versions if v not in good]
        if empty:
            summary += f" (warning: no saved_model.pb in {', '.join(empty)})"
        return summary
    if any((dest / name).is_file() for name in _TF_MODEL_FILES):
        hint = "put them in a directory named 1/"
    elif versions:
        hint = f"{versions[0].name}/ holds: {_listing(versions[0])}"
    elif deep := _find_deeper(dest, lambda n: n in _TF_MODEL_FILES, min_depth=2):
        hint = (
            f"saved_model.pb is at {deep}: the archive must hold 1/saved_model.pb, "
            "optionally under one top-level directory"
        )
    else:
        hint = "expected e.g. 1/saved_model.pb and 1/variables/"
    raise StorageError(
        f"layout tensorflow: no numeric version directory with saved_model.pb under {dest}; "
        f"found: {_listing(dest)} ({hint})"
    )


def _is_state_dict(name: str) -> bool:
    return name in ("model.pth", "model.pt") or name.endswith(".bin")


def _pytorch_model(directory: Path) -> str | None:
    """Describe the servable PyTorch model in DIRECTORY, or None."""
    files = sorted(p.name for p in directory.iterdir() if p.is_file())
    state = [name for name in files if _is_state_dict(name)]
    if "model.py" in files and state:
        return f"model.py + state dict {state[0]}"
    if "model.pt" in files:
        return "TorchScript model.pt"
    exported = [name for name in files if name.endswith(".pt2")]
    if exported:
        return f"exported program {exported[0]}"
    return None


def _pytorch_hint(dest: Path, versions: list[Path]) -> str:
    for directory in [*versions, dest]:
        prefix = "" if directory == dest else directory.name + "/"
        files = {p.name for p in directory.iterdir() if p.is_file()}
        state = sorted(name for name in files if _is_state_dict(name))
        if "model.py" in files and not state:
            return f"{prefix}model.py needs a state-dict file next to it: model.pth, model.pt or *.bin"
        if state and "model.py" not in files:
            return (
                f"{prefix}{state[0]} is a state dict: add model.py defining the model next to it, "
                "or save a TorchScript model.pt"
            )
    def model_file(name: str) -> bool:
        return name in ("model.pt", "model.py") or name.endswith(".pt2")

    if deep := _find_deeper(dest, model_file, min_depth=2):
        return (
            f"{deep} is too deep: the archive must hold 1/{Path(deep).name}, "
            "optionally under one top-level directory"
        )
    if versions:
        return f"{versions[0].name}/ holds: {_listing(versions[0])}"
    return "expected e.g. 1/model.pt"


def _pytorch(dest: Path) -> str:
    versions = _version_dirs(dest)
    found = [(v.name, desc) for v in versions if (desc := _pytorch_model(v))]
    if found:
        return "layout pytorch: " + ", ".join(f"version {name} ({desc})" for name, desc in found)
    if root := _pytorch_model(dest):
        return f"layout pytorch: {root} at the root, no version directory: accepted, served as version 1"
    raise StorageError(
        "layout pytorch: no numeric version directory with model.pt (TorchScript), *.pt2, or model.py + a state dict "
        f"(model.pth, model.pt, *.bin) under {dest}, and none of those at the root; "
        f"found: {_listing(dest)} ({_pytorch_hint(dest, versions)})"
    )


def check_layout(dest: str | os.PathLike[str], layout: str) -> str:
    """Check DEST holds what the LAYOUT's model server loads; return a summary or raise StorageError."""
    dest = Path(dest)
    if layout not in LAYOUTS:
        raise StorageError(f"unknown layout {layout!r}; accepted: {', '.join(LAYOUTS)}")
    if not dest.is_dir():
        raise StorageError(f"layout {layout}: {dest} is not a directory")
    return _tensorflow(dest) if layout == "tensorflow" else _pytorch(dest)


# --------------------------------------------------------------------------- command line


def _remove_leftovers(dest: Path) -> None:
    """Drop temporary files of an attempt the kubelet killed; the emptyDir outlives it."""
    if not dest.is_dir():
        return
    for entry in dest.iterdir():
        if entry.name.startswith(_OWN_PREFIXES):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def fetch_model(
    uri: str,
    dest: str | os.PathLike[str],
    *,
    layout: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    session: requests.Session | None = None,
) -> str:
    """Download, unpack and (optionally) check the layout; return the one-line summary."""
    dest = Path(dest)
    if layout is not None and layout not in LAYOUTS:
        raise StorageError(f"unknown layout {layout!r}; accepted: {', '.join(LAYOUTS)}")
    _remove_leftovers(dest)
    archive = fetch_archive(uri, dest, max_bytes=max_bytes, session=session)
    try:
        downloaded = archive.stat().st_size
        result = extract_archive(archive, dest, max_bytes=max_bytes)
    finally:
        archive.unlink(missing_ok=True)
    checked = check_layout(dest, layout) if layout else "no layout check"
    stripped = f", top-level directory {result.stripped}/ stripped" if result.stripped else ""
    return (
        f"fetched {redact_uri(uri)} into {dest}: downloaded {downloaded} bytes ({result.kind}), "
        f"extracted {result.files} files and {result.symlinks} symlinks ({result.bytes} bytes){stripped}; {checked}"
    )


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so bad arguments also reach the termination message."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: error: {message}")


def _size_argument(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m isvc_operator.storage",
        description="Storage init container: fetch a model archive into the model volume.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fetch = commands.add_parser(
        "fetch",
        help="download an http(s) archive and unpack it into DEST",
        description=(
            "Download URI (tar.gz, tgz, tar.bz2, tar.xz, tar or zip, detected by content) and unpack it into DEST."
        ),
    )
    fetch.add_argument("uri", metavar="URI", help="http:// or https:// URL of the model archive")
    fetch.add_argument("dest", metavar="DEST", type=Path, help="directory to unpack into (the model volume)")
    fetch.add_argument("--layout", choices=LAYOUTS, help="check the unpacked model has this server's layout")
    fetch.add_argument(
        "--max-bytes",
        type=_size_argument,
        default=None,
        help=f"limit for the download and for the unpacked size (default: ${MAX_BYTES_ENV}, else 10Gi)",
    )
    fetch.add_argument(
        "--termination-log",
        default=None,
        help=f"file the failure message is written to (default: {DEFAULT_TERMINATION_LOG}, if it exists)",
    )
    return parser


def _termination_log_in(argv: Sequence[str]) -> str | None:
    """--termination-log from arguments argparse rejected, so even usage errors reach the pod status."""
    for index, arg in enumerate(argv):
        if arg == "--termination-log" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--termination-log="):
            return arg.split("=", 1)[1]
    return None


def _fail(message: str, termination_log: str | None) -> None:
    """Report a failure: the same line on stderr and, for the pod status, in the termination log."""
    line = _one_line(message).encode("utf-8")[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", "ignore")
    print(line, file=sys.stderr)
    if termination_log is None:  # the default: write only the file the kubelet mounted
        write_termination_message(line, DEFAULT_TERMINATION_LOG, create=False)
    else:
        write_termination_message(line, termination_log)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _build_parser().parse_args(args_list)
    except _UsageError as exc:
        _fail(str(exc), _termination_log_in(args_list))
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        summary = fetch_model(args.uri, args.dest, layout=args.layout, max_bytes=resolve_max_bytes(args.max_bytes))
    except StorageError as exc:
        _fail(str(exc), args.termination_log)
        return 1
    except Exception as exc:  # a bug: keep the traceback in the log, the gist in the pod status
        traceback.print_exc()
        _fail(f"storage: unexpected error: {type(exc).__name__}: {exc}", args.termination_log)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
