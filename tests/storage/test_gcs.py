"""gs:// end to end against fake-gcs-server (STORAGE_EMULATOR_HOST), the program as a subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tests.storage.conftest import Server, run_fetch, tree
from tests.storage.test_s3 import _tar

pytestmark = pytest.mark.stores


def emulator(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="module")
def gcs(gcs_server: Server) -> Any:
    import os

    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = emulator(gcs_server)
    try:
        client = storage.Client(credentials=AnonymousCredentials(), project="test")
        bucket = client.create_bucket("gmodels")
        for key, body in {
            "tf/1/saved_model.pb": b"gcs-graph",
            "tf/1/variables/variables.index": b"gcs-index",
            "big/1/weights.bin": b"w" * (40 * 1024 * 1024),
        }.items():
            bucket.blob(key).upload_from_string(body)
        bucket.blob("archive/m.tgz").upload_from_string(_tar({"1/saved_model.pb": b"gcs-archive"}))
        yield client
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous


def test_directory(gcs_server: Server, gcs: Any, tmp_path: Path) -> None:
    env = {"STORAGE_EMULATOR_HOST": emulator(gcs_server)}
    run = run_fetch("gs://gmodels/tf", tmp_path / "m", env, "--layout", "tensorflow")
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"1/saved_model.pb": b"gcs-graph", "1/variables/variables.index": b"gcs-index"}


def test_large_object_in_chunks(gcs_server: Server, gcs: Any, tmp_path: Path) -> None:
    env = {"STORAGE_EMULATOR_HOST": emulator(gcs_server)}
    run = run_fetch("gs://gmodels/big", tmp_path / "m", env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "m/1/weights.bin").read_bytes() == b"w" * (40 * 1024 * 1024)


def test_archive_object(gcs_server: Server, gcs: Any, tmp_path: Path) -> None:
    env = {"STORAGE_EMULATOR_HOST": emulator(gcs_server)}
    run = run_fetch("gs://gmodels/archive/m.tgz", tmp_path / "m", env, "--layout", "tensorflow")
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"1/saved_model.pb": b"gcs-archive"}


def test_missing_bucket_and_prefix(gcs_server: Server, gcs: Any, tmp_path: Path) -> None:
    env = {"STORAGE_EMULATOR_HOST": emulator(gcs_server)}
    missing_bucket = run_fetch("gs://no-such-bucket/m", tmp_path / "a", env)
    assert missing_bucket.returncode == 1
    assert missing_bucket.termination.startswith("not found: listing gs://no-such-bucket/m"), missing_bucket.termination
    missing_prefix = run_fetch("gs://gmodels/nothing", tmp_path / "b", env)
    assert missing_prefix.returncode == 1
    assert "no objects at or under gs://gmodels/nothing" in missing_prefix.termination


def test_stalled_server_times_out(stalled_port: int, tmp_path: Path) -> None:
    env = {
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{stalled_port}",
        "ISVC_STORAGE_CONNECT_TIMEOUT": "2",
        "ISVC_STORAGE_READ_TIMEOUT": "2",
    }
    # The subprocess timeout is the hang detector: the retry deadline (2 x read timeout) is far below it.
    run = run_fetch("gs://gmodels/tf", tmp_path / "m", env, timeout=120)
    assert run.returncode == 1
    assert run.termination.startswith("timeout: listing gs://gmodels/tf"), run.termination


def test_tls_with_ca_bundle(gcs_tls_server: Server, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    import os

    host = f"https://127.0.0.1:{gcs_tls_server.port}"
    previous = {name: os.environ.get(name) for name in ("STORAGE_EMULATOR_HOST", "REQUESTS_CA_BUNDLE")}
    os.environ.update(STORAGE_EMULATOR_HOST=host, REQUESTS_CA_BUNDLE=str(certificate[0]))
    try:
        client = storage.Client(credentials=AnonymousCredentials(), project="test")
        client.create_bucket("gtls").blob("m/1/saved_model.pb").upload_from_string(b"gcs-tls")
    finally:
        for name, value in previous.items():
            os.environ.pop(name, None) if value is None else os.environ.__setitem__(name, value)
    env = {"STORAGE_EMULATOR_HOST": host, "ISVC_STORAGE_CONNECT_TIMEOUT": "2", "ISVC_STORAGE_READ_TIMEOUT": "2"}

    verified = run_fetch("gs://gtls/m", tmp_path / "a", {**env, "REQUESTS_CA_BUNDLE": str(certificate[0])})
    assert verified.returncode == 0, verified.stderr
    assert tree(tmp_path / "a") == {"1/saved_model.pb": b"gcs-tls"}

    refused = run_fetch("gs://gtls/m", tmp_path / "b", env, timeout=120)
    assert refused.returncode == 1
    assert refused.termination.startswith("TLS verification failed: listing gs://gtls/m"), refused.termination
    assert "REQUESTS_CA_BUNDLE" in refused.termination
