"""Storage init container: download a model into the model volume.

Usage (the operator puts this in the predictor pod's init container)::

    python -m isvc_operator.storage fetch URI DEST [--layout tensorflow|pytorch]
        [--max-bytes N] [--cache-dir DIR] [--termination-log PATH]

URI is an ``http://`` or ``https://`` URL of a tar.gz/tgz, tar.bz2, tar.xz, tar or zip archive, or
an object-store location: ``s3://BUCKET/PREFIX``, ``gs://BUCKET/PREFIX`` or
``https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX`` (Azure, recognised by the host suffix;
any other https URL is an archive). DEST is the (emptyDir) model volume.

Object stores (``locations`` parses, ``objects`` is the engine, one module per store: ``s3``,
``gcs``, ``azure``; ``settings`` reads the environment). A prefix with objects under ``PREFIX/``
is a model directory: every object is downloaded keeping its path relative to the prefix (keys
with ``..``, ``.``, empty or absolute components are refused: they would land outside DEST). A
prefix that is exactly one object: an archive (by content) is unpacked exactly like an http archive,
anything else is stored under its base name. Downloads are streamed to disk, many objects at once
(``ISVC_STORAGE_CONCURRENCY`` threads) and large objects as parallel ranged reads, so memory stays
bounded whatever the model size. Every client has connect and read timeouts
(``ISVC_STORAGE_CONNECT_TIMEOUT``/``ISVC_STORAGE_READ_TIMEOUT``) and bounded retries with backoff
configured through its SDK, so nothing waits forever. Settings come only from environment
variables, the SDKs' own where they have one (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``STORAGE_EMULATOR_HOST``, ``AZURE_*``), ``ISVC_*`` otherwise; with no key set, each SDK's default
credential chain applies (IRSA, GKE and Azure workload identity). Errors name the credential
variables in use, never their values.

Libraries: boto3 (with s3transfer, the engine of ``aws s3 cp``), google-cloud-storage (its
transfer manager's chunked download) and azure-storage-blob with azure-identity: the stores' own
SDKs, well kept, honouring the standard variables and credential chains a user already has. They
are the ``storage`` extra: installed in the operator image, which also runs this init container,
and never imported by the operator process (an import-linter contract holds that).

Cache (``--cache-dir``, a ReadWriteMany volume mounted at the same path read-write here and
read-only in the model server): an entry is keyed by sha256 of the URI and the store's version of
everything it names (ETag/generation of every object; ETag or Last-Modified for http). A miss
downloads into ``DIR/.isvc-staging-KEY`` under an fcntl lock on ``DIR/KEY.lock`` and renames it to
``DIR/KEY``: concurrent first pods download once, and an entry is never seen half-written. DEST
then gets one symlink per top-level entry, pointing into the cache (no copy). The container's root filesystem is read-only, so the
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
Custom CAs: requests honours ``REQUESTS_CA_BUNDLE``; for S3, ``AWS_CA_BUNDLE`` and ``ISVC_S3_VERIFY_SSL``.
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
