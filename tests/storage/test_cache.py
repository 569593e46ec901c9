"""--cache-dir against moto's S3 server: a hit downloads nothing (the server's request log shows no
object GET), a new version is downloaded once, and two first fetches at once do not corrupt."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.storage.conftest import Server, tree
from tests.storage.test_s3 import client, env_for
from tests.support import wait_until

pytestmark = pytest.mark.stores


def object_gets(server: Server, bucket: str) -> int:
    """GETs of objects (not listings) the server logged for BUCKET."""
    pattern = re.compile(rf'"GET /{bucket}/[^? ]+ HTTP')
    return len(pattern.findall(server.log_text()))


def fetch(uri: str, dest: Path, env: dict[str, str], cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "isvc_operator.storage", "fetch", uri, str(dest), "--cache-dir", str(cache)],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=300,
    )  # fmt: skip


def test_hit_downloads_nothing_and_links_into_the_cache(s3_server: Server, tmp_path: Path) -> None:
    s3 = client(s3_server)
    s3.create_bucket(Bucket="cached")
    s3.put_object(Bucket="cached", Key="m/1/saved_model.pb", Body=b"v1")
    cache, env = tmp_path / "cache", env_for(s3_server)

    first = fetch("s3://cached/m", tmp_path / "a", env, cache)
    assert first.returncode == 0, first.stderr
    assert "downloaded into the cache" in first.stdout
    gets = wait_until(lambda: object_gets(s3_server, "cached"), 10, "the server to log the first GET")
    assert (tmp_path / "a" / "1").is_symlink() and Path(os.readlink(tmp_path / "a" / "1")).parent.parent == cache

    second = fetch("s3://cached/m", tmp_path / "b", env, cache)
    assert second.returncode == 0, second.stderr
    assert "from cache" in second.stdout
    assert tree(tmp_path / "b") == {"1/saved_model.pb": b"v1"}
    # A later line in the log would be the second run's GET; the listing request it did make is logged
    # before the process exits, so the log is complete here.
    assert object_gets(s3_server, "cached") == gets, "a cache hit fetched an object"

    s3.put_object(Bucket="cached", Key="m/1/saved_model.pb", Body=b"v2")
    third = fetch("s3://cached/m", tmp_path / "c", env, cache)
    assert third.returncode == 0, third.stderr
    assert "downloaded into the cache" in third.stdout
    assert tree(tmp_path / "c") == {"1/saved_model.pb": b"v2"}
    assert tree(tmp_path / "b") == {"1/saved_model.pb": b"v1"}, "the earlier version's entry changed"
    assert object_gets(s3_server, "cached") == gets + 1


def test_two_concurrent_first_fetches(s3_server: Server, tmp_path: Path) -> None:
    s3 = client(s3_server)
    s3.create_bucket(Bucket="race")
    expected = {f"1/part-{i:03d}.bin": os.urandom(64 * 1024) for i in range(40)}
    for name, body in expected.items():
        s3.put_object(Bucket="race", Key=f"m/{name}", Body=body)
    cache, env = tmp_path / "cache", env_for(s3_server)
    argv = [sys.executable, "-m", "isvc_operator.storage", "fetch", "s3://race/m"]
    procs = [
        subprocess.Popen(
            [*argv, str(tmp_path / name), "--cache-dir", str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )  # fmt: skip
        for name in ("a", "b")
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert tree(tmp_path / "a") == expected and tree(tmp_path / "b") == expected
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1, f"one entry, no staging left: {sorted(p.name for p in cache.iterdir())}"
    assert sum("downloaded into the cache" in out for out, _ in outputs) == 1, outputs
    assert object_gets(s3_server, "race") == len(expected), "the objects were downloaded more than once"
