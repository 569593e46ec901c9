"""Models in object stores, for real: an S3 server (moto's), fake-gcs-server and Azurite (from
hack/stores/build.sh) on the node's address, credentials from the predictor's ServiceAccount the
KServe way, the storage init container downloading every object under the prefix, the PyTorch
server answering as the model does in-process, and no Secret value anywhere a person reads. For S3
also a second replica that takes the model from the cache claim without a download, and a missing
prefix named in the status by the init container's own line."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT, Kube, host_path_claim, wait_until
from tests.support import reserved_port, shell_vars

from .conftest import NODE, float32, isvc, node_port, post_json, wait_condition

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("e2e_operator")]

BUCKET = "models"
# moto accepts any key; these values must still never show outside the Secret.
KEY_ID = "AKIA-e2e-7c1f9"
SECRET_KEY = "e2e-secret-access-key-40d2b"
# A service-account key file as GCP issues it; fake-gcs-server takes anonymous requests, so the key is
# never used to sign (the storage program goes anonymous with STORAGE_EMULATOR_HOST), only mounted.
GCS_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\ne2e-gcs-private-key-91d3e\n-----END PRIVATE KEY-----\n"
GCS_KEY_FILE = {
    "type": "service_account",
    "project_id": "isvc-e2e",
    "private_key_id": "e2e-gcs-key-id-5b27",
    "private_key": GCS_PRIVATE_KEY,
    "client_email": "models-reader@isvc-e2e.iam.gserviceaccount.com",
    "client_id": "100000000000000000001",
    "token_uri": "https://oauth2.googleapis.com/token",
}
# Azurite serves this account with this key (AZURITE_ACCOUNTS) instead of its public development one,
# so the key is a value only the Secret holds.
AZURE_ACCOUNT = "isvce2emodels"
AZURE_KEY = base64.b64encode(b"isvc-e2e-azure-account-key-0c6a7f").decode()


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
    cache = stores_binary("moto")
    version = shell_vars(ROOT / "hack/stores/versions.env")["MOTO_VERSION"]
    workdir = Path(tempfile.mkdtemp(prefix="isvc-e2e-s3-"))
    log = workdir / "moto.log"
    url = f"http://{NODE['NODE_IP']}:{reserved_port()}"
    argv = [f"{cache}/stores/moto-{version}/bin/moto_server", "-H", NODE["NODE_IP"], "-p", url.rsplit(":", 1)[1]]
    proc = start_store(argv, log, f"{url}/moto-api/", "moto's S3 server")
    try:
        server = S3Server(url, log)
        server.client.create_bucket(Bucket=BUCKET)
        for key, path in iris_files(models, workdir):
            server.client.upload_file(str(path), BUCKET, f"iris-v1/{key}")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


def iris_files(models: Path, workdir: Path) -> list[tuple[str, Path]]:
    """iris v1 unpacked under `workdir`: (path relative to the model directory, file)."""
    unpacked = workdir / "iris"
    with tarfile.open(models / "iris-v1.tar.gz") as tar:
        tar.extractall(unpacked, filter="data")
    root = unpacked / "iris"
    return [(str(path.relative_to(root)), path) for path in sorted(root.rglob("*")) if path.is_file()]


def start_store(argv: list[str], log: Path, url: str, name: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A store server process, once `url` answers over HTTP (any status)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return proc.poll() is not None

    try:
        wait_until(answers, 60, f"{name} to answer on {url}")
        assert proc.poll() is None, f"{name} exited: {log.read_text()[-2000:]}"
    except AssertionError:
        proc.terminate()
        proc.wait(timeout=30)
        raise
    return proc


def stores_binary(name: str) -> Path:
    """hack/stores/build.sh NAME: the cache directory it prints."""
    out = subprocess.run(
        ["bash", str(ROOT / "hack/stores/build.sh"), name], check=True, capture_output=True, text=True, timeout=900
    )
    return Path(out.stdout.strip().splitlines()[-1])


def service_account(*secrets: dict[str, Any]) -> list[dict[str, Any]]:
    """The Secrets and the ServiceAccount `models-reader` that lists them."""
    return [
        *secrets,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "models-reader"},
            "secrets": [{"name": s["metadata"]["name"]} for s in secrets],
        },
    ]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def assert_answers_as_in_process(kube: Kube, namespace: str, name: str, expected: dict[str, Any]) -> None:
    status, answer = post_json(
        f"http://127.0.0.1:{node_port(kube, namespace, name)}/v1/models/{name}:predict", expected["body"]
    )
    assert status == 200, answer
    assert float32(answer["predictions"]) == float32(expected["iris-v1"]), answer


def assert_secret_values_hidden(
    kube: Kube, namespace: str, name: str, obj: dict[str, Any], values: tuple[str, ...]
) -> None:
    """The Secret's values reached neither the model server's container nor anything a person reads
    (the Deployment, the isvc's status, Events, the init containers' logs); the server container has
    no Secret reference or Secret volume at all."""
    deployment = kube.get("deployment", f"{name}-predictor", namespace)
    pod_spec = deployment["spec"]["template"]["spec"]
    server = pod_spec["containers"][0]
    secret_volumes = {v["name"] for v in pod_spec.get("volumes", []) if "secret" in v}
    assert "secretKeyRef" not in json.dumps(server), server
    assert not secret_volumes & {m["name"] for m in server.get("volumeMounts", [])}, server
    seen = (
        json.dumps(deployment)
        + json.dumps(obj["status"])
        + kube.run("get", "events", "-n", namespace, "-o", "json").stdout
        + "".join(init_logs(kube, namespace).values())
    )
    leaked = [value for value in values if value in seen]
    assert not leaked, f"secret values in the Deployment, status, Events or init logs: {leaked}"


def credentials(s3: S3Server) -> list[dict[str, Any]]:
    host_port = s3.url.removeprefix("http://")
    return service_account(
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
            "data": {"AWS_ACCESS_KEY_ID": b64(KEY_ID), "AWS_SECRET_ACCESS_KEY": b64(SECRET_KEY)},
        }
    )


@pytest.fixture
def cache_claim(kube: Kube, namespace: str) -> Iterator[str]:
    """A ReadWriteMany claim on a host directory of the real node (this machine), writable by the
    init container's uid."""
    directory = Path(tempfile.mkdtemp(prefix="isvc-e2e-model-cache-"))
    os.chmod(directory, 0o777)
    pv = host_path_claim(kube, namespace, "model-cache", str(directory), "ReadWriteMany", "Directory")
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

    assert_answers_as_in_process(kube, namespace, "iris", expected)

    # A second replica: its init container links the cached model and downloads no object.
    kube.apply(isvc("iris", {**predictor, "replicas": 2}), namespace)
    obj = wait_condition(kube, namespace, "iris", "True", timeout=300)
    assert obj["status"]["readyReplicas"] == 2
    logs = init_logs(kube, namespace)
    assert len(logs) == 2 and sum("from cache" in line for line in logs.values()) == 1, logs
    assert s3_server.object_downloads("iris-v1/") == downloads, "the second replica downloaded the model again"

    server = kube.get("deployment", "iris-predictor", namespace)["spec"]["template"]["spec"]["containers"][0]
    assert "AWS_" not in json.dumps(server), server
    assert_secret_values_hidden(kube, namespace, "iris", obj, (KEY_ID, SECRET_KEY))


