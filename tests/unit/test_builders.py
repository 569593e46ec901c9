"""Builders: a spec in, the exact objects out (golden), including the hand-written YAML of Kubeflow's dogs-vs-cats example."""

from __future__ import annotations

import copy

import pytest

from isvc_operator.builders import build_children
from isvc_operator.builders.deployment import build_deployment
from isvc_operator.builders.service import build_service, model_url
from isvc_operator.resolved_runtime import resolve_runtime
from isvc_operator.revisions import revision_hash
from isvc_operator.runtimes import load_catalog
from isvc_operator.spec import InvalidSpec, parse_inferenceservice

DOGS_VS_CATS = {
    "apiVersion": "serving.isvc.dev/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "dogs-vs-cats", "namespace": "kubeflow-user-example-com", "uid": "uid-1", "generation": 1},
    "spec": {
        "predictor": {"tensorflow": {"storageUri": "pvc://models"}},
        "service": {"type": "NodePort", "httpNodePort": 31000, "grpcNodePort": 31001},
    },
}

LABELS = {
    "app.kubernetes.io/name": "dogs-vs-cats",
    "app.kubernetes.io/instance": "dogs-vs-cats",
    "app.kubernetes.io/component": "predictor",
    "app.kubernetes.io/part-of": "inferenceservice",
    "app.kubernetes.io/managed-by": "isvc-operator",
    "serving.isvc.dev/inferenceservice": "dogs-vs-cats",
}
OWNER = {
    "apiVersion": "serving.isvc.dev/v1alpha1",
    "kind": "InferenceService",
    "name": "dogs-vs-cats",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}

GOLDEN_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "dogs-vs-cats-predictor",
        "namespace": "kubeflow-user-example-com",
        "labels": LABELS,
        "ownerReferences": [OWNER],
    },
    "spec": {
        "selector": {
            "matchLabels": {
                "serving.isvc.dev/inferenceservice": "dogs-vs-cats",
                "app.kubernetes.io/component": "predictor",
            }
        },
        # Not in the hand-written Deployment: a new pod is ready before an old one goes.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": LABELS},
            "spec": {
                "containers": [
                    {
                        "name": "model-server",
                        "image": "tensorflow/serving:2.19.0",
                        "ports": [
                            {"name": "http", "containerPort": 8500, "protocol": "TCP"},
                            {"name": "grpc", "containerPort": 9000, "protocol": "TCP"},
                        ],
                        "securityContext": {
                            "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "readOnlyRootFilesystem": True,
                            "runAsUser": 1000,
                            "runAsGroup": 1000,
                        },
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        # Served on for 5 s after leaving the endpoints, before SIGTERM: no refused requests.
                        "lifecycle": {"preStop": {"sleep": {"seconds": 10}}},
                        "command": ["/usr/bin/tensorflow_model_server"],
                        "args": [
                            "--port=9000",
                            "--rest_api_port=8500",
                            "--model_name=dogs-vs-cats",
                            "--model_base_path=/mnt/models",
                        ],
                        "readinessProbe": {
                            "httpGet": {"path": "/v1/models/dogs-vs-cats", "port": "http"},
                            "periodSeconds": 2,
                            "timeoutSeconds": 5,
                            "failureThreshold": 3,
                        },
                        "livenessProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 30, "failureThreshold": 3},
                        "startupProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 1, "failureThreshold": 600},
                        "volumeMounts": [
                            {"name": "model", "mountPath": "/mnt/models", "readOnly": True},
                            {"name": "scratch", "mountPath": "/tmp"},
                        ],
                    }
                ],
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 40,
                "volumes": [
                    {"name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
                    {"name": "scratch", "emptyDir": {}},
                ],
            },
        },
        "replicas": 1,
    },
}

GOLDEN_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "dogs-vs-cats",
        "namespace": "kubeflow-user-example-com",
        "labels": LABELS,
        "ownerReferences": [OWNER],
    },
    "spec": {
        "type": "NodePort",
        "selector": {"serving.isvc.dev/inferenceservice": "dogs-vs-cats", "app.kubernetes.io/component": "predictor"},
        "ports": [
            {"name": "http", "port": 8500, "targetPort": "http", "protocol": "TCP", "nodePort": 31000},
            {"name": "grpc", "port": 9000, "targetPort": "grpc", "protocol": "TCP", "nodePort": 31001},
        ],
    },
}


def children_of(isvc, **kwargs):
    return build_children(isvc, resolve_runtime(isvc, load_catalog()), **kwargs)


def _isvc(**spec_changes):
    body = copy.deepcopy(DOGS_VS_CATS)
    for path, value in spec_changes.items():
        node = body["spec"]
        keys = path.split("__")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return parse_inferenceservice(body)


