"""Pure pieces of the object-store support: URI parsing, settings from env, key mapping, cache keys."""

from __future__ import annotations

import pytest

from isvc_operator.storage import StorageError
from isvc_operator.storage.cache import cache_key
from isvc_operator.storage.locations import Location, parse_location
from isvc_operator.storage.objects import relative_path
from isvc_operator.storage.settings import (
    azure_settings,
    credentials_text,
    gcs_settings,
    s3_settings,
    transfer_settings,
)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/models/m1", Location("s3", "s3://bucket/models/m1", "bucket", "models/m1")),
        ("s3://bucket", Location("s3", "s3://bucket", "bucket", "")),
        ("gs://b/p/", Location("gcs", "gs://b/p/", "b", "p/")),
        (
            "https://acct.blob.core.windows.net/models/m1",
            Location("azure", "https://acct.blob.core.windows.net/models/m1", "models", "m1", "acct"),
        ),
        ("https://example.com/m.tgz", Location("http", "https://example.com/m.tgz")),
        (
            "https://blob.core.windows.net.example.com/x",
            Location("http", "https://blob.core.windows.net.example.com/x"),
        ),
    ],
)
def test_parse_location(uri: str, expected: Location) -> None:
    assert parse_location(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://h/m", "unsupported URI scheme 'ftp'"),
        ("s3:///m", "names no bucket"),
        ("https://acct.blob.core.windows.net/", "names no storage account or container"),
    ],
)
def test_parse_location_refuses(uri: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        parse_location(uri)


def test_s3_settings_defaults_and_endpoint_forms() -> None:
    plain = s3_settings({})
    assert (plain.endpoint_url, plain.addressing_style, plain.verify, plain.anonymous) == (None, "auto", True, False)
    local = s3_settings({"AWS_ENDPOINT_URL": "minio:9000", "ISVC_S3_USE_HTTPS": "0", "AWS_CA_BUNDLE": "/ca.pem"})
    assert (local.endpoint_url, local.addressing_style, local.verify) == ("http://minio:9000", "path", "/ca.pem")
    off = s3_settings({"AWS_ENDPOINT_URL": "https://s3.local", "ISVC_S3_VERIFY_SSL": "false", "AWS_CA_BUNDLE": "/c"})
    assert (off.endpoint_url, off.verify) == ("https://s3.local", False)


def test_credential_variables_are_named_never_valued() -> None:
    settings = s3_settings({"AWS_ACCESS_KEY_ID": "AKIAXXXX", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    text = credentials_text(settings.credential_variables, "ISVC_S3_ANONYMOUS", settings.anonymous)
    assert text == "credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"
    assert credentials_text((), "ISVC_GCS_ANONYMOUS", True) == "anonymous access (ISVC_GCS_ANONYMOUS=true)"
    assert "default credential chain" in credentials_text((), "X", False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ISVC_S3_ANONYMOUS": "maybe"}, "ISVC_S3_ANONYMOUS='maybe' is not a boolean"),
        ({"ISVC_S3_ADDRESSING_STYLE": "sideways"}, "not an addressing style"),
    ],
)
def test_s3_settings_refuse(env: dict[str, str], message: str) -> None:
    with pytest.raises(StorageError, match=message):
        s3_settings(env)


def test_transfer_settings() -> None:
    default = transfer_settings({})
    assert (default.connect_timeout, default.read_timeout, default.concurrency) == (30.0, 300.0, 16)
    set_ = transfer_settings(
        {"ISVC_STORAGE_CONNECT_TIMEOUT": "2", "ISVC_STORAGE_READ_TIMEOUT": "5.5", "ISVC_STORAGE_CONCURRENCY": "4"}
    )
    assert (set_.connect_timeout, set_.read_timeout, set_.concurrency) == (2.0, 5.5, 4)
    for env in ({"ISVC_STORAGE_READ_TIMEOUT": "0"}, {"ISVC_STORAGE_CONCURRENCY": "lots"}):
        with pytest.raises(StorageError):
            transfer_settings(env)


def test_gcs_and_azure_settings() -> None:
    gcs = gcs_settings({"GOOGLE_APPLICATION_CREDENTIALS": "/k.json", "STORAGE_EMULATOR_HOST": "http://h:1"})
    assert (gcs.credential_variables, gcs.emulator_host, gcs.anonymous) == (
        ("GOOGLE_APPLICATION_CREDENTIALS",),
        "http://h:1",
        False,
    )
    azure = azure_settings({"AZURE_STORAGE_SAS_TOKEN": "?sv=1&sig=x", "ISVC_AZURE_BLOB_ENDPOINT": "http://h:1/a/"})
    assert (azure.sas_token, azure.blob_endpoint, azure.credential_variables) == (
        "sv=1&sig=x",
        "http://h:1/a",
        ("AZURE_STORAGE_SAS_TOKEN",),
    )


LOCATION = Location("s3", "s3://b/m", "b", "m")


@pytest.mark.parametrize(
    ("key", "rel"), [("m/1/saved_model.pb", "1/saved_model.pb"), ("m/1/variables/v.index", "1/variables/v.index")]
)
def test_relative_path(key: str, rel: str) -> None:
    assert relative_path(key, "m/", LOCATION) == rel


@pytest.mark.parametrize("key", ["m/../x", "m/1/../../x", "m//etc/passwd", "m/./x", "m/a\x00b"])
def test_relative_path_refuses_keys_leaving_dest(key: str) -> None:
    with pytest.raises(StorageError, match="would land outside the model directory"):
        relative_path(key, "m/", LOCATION)


def test_cache_key_changes_with_uri_and_any_version() -> None:
    base = cache_key("s3://b/m", ["1/a\t3\tetag1", "1/b\t4\tetag2"])
    assert base == cache_key("s3://b/m", ["1/a\t3\tetag1", "1/b\t4\tetag2"])
    assert base != cache_key("s3://b/n", ["1/a\t3\tetag1", "1/b\t4\tetag2"])
    assert base != cache_key("s3://b/m", ["1/a\t3\tetag1", "1/b\t4\tetag3"])
    assert len(base) == 64
