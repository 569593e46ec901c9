"""Fixtures for tests against the real local control plane (hack/cluster/up.sh) and a real operator process.

The control plane is started when none answers and stopped again at the end if this session started
it (set ISVC_KEEP_CLUSTER=1 to keep it); up.sh starts it with the audit log the write-counting tests
read (hack/cluster/audit-policy.yaml, unless ISVC_AUDIT_POLICY names another). The operator runs as a separate process, as in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import (
    chart_identity,
    kubectl_path,
    pinned_versions,
    reserved_port,
    service_account_kubeconfig,
    wait_until,
)

__all__ = ["wait_until"]  # tests import it from here too

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DIR = Path(os.environ.get("ISVC_CLUSTER_DIR", ROOT / ".cluster"))
VERSIONS = pinned_versions()


# CI (hack/test.sh sets ISVC_FAIL_ON_SKIP=1) fails on a skip it did not ask for: after `make venv`
# hadolint and lupa are installed, and the e2e tests skip only when ISVC_REAL_NODE=0 says so.
EXPECTED_SKIPS = {"ISVC_REAL_NODE=0: the real node is switched off": lambda: os.environ.get("ISVC_REAL_NODE") == "0"}
_skips: list[str] = []


def _record_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        allowed = EXPECTED_SKIPS.get(reason)
        if not (allowed and allowed()):
            _skips.append(f"{report.nodeid}: {reason}")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record_skip(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skips and os.environ.get("ISVC_FAIL_ON_SKIP") == "1":
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        sys.stderr.write("\nISVC_FAIL_ON_SKIP=1: unexpected skips fail the run:\n  " + "\n  ".join(_skips) + "\n")


class Kube:
    """kubectl, as a user would run it, against the test cluster."""

    def __init__(self, kubectl: str, kubeconfig: str) -> None:
        self.kubectl = kubectl
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl, *args], input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def apply(self, docs: Any, namespace: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs if isinstance(docs, list) else [docs])
        return self.run("apply", *(["-n", namespace] if namespace else []), "-f", "-", input=text, check=check)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        result = self.run("get", kind, name, *(["-n", namespace] if namespace else []), "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        return json.loads(result.stdout)


def wait_established(kube: Kube, crd: str, timeout: float = 60) -> None:
    """Poll the CRD: `kubectl wait` fails at once while a just-created CRD has no conditions yet."""
    wait_until(
        lambda: condition(kube.get("crd", crd), "Established").get("status") == "True",
        timeout,
        f"CRD {crd} to be Established",
    )


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond
    return {}


def wait_reason(kube: Kube, name: str, namespace: str, type_: str, reason: str, timeout: float) -> dict[str, Any]:
    """The isvc once its `type_` condition has `reason`."""
    obj: dict[str, Any] = wait_until(
        lambda: (o := kube.get("isvc", name, namespace)) and condition(o, type_).get("reason") == reason and o,
        timeout,
        f"{type_} of {namespace}/{name} to be {reason}",
    )
    return obj


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    kubeconfig = CLUSTER_DIR / "kubeconfig"
    started = False
    kubectl_bin = kubectl_path()
    reachable = (
        kubeconfig.exists()
        and kubectl_bin.exists()
        and subprocess.run(
            [str(kubectl_bin), "--kubeconfig", str(kubeconfig), "get", "--raw", "/readyz"], capture_output=True
        ).returncode
        == 0
    )
    if not reachable:
        subprocess.run(["bash", str(ROOT / "hack/cluster/up.sh")], check=True, stdout=subprocess.DEVNULL)
        started = True
    kube = Kube(str(kubectl_bin), str(kubeconfig))
    kube.apply((ROOT / "crds/serving.isvc.dev_inferenceservices.yaml").read_text())
    wait_established(kube, "inferenceservices.serving.isvc.dev")
    yield kube
    if started and not os.environ.get("ISVC_KEEP_CLUSTER"):
        subprocess.run(["bash", str(ROOT / "hack/cluster/down.sh")], check=False)


class OperatorProcess:
    def __init__(self, kube: Kube, log_path: Path) -> None:
        self.kube = kube
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = reserved_port()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "isvc_operator",
                "run",
                "--log-format",
                "json",
                "--metrics-port",
                str(self.metrics_port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.kube.env, "PYTHONUNBUFFERED": "1"},
        )
        wait_until(
            lambda: "isvc-operator started" in self.log_path.read_text()[offset:] or self.proc.poll() is not None,
            60,
            "the operator to start watching",
        )
        assert self.proc.poll() is None, f"operator exited: see {self.log_path}"

    def stop(self) -> int | None:
        """SIGTERM, as the kubelet sends it; the exit code, or None when it had to be killed."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode if self.proc else None

    def log(self) -> str:
        return self.log_path.read_text()


