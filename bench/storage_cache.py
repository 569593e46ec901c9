#!/usr/bin/env python3
"""Model cache benchmark: how long a second replica takes to become Ready (scale 1 -> 2) with and
without `spec.predictor.storage.cache.claimName`, on the real node, in the same run.

The model is iris v1 plus `--mib` MiB of random data beside it (assets/, which the PyTorch server
does not load), in Azurite on the node's address, credentials from the ServiceAccount's Secret: the
download is most of what a replica waits for. Each side: an isvc with one replica, Ready; then
`replicas: 2`, timed from the apply until the isvc is Ready with 2 ready replicas at its new
generation. With the cache the second replica's init container links the cached entry (its log
says "from cache"); without it, it downloads everything again. The cache claim is a
ReadWriteMany PersistentVolume on a host directory of the node, as in the e2e tests. Absolute
seconds depend on the machine and its load; the ratio (cached / uncached, below 1 is faster) is
the figure.

It runs as a pytest session with the e2e tests' fixtures (the cluster of $ISVC_CLUSTER_DIR, started
with the real node unless one answers; the operator installed by Helm from its image; Azurite):

    .venv/bin/python bench/storage_cache.py [--mib 384] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import Kube, condition, wait_until  # noqa: E402
from tests.e2e.conftest import isvc  # noqa: E402
from tests.e2e.test_object_storage import (  # noqa: E402  # cache_claim: a fixture, used by name
    AZURE_URI,
    azure_credentials,
    azurite_store,
    cache_claim,
    init_logs,
)

__all__ = ["cache_claim"]
MIB = 1024 * 1024


def ready_replicas(kube: Kube, namespace: str, name: str, replicas: int) -> bool:
    obj = kube.get("isvc", name, namespace) or {}
    status = obj.get("status") or {}
    return (
        condition(obj, "Ready").get("status") == "True"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
        and status.get("readyReplicas") == replicas
    )


def second_replica_seconds(kube: Kube, namespace: str, name: str, predictor: dict[str, Any]) -> float:
    """One replica Ready, then the seconds from `replicas: 2` until both are."""
    kube.apply(isvc(name, predictor), namespace)
    wait_until(lambda: ready_replicas(kube, namespace, name, 1), 600, f"{name} Ready with 1 replica", interval=0.5)
    started = time.monotonic()
    kube.apply(isvc(name, {**predictor, "replicas": 2}), namespace)
    wait_until(lambda: ready_replicas(kube, namespace, name, 2), 600, f"{name} Ready with 2 replicas", interval=0.1)
    return time.monotonic() - started


def test_second_replica_with_and_without_the_cache(
    kube: Kube, namespace: str, models: Path, cache_claim: str, e2e_operator: Any
) -> None:
    mib, repeat = int(os.environ["ISVC_BENCH_MIB"]), int(os.environ["ISVC_BENCH_REPEAT"])
    with azurite_store(models, padding=mib * MIB) as endpoint:
        kube.apply(azure_credentials(endpoint), namespace)
        base = {"serviceAccountName": "models-reader", "pytorch": {"storageUri": AZURE_URI}}
        rounds: list[dict[str, float]] = []
        for index in range(repeat):
            row: dict[str, float] = {}
            for side, predictor in (
                ("uncached", base),
                ("cached", {**base, "storage": {"cache": {"claimName": cache_claim}}}),
            ):
                name = f"{side}-{index}"
                row[side] = second_replica_seconds(kube, namespace, name, predictor)
                logs = init_logs(kube, namespace)
                from_cache = sum("from cache" in line for line in logs.values())
                # Cached: the second replica; from the second round on the first one too (the claim
                # keeps the entry of round 1), which does not change what is timed.
                assert from_cache == (0 if side == "uncached" else 1 if index == 0 else 2), logs
                kube.run("delete", "isvc", name, "-n", namespace, "--wait=true", "--timeout=120s")
                wait_until(lambda: not init_logs(kube, namespace), 120, f"the pods of {name} to go")
            rounds.append(row)
            print(f"\nround {index + 1}: {json.dumps({k: round(v, 2) for k, v in row.items()})}", flush=True)
    uncached = statistics.median(r["uncached"] for r in rounds)
    cached = statistics.median(r["cached"] for r in rounds)
    print(
        f"\nmodel {mib} MiB + iris v1 in Azurite; second replica Ready after scale 1 -> 2 (median of {repeat}):\n"
        f"  without cache: {uncached:.2f} s\n  with cache:    {cached:.2f} s\n"
        f"  ratio cached/uncached: {cached / uncached:.2f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=384, help="MiB of data beside the model (default 384)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians are printed (default 1)")
    args = parser.parse_args()
    os.environ["ISVC_BENCH_MIB"], os.environ["ISVC_BENCH_REPEAT"] = str(args.mib), str(args.repeat)
    plugins = ["-p", "tests.conftest", "-p", "tests.e2e.conftest", "-p", "no:cacheprovider"]
    # The fixtures' modules are imported above, before pytest could rewrite their asserts: no warning for it.
    quiet = ["-q", "-s", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    return pytest.main([__file__, *plugins, *quiet])


if __name__ == "__main__":
    sys.exit(main())
