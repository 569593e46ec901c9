"""Google Cloud Storage, through google-cloud-storage: Application Default Credentials (GKE
workload identity) or a key file, its Retry and per-request timeouts, and its transfer manager's
chunked download (parallel ranged reads into one file) for large objects."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage import transfer_manager

from .errors import StorageError
from .locations import Location
from .objects import StoreObject, parallel
from .settings import GcsSettings, TransferSettings, credentials_text, gcs_settings, transfer_settings

MIB = 1024 * 1024
CHUNKED_OVER = 32 * MIB
_TRANSIENT = (
    api_exceptions.TooManyRequests,
    api_exceptions.InternalServerError,
    api_exceptions.BadGateway,
    api_exceptions.ServiceUnavailable,
    api_exceptions.GatewayTimeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


def _retryable(exc: BaseException) -> bool:
    """Transport errors and 5xx/429 are retried; a failed TLS verification never heals by retrying."""
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, requests.exceptions.SSLError)


class GcsStore:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.settings: GcsSettings = gcs_settings(env)
        self.transfer: TransferSettings = transfer_settings(env)
        self.timeout = (self.transfer.connect_timeout, self.transfer.read_timeout)
        # Bounded: retries stop once this many seconds have passed since the first attempt.
        self.retry = Retry(
            predicate=_retryable, initial=0.5, maximum=8.0, multiplier=2.0, timeout=self.transfer.read_timeout * 2
        )
        self.blobs: dict[str, Any] = {}
        try:
            if self.settings.anonymous or self.settings.emulator_host:
                self.client: Any = storage.Client(credentials=AnonymousCredentials(), project="anonymous")
            else:
                self.client = storage.Client()
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise StorageError(
                f"no credentials for gs://: {exc.args[0] if exc.args else exc}; set GOOGLE_APPLICATION_CREDENTIALS "
                f"to a key file, run with a workload identity, or set ISVC_GCS_ANONYMOUS=true for a public bucket"
            ) from None
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=self.transfer.concurrency + 4)
        session = self.client._http
        session.mount("https://", adapter)
        session.mount("http://", adapter)

    def failure(self, exc: Exception, location: Location, what: str) -> StorageError:
        uri = location.uri
        who = credentials_text(self.settings.credential_variables, "ISVC_GCS_ANONYMOUS", self.settings.anonymous)
        if isinstance(exc, api_exceptions.RetryError) and isinstance(exc.cause, Exception):
            exc = exc.cause  # what the last attempt met says more than "retries exhausted"
        if isinstance(exc, api_exceptions.NotFound):
            return StorageError(f"not found: {what} {uri}: bucket {location.bucket!r} or object does not exist")
        if isinstance(exc, (api_exceptions.Forbidden, api_exceptions.Unauthorized)):
            return StorageError(
                f"access denied: {what} {uri} ({exc.code}) with {who}; grant the identity storage.objects.list and "
                f"storage.objects.get, or set ISVC_GCS_ANONYMOUS=true for a public bucket"
            )
        if isinstance(exc, requests.exceptions.SSLError):
            return StorageError(
                f"TLS verification failed: {what} {uri}: {exc}; set REQUESTS_CA_BUNDLE to the CA bundle"
            )
        if isinstance(exc, (requests.exceptions.Timeout, api_exceptions.RetryError)) or (
            isinstance(exc, requests.exceptions.ConnectionError) and "timed out" in str(exc)
        ):
            return StorageError(
                f"timeout: {what} {uri}: no answer within {self.transfer.read_timeout:g} s "
                f"(ISVC_STORAGE_CONNECT_TIMEOUT / ISVC_STORAGE_READ_TIMEOUT), retries exhausted"
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            return StorageError(f"cannot connect: {what} {uri}: {type(exc).__name__}")
        if isinstance(exc, google.auth.exceptions.GoogleAuthError):
            return StorageError(f"credentials failed: {what} {uri} with {who}: {exc}")
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            return StorageError(f"GCS error: {what} {uri}: {exc.code} {exc.message}")
        raise exc

    _ERRORS = (
        api_exceptions.GoogleAPIError,
        requests.exceptions.RequestException,
        google.auth.exceptions.GoogleAuthError,
    )

    def list_objects(self, location: Location, prefix: str) -> Iterable[StoreObject]:
        try:
            listed = []
            for blob in self.client.list_blobs(location.bucket, prefix=prefix, timeout=self.timeout, retry=self.retry):
                self.blobs[blob.name] = blob
                listed.append(StoreObject(blob.name, int(blob.size or 0), str(blob.generation)))
            return listed
        except self._ERRORS as exc:
            raise self.failure(exc, location, "listing") from None

    def _one(self, obj: StoreObject, path: Path) -> None:
        blob = self.blobs[obj.key]
        if obj.size > CHUNKED_OVER:
            transfer_manager.download_chunks_concurrently(
                blob,
                str(path),
                chunk_size=CHUNKED_OVER,
                max_workers=self.transfer.concurrency,
                worker_type=transfer_manager.THREAD,
                download_kwargs={"timeout": self.timeout, "retry": self.retry},
                crc32c_checksum=False,
            )
        else:
            blob.download_to_filename(str(path), timeout=self.timeout, retry=self.retry)

    def download(self, location: Location, objects: Sequence[tuple[StoreObject, Path]]) -> None:
        try:
            parallel([partial(self._one, obj, path) for obj, path in objects], self.transfer)
        except self._ERRORS as exc:
            raise self.failure(exc, location, "downloading") from None