OPERATOR_NAMESPACE = "isvc-tests"


@pytest.fixture(scope="session")
def operator_identity(kube: Kube) -> Iterator[tuple[str, Kube]]:
    """The chart's ServiceAccount and ClusterRole (the shipped RBAC), and a kubeconfig with its token.

    The operator under test runs as this account, so every integration test also proves the RBAC.
    """
    account, docs = chart_identity(OPERATOR_NAMESPACE)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}})
    kube.apply(docs)
    token = kube.run("create", "token", account, "-n", OPERATOR_NAMESPACE, "--duration=24h").stdout.strip()
    path = service_account_kubeconfig(Path(kube.kubeconfig), account, token, CLUSTER_DIR / "operator-kubeconfig")
    yield f"system:serviceaccount:{OPERATOR_NAMESPACE}:{account}", Kube(kube.kubectl, str(path))
    kube.run("delete", "-f", "-", "--ignore-not-found", input=yaml.safe_dump_all(docs), check=False)


WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class AuditLog:
    """The operator's write requests, read from the kube-apiserver audit log.

    hack/cluster/up.sh starts the API server with hack/cluster/audit-policy.yaml (ServiceAccounts'
    writes at Metadata level). A no-op apply or patch leaves an object's resourceVersion alone, so
    only the requests themselves show a redundant write."""

    def __init__(self, path: Path, user: str) -> None:
        self.path = path
        self.user = user

    def mark(self) -> int:
        """Where the log ends now: pass it to `writes` to see only later requests."""
        return self.path.stat().st_size

    def writes(self, since: int, namespace: str) -> list[str]:
        """The operator's writes in `namespace` after `since`, as "verb resource[/subresource] name"."""
        found: dict[str, str] = {}
        with open(self.path, "rb") as f:
            f.seek(since if self.path.stat().st_size >= since else 0)  # rotated (200 MB): all of the new file
            for raw in f:
                try:
                    event = json.loads(raw)
                except ValueError:  # a line the API server is still writing
                    continue
                ref = event.get("objectRef") or {}
                if (
                    (event.get("user") or {}).get("username") == self.user
                    and event.get("verb") in WRITE_VERBS
                    and ref.get("namespace") == namespace
                ):
                    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                    found[event["auditID"]] = f"{event['verb']} {ref.get('resource')}{sub} {ref.get('name', '')}"
        return sorted(found.values())

    def writes_besides(self, kube: Kube, since: int, namespace: str, marker: str) -> list[str]:
        """The operator's writes in `namespace` after `since` that are not about the isvc `marker`
        (created after `since` to show the operator got that far), its children (named after it) or
        its Events (created with generateName, so nameless in the log: matched by count)."""
        # The API server writes its audit log in batches: wait until it holds every Event about the
        # marker that the API already shows, or a line still in flight would count as -1 Events.
        marker_events = len(operator_events(kube, marker, namespace))
        wait_until(
            lambda: self.writes(since, namespace).count("create events ") >= marker_events,
            30,
            f"the audit log to show the {marker_events} Event(s) about '{marker}'",
        )
        writes = self.writes(since, namespace)
        assert any(w.split(" ", 2)[2].startswith(marker) for w in writes), (
            f"the audit log shows none of the writes for '{marker}' ({writes}), so it cannot show others; "
            f"see {self.path} and hack/cluster/audit-policy.yaml"
        )
        others = [w for w in writes if not w.split(" ", 2)[2].startswith(marker) and w != "create events "]
        extra_events = writes.count("create events ") - len(operator_events(kube, marker, namespace))
        if extra_events:
            others.append(f"{extra_events} Event(s) about other objects: {operator_events(kube, None, namespace)}")
        return others

    def expect_no_writes(self, since: int, namespace: str, seconds: float, why: str) -> None:
        """Watch the log for `seconds` (the bound is `why`), failing at the first write in `namespace`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            writes = self.writes(since, namespace)
            assert not writes, f"the operator wrote {writes} in {namespace} ({why}); audit log: {self.path}"
            time.sleep(0.2)


def operator_events(kube: Kube, name: str | None, namespace: str) -> list[str]:
    """The Events the operator (kopf) posted about the object `name` (None: about any)."""
    selector = "source=kopf" + (f",involvedObject.name={name}" if name else "")
    out = kube.run("get", "events", "-n", namespace, "--field-selector", selector, "-o", "json").stdout
    return [f"{e['involvedObject']['name']}: {e['reason']}: {e['message']}" for e in json.loads(out)["items"]]


@pytest.fixture(scope="session")
def operator_audit(kube: Kube, operator_identity: tuple[str, Kube]) -> AuditLog:
    """The operator's writes from the audit log (a cluster started without it cannot count them)."""
    path = CLUSTER_DIR / "logs" / "audit.log"
    assert path.exists(), (
        f"no audit log at {path}: the cluster was started without one (an older hack/cluster/up.sh?); "
        "restart it with `make cluster-down` so that up.sh starts it with hack/cluster/audit-policy.yaml"
    )
    return AuditLog(path, operator_identity[0])


