"""Fixtures for the end-to-end tests on the local real node (hack/node/): real images, real pods.

Every pod here runs on the real node (its label and taint are asked for explicitly); every byte a
pod fetches comes from an HTTP server this session starts on the node's own address, and the host
reaches the model servers through NodePorts on 127.0.0.1. The operator is the one a user installs:
`helm install` of charts/isvc-operator with the image `make images` built, as a real pod.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Kube, condition, wait_until
from tests.support import built_tool, shell_vars

pytestmark = pytest.mark.node


NODE = shell_vars(ROOT / "hack/node/env.sh")
IMAGES = shell_vars(ROOT / "hack/images/images.env")
OPERATOR_IMAGE = f"{IMAGES['OPERATOR_IMAGE']}:{IMAGES['IMAGE_VERSION']}"
TEST_SERVER_IMAGE = "localhost/isvc-test-server:1"
PYTORCH_SERVER_IMAGE = f"{IMAGES['PYTORCH_SERVER_IMAGE']}:{IMAGES['IMAGE_VERSION']}"
E2E_NAMESPACE = "isvc-e2e"
RELEASE = "isvc-operator"
# What puts a pod on the real node: its label, and a toleration of its taint.
ON_REAL_NODE = {
    "nodeSelector": {NODE["NODE_LABEL_KEY"]: NODE["NODE_LABEL_VALUE"]},
    "tolerations": [
        {"key": NODE["NODE_LABEL_KEY"], "operator": "Equal", "value": NODE["NODE_LABEL_VALUE"], "effect": "NoSchedule"}
    ],
}


@pytest.fixture(scope="session")
def real_node(kube: Kube) -> str:
    """The real node's name, Ready; a clear failure (not a skip) when the machine did not start it."""
    if os.environ.get("ISVC_REAL_NODE") == "0":
        pytest.skip("ISVC_REAL_NODE=0: the real node is switched off")
    node = kube.get("node", NODE["NODE_NAME"])
    if condition(node, "Ready").get("status") != "True":
        log = ROOT / ".cluster/logs/kubelet.log"
        tail = "\n".join(log.read_text().splitlines()[-15:]) if log.exists() else "(no kubelet log)"
        pytest.fail(
            f"the real node {NODE['NODE_NAME']} is not Ready (hack/cluster/up.sh starts it; "
            f"`bash hack/node/up.sh check` says why it cannot run): {condition(node, 'Ready')}\n{tail}"
        )
    return NODE["NODE_NAME"]


