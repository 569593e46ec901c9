"""Amazon S3 and S3-compatible stores, through boto3: its credential chain (keys, session token,
IRSA web identity, instance roles), its retry and timeout configuration, and s3transfer's
transfer manager, which downloads large objects as parallel ranged GETs streamed to disk (the
same engine as `aws s3 cp --recursive`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore import UNSIGNED
from botocore.config import Config
from s3transfer.subscribers import BaseSubscriber

from .errors import StorageError
from .locations import Location
from .objects import StoreObject
from .settings import S3Settings, TransferSettings, credentials_text, s3_settings, transfer_settings

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "403", "Forbidden"}
_MISSING_BUCKET = {"NoSuchBucket"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
MIB = 1024 * 1024


def transfer_config(settings: TransferSettings) -> TransferConfig:
    """Objects over 16 MiB go as 16 MiB ranged GETs, `concurrency` at a time, streamed to disk."""
    return TransferConfig(
        multipart_threshold=16 * MIB,
        multipart_chunksize=16 * MIB,
        max_concurrency=settings.concurrency,
        use_threads=True,
    )


class _Listed(BaseSubscriber):  # type: ignore[misc]
    """Hands the listed size and ETag to the transfer manager: it skips its HEAD request per object,
    and its ranged GETs carry If-Match, so what lands is the version the cache key names."""

    def __init__(self, size: int, etag: str) -> None:
        self.size = size
        self.etag = etag

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.size)
        if self.etag:
            future.meta.provide_object_etag(self.etag)


class S3Store:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.settings: S3Settings = s3_settings(env)
        self.etags: dict[str, str] = {}
        self.transfer = transfer_settings(env)
        config = Config(
            connect_timeout=self.transfer.connect_timeout,
            read_timeout=self.transfer.read_timeout,
            retries={"max_attempts": self.transfer.max_attempts, "mode": "standard"},
            max_pool_connections=self.transfer.concurrency + 4,
            s3={"addressing_style": self.settings.addressing_style},
            signature_version=UNSIGNED if self.settings.anonymous else None,
        )
        self.client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=self.settings.endpoint_url,
            region_name=self.settings.region,
            verify=self.settings.verify,
            config=config,
        )

    def credentials(self) -> str:
        return credentials_text(self.settings.credential_variables, "ISVC_S3_ANONYMOUS", self.settings.anonymous)

    def failure(self, exc: Exception, location: Location, what: str) -> StorageError:
        """One line a person can act on, for any error boto3 raises."""
        uri = location.uri
        where = f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else ""
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _MISSING_BUCKET:
                return StorageError(f"not found: bucket {location.bucket!r} of {uri} does not exist{where}")
            if code in _DENIED:
                return StorageError(
                    f"access denied: {what} {uri}{where} ({code}) with {self.credentials()}; check the key, the "
                    f"bucket policy, or set ISVC_S3_ANONYMOUS=true for a public bucket"
                )
            if code in _MISSING_KEY:
                return StorageError(f"not found: {what} {uri}: object is gone ({code}); was it deleted meanwhile?")
            return StorageError(f"S3 error: {what} {uri}{where}: {code} {error.get('Message', '')}".rstrip())
        if isinstance(exc, botocore.exceptions.SSLError):
            return StorageError(
                f"TLS verification failed: {what} {uri}{where}: {_reason(exc)}; set AWS_CA_BUNDLE to the CA "
                f"bundle (PEM) that signed the endpoint's certificate, or ISVC_S3_VERIFY_SSL=0 to turn verification off"
            )
        if isinstance(exc, botocore.exceptions.ConnectTimeoutError):
            return StorageError(
                f"timeout: {what} {uri}{where}: no connection within {self.transfer.connect_timeout:g} s "
                f"after {self.transfer.max_attempts} attempts (ISVC_STORAGE_CONNECT_TIMEOUT)"
            )
        if isinstance(exc, botocore.exceptions.ReadTimeoutError):
            return StorageError(
                f"timeout: {what} {uri}{where}: no answer within {self.transfer.read_timeout:g} s "
                f"after {self.transfer.max_attempts} attempts (ISVC_STORAGE_READ_TIMEOUT)"
            )
        if isinstance(exc, botocore.exceptions.EndpointConnectionError):
            return StorageError(f"cannot connect: {what} {uri}: {exc} (check AWS_ENDPOINT_URL and ISVC_S3_USE_HTTPS)")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageError(
                f"no credentials: {what} {uri}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a web identity), "
                f"or ISVC_S3_ANONYMOUS=true for a public bucket"
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return StorageError(f"S3 error: {what} {uri}{where}: {exc}")
        raise exc

    def list_objects(self, location: Location, prefix: str) -> Iterable[StoreObject]:
        try:
            return list(self._pages(location, prefix))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self.failure(exc, location, "listing") from None

    def _pages(self, location: Location, prefix: str) -> Iterator[StoreObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                etag = str(item.get("ETag", ""))
                self.etags[str(item["Key"])] = etag
                version = etag + "@" + str(item.get("LastModified", ""))
                yield StoreObject(str(item["Key"]), int(item["Size"]), version)

    def download(self, location: Location, objects: Sequence[tuple[StoreObject, Path]]) -> None:
        manager = create_transfer_manager(self.client, transfer_config(self.transfer))
        try:
            futures = [
                manager.download(
                    location.bucket,
                    obj.key,
                    str(path),
                    subscribers=[_Listed(obj.size, self.etags.get(obj.key, ""))],
                )
                for obj, path in objects
            ]
            for future in futures:
                future.result()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            manager.shutdown(cancel=True)
            raise self.failure(exc, location, "downloading") from None
        except BaseException:
            manager.shutdown(cancel=True)
            raise
        manager.shutdown()


def _reason(exc: Exception) -> str:
    text = str(exc)
    marker = "certificate verify failed"
    if marker in text:
        tail = text.split(marker, 1)[1].split(")", 1)[0].strip(" :")
        return marker + (f": {tail}" if tail else "")
    return text
