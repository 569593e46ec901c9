#!/usr/bin/env python3
"""Storage benchmark: the storage program against each store's reference client, on the SAME
local server in the same run, with ratios ours/reference (below 1 is faster).

Cases:

* s3-small: 2,000 objects of 1-16 KiB under one prefix on moto's S3 server. Reference: what
  `aws s3 cp --recursive` does with default settings: list the prefix, then one s3transfer
  TransferManager (default TransferConfig: 10 threads) downloading every key.
* azure-small: the same 2,000 objects on Azurite. Reference: the SDK with default settings,
  what a plain script does: list, then `download_blob().readinto()` per blob, one at a time.
* azure-1gib: one 1 GiB blob on Azurite. Reference: `download_blob().readinto()` with the SDK's
  default settings (max_concurrency=1). The program's peak RSS is printed for this case (bounded
  memory: it never holds an object).

Both sides run as separate processes (interpreter start and SDK import included on both sides).
No S3 1 GiB case: moto answers every ranged GET by reading the whole object into memory, so 16
parallel ranges of a 1 GiB object would take 16 GiB of the server, not of the client.

Usage: python bench/storage_bench.py [--repeat 2] [--cases s3-small,azure-small,azure-1gib]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from tests.storage.conftest import (  # the tests' server launcher: one way to start a store
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    STORES_VERSIONS,
    Server,
)
from tests.support import reserved_port

GIB = 1024**3
SMALL = 2000

S3_REFERENCE = """
import sys, boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
endpoint, bucket, prefix, dest = sys.argv[1:5]
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
manager = create_transfer_manager(client, TransferConfig())
futures = []
for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for item in page.get("Contents", []):
        target = dest + "/" + item["Key"][len(prefix):]
        import os; os.makedirs(os.path.dirname(target), exist_ok=True)
        futures.append(manager.download(bucket, item["Key"], target))
for f in futures:
    f.result()
manager.shutdown()
"""

AZURE_REFERENCE = """
import os, sys
from azure.storage.blob import BlobServiceClient
endpoint, key, container, prefix, dest = sys.argv[1:6]
service = BlobServiceClient(endpoint, credential={"account_name": "devstoreaccount1", "account_key": key})
client = service.get_container_client(container)
for blob in client.list_blobs(name_starts_with=prefix):
    target = dest + "/" + blob.name[len(prefix):]
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as out:
        client.download_blob(blob.name).readinto(out)
