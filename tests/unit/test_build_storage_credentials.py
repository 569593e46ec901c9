"""Object-store credentials: a ServiceAccount and its Secrets in, the storage init container's env and
volumes out, the KServe way; the model server container gets none of it, and no value is copied."""

from __future__ import annotations

import copy
import json

import pytest

from isvc_operator.builders import build_children
from isvc_operator.builders.storage_credentials import (
    NO_CREDENTIALS,
    AccountSecrets,
    build_storage_credentials,
    without_values,
)
from isvc_operator.resolved_runtime import resolve_runtime
from isvc_operator.runtimes import load_catalog
from isvc_operator.spec import parse_inferenceservice

# Values that must never appear in anything the builders return.
SECRET_VALUES = ("AKIA-VALUE-1", "s3cr3t-VALUE-2", "token-VALUE-3", "azure-key-VALUE-4", '{"private_key": "VALUE-5"}')


def secret(name, data=None, annotations=None, string_data=None):
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "annotations": annotations or {}}}
    if data is not None:
        body["data"] = data
    if string_data is not None:
        body["stringData"] = string_data
    return body


def account(*secret_names, annotations=None):
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "models-reader", "annotations": annotations or {}},
        "secrets": [{"name": n} for n in secret_names],
    }


S3_SECRET = secret(
    "s3-credentials",
    data={"AWS_ACCESS_KEY_ID": "AKIA-VALUE-1", "AWS_SECRET_ACCESS_KEY": "s3cr3t-VALUE-2"},
    annotations={
        "serving.kserve.io/s3-endpoint": "minio.storage:9000",
        "serving.kserve.io/s3-usehttps": "0",
        "serving.kserve.io/s3-region": "us-south",
        "serving.kserve.io/s3-verifyssl": "0",
        "serving.kserve.io/s3-cabundle": "/etc/ssl/custom/ca.pem",
        "serving.kserve.io/s3-useanoncredential": "false",
        "unrelated.example.com/note": "ignored",
    },
)
GCS_SECRET = secret("gcs-credentials", data={"gcloud-application-credentials.json": '{"private_key": "VALUE-5"}'})
AZURE_SECRET = secret(
    "azure-credentials",
    string_data={"AZURE_STORAGE_ACCESS_KEY": "azure-key-VALUE-4", "AZ_CLIENT_ID": "x", "AZ_TENANT_ID": "y"},
)


