"""Archives: detect the format by content, check every member, unpack into a staging directory,
then move the result into DEST."""

from __future__ import annotations

import dataclasses
import functools
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from .errors import CHUNK_SIZE, PREVIOUS_PREFIX, STAGING_PREFIX, VERSION_DIR, StorageError, limit_text

# Archive kinds detect_archive_kind() can return, i.e. everything extract_archive() unpacks.
ARCHIVE_FORMATS = ("tar.gz", "tar.bz2", "tar.xz", "tar", "zip")
# A model has tens of files; a million empty members is a header bomb, not a model.
MAX_MEMBERS = 100_000
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
    "tar.gz/tgz (1f 8b), tar.bz2 (42 5a 68), tar.xz (fd 37 7a 58 5a 00), zip (50 4b 03 04), tar ('ustar' at offset 257)"
)
# Formats people do upload, named so the error says what they sent.
_KNOWN_UNSUPPORTED = (
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data, which Python's tarfile cannot read: recompress as tar.gz"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
)
_TAR_MODES: dict[str, Literal["r:gz", "r:bz2", "r:xz", "r:"]] = {
    "tar.gz": "r:gz",
    "tar.bz2": "r:bz2",
    "tar.xz": "r:xz",
    "tar": "r:",
}
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

_SAFE_MEMBERS = "accepted: regular files, directories, and links that stay inside the destination"


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


def _tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    source = archive.extractfile(info)
    assert source is not None, "a regular file member always has content"
    return source


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
                    f"(at {info.name!r}), over {limit_text(max_bytes)}"
                )
        members.append(
            _Member(name, kind, info.size, info.mode, info.linkname, functools.partial(_tar_member, archive, info))
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
                    f"(at {raw!r}), over {limit_text(max_bytes)}"
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
    if VERSION_DIR.fullmatch(top):
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
            stripped = strip(_member_path(raw, dest))
            linked = plan.get(stripped) if stripped else None
            if linked is None or linked.kind not in ("file", "hardlink"):
                raise StorageError(
                    f"archive refused: hardlink {name!r} -> {raw!r} does not point to a regular file "
                    f"in the archive; {_SAFE_MEMBERS}"
                )
            member.link = linked.name
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
        try:
            source = member.open()
        except _READ_ERRORS as exc:
            os.close(fd)
            raise _ArchiveReadError(exc) from exc
        with os.fdopen(fd, "wb") as out, source:
            while True:
                try:
                    chunk = source.read(CHUNK_SIZE)
                except _READ_ERRORS as exc:
                    raise _ArchiveReadError(exc) from exc
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
                        f"(while writing {member.name!r}), over {limit_text(self.max_bytes)}"
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
                f"(while writing {member.name!r}), over {limit_text(self.max_bytes)}"
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
    """Move the staged tree into DEST, replacing same-named entries from an earlier attempt: all of
    them, or none (a failed move puts the earlier entries back, and the new ones go)."""
    entries = sorted(staging.iterdir())
    try:
        previous = Path(tempfile.mkdtemp(prefix=PREVIOUS_PREFIX, dir=dest))
    except OSError as exc:
        raise StorageError(f"extract failed: cannot write into {dest}: {exc.strerror or exc}") from None
    set_aside: list[str] = []
    moved_in: list[str] = []
    step = ""
    try:
        for child in entries:
            target = dest / child.name
            if target.is_symlink() or target.exists():
                step = f"setting the earlier {child.name} aside"
                os.replace(target, previous / child.name)
                set_aside.append(child.name)
        for child in entries:
            step = f"moving {child.name} into {dest}"
            os.replace(child, dest / child.name)
            moved_in.append(child.name)
    except OSError as exc:
        restored = _roll_back(dest, previous, moved_in, set_aside)
        outcome = "the earlier content is back" if restored else "and putting the earlier content back failed too"
        raise StorageError(f"extract failed: {step}: {exc.strerror or exc}; {outcome}") from None
    shutil.rmtree(previous, ignore_errors=True)


def _roll_back(dest: Path, previous: Path, moved_in: list[str], set_aside: list[str]) -> bool:
    """Undo a partial publish; False if DEST could not be restored (the next attempt starts clean)."""
    try:
        for name in moved_in:
            target = dest / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        for name in set_aside:
            os.replace(previous / name, dest / name)
    except OSError:
        return False
    shutil.rmtree(previous, ignore_errors=True)
    return True


class _ArchiveReadError(Exception):
    """Reading the archive failed (damaged or truncated data), as opposed to writing what it holds."""

    def __init__(self, cause: BaseException, *, opening: bool = False) -> None:
        super().__init__(str(cause) or type(cause).__name__)
        self.cause = cause
        self.opening = opening


def _open_archive(path: Path, kind: str) -> zipfile.ZipFile | tarfile.TarFile:
    try:
        return zipfile.ZipFile(path) if kind == "zip" else tarfile.open(path, mode=_TAR_MODES[kind])
    except _READ_ERRORS as exc:
        raise _ArchiveReadError(exc, opening=True) from exc


def extract_archive(path: str | os.PathLike[str], dest: str | os.PathLike[str], *, max_bytes: int) -> ExtractResult:
    """Unpack the archive at PATH into DEST safely; DEST is untouched if anything is refused or fails.

    Errors reading the archive are "archive corrupt"; errors writing into DEST (a full or
    read-only volume) are "extract failed"; anything else is a bug and propagates.
    """
    path, dest = Path(path), Path(dest)
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_SIZE)
    except OSError as exc:
        raise StorageError(f"extract failed: cannot read {path}: {exc.strerror or exc}") from None
    kind = detect_archive_kind(head)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
    except OSError as exc:
        raise StorageError(f"extract failed: cannot write into {dest}: {exc.strerror or exc}") from None
    try:
        try:
            with _open_archive(path, kind) as archive:
                try:
                    members = (
                        _scan_zip(archive, dest, max_bytes)
                        if isinstance(archive, zipfile.ZipFile)
                        else _scan_tar(archive, dest, max_bytes)
                    )
                except _READ_ERRORS as exc:
                    raise _ArchiveReadError(exc) from exc
                plan, top = _plan(members, dest)
                result = _write_plan(plan, staging, kind, max_bytes, dest)
        except _ArchiveReadError as exc:
            hint = ""
            if exc.opening and kind not in ("tar", "zip") and isinstance(exc.cause, tarfile.ReadError):
                hint = f" (a {kind} must hold a tar archive; a single compressed file is not supported)"
            raise StorageError(f"archive corrupt: cannot read {kind} archive: {exc}{hint}") from None
        except OSError as exc:
            raise StorageError(f"extract failed: writing into {dest}: {exc.strerror or exc}") from None
        _publish(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dataclasses.replace(result, stripped=top)