def test_dogs_vs_cats_renders_the_hand_written_deployment_and_service():
    deployment, service = children_of(parse_inferenceservice(DOGS_VS_CATS))
    # Beyond the hand-written Deployment: its revision (the hash of the hand-written pod template)
    # and its role, on the Deployment and (the revision) on its pods.
    golden = copy.deepcopy(GOLDEN_DEPLOYMENT)
    revision = revision_hash(golden["spec"]["template"])
    golden["metadata"]["labels"] = {**LABELS, "serving.isvc.dev/revision": revision, "serving.isvc.dev/role": "stable"}
    golden["spec"]["template"]["metadata"]["labels"] = {**LABELS, "serving.isvc.dev/revision": revision}
    assert deployment == golden
    assert service == GOLDEN_SERVICE


def test_builders_are_deterministic():
    isvc = parse_inferenceservice(DOGS_VS_CATS)
    assert children_of(isvc) == children_of(isvc)


@pytest.mark.parametrize(
    ("uri", "mount", "claim"),
    [
        ("pvc://models", {"name": "model", "mountPath": "/mnt/models", "readOnly": True}, "models"),
        (
            "pvc://models/dogs/v2/",
            {"name": "model", "mountPath": "/mnt/models", "readOnly": True, "subPath": "dogs/v2"},
            "models",
        ),
        (
            "pvc://team.claim/x",
            {"name": "model", "mountPath": "/mnt/models", "readOnly": True, "subPath": "x"},
            "team.claim",
        ),
    ],
)
def test_pvc_storage_is_mounted_read_only(uri, mount, claim):
    isvc = _isvc(predictor__tensorflow={"storageUri": uri})
    deployment = build_deployment(isvc, resolve_runtime(isvc, load_catalog()))
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["volumeMounts"] == [mount, {"name": "scratch", "mountPath": "/tmp"}]
    assert pod["volumes"] == [
        {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
        {"name": "scratch", "emptyDir": {}},
    ]


@pytest.mark.parametrize(
    ("changes", "image"),
    [
        ({}, "tensorflow/serving:2.19.0"),
        ({"predictor__tensorflow": {"storageUri": "pvc://m", "runtimeVersion": "2.18.0"}}, "tensorflow/serving:2.18.0"),
        (
            {
                "predictor__tensorflow": {
                    "storageUri": "pvc://m",
                    "runtimeVersion": "2.18.0",
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                }
            },
            "tensorflow/serving:2.18.0-gpu",
        ),
        (
            {"predictor__tensorflow": {"storageUri": "pvc://m", "image": "mirror.local/tf:pinned"}},
            "mirror.local/tf:pinned",
        ),
    ],
)
def test_image_comes_from_catalog_version_gpu_or_override(changes, image):
    isvc = _isvc(**changes)
    assert resolve_runtime(isvc, load_catalog()).image == image


@pytest.mark.parametrize(
    ("changes", "replicas"),
    [({}, 1), ({"predictor__replicas": 0}, 0), ({"predictor__replicas": 3}, 3)],
)
def test_replicas(changes, replicas):
    isvc = _isvc(**changes)
    assert build_deployment(isvc, resolve_runtime(isvc, load_catalog()))["spec"]["replicas"] == replicas


def test_replicas_left_out_when_autoscaled():
    isvc = _isvc(predictor__minReplicas=1, predictor__maxReplicas=4)
    assert "replicas" not in build_deployment(isvc, resolve_runtime(isvc, load_catalog()))["spec"]


@pytest.mark.parametrize(
    ("service", "ports"),
    [
        (
            {"type": "ClusterIP"},
            [
                {"name": "http", "port": 8500, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": 9000, "targetPort": "grpc", "protocol": "TCP"},
            ],
        ),
        (
            {"type": "NodePort"},
            [
                {"name": "http", "port": 8500, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": 9000, "targetPort": "grpc", "protocol": "TCP"},
            ],
        ),
        (
            {"type": "LoadBalancer", "httpNodePort": 30080},
            [
                {"name": "http", "port": 8500, "targetPort": "http", "protocol": "TCP", "nodePort": 30080},
                {"name": "grpc", "port": 9000, "targetPort": "grpc", "protocol": "TCP"},
            ],
        ),
    ],
)
def test_service_type_and_node_ports(service, ports):
    isvc = _isvc(service=service)
    built = build_service(isvc, resolve_runtime(isvc, load_catalog()))
    assert built["spec"]["type"] == service["type"]
    assert built["spec"]["ports"] == ports


def test_url_is_the_cluster_local_rest_endpoint():
    isvc = parse_inferenceservice(DOGS_VS_CATS)
    assert model_url(isvc, resolve_runtime(isvc, load_catalog())) == (
        "http://dogs-vs-cats.kubeflow-user-example-com.svc.cluster.local:8500/v1/models/dogs-vs-cats"
    )


def test_user_labels_pass_through_but_bookkeeping_does_not():
    body = copy.deepcopy(DOGS_VS_CATS)
    body["metadata"]["labels"] = {"team": "vision", "app.kubernetes.io/managed-by": "someone-else"}
    body["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "kopf.zalando.org/last-handled-configuration": "{}",
        "owner": "alice",
    }
    deployment, _ = children_of(parse_inferenceservice(body))
    assert deployment["metadata"]["labels"]["team"] == "vision"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "isvc-operator"
    assert deployment["metadata"]["annotations"] == {"owner": "alice"}


def test_unknown_runtime_is_an_invalid_spec_naming_the_known_ones():
    isvc = _isvc(predictor__tensorflow={"storageUri": "pvc://m", "runtime": "triton"})
    with pytest.raises(
        InvalidSpec, match=r"'triton' is not in the runtime catalog for tensorflow \(known: tensorflow-serving\)"
    ):
        resolve_runtime(isvc, load_catalog())


@pytest.mark.parametrize(
    ("predictor", "layout"),
    [
        ({"tensorflow": {"storageUri": "https://models.example.com/dogs.tar.gz"}}, ["--layout", "tensorflow"]),
        ({"pytorch": {"storageUri": "http://10.0.0.5/iris.tgz"}}, ["--layout", "pytorch"]),
    ],
)
def test_http_storage_is_fetched_by_an_init_container_into_an_empty_dir(predictor, layout):
    body = copy.deepcopy(DOGS_VS_CATS)
    body["spec"]["predictor"] = predictor
    isvc = parse_inferenceservice(body)
    pod = build_deployment(isvc, resolve_runtime(isvc, load_catalog()))["spec"]["template"]["spec"]
    uri = next(iter(predictor.values()))["storageUri"]
    (init,) = pod["initContainers"]
    assert init["image"] == "ghcr.io/isvc-operator/isvc-operator:0.1.0"
    assert init["command"] == ["python", "-m", "isvc_operator.storage"]
    assert init["args"] == ["fetch", uri, "/mnt/models", "--max-bytes", "10Gi", *layout]
    assert init["volumeMounts"] == [{"name": "model", "mountPath": "/mnt/models"}]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True and init["securityContext"]["runAsNonRoot"] is True
    assert pod["volumes"] == [{"name": "model", "emptyDir": {}}, {"name": "scratch", "emptyDir": {}}]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "model", "mountPath": "/mnt/models", "readOnly": True},
        {"name": "scratch", "mountPath": "/tmp"},
    ]


def test_pvc_storage_has_no_init_container():
    isvc = parse_inferenceservice(DOGS_VS_CATS)
    assert (
        "initContainers"
        not in build_deployment(isvc, resolve_runtime(isvc, load_catalog()))["spec"]["template"]["spec"]
    )


def test_pytorch_predictor_runs_the_project_server_on_its_http_and_grpc_ports():
    body = copy.deepcopy(DOGS_VS_CATS)
    body["spec"]["predictor"] = {"pytorch": {"storageUri": "pvc://models/iris"}}
    isvc = parse_inferenceservice(body)
    deployment, service = children_of(isvc)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["isvc-pytorch-server"]
    assert container["args"] == [
        "--model_name=dogs-vs-cats",
        "--model_base_path=/mnt/models",
        "--rest_api_port=8080",
        "--grpc_port=9000",
    ]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", 8080), ("grpc", 9000)]
    # Probes stay on HTTP: readiness means a version is AVAILABLE, which only the REST status says.
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/models/dogs-vs-cats", "port": "http"}
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert container["startupProbe"]["tcpSocket"] == {"port": "http"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 8080, "http"),
        ("grpc", 9000, "grpc"),
    ]


