"""Storage init container: download a model archive and unpack it into the model volume.

Usage (the operator puts this in the predictor pod's init container)::

    python -m isvc_operator.storage fetch URI DEST [--layout tensorflow|pytorch]
        [--max-bytes N] [--termination-log PATH]

URI is an ``http://`` or ``https://`` URL of a tar.gz/tgz, tar.bz2, tar.xz, tar or zip archive;
DEST is the (emptyDir) model volume. The container's root filesystem is read-only, so the
download is streamed to a hidden temporary file inside DEST (``.isvc-download-*``), unpacked into a
hidden staging directory inside DEST (``.isvc-extract-*``) and only then moved into place, the
same-named entries of an earlier attempt set aside (``.isvc-previous-*``) and put back if a move
fails: DEST must have room for the archive plus its content, and a failed run leaves no
half-unpacked model and no mix of old and new files behind. Leftovers of a killed earlier run are
removed first, so the kubelet's retries start clean.

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
* ``pytorch``: at least one all-digit version directory holding what the PyTorch server loads,
  by the server's own rules, in this order: ``model.py`` plus a state dict (``model.pth``,
  ``model.pt`` or ``*.bin``); else exactly one ``*.pt2`` (exported program); else ``model.pt``
  (TorchScript). The same files directly in DEST are accepted too: the server serves them as
  version 1, and the summary says so. ``tests/fixtures/pytorch_layouts.json`` holds the cases
  both this check and the server's loader are tested against.

Exit status: 0 on success (one summary line on stdout), 1 on any failure, 2 on bad arguments.
On failure one line goes to stderr and, truncated to 4096 bytes, to the termination-message file
(``--termination-log``; default ``/dev/termination-log``, written only if it exists, as it does
in a pod) so it shows up in the pod's ``lastState.terminated.message``.
Custom CAs: requests honours ``REQUESTS_CA_BUNDLE``.
Known limit: tar extended (pax/GNU long-name) headers are read into memory by ``tarfile``.
"""

from .archive import ARCHIVE_FORMATS, MAX_MEMBERS, ExtractResult, detect_archive_kind, extract_archive
from .cli import fetch_model, main
from .download import DEFAULT_TIMEOUT, SUPPORTED_SCHEMES, fetch_archive
from .errors import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TERMINATION_LOG,
    MAX_BYTES_ENV,
    TERMINATION_MESSAGE_LIMIT,
    StorageError,
    parse_size,
    redact_uri,
    resolve_max_bytes,
    write_termination_message,
)
from .layout import LAYOUTS, check_layout

__all__ = [
    "ARCHIVE_FORMATS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TERMINATION_LOG",
    "DEFAULT_TIMEOUT",
    "LAYOUTS",
    "MAX_BYTES_ENV",
    "MAX_MEMBERS",
    "SUPPORTED_SCHEMES",
    "TERMINATION_MESSAGE_LIMIT",
    "ExtractResult",
    "StorageError",
    "check_layout",
    "detect_archive_kind",
    "extract_archive",
    "fetch_archive",
    "fetch_model",
    "main",
    "parse_size",
    "redact_uri",
    "resolve_max_bytes",
    "write_termination_message",
]