def test_a_missing_prefix_is_the_init_containers_line(kube: Kube, namespace: str, s3_server: S3Server) -> None:
    kube.apply(credentials(s3_server), namespace)
    uri = f"s3://{BUCKET}/no-such-model"
    kube.apply(isvc("missing", {"serviceAccountName": "models-reader", "pytorch": {"storageUri": uri}}), namespace)
    obj = wait_condition(kube, namespace, "missing", "False", timeout=180, reason="StorageInitializerFailed")
    message = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert uri in message, message


@pytest.fixture(scope="module")
def gcs_emulator(real_node: str, models: Path) -> Iterator[str]:
    """fake-gcs-server on the node's address, with iris v1 under gs://models/iris-v1/ (loaded by its
    -data directory: top-level directories are buckets); its URL, for STORAGE_EMULATOR_HOST."""
    cache = stores_binary("fake-gcs-server")
    version = shell_vars(ROOT / "hack/stores/versions.env")["FAKE_GCS_SERVER_VERSION"]
    workdir = Path(tempfile.mkdtemp(prefix="isvc-e2e-gcs-"))
    for key, path in iris_files(models, workdir):
        (workdir / "data" / BUCKET / "iris-v1" / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, workdir / "data" / BUCKET / "iris-v1" / key)
    host_port = f"{NODE['NODE_IP']}:{reserved_port()}"
    url = f"http://{host_port}"
    argv = [str(cache / f"bin/fake-gcs-server-{version}"), "-scheme", "http", "-host", NODE["NODE_IP"],
            "-port", host_port.rsplit(":", 1)[1], "-backend", "memory", "-data", str(workdir / "data"),
            "-public-host", host_port, "-external-url", url]  # fmt: skip
    proc = start_store(argv, workdir / "fake-gcs.log", f"{url}/storage/v1/b", "fake-gcs-server")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def azurite_store(models: Path, padding: int = 0, chunk: int = 64 * 1024 * 1024) -> Iterator[str]:
    """Azurite's blob service on the node's address serving account AZURE_ACCOUNT, with iris v1 under
    container `models`, prefix iris-v1/, and `padding` bytes of random data beside it (assets/, in
    files of `chunk` bytes, which the server does not load: a model whose download takes time);
    its blob endpoint, for ISVC_AZURE_BLOB_ENDPOINT."""
    from azure.storage.blob import BlobServiceClient

    cache = stores_binary("azurite")
    version = shell_vars(ROOT / "hack/stores/versions.env")["AZURITE_VERSION"]
    workdir = Path(tempfile.mkdtemp(prefix="isvc-e2e-azurite-"))
    port = reserved_port()
    endpoint = f"http://{NODE['NODE_IP']}:{port}/{AZURE_ACCOUNT}"
    argv = [str(cache / f"stores/azurite-{version}/node_modules/.bin/azurite-blob"), "--blobHost", NODE["NODE_IP"],
            "--blobPort", str(port), "--location", str(workdir / "data"), "--loose", "--skipApiVersionCheck",
            "--disableTelemetry"]  # fmt: skip
    previous = os.environ.get("AZURITE_ACCOUNTS")
    os.environ["AZURITE_ACCOUNTS"] = f"{AZURE_ACCOUNT}:{AZURE_KEY}"
    try:
        proc = start_store(argv, workdir / "azurite.log", endpoint, "Azurite", cwd=workdir)
    finally:
        if previous is None:
            os.environ.pop("AZURITE_ACCOUNTS")
        else:
            os.environ["AZURITE_ACCOUNTS"] = previous
    try:
        service = BlobServiceClient(endpoint, credential={"account_name": AZURE_ACCOUNT, "account_key": AZURE_KEY})
        container = service.create_container(BUCKET)
        for key, path in iris_files(models, workdir):
            with open(path, "rb") as body:
                container.upload_blob(f"iris-v1/{key}", body)
        for index in range(-(-padding // chunk)):
            size = min(chunk, padding - index * chunk)
            container.upload_blob(f"iris-v1/assets/shard-{index}.dat", os.urandom(size), max_concurrency=4)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def azurite(real_node: str, models: Path) -> Iterator[str]:
    with azurite_store(models) as endpoint:
        yield endpoint


def azure_credentials(endpoint: str) -> list[dict[str, Any]]:
    """The account key and the blob endpoint in one Secret, listed by ServiceAccount models-reader."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "azure-credentials"},
        "data": {"AZURE_STORAGE_ACCESS_KEY": b64(AZURE_KEY), "ISVC_AZURE_BLOB_ENDPOINT": b64(endpoint)},
    }
    return service_account(secret)


AZURE_URI = f"https://{AZURE_ACCOUNT}.blob.core.windows.net/{BUCKET}/iris-v1"


def test_iris_from_gcs_with_a_service_account_key_secret(
    kube: Kube, namespace: str, gcs_emulator: str, expected: dict[str, Any]
) -> None:
    key_file = json.dumps(GCS_KEY_FILE)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "gcs-credentials"},
        "data": {"gcloud-application-credentials.json": b64(key_file), "STORAGE_EMULATOR_HOST": b64(gcs_emulator)},
    }
    kube.apply(service_account(secret), namespace)
    predictor = {"serviceAccountName": "models-reader", "pytorch": {"storageUri": f"gs://{BUCKET}/iris-v1"}}
    kube.apply(isvc("iris-gcs", predictor), namespace)
    obj = wait_condition(kube, namespace, "iris-gcs", "True", timeout=300)
    (log,) = init_logs(kube, namespace).values()
    assert "downloaded" in log, log
    assert_answers_as_in_process(kube, namespace, "iris-gcs", expected)

    # The key file is mounted into the init container only, from the Secret.
    pod_spec = kube.get("deployment", "iris-gcs-predictor", namespace)["spec"]["template"]["spec"]
    (init,) = pod_spec["initContainers"]
    assert {
        "name": "GOOGLE_APPLICATION_CREDENTIALS",
        "value": "/var/secrets/gcs/gcloud-application-credentials.json",
    } in init["env"]
    assert_secret_values_hidden(
        kube, namespace, "iris-gcs", obj, (GCS_PRIVATE_KEY.splitlines()[1], GCS_KEY_FILE["private_key_id"], key_file)
    )


def test_iris_from_azure_blob_with_an_account_key_secret(
    kube: Kube, namespace: str, azurite: str, expected: dict[str, Any]
) -> None:
    kube.apply(azure_credentials(azurite), namespace)
    predictor = {"serviceAccountName": "models-reader", "pytorch": {"storageUri": AZURE_URI}}
    kube.apply(isvc("iris-azure", predictor), namespace)
    obj = wait_condition(kube, namespace, "iris-azure", "True", timeout=300)
    (log,) = init_logs(kube, namespace).values()
    assert "downloaded" in log, log
    assert_answers_as_in_process(kube, namespace, "iris-azure", expected)
    assert_secret_values_hidden(kube, namespace, "iris-azure", obj, (AZURE_KEY,))