def test_security_context_is_restricted_and_loosened_only_explicitly():
    isvc = _isvc(predictor__tensorflow={"storageUri": "pvc://m", "securityContext": {"readOnlyRootFilesystem": False}})
    context = build_deployment(isvc, resolve_runtime(isvc, load_catalog()))["spec"]["template"]["spec"]["containers"][
        0
    ]["securityContext"]
    assert context["readOnlyRootFilesystem"] is False
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}


def test_custom_container_is_probed_on_its_declared_port():
    body = copy.deepcopy(DOGS_VS_CATS)
    body["spec"]["predictor"] = {
        "containers": [{"image": "me/server:1", "ports": [{"name": "http", "containerPort": 7070}]}]
    }
    isvc = parse_inferenceservice(body)
    deployment, service = children_of(isvc)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "me/server:1"
    assert container["readinessProbe"]["tcpSocket"] == {"port": 7070}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 7070, "targetPort": "http", "protocol": "TCP", "nodePort": 31000}
    ]


def test_custom_container_keeps_its_own_probes_and_defaults_the_others():
    body = copy.deepcopy(DOGS_VS_CATS)
    readiness = {"httpGet": {"path": "/v1/models/m", "port": "http"}, "periodSeconds": 1}
    liveness = {"httpGet": {"path": "/healthz", "port": "http"}, "failureThreshold": 2}
    body["spec"]["predictor"] = {
        "containers": [
            {
                "image": "me/server:1",
                "ports": [{"name": "http", "containerPort": 7070}],
                "readinessProbe": readiness,
                "livenessProbe": liveness,
            }
        ]
    }
    deployment, _ = children_of(parse_inferenceservice(body))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"] == readiness
    assert container["livenessProbe"] == liveness
    assert container["startupProbe"] == {"tcpSocket": {"port": 7070}, "periodSeconds": 1, "failureThreshold": 600}
