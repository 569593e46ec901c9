"""Settings of the object stores, read only from environment variables (the SDKs' own where they
have one, ``ISVC_*`` otherwise), so a person running the command by hand gets what the init
container gets. Pure: every function takes the environment as a mapping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import StorageError

CONNECT_TIMEOUT_ENV = "ISVC_STORAGE_CONNECT_TIMEOUT"
READ_TIMEOUT_ENV = "ISVC_STORAGE_READ_TIMEOUT"
CONCURRENCY_ENV = "ISVC_STORAGE_CONCURRENCY"
DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_READ_TIMEOUT = 300.0
DEFAULT_CONCURRENCY = 16
# Attempts per request (the first one included); each SDK backs off between them.
MAX_ATTEMPTS = 3

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off (any case); unset or empty is the default."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise StorageError(f"{name}={env[name]!r} is not a boolean; accepted: true/false, 1/0, yes/no, on/off")


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise StorageError(f"{name}={raw!r} is not a positive number of seconds")
    return value


@dataclass(frozen=True)
class TransferSettings:
    """What every store's client is built with: nothing waits forever, nothing is unbounded."""

    connect_timeout: float
    read_timeout: float
    concurrency: int
    max_attempts: int = MAX_ATTEMPTS


def transfer_settings(env: Mapping[str, str]) -> TransferSettings:
    raw = env.get(CONCURRENCY_ENV, "").strip()
    concurrency = DEFAULT_CONCURRENCY
    if raw:
        if not raw.isdigit() or not 1 <= int(raw) <= 256:
            raise StorageError(f"{CONCURRENCY_ENV}={raw!r} is not a whole number between 1 and 256")
        concurrency = int(raw)
    return TransferSettings(
        connect_timeout=_positive_number(env, CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT),
        read_timeout=_positive_number(env, READ_TIMEOUT_ENV, DEFAULT_READ_TIMEOUT),
        concurrency=concurrency,
    )


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None
    region: str | None
    addressing_style: str  # path | virtual | auto
    verify: bool | str  # False, True, or a CA bundle path
    anonymous: bool
    credential_variables: tuple[str, ...]  # names of the credential variables set, for messages


S3_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_PROFILE",
)
_ADDRESSING_STYLES = ("path", "virtual", "auto")


def s3_settings(env: Mapping[str, str]) -> S3Settings:
    endpoint = env.get("AWS_ENDPOINT_URL", "").strip() or None
    if endpoint and "://" not in endpoint:
        scheme = "https" if env_flag(env, "ISVC_S3_USE_HTTPS", True) else "http"
        endpoint = f"{scheme}://{endpoint}"
    style = env.get("ISVC_S3_ADDRESSING_STYLE", "").strip().lower() or ("path" if endpoint else "auto")
    if style not in _ADDRESSING_STYLES:
        raise StorageError(
            f"ISVC_S3_ADDRESSING_STYLE={style!r} is not an addressing style; accepted: {', '.join(_ADDRESSING_STYLES)}"
        )
    verify: bool | str = env_flag(env, "ISVC_S3_VERIFY_SSL", True)
    bundle = env.get("AWS_CA_BUNDLE", "").strip()
    if verify and bundle:
        verify = bundle
    return S3Settings(
        endpoint_url=endpoint,
        region=env.get("AWS_DEFAULT_REGION", "").strip() or env.get("AWS_REGION", "").strip() or None,
        addressing_style=style,
        verify=verify,
        anonymous=env_flag(env, "ISVC_S3_ANONYMOUS", False),
        credential_variables=tuple(name for name in S3_CREDENTIAL_VARIABLES if env.get(name)),
    )


@dataclass(frozen=True)
class GcsSettings:
    anonymous: bool
    emulator_host: str | None
    credential_variables: tuple[str, ...]


def gcs_settings(env: Mapping[str, str]) -> GcsSettings:
    return GcsSettings(
        anonymous=env_flag(env, "ISVC_GCS_ANONYMOUS", False),
        emulator_host=env.get("STORAGE_EMULATOR_HOST", "").strip() or None,
        credential_variables=tuple(n for n in ("GOOGLE_APPLICATION_CREDENTIALS",) if env.get(n)),
    )


AZURE_CREDENTIAL_VARIABLES = (
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
)


@dataclass(frozen=True)
class AzureSettings:
    account_key: str | None
    sas_token: str | None
    anonymous: bool
    blob_endpoint: str | None
    credential_variables: tuple[str, ...]


def azure_settings(env: Mapping[str, str]) -> AzureSettings:
    return AzureSettings(
        account_key=env.get("AZURE_STORAGE_ACCESS_KEY") or None,
        sas_token=(env.get("AZURE_STORAGE_SAS_TOKEN") or "").lstrip("?") or None,
        anonymous=env_flag(env, "ISVC_AZURE_ANONYMOUS", False),
        blob_endpoint=(env.get("ISVC_AZURE_BLOB_ENDPOINT") or "").strip().rstrip("/") or None,
        credential_variables=tuple(n for n in AZURE_CREDENTIAL_VARIABLES if env.get(n)),
    )


def credentials_text(variables: tuple[str, ...], anonymous_variable: str, anonymous: bool) -> str:
    """Which credentials were in use, by variable name only (never a value)."""
    if anonymous:
        return f"anonymous access ({anonymous_variable}=true)"
    if variables:
        return "credentials from " + ", ".join(variables)
    return "the SDK's default credential chain (no credential variables set)"
