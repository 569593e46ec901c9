"""The command line the init container runs: `python -m isvc_operator.storage fetch URI DEST ...`."""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import requests

from .archive import _publish, extract_archive
from .cache import cache_key, cached_entry, link_into
from .download import DEFAULT_TIMEOUT, fetch_archive
from .errors import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TERMINATION_LOG,
    MAX_BYTES_ENV,
    OWN_PREFIXES,
    STAGING_PREFIX,
    TERMINATION_MESSAGE_LIMIT,
    StorageError,
    one_line,
    parse_size,
    redact_uri,
    resolve_max_bytes,
    write_termination_message,
)
from .layout import LAYOUTS, check_layout
from .locations import ACCEPTED, Location, parse_location
from .objects import ObjectStore, Selection, check_size, fill, new_staging, remove_tree, select


def _remove_leftovers(dest: Path) -> None:
    """Drop temporary files of an attempt the kubelet killed; the emptyDir outlives it."""
    if not dest.is_dir():
        return
    for entry in dest.iterdir():
        if entry.name.startswith(OWN_PREFIXES):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def open_store(location: Location, env: Mapping[str, str]) -> ObjectStore:
    """The store module of a location; imported here so an http fetch loads no object-store SDK."""
    if location.store == "s3":
        from .s3 import S3Store

        return S3Store(env)
    if location.store == "gcs":
        from .gcs import GcsStore

        return GcsStore(env)
    from .azure import AzureStore

    return AzureStore(env, location)


def _http_version(uri: str, session: requests.Session | None) -> str | None:
    """ETag or Last-Modified of an http(s) archive, for the cache key; None when the server sends neither."""
    try:
        resp = (session or requests).head(uri, timeout=DEFAULT_TIMEOUT, allow_redirects=True)
    except requests.RequestException:
        return None
    if resp.status_code >= 400:
        return None
    etag, modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
    return f"etag={etag}" if etag else (f"last-modified={modified}" if modified else None)


def _fill_http(uri: str, into: Path, max_bytes: int, session: requests.Session | None) -> str:
    archive = fetch_archive(uri, into, max_bytes=max_bytes, session=session)
    try:
        downloaded = archive.stat().st_size
        result = extract_archive(archive, into, max_bytes=max_bytes)
    finally:
        archive.unlink(missing_ok=True)
    stripped = f", top-level directory {result.stripped}/ stripped" if result.stripped else ""
    return (
        f"downloaded {downloaded} bytes ({result.kind}), "
        f"extracted {result.files} files and {result.symlinks} symlinks ({result.bytes} bytes){stripped}"
    )


def _fill_objects(store: ObjectStore, location: Location, selection: Selection, into: Path, max_bytes: int) -> str:
    filled = fill(store, location, selection, into, max_bytes)
    return f"downloaded {filled.bytes} bytes in {filled.objects} objects, {filled.detail}"


def fetch_model(
    uri: str,
    dest: str | os.PathLike[str],
    *,
    layout: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    session: requests.Session | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Download (or take from the cache), unpack and (optionally) check the layout; return the summary."""
    dest = Path(dest)
    env = os.environ if env is None else env
    if layout is not None and layout not in LAYOUTS:
        raise StorageError(f"unknown layout {layout!r}; accepted: {', '.join(LAYOUTS)}")
    location = parse_location(uri)
    _remove_leftovers(dest)
    filler: Callable[[Path], str]
    key_versions: list[str] | None
    if location.store == "http":
        version = _http_version(uri, session) if cache_dir is not None else None
        key_versions = [version] if version else None
        filler = functools.partial(_fill_http, uri, max_bytes=max_bytes, session=session)
    else:
        store = open_store(location, env)
        selection = select(store, location)
        check_size(selection, location, max_bytes)
        key_versions = selection.versions()
        filler = functools.partial(_fill_objects, store, location, selection, max_bytes=max_bytes)
    note = ""
    if cache_dir is not None and key_versions is not None:
        # Absolute: the symlinks in DEST must resolve in the model server, which mounts DIR at the same path.
        entry, how = cached_entry(Path(os.path.abspath(cache_dir)), cache_key(uri, key_versions), filler)
        linked = link_into(entry, dest)
        done = f"{how}, {entry} linked into {dest} ({linked} entries)"
    else:
        if cache_dir is not None:
            note = " (not cached: the server sends no ETag or Last-Modified)"
        staging = new_staging(dest, STAGING_PREFIX)
        try:
            detail = filler(staging)
            _publish(staging, dest)
        finally:
            remove_tree(staging)
        done = f"into {dest}: {detail}{note}"
    checked = check_layout(dest, layout) if layout else "no layout check"
    return f"fetched {redact_uri(uri)} {done}; {checked}"


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
        description="Storage init container: fetch a model into the model volume.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    fetch = commands.add_parser(
        "fetch",
        help="download a model (an http(s) archive, or objects from S3, GCS or Azure Blob) into DEST",
        description=(
            "Download the model at URI into DEST: an archive (tar.gz, tgz, tar.bz2, tar.xz, tar or zip, detected by "
            "content) is unpacked; an object-store prefix keeps its layout. Settings come from environment variables."
        ),
    )
    fetch.add_argument("uri", metavar="URI", help=f"where the model is: {ACCEPTED}")
    fetch.add_argument("dest", metavar="DEST", type=Path, help="directory to unpack into (the model volume)")
    fetch.add_argument("--layout", choices=LAYOUTS, help="check the unpacked model has this server's layout")
    fetch.add_argument(
        "--max-bytes",
        type=_size_argument,
        default=None,
        help=f"limit for the download and for the unpacked size (default: ${MAX_BYTES_ENV}, else 10Gi)",
    )
    fetch.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="shared model cache: download once per URI and store version, then link into DEST",
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
    line = one_line(message).encode("utf-8")[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", "ignore")
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
        summary = fetch_model(
            args.uri,
            args.dest,
            layout=args.layout,
            max_bytes=resolve_max_bytes(args.max_bytes),
            cache_dir=args.cache_dir,
        )
    except StorageError as exc:
        _fail(str(exc), args.termination_log)
        return 1
    except Exception as exc:  # a bug: keep the traceback in the log, the gist in the pod status
        traceback.print_exc()
        _fail(f"storage: unexpected error: {type(exc).__name__}: {exc}", args.termination_log)
        return 1
    print(summary)
    return 0
