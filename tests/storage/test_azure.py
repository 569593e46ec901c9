"""Azure Blob end to end against Azurite (ISVC_AZURE_BLOB_ENDPOINT), the program as a subprocess:
account key, wrong key, anonymous on a public and on a private container, missing container, and
the 1 GiB blob whose download must stay in bounded memory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from tests.storage.conftest import AZURITE_ACCOUNT, AZURITE_KEY, Server, run_fetch, tree

pytestmark = pytest.mark.stores

URI = f"https://{AZURITE_ACCOUNT}.blob.core.windows.net"
GIB = 1024**3
# The program's peak RSS for a 1 GiB blob: ~75 MiB for the interpreter and the SDK (its peak for
# 2,000 small blobs), plus 16 parallel 8 MiB chunks, each held as received and as written (~256 MiB):
# ~330 MiB. A program that held the blob, or let chunks pile up, would pass 1 GiB.
RSS_BOUND_MIB = 400


def endpoint(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}/{AZURITE_ACCOUNT}"


def env_for(server: Server, **extra: str) -> dict[str, str]:
    return {"ISVC_AZURE_BLOB_ENDPOINT": endpoint(server), "AZURE_STORAGE_ACCESS_KEY": AZURITE_KEY, **extra}


@pytest.fixture(scope="module")
def blobs(azure_server: Server) -> Any:
    service = BlobServiceClient(
        endpoint(azure_server), credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
    )
    private = service.create_container("private")
    for key, body in {"m/1/saved_model.pb": b"az-graph", "m/1/variables/variables.index": b"az-index"}.items():
        private.upload_blob(key, body)
    public = service.create_container("public", public_access="container")
    public.upload_blob("m/1/model.pt", b"az-public")
    return service


def test_directory_with_account_key(azure_server: Server, blobs: Any, tmp_path: Path) -> None:
    run = run_fetch(f"{URI}/private/m", tmp_path / "m", env_for(azure_server), "--layout", "tensorflow")
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"1/saved_model.pb": b"az-graph", "1/variables/variables.index": b"az-index"}


def test_wrong_key_is_access_denied_naming_the_variable(azure_server: Server, blobs: Any, tmp_path: Path) -> None:
    wrong = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    run = run_fetch(f"{URI}/private/m", tmp_path / "m", env_for(azure_server, AZURE_STORAGE_ACCESS_KEY=wrong))
    assert run.returncode == 1
    assert run.termination.startswith("access denied: listing"), run.termination
    assert "AZURE_STORAGE_ACCESS_KEY" in run.termination and wrong not in run.stderr + run.termination


def test_anonymous_public_container(azure_server: Server, blobs: Any, tmp_path: Path) -> None:
    env = {"ISVC_AZURE_BLOB_ENDPOINT": endpoint(azure_server), "ISVC_AZURE_ANONYMOUS": "true"}
    run = run_fetch(f"{URI}/public/m", tmp_path / "m", env, "--layout", "pytorch")
    assert run.returncode == 0, run.stderr
    assert tree(tmp_path / "m") == {"1/model.pt": b"az-public"}


def test_anonymous_private_container_is_refused(azure_server: Server, blobs: Any, tmp_path: Path) -> None:
    env = {"ISVC_AZURE_BLOB_ENDPOINT": endpoint(azure_server), "ISVC_AZURE_ANONYMOUS": "true"}
    run = run_fetch(f"{URI}/private/m", tmp_path / "m", env)
    assert run.returncode == 1
    # Azure answers an anonymous request for a private container as if it did not exist.
    assert run.termination.startswith(("access denied: listing", "not found: listing")), run.termination
    assert "anonymous access (ISVC_AZURE_ANONYMOUS=true)" in run.termination or "does not exist" in run.termination


def test_missing_container(azure_server: Server, blobs: Any, tmp_path: Path) -> None:
    run = run_fetch(f"{URI}/nocontainer/m", tmp_path / "m", env_for(azure_server))
    assert run.returncode == 1
    assert run.termination.startswith(f"not found: listing {URI}/nocontainer/m: container 'nocontainer'"), (
        run.termination
    )


def test_one_gib_blob_in_bounded_memory(azure_server: Server, blobs: Any, tmp_path: Path) -> None:
    service = blobs
    container = service.create_container("large")
    chunk = os.urandom(4 * 1024 * 1024)
    block_ids = []
    blob = container.get_blob_client("m/1/weights.bin")
    from azure.storage.blob import BlobBlock

    for index in range(GIB // len(chunk)):
        block_id = f"{index:08d}"
        blob.stage_block(block_id, chunk)
        block_ids.append(BlobBlock(block_id=block_id))
    blob.commit_block_list(block_ids)
    run = run_fetch(f"{URI}/large/m", tmp_path / "m", env_for(azure_server), timeout=1200)
    assert run.returncode == 0, run.stderr
    written = tmp_path / "m/1/weights.bin"
    assert written.stat().st_size == GIB
    with open(written, "rb") as handle:
        assert handle.read(len(chunk)) == chunk
        handle.seek(GIB - len(chunk))
        assert handle.read() == chunk
    peak_mib = run.max_rss_kib / 1024
    print(f"1 GiB blob: peak RSS of the program {peak_mib:.0f} MiB")
    assert 0 < peak_mib < RSS_BOUND_MIB, f"peak RSS {peak_mib:.0f} MiB for a 1 GiB blob, bound {RSS_BOUND_MIB} MiB"


def test_stalled_server_times_out(stalled_port: int, tmp_path: Path) -> None:
    env = {
        "ISVC_AZURE_BLOB_ENDPOINT": f"http://127.0.0.1:{stalled_port}/{AZURITE_ACCOUNT}",
        "AZURE_STORAGE_ACCESS_KEY": AZURITE_KEY,
        "ISVC_STORAGE_CONNECT_TIMEOUT": "2",
        "ISVC_STORAGE_READ_TIMEOUT": "2",
    }
    # The subprocess timeout is the hang detector: 3 attempts x 2 s plus backoff is far below it.
    run = run_fetch(f"{URI}/private/m", tmp_path / "m", env, timeout=120)
    assert run.returncode == 1
    assert run.termination.startswith(f"timeout: listing {URI}/private/m"), run.termination
