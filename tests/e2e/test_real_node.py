"""The whole path, for real: image -> pod -> init container -> server -> probe -> status -> NodePort ->
prediction, on the local real node, with the operator installed by Helm as a pod.

Each test is one user story. Where a test measures something (time to Ready and its parts, requests
served during a rollout) it prints it (`pytest -s`); the figures in the README come from those lines.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import Kube, condition, wait_until

from .conftest import (
    E2E_NAMESPACE,
    OPERATOR_IMAGE,
    PYTORCH_SERVER_IMAGE,
    TEST_SERVER_IMAGE,
    float32,
    isvc,
    node_port,
    post_json,
    run_pod,
    wait_condition,
)

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("e2e_operator")]


def iris(store: str, archive: str = "iris-v1.tar.gz", **predictor: Any) -> dict[str, Any]:
    return isvc("iris", {"pytorch": {"storageUri": f"{store}/{archive}", **predictor}})


def image_only_isvc(name: str, image: str) -> dict[str, Any]:
    """A custom-container isvc that only names its image (for the image-pull cases)."""
    container = {"name": "kserve-container", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}
    return isvc(name, {"containers": [container]})


def predict_url(port: int, model: str = "iris") -> str:
    return f"http://127.0.0.1:{port}/v1/models/{model}:predict"


def _time(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else None


def startup_breakdown(kube: Kube, namespace: str, applied_at: float) -> str:
    """Where the seconds from `kubectl apply` to Ready went, from the pod's own timestamps."""
    pods = json.loads(kube.run("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    pod = pods[0]
    created = _time(pod["metadata"]["creationTimestamp"])
    scheduled = _time(condition(pod, "PodScheduled").get("lastTransitionTime"))
    init = ((pod["status"].get("initContainerStatuses") or [{}])[0].get("state") or {}).get("terminated") or {}
    main = (pod["status"]["containerStatuses"][0].get("state") or {}).get("running") or {}
    ready = _time(condition(pod, "Ready").get("lastTransitionTime"))
    parts = {
        "apply -> pod created": created - applied_at,
        "pod created -> scheduled": (scheduled or created) - created,
        "scheduled -> init container started (sandbox, image)": _time(init.get("startedAt")) - (scheduled or created),
        "init container (download + unpack)": _time(init.get("finishedAt")) - _time(init.get("startedAt")),
        "init done -> server started": _time(main.get("startedAt")) - _time(init.get("finishedAt")),
        "server started -> pod Ready (model loaded, probe)": ready - _time(main.get("startedAt")),
    }
    return ", ".join(f"{k}: {v:.1f} s" for k, v in parts.items())


def test_the_operator_runs_as_a_pod_from_its_own_image(kube: Kube, e2e_operator: dict[str, Any]) -> None:
    pod = e2e_operator
    container = pod["spec"]["containers"][0]
    assert pod["spec"]["nodeName"] == "isvc-node", pod["spec"].get("nodeName")
    assert container["image"] == OPERATOR_IMAGE
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert pod["spec"]["serviceAccountName"] == "isvc-operator"
    lease = kube.get("lease", "isvc-operator-leader", E2E_NAMESPACE)
    assert lease and lease["spec"].get("holderIdentity", "").startswith(pod["metadata"]["name"]), lease


GRPC_PREDICT_SCRIPT = """
import json, sys
import grpc, numpy as np
from isvc_pytorch_server.wire import predict_pb2, prediction_service_pb2_grpc
rows = np.array(json.loads(sys.argv[1]), dtype="<f4")
req = predict_pb2.PredictRequest()
req.model_spec.name = "iris"
tensor = req.inputs["x"]
tensor.dtype = 1  # DT_FLOAT
for d in rows.shape:
    tensor.tensor_shape.dim.add(size=d)
tensor.tensor_content = rows.tobytes()
with grpc.insecure_channel(sys.argv[2]) as channel:
    reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
out = reply.outputs["output-0"]
shape = [d.size for d in out.tensor_shape.dim]
print(json.dumps(np.frombuffer(out.tensor_content, dtype="<f4").reshape(shape).tolist()))
"""


def test_iris_from_an_http_archive_answers_like_the_model_in_process(
    kube: Kube, namespace: str, model_store: str, expected: dict[str, Any]
) -> None:
    applied = time.time()
    kube.apply(iris(model_store), namespace)
    obj = wait_condition(kube, namespace, "iris", "True", timeout=300)
    print(f"\niris Ready in {time.time() - applied:.1f} s ({startup_breakdown(kube, namespace, applied)})")
    assert obj["status"]["readyReplicas"] == 1

    # Through the NodePort on the host.
    status, answer = post_json(predict_url(node_port(kube, namespace, "iris")), expected["body"])
    assert status == 200, answer
    assert float32(answer["predictions"]) == float32(expected["iris-v1"]), answer

    # Through the ClusterIP, from another pod on the pod network.
    cluster_ip = kube.get("service", "iris", namespace)["spec"]["clusterIP"]
    script = (
        "import urllib.request, sys; r = urllib.request.urlopen(urllib.request.Request("
        f"'http://{cluster_ip}:8080/v1/models/iris:predict', data=sys.argv[1].encode()), timeout=10); "
        "print(r.read().decode())"
    )
    out = run_pod(kube, namespace, "client", TEST_SERVER_IMAGE, ["python3", "-c", script, json.dumps(expected["body"])])
    assert float32(json.loads(out)["predictions"]) == float32(expected["iris-v1"]), out

    # A user's first tools: kubectl logs and exec on the model server's pod.
    logs = kube.run("logs", "-n", namespace, "deployment/iris-predictor").stdout
    assert "isvc-pytorch-server" in logs and "serving iris from /mnt/models" in logs, logs
    init_logs = kube.run("logs", "-n", namespace, "deployment/iris-predictor", "-c", "storage-initializer").stdout
    assert "iris-v1.tar.gz" in init_logs, init_logs
    exec_out = kube.run(
        "exec",
        "-n",
        namespace,
        "deployment/iris-predictor",
        "--",
        "python",
        "-c",
        "import os; print(sorted(os.listdir('/mnt/models')))",
    ).stdout
    assert exec_out.strip() == "['1']", exec_out

    # gRPC through the Service, from another pod: TF Serving's Predict on the Service's grpc port,
    # with the stubs the server image compiled from its protos, answers as REST does.
    grpc_port = next(p["port"] for p in kube.get("service", "iris", namespace)["spec"]["ports"] if p["name"] == "grpc")
    grpc_out = run_pod(
        kube,
        namespace,
        "grpc-client",
        PYTORCH_SERVER_IMAGE,
        ["python", "-c", GRPC_PREDICT_SCRIPT, json.dumps(expected["body"]["instances"]), f"{cluster_ip}:{grpc_port}"],
    )
    assert float32(json.loads(grpc_out)) == float32(expected["iris-v1"]), grpc_out


def test_a_corrupt_archive_is_storage_initializer_failed(kube: Kube, namespace: str, model_store: str) -> None:
    kube.apply(iris(model_store, "corrupt.tar.gz"), namespace)
    obj = wait_condition(kube, namespace, "iris", "False", timeout=180, reason="StorageInitializerFailed")
    message = condition(obj, "Ready")["message"]
    assert "archive corrupt" in message and "storage-initializer" in message, message


def test_a_model_the_server_cannot_load_is_crash_loop_back_off(kube: Kube, namespace: str, model_store: str) -> None:
    kube.apply(iris(model_store, "unloadable.tar.gz"), namespace)
    obj = wait_condition(kube, namespace, "iris", "False", timeout=240, reason="CrashLoopBackOff")
    message = condition(obj, "Ready")["message"]
    assert "model.pt" in message and "failed to load" in message, message


def test_an_image_the_node_does_not_have_is_image_pull_back_off(kube: Kube, namespace: str) -> None:
    # A registry on this machine that does not exist: the pull fails at once and never leaves it.
    image = "localhost:1/isvc-e2e/no-such-image:1"
    kube.apply(image_only_isvc("missing", image), namespace)
    obj = wait_condition(kube, namespace, "missing", "False", timeout=120)
    ready = condition(obj, "Ready")
    assert ready["reason"] in ("ErrImagePull", "ImagePullBackOff"), ready
    assert image in ready["message"], ready


def test_a_container_killed_by_its_liveness_probe_is_restarted_and_ready_follows(kube: Kube, namespace: str) -> None:
    container = {
        "name": "kserve-container",
        "image": TEST_SERVER_IMAGE,
        "env": [{"name": "MODEL_NAME", "value": "flaky"}, {"name": "FAIL_LIVENESS_AFTER", "value": "4"}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/v1/models/flaky", "port": "http"}, "periodSeconds": 1},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2},
    }
    kube.apply(isvc("flaky", {"containers": [container]}), namespace)
    wait_condition(kube, namespace, "flaky", "True", timeout=120)

    def restarts() -> int:
        pods = json.loads(
            kube.run(
                "get", "pods", "-n", namespace, "-l", "serving.isvc.dev/inferenceservice=flaky", "-o", "json"
            ).stdout
        )["items"]
        return sum(s.get("restartCount", 0) for p in pods for s in p["status"].get("containerStatuses") or [])

    wait_until(lambda: restarts() >= 2, 120, "the kubelet to restart the container twice (liveness)")
    # Every restart is counted in the pod, and the isvc stops claiming Ready once restarts back off.
    obj = wait_condition(kube, namespace, "flaky", "False", timeout=180, reason="CrashLoopBackOff")
    assert "keeps crashing" in condition(obj, "Ready")["message"]


def test_the_custom_container_predictor_serves_through_its_node_port(kube: Kube, namespace: str) -> None:
    container = {
        "name": "kserve-container",
        "image": TEST_SERVER_IMAGE,
        "env": [
            {"name": "MODEL_NAME", "value": "custom"},
            {"name": "ANSWER", "value": "custom-1"},
            {"name": "LOAD_SECONDS", "value": "2"},
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/v1/models/custom", "port": "http"}, "periodSeconds": 1},
    }
    kube.apply(isvc("custom", {"containers": [container]}), namespace)
    wait_condition(kube, namespace, "custom", "True", timeout=120)
    status, answer = post_json(
        predict_url(node_port(kube, namespace, "custom"), "custom"), {"instances": [[1, 2], [3, 4]]}
    )
    assert (status, answer) == (200, {"predictions": [3, 7], "answer": "custom-1"})


class ClosedLoopClient:
    """Sends the seed body through the NodePort, one request after another on new connections,
    until stopped or for `limit` seconds; counts answers by prediction and every failure.

    Each connection comes from the next of 250 loopback source addresses. From one address, a few
    hundred new connections a second reuse a source port within a minute; kube-proxy masquerades
    the connection to the node's address keeping that port, and conntrack lets the reused tuple
    replace its predecessor while the pod still holds the predecessor in TIME_WAIT or FIN_WAIT2.
    The pod then answers the SYN with an ACK (a 1 s SYN retransmission, about 3% of connections
    here) or, rarely, a reset (about one connection in 50,000 refused, with nothing changing in
    the cluster). Real clients do not open all their connections from one address; spreading the
    source addresses takes that artifact of the harness out of what the tests count."""

    SOURCES = [f"127.0.0.{i}" for i in range(2, 252)]

    def __init__(self, url: str, body: Any, limit: float = 300) -> None:
        self.url, self.body, self.limit = url, body, limit
        self.answers: list[Any] = []
        self.failures: list[str] = []
        self.failed_at: list[float] = []  # wall-clock time of each failure, to place it in the rollout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        sent = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status, answer = post_json(
                    self.url, self.body, timeout=10, source=self.SOURCES[sent % len(self.SOURCES)]
                )
                if status == 200:
                    self.answers.append(float32(answer["predictions"]))
                else:
                    self._fail(f"HTTP {status}: {answer}")
            except Exception as exc:  # a refused or reset connection is exactly what this counts
                self._fail(f"{type(exc).__name__}: {exc}")
            sent += 1

    def _fail(self, what: str) -> None:
        self.failures.append(what)
        self.failed_at.append(time.time())

    def __enter__(self) -> ClosedLoopClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def rollout_timeline(kube: Kube, namespace: str, failed_at: list[float]) -> str:
    """The namespace's Events and the failures on one clock, to tell a server that stopped too early
    from a proxy that kept sending to it."""
    events = json.loads(kube.run("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    lines = [
        (
            _time(e.get("eventTime") or e.get("lastTimestamp") or e["metadata"]["creationTimestamp"]) or 0.0,
            f"{e['involvedObject']['kind']} {e['involvedObject']['name']}: {e['reason']} {e.get('message', '')[:100]}",
        )
        for e in events
    ]
    if failed_at:
        lines.append((failed_at[0], f"first of {len(failed_at)} failures"))
        lines.append((failed_at[-1], "last failure"))
    start = min(t for t, _ in lines)
    return "\n".join(f"{t - start:7.2f} s  {what}" for t, what in sorted(lines))


def test_a_rollout_under_traffic_loses_no_request(
    kube: Kube, namespace: str, model_store: str, expected: dict[str, Any]
) -> None:
    kube.apply(iris(model_store), namespace)
    wait_condition(kube, namespace, "iris", "True", timeout=300)
    url = predict_url(node_port(kube, namespace, "iris"))
    with ClosedLoopClient(url, expected["body"]) as client:
        wait_until(lambda: len(client.answers) >= 20, 60, "traffic to flow before the change")
        # A new model version and new server arguments: a new ReplicaSet rolls out.
        kube.apply(
            iris(
                model_store,
                "iris-v2.tar.gz",
                args=[
                    "--model_name=iris",
                    "--model_base_path=/mnt/models",
                    "--rest_api_port=8080",
                    "--max_batch_size=32",
                ],
            ),
            namespace,
        )
        saw_rollout = wait_until(
            lambda: condition(kube.get("isvc", "iris", namespace), "Ready").get("reason") == "RolloutInProgress",
            60,
            "the status to report the rollout",
        )
        assert saw_rollout
        obj = wait_condition(kube, namespace, "iris", "True", timeout=300)
        # Until the old pod is gone, some requests may still reach it: wait for it, then a little traffic more.
        wait_until(
            lambda: len(
                json.loads(
                    kube.run(
                        "get", "pods", "-n", namespace, "-l", "serving.isvc.dev/inferenceservice=iris", "-o", "json"
                    ).stdout
                )["items"]
            )
            == 1,
            120,
            "the old pod to terminate",
        )
        served = len(client.answers)
        wait_until(lambda: len(client.answers) >= served + 20, 60, "traffic after the rollout")
    print(f"\nrollout under traffic: {len(client.answers)} answered, {len(client.failures)} failed")
    assert not client.failures, (
        f"{len(client.failures)} requests failed during the rollout: {client.failures[:5]}\n"
        + rollout_timeline(kube, namespace, client.failed_at)
    )
    v1, v2 = float32(expected["iris-v1"]), float32(expected["iris-v2"])
    assert client.answers[0] == v1 and client.answers[-1] == v2
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2
    assert all(answer in (v1, v2) for answer in client.answers)


def test_nothing_on_the_node_reaches_past_this_machine(kube: Kube, namespace: str) -> None:
    """The node's guards, seen from a pod and from the runtime: kwok's fake pod IPs and Service IPs
    kube-proxy has not programmed are unreachable routes (fail at once, never the default route), and
    every image registry is 127.0.0.1:1 (a pull never leaves the machine). Only addresses that cannot
    exist are used, so a broken guard fails the test without sending anything out."""
    script = (
        "import socket\n"
        "for address in ('10.244.0.5', '10.96.250.250'):\n"
        "    try:\n"
        "        socket.create_connection((address, 80), timeout=5)\n"
        "        print(address, 'connected')\n"
        "    except OSError as exc:\n"
        "        print(address, exc.errno)\n"
    )
    out = run_pod(kube, namespace, "guards", TEST_SERVER_IMAGE, ["python3", "-c", script])
    assert out.split() == ["10.244.0.5", "113", "10.96.250.250", "113"], f"expected EHOSTUNREACH (113):\n{out}"

    image = "registry.example.invalid/isvc-e2e/anything:1"
    kube.apply(image_only_isvc("elsewhere", image), namespace)
    obj = wait_condition(kube, namespace, "elsewhere", "False", timeout=120)
    message = condition(obj, "Ready")["message"]
    assert "127.0.0.1:1" in message and image in message, message
