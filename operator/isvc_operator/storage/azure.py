"""Azure Blob Storage, through azure-storage-blob: an account key, a SAS token, or azure-identity's
DefaultAzureCredential (service principal, workload identity, managed identity); the SDK's retry
policy and connection/read timeouts, and its chunked parallel download for large blobs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ExponentialRetry

from .errors import StorageError
from .locations import Location
from .objects import StoreObject, parallel
from .settings import AzureSettings, TransferSettings, azure_settings, credentials_text, transfer_settings

MIB = 1024 * 1024
# KServe's Secret keys: the operator passes them as env; azure-identity reads the AZURE_* names.
_LEGACY = {
    "AZ_CLIENT_ID": "AZURE_CLIENT_ID",
    "AZ_CLIENT_SECRET": "AZURE_CLIENT_SECRET",
    "AZ_TENANT_ID": "AZURE_TENANT_ID",
}


class AzureStore:
    def __init__(self, env: Mapping[str, str], location: Location) -> None:
        self.settings: AzureSettings = azure_settings(env)
        self.transfer: TransferSettings = transfer_settings(env)
        url = self.settings.blob_endpoint or f"https://{location.account}.blob.core.windows.net"
        credential: Any = None
        if self.settings.anonymous:
            credential = None
        elif self.settings.account_key:
            credential = {"account_name": location.account, "account_key": self.settings.account_key}
        elif self.settings.sas_token:
            credential = self.settings.sas_token
        else:
            for legacy, name in _LEGACY.items():
                if env.get(legacy) and not os.environ.get(name):
                    os.environ[name] = env[legacy]
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self.client = BlobServiceClient(
            url,
            credential=credential,
            connection_timeout=self.transfer.connect_timeout,
            read_timeout=self.transfer.read_timeout,
            # The SDK's default backoff starts at 15 s; a pod start wants seconds, bounded attempts.
            retry_policy=ExponentialRetry(
                initial_backoff=1, increment_base=2, retry_total=self.transfer.max_attempts - 1, random_jitter_range=1
            ),
            max_single_get_size=8 * MIB,
            max_chunk_get_size=8 * MIB,
        )
        self.endpoint = url

    def failure(self, exc: Exception, location: Location, what: str) -> StorageError:
        uri = location.uri
        who = credentials_text(self.settings.credential_variables, "ISVC_AZURE_ANONYMOUS", self.settings.anonymous)
        code = getattr(exc, "error_code", None) or ""
        if isinstance(exc, ResourceNotFoundError):
            thing = f"container {location.bucket!r}" if "Container" in str(code) else "blob"
            return StorageError(f"not found: {what} {uri}: {thing} does not exist ({code or 404})")
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
        ):
            return StorageError(
                f"access denied: {what} {uri} ({code or getattr(exc, 'status_code', '')}) with {who}; check the key or "
                f"token and its permissions, or set ISVC_AZURE_ANONYMOUS=true for a public container"
            )
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            return StorageError(f"TLS verification failed: {what} {uri} at {self.endpoint}: set REQUESTS_CA_BUNDLE")
        if isinstance(exc, ServiceResponseError) or "timed out" in text.lower():
            return StorageError(
                f"timeout: {what} {uri} at {self.endpoint}: no answer within {self.transfer.read_timeout:g} s after "
                f"{self.transfer.max_attempts} attempts (ISVC_STORAGE_CONNECT_TIMEOUT / ISVC_STORAGE_READ_TIMEOUT)"
            )
        if isinstance(exc, ServiceRequestError):
            return StorageError(f"cannot connect: {what} {uri} at {self.endpoint} (check ISVC_AZURE_BLOB_ENDPOINT)")
        if isinstance(exc, HttpResponseError):
            return StorageError(f"Azure error: {what} {uri}: {exc.status_code} {code}")
        return StorageError(f"Azure error: {what} {uri}: {type(exc).__name__}: {text.splitlines()[0] if text else ''}")

    def list_objects(self, location: Location, prefix: str) -> Iterable[StoreObject]:
        container = self.client.get_container_client(location.bucket)
        try:
            return [
                StoreObject(blob.name, int(blob.size), str(blob.etag))
                for blob in container.list_blobs(name_starts_with=prefix or None)
            ]
        except AzureError as exc:
            raise self.failure(exc, location, "listing") from None

    def _one(self, location: Location, obj: StoreObject, path: Path) -> None:
        blob = self.client.get_blob_client(location.bucket, obj.key)
        with open(path, "wb") as out:
            blob.download_blob(max_concurrency=self.transfer.concurrency).readinto(out)

    def download(self, location: Location, objects: Sequence[tuple[StoreObject, Path]]) -> None:
        try:
            parallel([partial(self._one, location, obj, path) for obj, path in objects], self.transfer)
        except AzureError as exc:
            raise self.failure(exc, location, "downloading") from None
