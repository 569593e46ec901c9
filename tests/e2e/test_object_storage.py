"""A model in S3, for real: an S3 server (moto's, from hack/stores/build.sh) on the node's address,
credentials from the predictor's ServiceAccount the KServe way, the storage init container
downloading every object under the prefix, the PyTorch server answering; then a second replica
that takes the model from the cache claim without a download, and a missing prefix named in the
status by the init container's own line."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT, Kube, wait_until
from tests.support import reserved_port, shell_vars

from .conftest import NODE, float32, isvc, node_port, post_json, wait_condition

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("e2e_operator")]

BUCKET = "models"
# moto accepts any key; these values must still never show outside the Secret.
KEY_ID = "AKIA-e2e-7c1f9"
SECRET_KEY = "e2e-secret-access-key-40d2b"


class S3Server:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.client = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )

    def object_downloads(self, prefix: str) -> int:
        """GET requests for objects under `prefix` (listings carry a query string; downloads do not)."""
        pattern = re.compile(rf'"GET /{BUCKET}/{re.escape(prefix)}[^ ?]* HTTP')
        return len(pattern.findall(self.log.read_text()))


@pytest.fixture(scope="module")
def s3_server(real_node: str, models: Path) -> Iterator[S3Server]:
    """moto's S3 server on the node's address, with iris v1 unpacked under s3://models/iris-v1/."""
    cache = subprocess.run(
        ["bash", str(ROOT / "hack/stores/build.sh"), "moto"], check=True, capture_output=True, text=True, timeout=900
    ).stdout.strip()
    version = shell_vars(ROOT / "hack/stores/versions.env")["MOTO_VERSION"]
    workdir = Path(tempfile.mkdtemp(prefix="isvc-e2e-s3-"))
    log = workdir / "moto.log"
    port = reserved_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [f"{cache}/stores/moto-{version}/bin/moto_server", "-H", NODE["NODE_IP"], "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{NODE['NODE_IP']}:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                return True
        except OSError:
            return proc.poll() is not None

    try:
        wait_until(answers, 60, "moto's S3 server to answer")
        assert proc.poll() is None, f"moto exited: {log.read_text()[-2000:]}"
        server = S3Server(url, log)
        server.client.create_bucket(Bucket=BUCKET)
        unpacked = workdir / "iris"
        with tarfile.open(models / "iris-v1.tar.gz") as tar:
            tar.extractall(unpacked, filter="data")
        for path in sorted((unpacked / "iris").rglob("*")):
            if path.is_file():
                server.client.upload_file(str(path), BUCKET, f"iris-v1/{path.relative_to(unpacked / 'iris')}")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def credentials(s3: S3Server) -> list[dict[str, Any]]:
    host_port = s3.url.removeprefix("http://")
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "s3-credentials",
                "annotations": {
                    "serving.kserve.io/s3-endpoint": host_port,
                    "serving.kserve.io/s3-usehttps": "0",
                    "serving.kserve.io/s3-region": "us-east-1",
                },
            },
            "data": {
                "AWS_ACCESS_KEY_ID": base64.b64encode(KEY_ID.encode()).decode(),
                "AWS_SECRET_ACCESS_KEY": base64.b64encode(SECRET_KEY.encode()).decode(),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "models-reader"},
            "secrets": [{"name": "s3-credentials"}],
        },
    ]


@pytest.fixture
def cache_claim(kube: Kube, namespace: str) -> Iterator[str]:
    """A ReadWriteMany claim on a host directory of the real node (this machine), writable by the
    init container's uid."""
    directory = Path(tempfile.mkdtemp(prefix="isvc-e2e-model-cache-"))
    os.chmod(directory, 0o777)
    pv = f"{namespace}-model-cache"
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {"isvc-test-namespace": namespace}},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "hostPath": {"path": str(directory), "type": "Directory"},
                    "claimRef": {"namespace": namespace, "name": "model-cache"},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "model-cache", "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ]
    )
    wait_until(
        lambda: (kube.get("pvc", "model-cache", namespace) or {}).get("status", {}).get("phase") == "Bound",
        30,
        "PVC model-cache to bind",
    )
    yield "model-cache"
    kube.run("delete", "pv", pv, "--wait=false", check=False)
    shutil.rmtree(directory, ignore_errors=True)


def init_logs(kube: Kube, namespace: str) -> dict[str, str]:
    pods = json.loads(kube.run("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    return {
        p["metadata"]["name"]: kube.run(
            "logs", "-n", namespace, p["metadata"]["name"], "-c", "storage-initializer", check=False
        ).stdout
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    }


def test_iris_from_s3_with_kserve_credentials_and_a_second_replica_from_the_cache(
    kube: Kube, namespace: str, s3_server: S3Server, cache_claim: str, expected: dict[str, Any]
) -> None:
    kube.apply(credentials(s3_server), namespace)
    before = s3_server.object_downloads("iris-v1/")
    predictor = {
        "serviceAccountName": "models-reader",
        "pytorch": {"storageUri": f"s3://{BUCKET}/iris-v1"},
        "storage": {"cache": {"claimName": cache_claim}},
    }
    kube.apply(isvc("iris", predictor), namespace)
    obj = wait_condition(kube, namespace, "iris", "True", timeout=300)
    assert obj["status"]["readyReplicas"] == 1
    (first,) = init_logs(kube, namespace).values()
    assert "downloaded" in first and "from cache" not in first, first
    downloads = s3_server.object_downloads("iris-v1/")
    assert downloads > before, f"the init container downloaded nothing from the S3 server: {first}"

    status, answer = post_json(
        f"http://127.0.0.1:{node_port(kube, namespace, 'iris')}/v1/models/iris:predict", expected["body"]
    )
    assert status == 200, answer
    assert float32(answer["predictions"]) == float32(expected["iris-v1"]), answer

    # A second replica: its init container links the cached model and downloads no object.
    kube.apply(isvc("iris", {**predictor, "replicas": 2}), namespace)
    obj = wait_condition(kube, namespace, "iris", "True", timeout=300)
    assert obj["status"]["readyReplicas"] == 2
    logs = init_logs(kube, namespace)
    assert len(logs) == 2 and sum("from cache" in line for line in logs.values()) == 1, logs
    assert s3_server.object_downloads("iris-v1/") == downloads, "the second replica downloaded the model again"

    # The Secret's values reached neither the model server's container nor anything a person reads.
    deployment = kube.get("deployment", "iris-predictor", namespace)
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "secretKeyRef" not in json.dumps(server) and "AWS_" not in json.dumps(server), server
    seen = (
        json.dumps(deployment)
        + json.dumps(obj["status"])
        + kube.run("get", "events", "-n", namespace, "-o", "json").stdout
    )
    seen += "".join(logs.values())
    leaked = [value for value in (KEY_ID, SECRET_KEY) if value in seen]
    assert not leaked, f"secret values in the Deployment, status, Events or init logs: {leaked}"


def test_a_missing_prefix_is_the_init_containers_line(kube: Kube, namespace: str, s3_server: S3Server) -> None:
    kube.apply(credentials(s3_server), namespace)
    uri = f"s3://{BUCKET}/no-such-model"
    kube.apply(isvc("missing", {"serviceAccountName": "models-reader", "pytorch": {"storageUri": uri}}), namespace)
    obj = wait_condition(kube, namespace, "missing", "False", timeout=180, reason="StorageInitializerFailed")
    message = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert uri in message, message