"""

RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[2:]).returncode\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def timed(argv: list[str], env: dict[str, str], work: Path) -> tuple[float, int]:
    """Seconds and peak RSS (KiB) of one process."""
    rss = work / "rss"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, str(rss), *argv], env={**os.environ, **env}, capture_output=True, text=True
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed, int(rss.read_text())


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def compare(
    name: str, ours: list[str], ref: list[str], env: dict[str, str], work: Path, repeat: int, size: int
) -> None:
    ours_s, ref_s, rss = [], [], []
    for _ in range(repeat):
        for side in ("ref", "ours"):
            dest = work / f"dest-{side}"
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()
            seconds, peak = timed([*(ours if side == "ours" else ref), str(dest)], env, work)
            got = tree_bytes(dest)
            if got != size:
                raise SystemExit(f"{name} {side}: {got} bytes downloaded, expected {size}")
            (ours_s if side == "ours" else ref_s).append(seconds)
            if side == "ours":
                rss.append(peak)
            shutil.rmtree(dest, ignore_errors=True)
    o, r = statistics.median(ours_s), statistics.median(ref_s)
    print(
        f"{name:12s} ours {o:7.2f} s  reference {r:7.2f} s  ratio ours/reference {o / r:5.2f}  "
        f"ours peak RSS {max(rss) / 1024:6.0f} MiB  (runs: ours {[round(s, 2) for s in ours_s]}, "
        f"reference {[round(s, 2) for s in ref_s]})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cases", default="s3-small,azure-small,azure-1gib")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    cache = Path(
        subprocess.run(
            ["bash", str(ROOT / "hack/stores/build.sh"), "all"], check=True, capture_output=True, text=True
        ).stdout.split()[-1]
    )
    work = Path(tempfile.mkdtemp(prefix="storage-bench-"))
    small = {f"1/shard-{i:04d}.bin": os.urandom(1024 + (i * 7919) % (15 * 1024)) for i in range(SMALL)}
    small_size = sum(len(v) for v in small.values())
    ours_cmd = [sys.executable, "-m", "isvc_operator.storage", "fetch"]
    servers: list[Server] = []
    try:
        if "s3-small" in cases:
            import boto3
            from botocore.config import Config

            s3 = Server("moto", reserved_port(), work / "moto.log")
            servers.append(s3)
            moto = cache / f"stores/moto-{STORES_VERSIONS['MOTO_VERSION']}/bin/moto_server"
            s3.start([str(moto), "-H", "127.0.0.1", "-p", str(s3.port)])
            endpoint = f"http://127.0.0.1:{s3.port}"
            env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
            client = boto3.client(
                "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
                region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench",
            )  # fmt: skip
            client.create_bucket(Bucket="bench")
            with ThreadPoolExecutor(16) as pool:
                list(
                    pool.map(
                        lambda kv: client.put_object(Bucket="bench", Key=f"small/{kv[0]}", Body=kv[1]), small.items()
                    )
                )
            compare(
                "s3-small", [*ours_cmd, "s3://bench/small"],
                [sys.executable, "-c", S3_REFERENCE, endpoint, "bench", "small/"],
                {**env, "AWS_ENDPOINT_URL": endpoint}, work, args.repeat, small_size,
            )  # fmt: skip
        if cases & {"azure-small", "azure-1gib"}:
            from azure.storage.blob import BlobBlock, BlobServiceClient

            az = Server("azurite", reserved_port(), work / "azurite.log")
            servers.append(az)
            azurite = cache / f"stores/azurite-{STORES_VERSIONS['AZURITE_VERSION']}/node_modules/.bin/azurite-blob"
            (work / "azurite").mkdir()
            az.start(
                [str(azurite), "--blobHost", "127.0.0.1", "--blobPort", str(az.port), "--location",
                 str(work / "azurite"), "--loose", "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
                cwd=work,
            )  # fmt: skip
            endpoint = f"http://127.0.0.1:{az.port}/{AZURITE_ACCOUNT}"
            service = BlobServiceClient(
                endpoint, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}
            )
            container = service.create_container("bench")
            env = {"ISVC_AZURE_BLOB_ENDPOINT": endpoint, "AZURE_STORAGE_ACCESS_KEY": AZURITE_KEY}
            uri = f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/bench"
            if "azure-small" in cases:
                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(lambda kv: container.upload_blob(f"small/{kv[0]}", kv[1]), small.items()))
                compare(
                    "azure-small", [*ours_cmd, f"{uri}/small"],
                    [sys.executable, "-c", AZURE_REFERENCE, endpoint, AZURITE_KEY, "bench", "small/"],
                    env, work, args.repeat, small_size,
                )  # fmt: skip
            if "azure-1gib" in cases:
                blob = container.get_blob_client("large/weights.bin")
                chunk = os.urandom(4 * 1024 * 1024)
                ids = []
                for index in range(GIB // len(chunk)):
                    blob.stage_block(f"{index:08d}", chunk)
                    ids.append(BlobBlock(block_id=f"{index:08d}"))
                blob.commit_block_list(ids)
                compare(
                    "azure-1gib", [*ours_cmd, f"{uri}/large"],
                    [sys.executable, "-c", AZURE_REFERENCE, endpoint, AZURITE_KEY, "bench", "large/"],
                    env, work, args.repeat, GIB,
                )  # fmt: skip
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
