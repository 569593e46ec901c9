"""User stories against the real control plane, with the operator running as its own process."""

from __future__ import annotations

import pytest

from tests.conftest import Kube, condition, operator_events, wait_until

pytestmark = pytest.mark.cluster


def isvc(name: str, namespace: str, **predictor: object) -> dict:
    return {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "predictor": {"tensorflow": {"storageUri": "pvc://models"}, **predictor},
            "service": {"type": "NodePort"},
        },
    }


def wait_ready(kube: Kube, name: str, namespace: str, generation: int = 1, timeout: float = 60) -> dict:
    def ready():
        obj = kube.get("isvc", name, namespace)
        cond = condition(obj, "Ready")
        ok = cond.get("status") == "True" and (obj or {}).get("status", {}).get("observedGeneration") == generation
        return obj if ok else None

    return wait_until(ready, timeout, f"isvc {namespace}/{name} Ready=True at generation {generation}")


def test_tensorflow_isvc_becomes_ready_with_the_hand_written_children(kube, operator, namespace, model_claim):
    kube.apply(isvc("dogs-vs-cats", namespace))
    # What a user would type: it returns once the operator says Ready.
    kube.run("wait", "--for=condition=Ready", "isvc/dogs-vs-cats", "-n", namespace, "--timeout=60s")

    deployment = kube.get("deployment", "dogs-vs-cats-predictor", namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "tensorflow/serving:2.19.0"
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]
    assert container["args"] == [
        "--port=9000",
        "--rest_api_port=8500",
        "--model_name=dogs-vs-cats",
        "--model_base_path=/mnt/models",
    ]
    assert [p["containerPort"] for p in container["ports"]] == [8500, 9000]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/dogs-vs-cats"
    assert container["livenessProbe"]["tcpSocket"]["port"] == "grpc"
    assert container["securityContext"]["runAsNonRoot"] is True and container["securityContext"]["runAsUser"] == 1000
    assert deployment["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"] == {
        "claimName": "models",
        "readOnly": True,
    }
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("InferenceService", "dogs-vs-cats", True)

    service = kube.get("service", "dogs-vs-cats", namespace)
    assert service["spec"]["type"] == "NodePort"
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("http", 8500), ("grpc", 9000)]
    assert all(30000 <= p["nodePort"] <= 32767 for p in service["spec"]["ports"])

    obj = kube.get("isvc", "dogs-vs-cats", namespace)
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"] == 1
    assert status["url"] == f"http://dogs-vs-cats.{namespace}.svc.cluster.local:8500/v1/models/dogs-vs-cats"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "PredictorReady": "True",
        "ServiceReady": "True",
        "AuthorizationReady": "True",
        "Reconciling": "False",
        "Stalled": "False",
    }
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)

    table = kube.run("get", "isvc", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REASON", "URL", "REPLICAS", "CANARY", "AGE"]
    assert table[1].split()[:5] == ["dogs-vs-cats", "True", "Ready", status["url"], "1/1"]


def test_fixed_node_ports_as_in_the_hand_written_service(kube, operator, namespace, model_claim, node_ports):
    http, grpc = node_ports.take(2)
    body = isvc("fixed-ports", namespace)
    body["spec"]["service"] = {"type": "NodePort", "httpNodePort": http, "grpcNodePort": grpc}
    kube.apply(body)
    wait_ready(kube, "fixed-ports", namespace)
    ports = {p["name"]: p["nodePort"] for p in kube.get("service", "fixed-ports", namespace)["spec"]["ports"]}
    assert ports == {"http": http, "grpc": grpc}
    condition_message = condition(kube.get("isvc", "fixed-ports", namespace), "ServiceReady")["message"]
    assert f"http 8500->{http}, grpc 9000->{grpc}" in condition_message

    # A second isvc asking for the same node port is told why it cannot be exposed; the first keeps serving.
    clash = isvc("clash", namespace)
    clash["spec"]["service"] = {"type": "NodePort", "httpNodePort": http}
    kube.apply(clash)
    cond = wait_until(
        lambda: condition(kube.get("isvc", "clash", namespace), "ServiceReady").get("status") == "False"
        and condition(kube.get("isvc", "clash", namespace), "Ready"),
        30,
        "Ready=False for the port clash",
    )
    assert cond["reason"] == "ServiceRejected"
    assert str(http) in cond["message"] and "already allocated" in cond["message"]
    assert condition(kube.get("isvc", "fixed-ports", namespace), "Ready")["status"] == "True"


def test_spec_change_rolls_out_and_status_is_not_ready_until_it_finishes(kube, operator, namespace, model_claim):
    kube.apply(isvc("rollout", namespace))
    wait_ready(kube, "rollout", namespace)
    nodes = kube.run("get", "nodes", "-l", "type=kwok", "-o", "name").stdout.split()
    # New pods cannot be placed while the nodes are cordoned, so the rollout stays in progress.
    for node in nodes:
        kube.run("cordon", node)
    try:
        kube.run(
            "patch",
            "isvc",
            "rollout",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec":{"predictor":{"tensorflow":{"storageUri":"pvc://models","runtimeVersion":"2.18.0"}}}}',
        )

        seen = []

        def unschedulable():
            obj = kube.get("isvc", "rollout", namespace)
            cond = condition(obj, "Ready")
            if obj["status"].get("observedGeneration") == 2:
                seen.append((cond.get("status"), cond.get("reason")))
            return cond if seen and seen[-1] == ("False", "Unschedulable") else None

        # Every node is cordoned: the new pod cannot be placed, and the status says so (not a
        # generic "in progress") until the nodes come back.
        cond = wait_until(unschedulable, 60, "Ready=False Unschedulable for the rollout's pod")
        assert ("True", "Available") not in seen and all(status != "True" for status, _ in seen), seen
        assert "rollout-predictor-" in cond["message"] and "unschedulable" in cond["message"], cond
    finally:
        for node in nodes:
            kube.run("uncordon", node)
    wait_ready(kube, "rollout", namespace, generation=2)
    image = kube.get("deployment", "rollout-predictor", namespace)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "tensorflow/serving:2.18.0"


@pytest.mark.parametrize(("kind", "name"), [("service", "restore"), ("deployment", "restore-predictor")])
def test_a_deleted_child_comes_back(kube, operator, namespace, model_claim, kind, name):
    kube.apply(isvc("restore", namespace))
    wait_ready(kube, "restore", namespace)
    uid = kube.get(kind, name, namespace)["metadata"]["uid"]
    kube.run("delete", kind, name, "-n", namespace)
    recreated = wait_until(
        lambda: (obj := kube.get(kind, name, namespace)) and obj["metadata"]["uid"] != uid and obj,
        30,
        f"{kind} {name} to be recreated",
    )
    assert recreated["metadata"]["labels"]["serving.isvc.dev/inferenceservice"] == "restore"
    wait_ready(kube, "restore", namespace)


def test_a_hand_edited_child_is_restored(kube, operator, namespace, model_claim):
    kube.apply(isvc("edited", namespace))
    wait_ready(kube, "edited", namespace)
    kube.run("patch", "service", "edited", "-n", namespace, "--type=merge", "-p", '{"spec":{"type":"ClusterIP"}}')
    wait_until(
        lambda: kube.get("service", "edited", namespace)["spec"]["type"] == "NodePort",
        30,
        "the Service type to be restored",
    )


def test_a_renumbered_service_port_is_replaced_not_left_beside_ours(kube, operator, namespace, model_claim):
    """Another writer renumbers our port: a forced apply would keep its entry (keyed by the new
    number) beside ours, both named http, and be rejected forever; the operator replaces the Service."""
    kube.apply(isvc("renumbered", namespace))
    wait_ready(kube, "renumbered", namespace)
    before = kube.get("service", "renumbered", namespace)
    ports = before["spec"]["ports"]
    http = next(i for i, p in enumerate(ports) if p["name"] == "http")
    kube.run(
        "patch",
        "service",
        "renumbered",
        "-n",
        namespace,
        "--type=json",
        "-p",
        f'[{{"op": "replace", "path": "/spec/ports/{http}/port", "value": 8501}}]',
    )

    def restored():
        svc = kube.get("service", "renumbered", namespace)
        numbers = sorted(p["port"] for p in svc["spec"]["ports"])
        return svc if numbers == sorted(p["port"] for p in ports) else None

    svc = wait_until(restored, 30, "the Service's ports to be ours again")
    assert svc["spec"]["clusterIP"] == before["spec"]["clusterIP"], "replaced in place, not recreated"
    assert svc["metadata"]["uid"] == before["metadata"]["uid"]
    obj = wait_ready(kube, "renumbered", namespace)
    assert condition(obj, "ServiceReady")["reason"] != "ServiceRejected"


def test_deleting_the_isvc_removes_its_children(kube, operator, namespace, model_claim):
    kube.apply(isvc("doomed", namespace))
    wait_ready(kube, "doomed", namespace)
    kube.run("delete", "isvc", "doomed", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_until(
        lambda: kube.get("deployment", "doomed-predictor", namespace) is None
        and kube.get("service", "doomed", namespace) is None,
        60,
        "the garbage collector to remove the children",
    )


@pytest.mark.parametrize(
    ("spec_change", "message"),
    [
        (
            {"predictor": {"tensorflow": {"storageUri": "ftp://host/model"}}},
            "storageUri ftp://host/model has an unsupported scheme; supported: pvc://CLAIM[/PATH], s3://BUCKET[/PREFIX], "
            "gs://BUCKET[/PREFIX], https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX], http(s)://... archives",
        ),
        (
            {"predictor": {"tensorflow": {"storageUri": "pvc://m"}, "pytorch": {"storageUri": "pvc://m"}}},
            "set exactly one of spec.predictor.tensorflow, spec.predictor.pytorch or spec.predictor.containers",
        ),
        (
            {"predictor": {"tensorflow": {"storageUri": "pvc://m"}, "replicas": -1}},
            "spec.predictor.replicas: Invalid value: -1: spec.predictor.replicas in body should be greater than or equal to 0",
        ),
        (
            {
                "predictor": {"tensorflow": {"storageUri": "pvc://m"}},
                "service": {"type": "ClusterIP", "httpNodePort": 31000},
            },
            "httpNodePort/grpcNodePort need type NodePort or LoadBalancer, not ClusterIP",
        ),
    ],
)
def test_invalid_isvc_is_rejected_by_the_api_server_with_a_readable_message(kube, namespace, spec_change, message):
    body = isvc("bad", namespace)
    body["spec"] = spec_change
    result = kube.apply(body, check=False)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_a_spec_the_schema_accepts_but_cannot_be_served_is_ready_false_without_children(kube, operator, namespace):
    body = isvc("unknown-runtime", namespace)
    body["spec"]["predictor"]["tensorflow"]["runtime"] = "triton"
    kube.apply(body)
    cond = wait_until(
        lambda: condition(kube.get("isvc", "unknown-runtime", namespace), "Ready").get("reason") == "InvalidSpec"
        and condition(kube.get("isvc", "unknown-runtime", namespace), "Ready"),
        30,
        "Ready=False InvalidSpec",
    )
    assert cond["status"] == "False"
    assert "'triton' is not in the runtime catalog for tensorflow (known: tensorflow-serving)" in cond["message"]
    assert kube.get("deployment", "unknown-runtime-predictor", namespace) is None


def test_replicas_zero_is_stopped_not_an_error(kube, operator, namespace, model_claim):
    kube.apply(isvc("stopped", namespace, replicas=0))
    obj = wait_ready(kube, "stopped", namespace)
    assert condition(obj, "PredictorReady")["reason"] == "ScaledToZero"
    assert kube.get("deployment", "stopped-predictor", namespace)["spec"]["replicas"] == 0


def test_an_existing_isvc_turned_invalid_leaves_its_children_untouched(
    kube, operator, operator_audit, namespace, model_claim
):
    """README: a spec the operator cannot serve is Ready=False InvalidSpec, and the children of an isvc
    that served before are left as they are (still serving the last good spec): the operator's only
    writes after the change are the isvc's status (audit log)."""
    kube.apply(isvc("turned", namespace))
    wait_ready(kube, "turned", namespace)
    mark = operator_audit.mark()
    kube.run(
        "patch",
        "isvc",
        "turned",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"predictor":{"tensorflow":{"storageUri":"pvc://models","runtime":"triton"}}}}',
    )

    def invalid():
        obj = kube.get("isvc", "turned", namespace)
        cond = condition(obj, "Ready")
        return cond if cond.get("reason") == "InvalidSpec" and obj["status"].get("observedGeneration") == 2 else None

    cond = wait_until(invalid, 30, "Ready=False InvalidSpec at generation 2")
    assert cond["status"] == "False" and "'triton' is not in the runtime catalog" in cond["message"]
    # Not a sleep: an isvc created now is reconciled after the change to "turned" was handled.
    kube.apply(isvc("marker", namespace, replicas=0))
    wait_ready(kube, "marker", namespace)
    writes = operator_audit.writes_besides(kube, mark, namespace, marker="marker")
    # Allowed: the status, and the one Event about the Ready change (counted, not named, in the log).
    others = [w for w in writes if w != "patch inferenceservices/status turned" and not w.startswith("1 Event(s)")]
    assert others == [], f"the operator wrote to the children of an isvc turned invalid: {writes}"
    assert any("InvalidSpec" in e for e in operator_events(kube, "turned", namespace))
    assert kube.get("deployment", "turned-predictor", namespace) is not None
    assert kube.get("service", "turned", namespace) is not None


