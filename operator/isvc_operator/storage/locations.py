"""Where a model lives: the URI schemes, one row per store, and the parsed location."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .errors import StorageError, redact_uri

AZURE_HOST_SUFFIX = ".blob.core.windows.net"


@dataclass(frozen=True)
class Scheme:
    """One storage scheme: how its URIs look and which settings it reads."""

    store: str  # "http" | "s3" | "gcs" | "azure"
    example: str
    variables: str


SCHEMES = (
    Scheme("http", "https://HOST/model.tar.gz", "REQUESTS_CA_BUNDLE"),
    Scheme(
        "s3",
        "s3://BUCKET/PREFIX",
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_ENDPOINT_URL, ISVC_S3_USE_HTTPS, "
        "AWS_DEFAULT_REGION, AWS_CA_BUNDLE, ISVC_S3_VERIFY_SSL, ISVC_S3_ANONYMOUS, ISVC_S3_ADDRESSING_STYLE",
    ),
    Scheme("gcs", "gs://BUCKET/PREFIX", "GOOGLE_APPLICATION_CREDENTIALS, ISVC_GCS_ANONYMOUS, STORAGE_EMULATOR_HOST"),
    Scheme(
        "azure",
        "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX",
        "AZURE_STORAGE_ACCESS_KEY, AZURE_STORAGE_SAS_TOKEN, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, "
        "AZURE_TENANT_ID, ISVC_AZURE_ANONYMOUS, ISVC_AZURE_BLOB_ENDPOINT",
    ),
)
ACCEPTED = "http(s)://HOST/ARCHIVE, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX"


@dataclass(frozen=True)
class Location:
    """A parsed model URI. For object stores: bucket (or container) and the key prefix."""

    store: str
    uri: str
    bucket: str = ""
    prefix: str = ""
    account: str = ""  # Azure storage account


def parse_location(uri: str) -> Location:
    """Recognise the store of URI and split it; Azure by host suffix, as KServe does."""
    shown = redact_uri(uri)
    try:
        parts = urlsplit(uri.strip())
    except ValueError as exc:
        raise StorageError(f"download failed: {shown} is not a valid URI: {exc}") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme in ("s3", "gs"):
        if not parts.netloc:
            raise StorageError(f"download failed: {shown} names no bucket; accepted: {scheme}://BUCKET/PREFIX")
        prefix = unquote(parts.path).lstrip("/")
        return Location("s3" if scheme == "s3" else "gcs", uri, parts.netloc, prefix)
    if scheme == "https" and host.endswith(AZURE_HOST_SUFFIX):
        account = host[: -len(AZURE_HOST_SUFFIX)]
        container, _, prefix = unquote(parts.path).lstrip("/").partition("/")
        if not account or not container:
            raise StorageError(
                f"download failed: {shown} names no storage account or container; accepted: {SCHEMES[3].example}"
            )
        return Location("azure", uri, container, prefix, account)
    if scheme in ("http", "https"):
        if not parts.hostname:
            raise StorageError(f"download failed: {shown} has no host")
        return Location("http", uri)
    raise StorageError(
        f"download failed: unsupported URI scheme {parts.scheme or '(none)'!r} in {shown}; accepted: {ACCEPTED}"
    )
