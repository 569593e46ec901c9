"""The command line the init container runs: `python -m isvc_operator.storage fetch URI DEST ...`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import requests

from .archive import extract_archive
from .download import fetch_archive
from .errors import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TERMINATION_LOG,
    MAX_BYTES_ENV,
    OWN_PREFIXES,
    TERMINATION_MESSAGE_LIMIT,
    StorageError,
    one_line,
    parse_size,
    redact_uri,
    resolve_max_bytes,
    write_termination_message,
)
from .layout import LAYOUTS, check_layout


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