def ref(secret_name, key):
    return {"valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}


def test_s3_keys_become_secret_refs_and_annotations_plain_settings():
    found = AccountSecrets(account(), (S3_SECRET, GCS_SECRET))
    credentials = build_storage_credentials("s3", found)
    assert list(credentials.env) == [
        {"name": "AWS_ENDPOINT_URL", "value": "minio.storage:9000"},
        {"name": "ISVC_S3_USE_HTTPS", "value": "0"},
        {"name": "AWS_DEFAULT_REGION", "value": "us-south"},
        {"name": "ISVC_S3_VERIFY_SSL", "value": "0"},
        {"name": "AWS_CA_BUNDLE", "value": "/etc/ssl/custom/ca.pem"},
        {"name": "ISVC_S3_ANONYMOUS", "value": "false"},
        {"name": "AWS_ACCESS_KEY_ID", **ref("s3-credentials", "AWS_ACCESS_KEY_ID")},
        {"name": "AWS_SECRET_ACCESS_KEY", **ref("s3-credentials", "AWS_SECRET_ACCESS_KEY")},
    ]
    # The GCS Secret in the same account is not the store's: nothing of it is mounted.
    assert (credentials.volumes, credentials.mounts) == ((), ())


def test_s3_settings_on_the_account_apply_where_no_secret_sets_them():
    """KServe reads the annotations from the ServiceAccount too (e.g. an IRSA account with an endpoint)."""
    found = AccountSecrets(
        account(
            annotations={
                "serving.kserve.io/s3-endpoint": "s3.eu-west-1.amazonaws.com",
                "serving.kserve.io/s3-useanoncredential": "true",
                "serving.kserve.io/s3-region": "eu-west-1",
            }
        ),
        (secret("region-only", annotations={"serving.kserve.io/s3-region": "us-east-2"}),),
    )
    assert list(build_storage_credentials("s3", found).env) == [
        {"name": "AWS_ENDPOINT_URL", "value": "s3.eu-west-1.amazonaws.com"},
        {"name": "AWS_DEFAULT_REGION", "value": "us-east-2"},
        {"name": "ISVC_S3_ANONYMOUS", "value": "true"},
    ]


def test_gcs_key_file_is_mounted_from_the_secret_and_pointed_at():
    credentials = build_storage_credentials("gs", AccountSecrets(account(), (S3_SECRET, GCS_SECRET)))
    assert list(credentials.volumes) == [
        {
            "name": "gcs-credentials",
            "secret": {
                "secretName": "gcs-credentials",
                "items": [
                    {"key": "gcloud-application-credentials.json", "path": "gcloud-application-credentials.json"}
                ],
            },
        }
    ]
    assert list(credentials.mounts) == [{"name": "gcs-credentials", "mountPath": "/var/secrets/gcs", "readOnly": True}]
    assert list(credentials.env) == [
        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/gcs/gcloud-application-credentials.json"}
    ]


def test_azure_keys_and_kserve_legacy_names_become_secret_refs():
    modern = secret("azure-sp", data={"AZURE_CLIENT_ID": "id", "AZURE_CLIENT_SECRET": "pw"})
    credentials = build_storage_credentials("azure", AccountSecrets(account(), (AZURE_SECRET, modern)))
    assert list(credentials.env) == [
        {"name": "AZURE_STORAGE_ACCESS_KEY", **ref("azure-credentials", "AZURE_STORAGE_ACCESS_KEY")},
        {"name": "AZURE_CLIENT_ID", **ref("azure-credentials", "AZ_CLIENT_ID")},
        {"name": "AZURE_TENANT_ID", **ref("azure-credentials", "AZ_TENANT_ID")},
        # The first Secret that has a variable wins; the second adds only what is still missing.
        {"name": "AZURE_CLIENT_SECRET", **ref("azure-sp", "AZURE_CLIENT_SECRET")},
    ]


def test_gcs_emulator_and_azure_endpoint_are_keys_of_the_same_secret_and_go_to_their_store_only():
    """KServe has no GCS or Azure endpoint setting: an emulator or private endpoint is a Secret key
    named as the variable the storage program reads, passed by reference like the credentials."""
    gcs = secret(
        "gcs-emulated",
        data={"gcloud-application-credentials.json": '{"private_key": "VALUE-5"}', "STORAGE_EMULATOR_HOST": "aA=="},
    )
    azure = secret(
        "azurite", data={"AZURE_STORAGE_ACCESS_KEY": "azure-key-VALUE-4", "ISVC_AZURE_BLOB_ENDPOINT": "aA=="}
    )
    found = AccountSecrets(account(), (gcs, azure))
    assert list(build_storage_credentials("gs", found).env) == [
        {"name": "STORAGE_EMULATOR_HOST", **ref("gcs-emulated", "STORAGE_EMULATOR_HOST")},
        {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/gcs/gcloud-application-credentials.json"},
    ]
    assert list(build_storage_credentials("azure", found).env) == [
        {"name": "AZURE_STORAGE_ACCESS_KEY", **ref("azurite", "AZURE_STORAGE_ACCESS_KEY")},
        {"name": "ISVC_AZURE_BLOB_ENDPOINT", **ref("azurite", "ISVC_AZURE_BLOB_ENDPOINT")},
    ]
    # Neither endpoint reaches an S3 download.
    assert build_storage_credentials("s3", found) == NO_CREDENTIALS


@pytest.mark.parametrize(
    ("store", "found"),
    [
        ("s3", None),  # no serviceAccountName: anonymous, or the SDK's default chain (workload identity)
        ("s3", AccountSecrets(account())),  # an account without Secrets
        ("gs", AccountSecrets(account(), (S3_SECRET,))),  # Secrets for another store only
        ("http", AccountSecrets(account(), (S3_SECRET,))),
        ("pvc", AccountSecrets(account(), (S3_SECRET,))),
    ],
)
def test_no_credentials_when_the_account_has_none_for_the_store(store, found):
    assert build_storage_credentials(store, found) == NO_CREDENTIALS


def test_without_values_keeps_names_annotations_and_key_names_only():
    kept = without_values({**S3_SECRET, "stringData": {"AWS_SESSION_TOKEN": "token-VALUE-3"}})
    assert kept == {
        "metadata": {"name": "s3-credentials", "annotations": S3_SECRET["metadata"]["annotations"]},
        "data": {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": ""},
    }
    # Built from what is kept, the credentials are the same as from the whole Secret.
    assert build_storage_credentials("s3", AccountSecrets(account(), (kept,))) == build_storage_credentials(
        "s3", AccountSecrets(account(), ({**S3_SECRET, "stringData": {"AWS_SESSION_TOKEN": "token-VALUE-3"}},))
    )


ISVC = {
    "apiVersion": "serving.isvc.dev/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "iris", "namespace": "team", "uid": "u", "generation": 1},
    "spec": {"predictor": {"serviceAccountName": "models-reader", "pytorch": {"storageUri": "s3://models/iris"}}},
}
ALL_SECRETS = AccountSecrets(
    account(),
    (
        {**S3_SECRET, "stringData": {"AWS_SESSION_TOKEN": "token-VALUE-3"}},
        GCS_SECRET,
        AZURE_SECRET,
    ),
)


def pod_of(body, found):
    isvc = parse_inferenceservice(body)
    deployment = build_children(isvc, resolve_runtime(isvc, load_catalog()), account_secrets=found)[0]
    return deployment["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("uri", "variables", "volumes"),
    [
        (
            "s3://models/iris",
            ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"],
            [],
        ),
        ("gs://models/iris", ["GOOGLE_APPLICATION_CREDENTIALS"], ["gcs-credentials"]),
        ("https://acct.blob.core.windows.net/models/iris", ["AZURE_STORAGE_ACCESS_KEY", "AZURE_CLIENT_ID"], []),
    ],
)
def test_credentials_reach_the_init_container_only_and_never_a_value(uri, variables, volumes):
    body = copy.deepcopy(ISVC)
    body["spec"]["predictor"]["pytorch"]["storageUri"] = uri
    pod = pod_of(body, ALL_SECRETS)
    (init,) = pod["initContainers"]
    assert init["args"][:3] == ["fetch", uri, "/mnt/models"]
    names = [e["name"] for e in init["env"]]
    assert set(variables) <= set(names), f"{variables} not all in {names}"
    assert len(names) == len(set(names)), f"a variable twice: {names}"
    assert [v["name"] for v in pod["volumes"] if "secret" in v] == volumes
    assert [m["name"] for m in init["volumeMounts"] if m["name"] in volumes] == volumes
    (server,) = pod["containers"]
    assert not any("secretKeyRef" in json.dumps(e) for e in server.get("env", []))
    assert not any(m["name"] in volumes for m in server["volumeMounts"])
    assert pod["serviceAccountName"] == "models-reader"
    rendered = json.dumps(pod)
    leaked = [v for v in SECRET_VALUES if v in rendered or json.dumps(v)[1:-1] in rendered]
    assert not leaked, f"secret values copied into the pod template: {leaked}"


def test_model_cache_is_read_write_in_the_init_container_and_read_only_in_the_server():
    body = copy.deepcopy(ISVC)
    body["spec"]["predictor"]["storage"] = {"cache": {"claimName": "model-cache"}}
    pod = pod_of(body, None)
    (init,) = pod["initContainers"]
    assert init["args"][-2:] == ["--cache-dir", "/mnt/model-cache"]
    assert {"name": "model-cache", "mountPath": "/mnt/model-cache"} in init["volumeMounts"]
    assert {"name": "model-cache", "mountPath": "/mnt/model-cache", "readOnly": True} in pod["containers"][0][
        "volumeMounts"
    ]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "model-cache"}} in pod["volumes"]


def test_without_cache_nothing_of_it_is_rendered():
    pod = pod_of(ISVC, None)
    assert "--cache-dir" not in pod["initContainers"][0]["args"]
    assert "model-cache" not in json.dumps(pod)
