"""The object engine, shared by every store: choose what a prefix names, map object keys to safe
paths, download them concurrently into an empty directory, or unpack a single archive object."""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .archive import detect_archive_kind, extract_archive
from .errors import DOWNLOAD_PREFIX, StorageError, limit_text
from .locations import Location
from .settings import TransferSettings


@dataclass(frozen=True)
class StoreObject:
    """One object as listed: its key, size and the store's version of it (ETag, generation)."""

    key: str
    size: int
    version: str


class ObjectStore(Protocol):
    """What the engine needs of a store; each store module (s3, gcs, azure) is one of these."""

    def list_objects(self, location: Location, prefix: str) -> Iterable[StoreObject]:
        """Every object whose key starts with PREFIX; a failure is a StorageError naming the URI."""
        ...

    def download(self, location: Location, objects: Sequence[tuple[StoreObject, Path]]) -> None:
        """Stream each object into its path (parents exist), large ones as parallel ranged reads."""
        ...


@dataclass(frozen=True)
class Selection:
    """What a URI names in its store: a directory of objects, or exactly one object."""

    objects: tuple[StoreObject, ...]
    directory: str  # the key prefix the paths are relative to ("" for a whole bucket)
    single: bool

    @property
    def bytes(self) -> int:
        return sum(obj.size for obj in self.objects)

    def versions(self) -> list[str]:
        """Every object's key, size and version: what the cache key is made of."""
        return sorted(f"{obj.key}\t{obj.size}\t{obj.version}" for obj in self.objects)


def select(store: ObjectStore, location: Location) -> Selection:
    """A prefix names a directory when objects sit under PREFIX/, else the one object named PREFIX."""
    prefix = location.prefix
    listed = list(store.list_objects(location, prefix))
    if prefix == "" or prefix.endswith("/"):
        children = [obj for obj in listed if not obj.key.endswith("/")]
        directory = prefix
    else:
        children = [obj for obj in listed if obj.key.startswith(prefix + "/") and not obj.key.endswith("/")]
        directory = prefix + "/"
        exact = [obj for obj in listed if obj.key == prefix]
        if not children and exact:
            return Selection((exact[0],), posixpath.dirname(prefix), single=True)
    if not children:
        raise StorageError(
            f"not found: no objects at or under {location.uri} (the prefix is empty or does not exist; "
            f"check the path, and that the credentials may list it)"
        )
    return Selection(tuple(children), directory, single=False)


def relative_path(key: str, directory: str, location: Location) -> str:
    """The DEST-relative path of an object key; keys that would leave DEST are refused."""
    rel = key[len(directory) :]
    parts = rel.split("/")
    if "\x00" in rel or rel.startswith("/") or any(part in ("..", ".") for part in parts) or "" in parts:
        raise StorageError(
            f"object refused: key {key!r} under {location.uri} would land outside the model directory "
            f"('..', '.', empty or absolute path components); accepted: plain relative keys such as 1/saved_model.pb"
        )
    return rel


def check_size(selection: Selection, location: Location, max_bytes: int) -> None:
    if selection.bytes > max_bytes:
        raise StorageError(
            f"download refused: {location.uri} holds {selection.bytes} bytes in {len(selection.objects)} objects, "
            f"over {limit_text(max_bytes)}"
        )


def parallel(tasks: Sequence[Callable[[], None]], settings: TransferSettings) -> None:
    """Run download tasks on a bounded thread pool; the first failure is raised after the rest stop."""
    if len(tasks) == 1:
        tasks[0]()
        return
    with ThreadPoolExecutor(max_workers=min(settings.concurrency, len(tasks))) as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _check_written(pairs: Sequence[tuple[StoreObject, Path]], location: Location) -> None:
    for obj, path in pairs:
        size = path.stat().st_size
        if size != obj.size:
            raise StorageError(
                f"download failed: {obj.key} of {location.uri}: got {size} bytes, the listing said {obj.size}"
            )


@dataclass(frozen=True)
class Filled:
    """What fill() put into its directory, for the summary line."""

    objects: int
    bytes: int
    detail: str


def fill(store: ObjectStore, location: Location, selection: Selection, into: Path, max_bytes: int) -> Filled:
    """Download the selection into the empty directory INTO (a staging directory of the caller).

    One archive object is unpacked with the http archives' defences; one other object is stored
    under its base name; a directory keeps its layout relative to the prefix."""
    check_size(selection, location, max_bytes)
    if selection.single:
        obj = selection.objects[0]
        fd, name = tempfile.mkstemp(prefix=DOWNLOAD_PREFIX, suffix=".part", dir=into)
        os.close(fd)
        part = Path(name)
        try:
            store.download(location, [(obj, part)])
            _check_written([(obj, part)], location)
            with open(part, "rb") as handle:
                head = handle.read(512)
            try:
                kind = detect_archive_kind(head)
            except StorageError:
                kind = ""
            if kind:
                result = extract_archive(part, into, max_bytes=max_bytes)
                stripped = f", top-level directory {result.stripped}/ stripped" if result.stripped else ""
                return Filled(
                    1,
                    obj.size,
                    f"unpacked {result.kind} archive: {result.files} files and {result.symlinks} symlinks "
                    f"({result.bytes} bytes){stripped}",
                )
            base = posixpath.basename(obj.key)
            relative_path(base, "", location)
            os.replace(part, into / base)
            return Filled(1, obj.size, f"stored as {base}")
        finally:
            part.unlink(missing_ok=True)
    pairs: list[tuple[StoreObject, Path]] = []
    seen: set[str] = set()
    for obj in selection.objects:
        rel = relative_path(obj.key, selection.directory, location)
        seen.add(rel)
        pairs.append((obj, into / rel))
    for rel in seen:  # "a" and "a/b" both as objects: a file cannot also be a directory
        parent = posixpath.dirname(rel)
        while parent:
            if parent in seen:
                raise StorageError(
                    f"object refused: {location.uri} has both an object {parent!r} and objects under {parent}/"
                )
            parent = posixpath.dirname(parent)
    for _, path in pairs:
        path.parent.mkdir(parents=True, exist_ok=True)
    store.download(location, pairs)
    _check_written(pairs, location)
    return Filled(len(pairs), selection.bytes, f"{len(pairs)} objects")


def new_staging(parent: Path, prefix: str) -> Path:
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as exc:
        raise StorageError(f"cannot write into {parent}: {exc.strerror or exc}") from None


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
