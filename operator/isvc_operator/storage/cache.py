"""The model cache (--cache-dir, a ReadWriteMany volume shared by the pods of a model): one entry
per URI and store version, downloaded once, published by an atomic rename under a lock, and linked
into DEST with symlinks (the model server mounts the cache read-only at the same path)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .archive import _publish
from .errors import STAGING_PREFIX, StorageError

CACHE_STAGING_PREFIX = ".isvc-staging-"


def cache_key(uri: str, versions: Iterable[str]) -> str:
    """sha256 of the URI and the store's version of everything it names (a new version, a new key)."""
    digest = hashlib.sha256(uri.encode("utf-8"))
    for line in versions:
        digest.update(b"\n" + line.encode("utf-8"))
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive fcntl lock: concurrent first pods wait for the one that downloads."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when the process dies


def cached_entry(cache_dir: Path, key: str, fill: Callable[[Path], str]) -> tuple[Path, str]:
    """The entry for KEY, filled by FILL(staging dir) -> detail on a miss; returns (entry, how)."""
    entry = cache_dir / key
    if entry.is_dir():
        return entry, "from cache"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cache: cannot write into {cache_dir}: {exc.strerror or exc}") from None
    with _locked(cache_dir / f"{key}.lock"):
        if entry.is_dir():
            return entry, "from cache (downloaded by a concurrent run)"
        staging = cache_dir / f"{CACHE_STAGING_PREFIX}{key}"
        if staging.exists():  # a killed run's leftover: we hold the lock, so nobody else writes there
            shutil.rmtree(staging)
        staging.mkdir()
        try:
            detail = fill(staging)
            os.rename(staging, entry)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return entry, f"downloaded into the cache ({detail})"


def link_into(entry: Path, dest: Path) -> int:
    """Point DEST's top-level entries at the cache entry's (no copy); returns how many."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dest))
    except OSError as exc:
        raise StorageError(f"cannot write into {dest}: {exc.strerror or exc}") from None
    try:
        names = sorted(child.name for child in entry.iterdir())
        for name in names:
            os.symlink(entry / name, staging / name)
        _publish(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(names)