# Node ports the tests fix in a spec come from the bottom of the API server's range (30000-32767,
# hack/cluster/up.sh): the API server hands out ports for Services without one from the upper part
# first and reaches this band only when the rest is full (Kubernetes 1.29+, KEP-3668: the lower
# min(max(16, size/32), 128) = 86 ports), so a port taken here cannot be given to another test's
# Service in between.
TEST_NODE_PORTS = range(30000, 30080)


class NodePorts:
    """Hands out node ports from TEST_NODE_PORTS, each once per session and only one that no
    Service in the cluster holds (a leftover from an earlier session, or the e2e tests)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.given: set[int] = set()

    def take(self, count: int) -> list[int]:
        services = json.loads(self.kube.run("get", "services", "-A", "-o", "json").stdout)["items"]
        held = {p.get("nodePort") for svc in services for p in svc["spec"].get("ports") or []}
        free = [port for port in TEST_NODE_PORTS if port not in held and port not in self.given][:count]
        assert len(free) == count, f"fewer than {count} of the tests' node ports {TEST_NODE_PORTS} are free"
        self.given.update(free)
        return free


@pytest.fixture(scope="session")
def node_ports(kube: Kube) -> NodePorts:
    return NodePorts(kube)


def operator_tracebacks(log: str) -> list[str]:
    """Log lines with a traceback, none exempt: kopf's "Watcher for authorizationpolicies ... 404"
    (a watch outliving Istio's CRD) is the failure the operator's watch restart prevents."""
    return [line for line in log.splitlines() if "Traceback" in line]


@pytest.fixture(scope="session")
def operator(kube: Kube, operator_identity: tuple[str, Kube]) -> Iterator[OperatorProcess]:
    (CLUSTER_DIR / "logs").mkdir(parents=True, exist_ok=True)
    log_path = CLUSTER_DIR / "logs" / "operator-tests.log"
    log_path.write_text("")
    proc = OperatorProcess(operator_identity[1], log_path)
    proc.start()
    yield proc
    code = proc.stop()
    assert not operator_tracebacks(proc.log()), f"the operator logged a traceback: see {log_path}"
    assert code == 0, f"the operator did not exit cleanly on SIGTERM (exit code {code}; None: killed after 20 s)"


@pytest.fixture
def namespace(kube: Kube, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    kube.run("create", "namespace", name)
    kube.run("wait", "--for=jsonpath={.status.phase}=Active", f"namespace/{name}", "--timeout=30s")
    yield name
    kube.run("delete", "namespace", name, "--wait=false", check=False)
    kube.run("delete", "pv", "-l", f"isvc-test-namespace={name}", "--wait=false", check=False)


def host_path_claim(
    kube: Kube, namespace: str, name: str, path: str, access_mode: str = "ReadWriteOnce", path_type: str | None = None
) -> str:
    """A claim bound to a static hostPath volume (this cluster has no provisioner); returns the volume's name."""
    pv = f"{namespace}-{name}"
    host_path = {"path": path, **({"type": path_type} if path_type else {})}
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {"isvc-test-namespace": namespace}},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": [access_mode],
                    "storageClassName": "",
                    "hostPath": host_path,
                    "claimRef": {"namespace": namespace, "name": name},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "accessModes": [access_mode],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ]
    )
    wait_until(
        lambda: (kube.get("pvc", name, namespace) or {}).get("status", {}).get("phase") == "Bound",
        30,
        f"PVC {name} to bind",
    )
    return pv


@pytest.fixture
def model_claim(kube: Kube, namespace: str) -> str:
    """A bound PVC named `models`."""
    host_path_claim(kube, namespace, "models", "/tmp/isvc-models")
    return "models"
