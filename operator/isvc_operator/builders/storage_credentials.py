"""The storage init container's credentials, from the predictor's ServiceAccount and the Secrets it
lists, read the way KServe reads them, so a KServe user's Secrets work unchanged.

Pure: the input is the ServiceAccount and its Secrets as dicts, and only their annotations and key
names are read. No value is ever copied: keys become `secretKeyRef` env entries, a GCS key file a
Secret volume. The result goes to the init container only, never to the model server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KSERVE_ANNOTATION_PREFIX = "serving.kserve.io/"
# KServe's S3 annotations (on a Secret, or on the ServiceAccount itself) -> the plain setting the
# storage program reads.
S3_ANNOTATION_ENV = {
    "s3-endpoint": "AWS_ENDPOINT_URL",
    "s3-usehttps": "ISVC_S3_USE_HTTPS",
    "s3-region": "AWS_DEFAULT_REGION",
    "s3-verifyssl": "ISVC_S3_VERIFY_SSL",
    "s3-cabundle": "AWS_CA_BUNDLE",
    "s3-useanoncredential": "ISVC_S3_ANONYMOUS",
}
# Secret key -> the variable it becomes (a secretKeyRef), per store. KServe's legacy AZ_* keys feed
# the same variables as AZURE_*; the first key found for a variable wins. KServe has no setting for
# a GCS or Azure endpoint other than the public one, so an emulator or private endpoint is a key of
# the same Secret, named as the variable the storage program reads: STORAGE_EMULATOR_HOST (the
# google-cloud-storage SDK's own variable) and ISVC_AZURE_BLOB_ENDPOINT (the blob service URL).
SECRET_KEY_ENV = {
    "s3": {
        "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
    },
    "gs": {"STORAGE_EMULATOR_HOST": "STORAGE_EMULATOR_HOST"},
    "azure": {
        "AZURE_STORAGE_ACCESS_KEY": "AZURE_STORAGE_ACCESS_KEY",
        "AZURE_STORAGE_SAS_TOKEN": "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_CLIENT_ID": "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET": "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID": "AZURE_TENANT_ID",
        "AZ_CLIENT_ID": "AZURE_CLIENT_ID",
        "AZ_CLIENT_SECRET": "AZURE_CLIENT_SECRET",
        "AZ_TENANT_ID": "AZURE_TENANT_ID",
        "ISVC_AZURE_BLOB_ENDPOINT": "ISVC_AZURE_BLOB_ENDPOINT",
    },
}
GCS_KEY_FILE = "gcloud-application-credentials.json"
GCS_CREDENTIALS_VOLUME = "gcs-credentials"
GCS_CREDENTIALS_DIR = "/var/secrets/gcs"


@dataclass(frozen=True)
class AccountSecrets:
    """A ServiceAccount and the Secrets its `secrets` list names, in that order (as dicts)."""

    account: Mapping[str, Any]
    secrets: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class StorageCredentials:
    """What the init container gets: env entries, and volumes with their mounts."""

    env: tuple[Mapping[str, Any], ...] = ()
    volumes: tuple[Mapping[str, Any], ...] = ()
    mounts: tuple[Mapping[str, Any], ...] = ()


NO_CREDENTIALS = StorageCredentials()


def secret_keys(secret: Mapping[str, Any]) -> list[str]:
    """The key names a Secret holds (its values are never looked at)."""
    return [*(secret.get("data") or {}), *(secret.get("stringData") or {})]


def without_values(secret: Mapping[str, Any]) -> dict[str, Any]:
    """What of a Secret the credentials need: its name, annotations and key names; every value is dropped."""
    metadata = secret.get("metadata") or {}
    return {
        "metadata": {"name": metadata.get("name", ""), "annotations": dict(metadata.get("annotations") or {})},
        "data": dict.fromkeys(secret_keys(secret), ""),
    }


def _s3_settings(sources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The S3 annotations as plain env values; the first source (Secret, then the ServiceAccount) that
    sets one wins."""
    env: dict[str, str] = {}
    for source in sources:
        annotations = (source.get("metadata") or {}).get("annotations") or {}
        for annotation, name in S3_ANNOTATION_ENV.items():
            value = annotations.get(KSERVE_ANNOTATION_PREFIX + annotation)
            if value is not None and name not in env:
                env[name] = str(value)
    return [{"name": name, "value": env[name]} for name in S3_ANNOTATION_ENV.values() if name in env]


def build_storage_credentials(store: str, account_secrets: AccountSecrets | None) -> StorageCredentials:
    """The env, volumes and mounts that give the storage program access to `store` (s3, gs, azure).

    No ServiceAccount or nothing usable in it: no credentials, and the program falls back to
    anonymous access or the SDK's default chain (workload identity)."""
    if account_secrets is None or store not in SECRET_KEY_ENV:
        return NO_CREDENTIALS
    env: list[dict[str, Any]] = (
        _s3_settings([*account_secrets.secrets, account_secrets.account]) if store == "s3" else []
    )
    seen = {e["name"] for e in env}
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for secret in account_secrets.secrets:
        name = (secret.get("metadata") or {}).get("name", "")
        keys = secret_keys(secret)
        for key, variable in SECRET_KEY_ENV[store].items():
            if key in keys and variable not in seen:
                seen.add(variable)
                env.append({"name": variable, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}})
        if store == "gs" and GCS_KEY_FILE in keys and not volumes:
            volumes.append(
                {
                    "name": GCS_CREDENTIALS_VOLUME,
                    "secret": {"secretName": name, "items": [{"key": GCS_KEY_FILE, "path": GCS_KEY_FILE}]},
                }
            )
            mounts.append({"name": GCS_CREDENTIALS_VOLUME, "mountPath": GCS_CREDENTIALS_DIR, "readOnly": True})
            env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{GCS_CREDENTIALS_DIR}/{GCS_KEY_FILE}"})
    return StorageCredentials(env=tuple(env), volumes=tuple(volumes), mounts=tuple(mounts))