@pytest.fixture(scope="session")
def images(real_node: str) -> None:
    """The operator, PyTorch server and test server images, built (cached by content) and loaded."""
    subprocess.run(
        ["bash", str(ROOT / "hack/images/build.sh"), "--load", "operator", "pytorch-server", "test-server"],
        check=True,
        timeout=3600,
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def models() -> Iterator[Path]:
    """iris v1/v2 archives (and broken ones) with what each model answers in-process (expected.json)."""
    python = ROOT / "servers/pytorch/.venv/bin/python"
    if not python.exists() or subprocess.run([str(python), "-c", "import torch, pytest"]).returncode != 0:
        subprocess.run(
            ["bash", str(ROOT / "servers/pytorch/run-tests.sh"), "--co", "-q"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=3600,
        )
    out = Path(tempfile.mkdtemp(prefix="isvc-e2e-models-"))
    subprocess.run([str(python), str(ROOT / "tests/e2e/make_models.py"), str(out)], check=True, timeout=600)
    yield out
    shutil.rmtree(out, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def model_store(models: Path, real_node: str) -> Iterator[str]:
    """An HTTP server on the node's own address (the pods' gateway): the model archives' URL base."""
    handler = functools.partial(_QuietHandler, directory=str(models))
    server = http.server.ThreadingHTTPServer((NODE["NODE_IP"], 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{NODE['NODE_IP']}:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def expected(models: Path) -> dict[str, Any]:
    return json.loads((models / "expected.json").read_text())


@pytest.fixture(scope="package")
def e2e_operator(kube: Kube, images: None, helm_bin: str) -> Iterator[dict[str, Any]]:
    """The operator as a user installs it: `helm install` from its own image, cluster-wide, on the real
    node, with leader election and its liveness endpoint. Uninstalled after the e2e tests."""
    kube.run("create", "namespace", E2E_NAMESPACE, check=False)
    values = Path(tempfile.mkdtemp(prefix="isvc-e2e-values-")) / "values.yaml"
    values.write_text(json.dumps({"image": {"pullPolicy": "Never"}, **ON_REAL_NODE}))
    subprocess.run(
        [
            helm_bin,
            "upgrade",
            "--install",
            RELEASE,
            str(ROOT / "charts/isvc-operator"),
            "-n",
            E2E_NAMESPACE,
            "-f",
            str(values),
            "--wait",
            "--timeout",
            "180s",
        ],
        check=True,
        env=kube.env,
        capture_output=True,
        timeout=240,
    )
    pod = wait_until(lambda: _running_operator_pod(kube), 120, "the operator pod to run")
    wait_until(
        lambda: "isvc-operator started" in kube.run("logs", "-n", E2E_NAMESPACE, pod["metadata"]["name"]).stdout,
        60,
        "the in-cluster operator to lead and start watching",
    )
    yield pod
    logs = kube.run("logs", "-n", E2E_NAMESPACE, f"deployment/{RELEASE}", check=False).stdout
    subprocess.run(
        [helm_bin, "uninstall", RELEASE, "-n", E2E_NAMESPACE, "--wait", "--timeout", "120s"],
        env=kube.env,
        capture_output=True,
        timeout=180,
    )
    kube.run("delete", "namespace", E2E_NAMESPACE, "--wait=false", check=False)
    assert "Traceback" not in logs, f"the in-cluster operator logged a traceback:\n{logs[-4000:]}"


def _running_operator_pod(kube: Kube) -> dict[str, Any] | None:
    pods = json.loads(
        kube.run("get", "pods", "-n", E2E_NAMESPACE, "-l", "app.kubernetes.io/name=isvc-operator", "-o", "json").stdout
    )["items"]
    ready = [p for p in pods if condition(p, "Ready").get("status") == "True"]
    return ready[0] if len(ready) == 1 and len(pods) == 1 else None


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return str(built_tool("helm"))


def isvc(name: str, predictor: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """An InferenceService whose pods run on the real node, exposed on a NodePort."""
    return {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {**predictor, **ON_REAL_NODE}, "service": {"type": "NodePort"}, **spec},
    }


def wait_condition(
    kube: Kube, namespace: str, name: str, status: str, timeout: float, reason: str | None = None
) -> dict[str, Any]:
    """Wait for Ready to have `status` (and `reason`) at the isvc's current generation."""

    def check() -> dict[str, Any] | None:
        obj = kube.get("isvc", name, namespace)
        ready = condition(obj, "Ready")
        if (
            obj
            and ready.get("status") == status
            and (reason is None or ready.get("reason") == reason)
            and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
        ):
            return obj
        return None

    try:
        return wait_until(
            check, timeout, f"isvc {namespace}/{name} Ready={status}{f' ({reason})' if reason else ''}", interval=0.5
        )
    except AssertionError as exc:
        obj = kube.get("isvc", name, namespace)
        pods = kube.run("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        raise AssertionError(
            f"{exc}\nstatus: {json.dumps((obj or {}).get('status'), indent=1)}\npods:\n{pods}"
        ) from None


def node_port(kube: Kube, namespace: str, name: str, port: str = "http") -> int:
    """The Service's node port on 127.0.0.1, once kube-proxy has programmed it.

    Ready says the pods are ready and in the Service's endpoints; kube-proxy writes its rules for
    them afterwards, on its own schedule (up to 3 s here on a quiet machine, more under load).
    Until then a connection is refused, so a request sent the moment Ready turns True may fail
    although nothing is wrong: wait for a TCP connection to be accepted, then test the model."""
    service = kube.get("service", name, namespace)
    number = next(p["nodePort"] for p in service["spec"]["ports"] if p["name"] == port)

    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", number), timeout=2).close()
            return True
        except OSError:
            return False

    wait_until(accepts, 60, f"kube-proxy to program node port {number} of {namespace}/{name}")
    return number


def post_json(url: str, body: Any, timeout: float = 10, source: str | None = None) -> tuple[int, Any]:
    """One request on a new connection, from the local address `source` when given; (status, the
    decoded JSON, or the text of an error)."""
    parts = urllib.parse.urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = http.client.HTTPConnection(
        parts.hostname or "", parts.port or 80, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        connection.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    if response.status >= 400:
        return response.status, raw.decode(errors="replace")
    return response.status, json.loads(raw)


def run_pod(kube: Kube, namespace: str, name: str, image: str, command: list[str], timeout: float = 120) -> str:
    """A one-off pod on the real node; its logs once it has succeeded."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            **ON_REAL_NODE,
            "containers": [{"name": "main", "image": image, "command": command, "imagePullPolicy": "Never"}],
        },
    }
    kube.apply(pod, namespace)
    wait_until(
        lambda: (kube.get("pod", name, namespace) or {}).get("status", {}).get("phase") in ("Succeeded", "Failed"),
        timeout,
        f"pod {name} to finish",
    )
    phase = kube.get("pod", name, namespace)["status"]["phase"]
    logs = kube.run("logs", "-n", namespace, name).stdout
    assert phase == "Succeeded", f"pod {name} ended {phase}:\n{logs}"
    return logs


def float32(tree: Any) -> Any:
    """Numbers rounded to float32, as the model computes them: the server prints the shortest float32
    text of each value, the in-process reference its float64 widening; both round to the same float32."""
    if isinstance(tree, list):
        return [float32(item) for item in tree]
    return struct.unpack("f", struct.pack("f", tree))[0]