def test_a_deployment_the_api_server_rejects_is_ready_false_and_retried_once_allowed(
    kube, operator, namespace, model_claim
):
    """README: DeploymentRejected (the API server refused the child, its message quoted), retried
    with backoff: once the refusal is lifted, with no change to the isvc or any child to trigger a
    pass, the isvc becomes Ready. The refusal is a ValidatingAdmissionPolicy for this namespace."""
    policy = f"{namespace}-refuse"
    message = "refused by the test's admission policy"
    kube.apply(
        [
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicy",
                "metadata": {"name": policy},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": ["apps"],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE", "UPDATE"],
                                "resources": ["deployments"],
                            }
                        ]
                    },
                    "validations": [{"expression": "object.metadata.name != 'refused-predictor'", "message": message}],
                },
            },
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": policy},
                "spec": {
                    "policyName": policy,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                    },
                },
            },
        ]
    )
    try:
        probe = ("create", "deployment", "refused-predictor", "--image=x", "-n", namespace, "--dry-run=server")
        wait_until(lambda: message in kube.run(*probe, check=False).stderr, 30, "the admission policy to be in force")
        kube.apply(isvc("refused", namespace))

        def rejected():
            cond = condition(kube.get("isvc", "refused", namespace), "PredictorReady")
            return cond if cond.get("reason") == "DeploymentRejected" else None

        cond = wait_until(rejected, 30, "PredictorReady=False DeploymentRejected")
        assert cond["status"] == "False" and message in cond["message"], cond
        assert condition(kube.get("isvc", "refused", namespace), "Ready")["status"] == "False"
        assert kube.get("deployment", "refused-predictor", namespace) is None
    finally:
        kube.run("delete", "validatingadmissionpolicybinding", policy, "--ignore-not-found", check=False)
        kube.run("delete", "validatingadmissionpolicy", policy, "--ignore-not-found", check=False)
    # Nothing changes on the isvc or a child (there is no Deployment to change): only the retry converges.
    wait_ready(kube, "refused", namespace, timeout=120)
