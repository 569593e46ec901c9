"""Models in object storage on the real control plane: the schemes the API server accepts, the
credentials the operator (under the chart's RBAC: get on serviceaccounts and secrets, nothing more)
reads from the predictor's ServiceAccount into the init container only, missing accounts and
Secrets named in the status while other isvcs keep serving, and the model cache claim."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import condition, host_path_claim, operator_events, wait_until
from tests.integration.test_lifecycle import wait_ready

pytestmark = pytest.mark.cluster

# Secret values: none of them may appear in a Deployment, a status, an Event or the operator's log.
S3_KEY_ID = "AKIA-integration-9f3c1"
S3_SECRET_KEY = "s3cr3t-integration-77ab0"
AZURE_KEY = "azure-account-key-integration-5d21"
GCS_KEY = '{"type": "service_account", "private_key": "gcs-private-key-integration-e8c4"}'
SECRET_VALUES = (S3_KEY_ID, S3_SECRET_KEY, AZURE_KEY, "gcs-private-key-integration-e8c4")


def isvc(name, namespace, predictor):
    return {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"predictor": predictor},
    }


def secret(name, namespace, data, annotations=None):
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def service_account(name, namespace, *secrets):
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
        "secrets": [{"name": s} for s in secrets],
    }


def pod_spec(kube, name, namespace):
    return kube.get("deployment", f"{name}-predictor", namespace)["spec"]["template"]["spec"]


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def secret_ref(name, key):
    return {"secretKeyRef": {"name": name, "key": key}}


def credentials(namespace):
    return [
        secret(
            "s3-credentials",
            namespace,
            {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY},
            {
                "serving.kserve.io/s3-endpoint": "minio.storage:9000",
                "serving.kserve.io/s3-usehttps": "0",
                "serving.kserve.io/s3-region": "us-south",
            },
        ),
        secret("gcs-credentials", namespace, {"gcloud-application-credentials.json": GCS_KEY}),
        secret("azure-credentials", namespace, {"AZURE_STORAGE_ACCESS_KEY": AZURE_KEY}),
        service_account("models-reader", namespace, "s3-credentials", "gcs-credentials", "azure-credentials"),
    ]


def test_each_store_gets_its_credentials_in_the_init_container_only(kube, operator, namespace):
    kube.apply(credentials(namespace))
    uris = {
        "from-s3": "s3://models/iris",
        "from-gcs": "gs://models/iris",
        "from-azure": "https://modelstore.blob.core.windows.net/models/iris",
    }
    kube.apply(
        [
            isvc(name, namespace, {"serviceAccountName": "models-reader", "pytorch": {"storageUri": uri}})
            for name, uri in uris.items()
        ]
    )
    for name in uris:
        wait_ready(kube, name, namespace)

    expected = {
        "from-s3": {
            "AWS_ENDPOINT_URL": "minio.storage:9000",
            "ISVC_S3_USE_HTTPS": "0",
            "AWS_DEFAULT_REGION": "us-south",
            "AWS_ACCESS_KEY_ID": secret_ref("s3-credentials", "AWS_ACCESS_KEY_ID"),
            "AWS_SECRET_ACCESS_KEY": secret_ref("s3-credentials", "AWS_SECRET_ACCESS_KEY"),
        },
        "from-gcs": {"GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/gcs/gcloud-application-credentials.json"},
        "from-azure": {"AZURE_STORAGE_ACCESS_KEY": secret_ref("azure-credentials", "AZURE_STORAGE_ACCESS_KEY")},
    }
    for name, uri in uris.items():
        pod = pod_spec(kube, name, namespace)
        (init,) = pod["initContainers"]
        assert init["args"][:3] == ["fetch", uri, "/mnt/models"]
        assert env_of(init) == {"TMPDIR": "/mnt/models", **expected[name]}, f"{name}: init container env"
        (server,) = pod["containers"]
        assert "secretKeyRef" not in json.dumps(server), f"{name}: the model server got a Secret: {server}"
        assert pod["serviceAccountName"] == "models-reader"
        assert pod["automountServiceAccountToken"] is False
    gcs = pod_spec(kube, "from-gcs", namespace)
    assert {"name": "gcs-credentials", "mountPath": "/var/secrets/gcs", "readOnly": True} in gcs["initContainers"][0][
        "volumeMounts"
    ]
    assert [m["name"] for m in gcs["containers"][0]["volumeMounts"]] == ["model", "scratch"]
    assert {v["name"]: v.get("secret", {}).get("secretName") for v in gcs["volumes"]}["gcs-credentials"] == (
        "gcs-credentials"
    )

    # No value anywhere a person (or a log shipper) reads: objects, statuses, Events, the operator's log.
    seen = {
        "deployments": kube.run("get", "deployments", "-n", namespace, "-o", "json").stdout,
        "statuses": kube.run("get", "isvc", "-n", namespace, "-o", "json").stdout,
        "events": json.dumps(operator_events(kube, None, namespace))
        + kube.run("get", "events", "-n", namespace, "-o", "json").stdout,
        "operator log": operator.log(),
    }
    leaks = [(where, value) for where, text in seen.items() for value in SECRET_VALUES if value in text]
    assert not leaks, f"secret values leaked: {leaks}"


def wait_reason(kube, name, namespace, reason, timeout=60, naming=""):
    def check():
        cond = condition(kube.get("isvc", name, namespace), "Ready")
        return cond if cond.get("reason") == reason and naming in cond.get("message", "") else None

    return wait_until(check, timeout, f"{namespace}/{name} Ready reason {reason} with a message naming {naming!r}")


def test_a_missing_account_or_secret_is_named_and_others_keep_serving(kube, operator, namespace):
    kube.apply(
        [
            service_account("half", namespace, "not-there"),
            isvc("serving", namespace, {"pytorch": {"storageUri": "https://models.example.com/iris.tgz"}}),
            isvc("no-account", namespace, {"serviceAccountName": "nobody", "pytorch": {"storageUri": "s3://models/a"}}),
            isvc("no-secret", namespace, {"serviceAccountName": "half", "pytorch": {"storageUri": "s3://models/b"}}),
        ]
    )
    wait_ready(kube, "serving", namespace)
    cond = wait_reason(kube, "no-account", namespace, "StorageCredentialsNotFound")
    assert cond["status"] == "False"
    assert (
        f"ServiceAccount nobody (spec.predictor.serviceAccountName) not found in namespace {namespace}"
        in (cond["message"])
    )
    # (The account may be created after the isvc's first pass: then the retry names the Secret.)
    cond = wait_reason(kube, "no-secret", namespace, "StorageCredentialsNotFound", naming="Secret not-there")
    assert f"Secret not-there, listed by ServiceAccount half, not found in namespace {namespace}" in cond["message"]
    # No child is made without the credentials (an init container without them would only fail later).
    assert kube.get("deployment", "no-account-predictor", namespace) is None
    assert kube.get("deployment", "no-secret-predictor", namespace) is None
    events = operator_events(kube, "no-secret", namespace)
    assert any("StorageCredentialsNotFound" in e and "not-there" in e for e in events), events

    # Creating what was missing is enough: the retries find it (nothing else would wake these isvcs).
    kube.apply(
        [
            service_account("nobody", namespace),
            secret("not-there", namespace, {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}),
        ]
    )
    wait_ready(kube, "no-account", namespace, timeout=90)
    wait_ready(kube, "no-secret", namespace, timeout=90)
    init = pod_spec(kube, "no-secret", namespace)["initContainers"][0]
    assert env_of(init)["AWS_SECRET_ACCESS_KEY"] == secret_ref("not-there", "AWS_SECRET_ACCESS_KEY")
    assert condition(kube.get("isvc", "serving", namespace), "Ready")["status"] == "True"


def test_object_store_without_an_account_is_anonymous(kube, operator, namespace):
    kube.apply(isvc("public", namespace, {"tensorflow": {"storageUri": "gs://kfserving-examples/models/flowers"}}))
    wait_ready(kube, "public", namespace)
    pod = pod_spec(kube, "public", namespace)
    assert env_of(pod["initContainers"][0]) == {"TMPDIR": "/mnt/models"}
    assert "serviceAccountName" not in pod


def test_model_cache_claim_is_mounted_and_a_missing_one_is_named(kube, operator, namespace):
    kube.apply(
        isvc(
            "cached",
            namespace,
            {"pytorch": {"storageUri": "s3://models/iris"}, "storage": {"cache": {"claimName": "model-cache"}}},
        )
    )
    cond = wait_reason(kube, "cached", namespace, "PersistentVolumeClaimNotFound")
    assert 'persistentvolumeclaim "model-cache" not found' in cond["message"]
    pod = pod_spec(kube, "cached", namespace)
    init, server = pod["initContainers"][0], pod["containers"][0]
    assert init["args"][-2:] == ["--cache-dir", "/mnt/model-cache"]
    assert {"name": "model-cache", "mountPath": "/mnt/model-cache"} in init["volumeMounts"]
    assert {"name": "model-cache", "mountPath": "/mnt/model-cache", "readOnly": True} in server["volumeMounts"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "model-cache"}} in pod["volumes"]

    # With the claim there (and bound), the pod is scheduled and the isvc is Ready.
    host_path_claim(kube, namespace, "model-cache", "/tmp/isvc-model-cache", "ReadWriteMany")
    wait_ready(kube, "cached", namespace, timeout=90)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "ftp://host/model",
            "has an unsupported scheme; supported: pvc://CLAIM[/PATH], s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], "
            "https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX], http(s)://... archives",
        ),
        ("s3://My_Bucket/m", "s3://BUCKET[/PREFIX] needs a bucket name (3-63 lower-case letters, digits, . and -)"),
        ("gs://x/m", "gs://BUCKET[/PREFIX] needs a bucket name"),
        ("https://UPPER.blob.core.windows.net/c/m", "Azure Blob is https://ACCOUNT.blob.core.windows.net/CONTAINER"),
    ],
)
def test_the_api_server_rejects_malformed_object_store_uris(kube, namespace, uri, message):
    result = kube.apply(isvc("bad", namespace, {"pytorch": {"storageUri": uri}}), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_api_server_rejects_a_malformed_cache_claim(kube, namespace):
    predictor = {"pytorch": {"storageUri": "s3://models/m"}, "storage": {"cache": {"claimName": "Not_A_Claim"}}}
    result = kube.apply(isvc("bad", namespace, predictor), check=False)
    assert result.returncode != 0
    assert "storage.cache.claimName Not_A_Claim is not a PersistentVolumeClaim name" in result.stderr, result.stderr


def test_a_cache_for_a_claim_model_is_an_invalid_spec(kube, operator, namespace):
    predictor = {"pytorch": {"storageUri": "pvc://models"}, "storage": {"cache": {"claimName": "model-cache"}}}
    kube.apply(isvc("pointless", namespace, predictor))
    cond = wait_reason(kube, "pointless", namespace, "InvalidSpec")
    assert "the model comes from pvc://models" in cond["message"]
