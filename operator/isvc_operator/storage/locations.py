"""Where a model lives: the URI schemes, one row per store, and the parsed location."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from .errors import StorageError, redact_uri

AZURE_HOST_SUFFIX = ".blob.core.windows.net"


@dataclass(frozen=True)
class Scheme:
    """One storage scheme and the shape of its URIs (errors list them all)."""

    store: str  # "http" | "s3" | "gcs" | "azure"
    example: str


SCHEMES = (
    Scheme("http", "http(s)://HOST/ARCHIVE"),
    Scheme("s3", "s3://BUCKET/PREFIX"),
    Scheme("gcs", "gs://BUCKET/PREFIX"),
    Scheme("azure", "https://ACCOUNT" + AZURE_HOST_SUFFIX + "/CONTAINER/PREFIX"),
)
ACCEPTED = ", ".join(scheme.example for scheme in SCHEMES)


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
