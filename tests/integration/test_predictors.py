"""The whole API on the real control plane: predictor kinds, versions, autoscaling, scaling, failures."""

from __future__ import annotations

import json

import pytest

from tests.conftest import condition, wait_until
from tests.integration.test_lifecycle import wait_ready

pytestmark = pytest.mark.cluster


def isvc(name, namespace, predictor, **spec):
    return {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"predictor": predictor, **spec},
    }


def container_of(kube, name, namespace):
    return kube.get("deployment", f"{name}-predictor", namespace)["spec"]["template"]["spec"]["containers"][0]


def test_pytorch_and_custom_container_predictors(kube, operator, namespace, model_claim):
    kube.apply(
        [
            isvc("iris", namespace, {"pytorch": {"storageUri": "pvc://models/iris"}}),
            isvc(
                "custom",
                namespace,
                {
                    "containers": [
                        {
                            "name": "kserve-container",
                            "image": "example.org/my-server:1.0",
                            "args": ["--port", "8080"],
                            "ports": [{"name": "http", "containerPort": 8080}],
                        }
                    ]
                },
            ),
        ]
    )
    wait_ready(kube, "iris", namespace)
    wait_ready(kube, "custom", namespace)
    torch = container_of(kube, "iris", namespace)
    assert torch["image"] == "ghcr.io/isvc-operator/pytorch-server:0.1.0"
    assert torch["args"] == [
        "--model_name=iris",
        "--model_base_path=/mnt/models",
        "--rest_api_port=8080",
        "--grpc_port=9000",
    ]
    assert torch["readinessProbe"]["httpGet"]["path"] == "/v1/models/iris"
    torch_ports = kube.get("service", "iris", namespace)["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in torch_ports] == [("http", 8080), ("grpc", 9000)]
    custom = container_of(kube, "custom", namespace)
    assert (custom["image"], custom["args"]) == ("example.org/my-server:1.0", ["--port", "8080"])
    assert custom["readinessProbe"]["tcpSocket"]["port"] == 8080
    assert [p["port"] for p in kube.get("service", "custom", namespace)["spec"]["ports"]] == [8080]
    assert kube.get("isvc", "custom", namespace)["status"]["url"].endswith(":8080/v1/models/custom")


def test_http_storage_runs_the_fetcher_as_an_init_container(kube, operator, namespace):
    kube.apply(isvc("fetched", namespace, {"tensorflow": {"storageUri": "https://models.example.com/dogs.tar.gz"}}))
    wait_ready(kube, "fetched", namespace)
    pod = kube.get("deployment", "fetched-predictor", namespace)["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["args"][:3] == ["fetch", "https://models.example.com/dogs.tar.gz", "/mnt/models"]
    assert {"name": "model", "emptyDir": {}} in pod["volumes"]


def test_version_policy_changes_the_config_map_without_a_rollout(kube, operator, namespace, model_claim):
    kube.apply(
        isvc(
            "mnist",
            namespace,
            {"tensorflow": {"storageUri": "pvc://models", "modelVersionPolicy": {"latest": {"numVersions": 1}}}},
        )
    )
    wait_ready(kube, "mnist", namespace)
    config = kube.get("configmap", "mnist-model-config", namespace)
    assert "latest { num_versions: 1 }" in config["data"]["models.config"]
    generation = kube.get("deployment", "mnist-predictor", namespace)["metadata"]["generation"]

    kube.apply(
        isvc(
            "mnist",
            namespace,
            {
                "tensorflow": {
                    "storageUri": "pvc://models",
                    "modelVersionPolicy": {"specific": {"versions": [1, 2]}},
                    "versionLabels": {"stable": 1, "canary": 2},
                }
            },
        )
    )
    wait_until(
        lambda: "specific { versions: 1 versions: 2 }"
        in kube.get("configmap", "mnist-model-config", namespace)["data"]["models.config"],
        30,
        "the model config to list versions 1 and 2",
    )
    wait_ready(kube, "mnist", namespace, generation=2)
    assert kube.get("deployment", "mnist-predictor", namespace)["metadata"]["generation"] == generation, (
        "a version change must not roll pods"
    )

    kube.apply(isvc("mnist", namespace, {"tensorflow": {"storageUri": "pvc://models"}}))
    wait_until(lambda: kube.get("configmap", "mnist-model-config", namespace) is None, 30, "the ConfigMap to be pruned")
    wait_ready(kube, "mnist", namespace, generation=3)
    assert "--model_name=mnist" in container_of(kube, "mnist", namespace)["args"]


def test_autoscaling_on_and_off(kube, operator, namespace, model_claim):
    kube.apply(
        isvc("scaled", namespace, {"tensorflow": {"storageUri": "pvc://models"}, "minReplicas": 2, "maxReplicas": 4})
    )
    wait_ready(kube, "scaled", namespace)
    hpa = kube.get("hpa", "scaled-predictor", namespace)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    managed = json.loads(
        kube.run("get", "deployment", "scaled-predictor", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    )["metadata"]["managedFields"]
    ours = [f for f in managed if f["manager"] == "isvc-operator" and f["operation"] == "Apply"]
    assert ours and "f:replicas" not in json.dumps(ours[0]["fieldsV1"]["f:spec"]), (
        "the operator must not own replicas under an HPA"
    )

    kube.apply(isvc("scaled", namespace, {"tensorflow": {"storageUri": "pvc://models"}, "replicas": 3}))
    wait_until(lambda: kube.get("hpa", "scaled-predictor", namespace) is None, 30, "the HPA to be deleted")
    obj = wait_ready(kube, "scaled", namespace, generation=2)
    assert (
        obj["status"]["replicas"] == 3
        and kube.get("deployment", "scaled-predictor", namespace)["spec"]["replicas"] == 3
    )


def test_replicas_zero_then_one(kube, operator, namespace, model_claim):
    kube.apply(isvc("sleepy", namespace, {"tensorflow": {"storageUri": "pvc://models"}, "replicas": 0}))
    assert condition(wait_ready(kube, "sleepy", namespace), "PredictorReady")["reason"] == "ScaledToZero"
    kube.apply(isvc("sleepy", namespace, {"tensorflow": {"storageUri": "pvc://models"}, "replicas": 1}))
    obj = wait_ready(kube, "sleepy", namespace, generation=2)
    assert (obj["status"]["readyReplicas"], obj["status"]["replicasSummary"]) == (1, "1/1")


def wait_reason(kube, name, namespace, reason, timeout=60):
    def check():
        cond = condition(kube.get("isvc", name, namespace), "Ready")
        return cond if cond.get("reason") == reason else None

    return wait_until(check, timeout, f"{namespace}/{name} Ready reason {reason}")


def test_scheduling_failures_are_named(kube, operator, namespace):
    kube.apply(
        [
            isvc("no-claim", namespace, {"tensorflow": {"storageUri": "pvc://missing-claim"}}),
            isvc(
                "no-node", namespace, {"tensorflow": {"storageUri": "https://h/m.tgz"}, "nodeSelector": {"gpu": "h100"}}
            ),
        ]
    )
    # Both come from the real scheduler's PodScheduled condition.
    cond = wait_reason(kube, "no-claim", namespace, "PersistentVolumeClaimNotFound")
    assert cond["status"] == "False" and 'persistentvolumeclaim "missing-claim" not found' in cond["message"]
    cond = wait_reason(kube, "no-node", namespace, "Unschedulable")
    assert "didn't match Pod's node affinity/selector" in cond["message"]


def test_pods_refused_by_a_quota_are_named(kube, operator, namespace, model_claim):
    """The ReplicaSet cannot create pods: kube-controller-manager puts ReplicaFailure on the Deployment."""
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-pods", "namespace": namespace},
            "spec": {"hard": {"pods": "0"}},
        }
    )
    kube.apply(isvc("quota", namespace, {"tensorflow": {"storageUri": "pvc://models"}}))
    cond = wait_reason(kube, "quota", namespace, "FailedCreate", timeout=60)
    assert cond["status"] == "False"
    assert "Deployment quota-predictor cannot create pods" in cond["message"] and "quota" in cond["message"]


def pod_name(kube, name, namespace):
    return wait_until(
        lambda: kube.run(
            "get",
            "pods",
            "-n",
            namespace,
            "-l",
            f"serving.isvc.dev/inferenceservice={name}",
            "-o",
            "jsonpath={.items[0].metadata.name}",
            check=False,
        ).stdout,
        30,
        f"a pod of {name}",
    )


@pytest.mark.parametrize(
    ("name", "status", "reason", "message"),
    [
        (
            "pull",
            {
                "containerStatuses": [
                    {
                        "name": "model-server",
                        "image": "tensorflow/serving:9.9.9",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "waiting": {
                                "reason": "ImagePullBackOff",
                                "message": 'Back-off pulling image "tensorflow/serving:9.9.9"',
                            }
                        },
                    }
                ]
            },
            "ImagePullBackOff",
            "image tensorflow/serving:9.9.9 cannot be pulled",
        ),
        (
            "crash",
            {
                "containerStatuses": [
                    {
                        "name": "model-server",
                        "image": "tensorflow/serving:2.19.0",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "message": "No versions of servable crash found under base path /mnt/models",
                            }
                        },
                    }
                ]
            },
            "CrashLoopBackOff",
            "No versions of servable crash found under base path /mnt/models",
        ),
        (
            "fetch",
            {
                "initContainerStatuses": [
                    {
                        "name": "storage-initializer",
                        "image": "x",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 2,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {
                            "terminated": {
                                "exitCode": 1,
                                "reason": "Error",
                                "message": "download failed: GET https://h/m.tgz returned 404 Not Found",
                            }
                        },
                    }
                ]
            },
            "StorageInitializerFailed",
            "returned 404 Not Found",
        ),
    ],
)
def test_container_failures_are_named(kube, operator, namespace, model_claim, name, status, reason, message):
    """kwok has no kubelet that fails: the test writes the pod status as the kubelet would, with phase
    Running so kwok's pod-ready stage (which only matches Pending pods) leaves it alone."""
    storage = "https://h/m.tgz" if name == "fetch" else "pvc://models"
    kube.apply(isvc(name, namespace, {"tensorflow": {"storageUri": storage}}))
    wait_ready(kube, name, namespace)
    pod = pod_name(kube, name, namespace)
    patch = {
        "status": {
            "phase": "Running" if name != "fetch" else "Pending",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
                {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"},
                {"type": "PodScheduled", "status": "True"},
            ],
            **status,
        }
    }
    if name == "fetch":
        patch["status"]["conditions"].append(
            {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}
        )
        # A Pending pod whose init container failed: kwok's ready stage would match Pending, so mark it Ready=False
        # with a phase kwok does not select on.
        patch["status"]["phase"] = "Running"
    kube.run("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(patch))
    cond = wait_reason(kube, name, namespace, reason)
    assert cond["status"] == "False" and message in cond["message"], cond


def test_config_map_and_autoscaler_drift_is_undone(kube, operator, namespace, model_claim):
    kube.apply(
        isvc(
            "drifty",
            namespace,
            {
                "tensorflow": {"storageUri": "pvc://models", "modelVersionPolicy": {"all": {}}},
                "minReplicas": 1,
                "maxReplicas": 3,
            },
        )
    )
    wait_ready(kube, "drifty", namespace)
    kube.run(
        "patch",
        "configmap",
        "drifty-model-config",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"data":{"models.config":"model_config_list {}"}}',
    )
    wait_until(
        lambda: "model_version_policy { all {} }"
        in kube.get("configmap", "drifty-model-config", namespace)["data"]["models.config"],
        30,
        "the model config to be restored",
    )
    uid = kube.get("hpa", "drifty-predictor", namespace)["metadata"]["uid"]
    kube.run("delete", "hpa", "drifty-predictor", "-n", namespace)
    wait_until(
        lambda: (h := kube.get("hpa", "drifty-predictor", namespace)) and h["metadata"]["uid"] != uid and h,
        30,
        "the HPA to be recreated",
    )
