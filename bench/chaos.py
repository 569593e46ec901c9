#!/usr/bin/env python3
"""Chaos suite: the operator (a separate process) under faults, on a private local control plane.

Scenarios (each bounded by deadlines; `--quick` shrinks counts and durations):

* operator-kill    kill -9 the operator at random moments while InferenceServices are created,
                   updated and deleted (N isvcs, K kills), restarting it each time.
* apiserver-restart  kill -9 kube-apiserver mid-churn, restart it after a pause; the operator is
                   NOT restarted: it must reconnect by itself.
* etcd-restart     the same with etcd.
* fighting-writer  a writer deletes and edits children in a loop; the operator restores them; its
                   writes are counted during the fight and in a quiet window after it (a hot loop
                   would keep writing).
* leader-kill      two replicas with --leader-elect; the leader is killed mid-churn (and restarted
                   as a follower, as a Deployment would); the other finishes the work.
* fuzz             hypothesis-generated InferenceService documents (tests/integration/test_fuzz.py),
                   valid and invalid, applied one by one next to a healthy isvc.

Once the last fault is over and the script's own writes (churn, fighting) have stopped, it waits
for convergence, timed from that moment (`converge_s`, the operator's own convergence, one
definition for every scenario), and checks: every surviving isvc is
Ready at its generation with exactly its desired children (Deployment, Service; ConfigMap iff a
TF version policy/labels; HPA iff maxReplicas, with the spec's bounds; AuthorizationPolicy iff
authorization is not Disabled, Istio's CRD being installed here), nothing else labelled as ours
(no duplicates, no orphans, no child owned by a previous incarnation), every isvc the churn
deleted is gone with its children, and nothing has a lingering deletionTimestamp.

Operator writes are counted from the kube-apiserver AUDIT LOG (policy: Metadata for the
operator's ServiceAccount, None for everyone else); verbs create/update/patch/delete, split by
resource (leases and events are reported apart from children + status).

Cluster: ISVC_CLUSTER_DIR=/tmp/chaos-cluster, API port 46443, etcd port 42379 (override with
ISVC_CHAOS_CLUSTER_DIR / ISVC_CHAOS_API_PORT / ISVC_CHAOS_ETCD_PORT). Started (with the audit
policy) if not running, and stopped when the run ends, fails or is interrupted (SIGINT, SIGTERM,
SIGHUP), with every operator process it started (--keep-cluster leaves the control plane up).
Delete its state: ISVC_CLUSTER_DIR=/tmp/chaos-cluster bash hack/cluster/down.sh --purge

Usage: python bench/chaos.py [--quick] [--scenarios operator-kill,fuzz] [--out bench/results/chaos.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

import yaml  # noqa: E402
from kubernetes import client as k8s_client  # noqa: E402
from kubernetes import config as k8s_config

from isvc_operator.kube_api import ApiError, KubeApi  # noqa: E402
from tests.support import (  # noqa: E402
    LeaveNothingBehind,
    built_tool,
    chart_identity,
    kubectl_path,
    service_account_kubeconfig,
    wait_until,
)

CLUSTER_DIR = Path(os.environ.get("ISVC_CHAOS_CLUSTER_DIR", "/tmp/chaos-cluster"))
API_PORT = os.environ.get("ISVC_CHAOS_API_PORT", "46443")
ETCD_PORT = os.environ.get("ISVC_CHAOS_ETCD_PORT", "42379")
OP_NS = "isvc-chaos"
GROUP_PATH = "/apis/serving.isvc.dev/v1alpha1"
LABEL_ISVC = "serving.isvc.dev/inferenceservice"
OURS = "app.kubernetes.io/managed-by=isvc-operator"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
ISTIO_CRD = ROOT / "tests/fixtures/istio-authorizationpolicies-crd.yaml"  # a copy of Istio's CRD (Apache-2.0)
CHILD_KINDS = [  # (list path suffix, kind)
    ("/apis/apps/v1", "deployments", "Deployment"),
    ("/api/v1", "services", "Service"),
    ("/api/v1", "configmaps", "ConfigMap"),
    ("/apis/autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    ("/apis/security.istio.io/v1", "authorizationpolicies", "AuthorizationPolicy"),
]


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class ChaosError(Exception):
    pass


# --- cluster -----------------------------------------------------------------------------------


def kubectl_bin() -> str:
    return str(kubectl_path())


def helm_bin() -> str:
    return str(built_tool("helm"))


def render_identity() -> tuple[str, list[dict[str, Any]]]:
    """The chart's ServiceAccount + ClusterRole(Binding) for release `isvc-chaos`: the shipped RBAC."""
    account, docs = chart_identity(OP_NS)
    return f"system:serviceaccount:{OP_NS}:{account}", docs


def cluster_env(policy: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ISVC_CLUSTER_DIR": str(CLUSTER_DIR),
        "ISVC_REAL_NODE": "0",
        "ISVC_API_PORT": API_PORT,
        "ISVC_ETCD_PORT": ETCD_PORT,
        "ISVC_AUDIT_POLICY": str(policy),
    }


def up(policy: Path) -> None:
    subprocess.run(
        ["bash", str(ROOT / "hack/cluster/up.sh")],
        env=cluster_env(policy),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=600,
    )


def kubectl(
    *args: str, stdin: str | None = None, check: bool = True, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [kubectl_bin(), "--kubeconfig", str(kubeconfig or CLUSTER_DIR / "kubeconfig"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check and out.returncode != 0:
        raise ChaosError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out


def component_pid(name: str) -> int | None:
    try:
        pid = int((CLUSTER_DIR / f"{name}.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def ensure_cluster(workdir: Path) -> tuple[str, Path]:
    """Start (or reuse) the private cluster with the audit log; CRDs (ours + Istio's); the identity."""
    user, identity_docs = render_identity()
    policy = workdir / "audit-policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata", "users": [user]}, {"level": "None"}],
            }
        )
    )
    audit = CLUSTER_DIR / "logs" / "audit.log"
    if (CLUSTER_DIR / "kubeconfig").exists() and not audit.exists():
        log("chaos cluster runs without the audit log: restarting it fresh")
        subprocess.run(["bash", str(ROOT / "hack/cluster/down.sh"), "--purge"], env=cluster_env(policy), check=True)
    up(policy)
    pid = component_pid("kube-apiserver")
    running_policy = None
    if pid:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"--audit-policy-file" in args:
            running_policy = Path(args[args.index(b"--audit-policy-file") + 1].decode())
    if pid and (
        running_policy is None or not running_policy.exists() or running_policy.read_text() != policy.read_text()
    ):
        log("kube-apiserver audits another user: restarting it with this run's audit policy")
        os.kill(pid, signal.SIGTERM)
        wait(lambda: component_pid("kube-apiserver") is None, 30, "kube-apiserver to stop")
        up(policy)
    kubectl("apply", "-f", str(ROOT / "crds"))
    istio = ISTIO_CRD.exists()
    if istio:
        kubectl("apply", "-f", str(ISTIO_CRD))
    # Polled: `kubectl wait` fails at once while a just-created CRD has no conditions yet.
    established = '{range .items[*]}{.status.conditions[?(@.type=="Established")].status}{"\\n"}{end}'
    wait(
        lambda: (lines := kubectl("get", "crd", "-o", f"jsonpath={established}").stdout.splitlines())
        and all(line == "True" for line in lines),
        60,
        "the CRDs to be Established",
    )
    # The garbage collector discovers new CRDs every 30 s; restart it so cascades work at once.
    pid = component_pid("kube-controller-manager")
    if pid:
        os.kill(pid, signal.SIGTERM)
        wait(lambda: component_pid("kube-controller-manager") is None, 20, "kube-controller-manager to stop")
        up(policy)
    kubectl(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump_all([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OP_NS}}]),
    )
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(identity_docs))
    account = user.rsplit(":", 1)[1]
    token = kubectl("create", "token", account, "-n", OP_NS, "--duration=24h").stdout.strip()
    path = service_account_kubeconfig(CLUSTER_DIR / "kubeconfig", account, token, workdir / "operator-kubeconfig")
    return user, path


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll through API server outages (an exception is a falsy value); ChaosError at the deadline."""
    return wait_until(predicate, timeout, what, interval, tolerate=(Exception,), error=ChaosError)


def admin_api() -> KubeApi:
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(config_file=str(CLUSTER_DIR / "kubeconfig"), client_configuration=configuration)
    configuration.connection_pool_maxsize = 16
    configuration.retries = False
    return KubeApi(k8s_client.ApiClient(configuration))


# --- the operator process ----------------------------------------------------------------------


class Operator:
    def __init__(
        self, kubeconfig: Path, workdir: Path, name: str, operator_path: Path, leader_elect: bool = False
    ) -> None:
        self.kubeconfig, self.workdir, self.name, self.operator_path = kubeconfig, workdir, name, operator_path
        self.leader_elect = leader_elect
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.starts = 0

    def start(self, wait_started: bool = True) -> None:
        self.starts += 1
        path = self.workdir / f"operator-{self.name}-{self.starts}.log"
        self.logs.append(path)
        args = [sys.executable, "-m", "isvc_operator", "run", "--log-format", "json"]
        if self.leader_elect:
            args += ["--leader-elect", "--leader-election-namespace", OP_NS]
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(self.operator_path),
        }
        self.proc = subprocess.Popen(args, stdout=open(path, "wb"), stderr=subprocess.STDOUT, env=env)
        if wait_started and not self.leader_elect:
            wait(
                lambda: "isvc-operator started" in path.read_text() or self.proc.poll() is not None,
                60,
                f"operator {self.name} to start",
            )
            if self.proc.poll() is not None:
                raise ChaosError(f"operator exited at start: {path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def leads(self) -> bool:
        return bool(self.logs) and "leads (Lease" in self.logs[-1].read_text()

    def tracebacks(self) -> int:
        return sum(p.read_text(errors="replace").count("Traceback") for p in self.logs if p.exists())

    def log_writes(self) -> int:
        """Writes the operator says it made (`reconcile NS/NAME: applied (N writes[: kinds])`), all its logs."""
        total = 0
        for p in self.logs:
            for match in re.finditer(r": (?:applied|invalid) \((\d+) writes?\b", p.read_text(errors="replace")):
                total += int(match.group(1))
        return total


# --- audit log ---------------------------------------------------------------------------------


class Audit:
    def __init__(self, user: str) -> None:
        self.user = user
        self.path = CLUSTER_DIR / "logs" / "audit.log"

    def mark(self) -> tuple[int, float]:
        return (self.path.stat().st_size if self.path.exists() else 0, time.time())

    def writes(self, since: tuple[int, float], until: float | None = None) -> dict[str, int]:
        """The operator's write requests received since `since`, by resource[/subresource]."""
        offset, start = since
        end = until or time.time() + 1
        seen: dict[str, str] = {}
        with open(self.path, "rb") as f:
            f.seek(offset)
            for raw in f:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if (event.get("user") or {}).get("username") != self.user or event.get("verb") not in WRITE_VERBS:
                    continue
                received = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
                if start <= received < end:
                    ref = event.get("objectRef") or {}
                    seen[event["auditID"]] = ref.get("resource", "?") + (
                        f"/{ref['subresource']}" if ref.get("subresource") else ""
                    )
        counts: dict[str, int] = {}
        for resource in seen.values():
            counts[resource] = counts.get(resource, 0) + 1
        return dict(sorted(counts.items()))


def operator_writes(detail: dict[str, int]) -> int:
    """Children + isvc status: what reconciling costs (leases and events are reported apart)."""
    return sum(v for k, v in detail.items() if k not in ("leases", "events"))


# --- workload ----------------------------------------------------------------------------------

VARIANTS = ["plain", "replicas2", "autoscale", "versions", "versions-autoscale", "no-auth", "zero", "tf218"]


def isvc_spec(variant: str) -> dict[str, Any]:
    tf: dict[str, Any] = {"storageUri": "pvc://models"}
    predictor: dict[str, Any] = {"tensorflow": tf}
    spec: dict[str, Any] = {"predictor": predictor, "service": {"type": "ClusterIP"}}
    if variant == "replicas2":
        predictor["replicas"] = 2
    if variant in ("autoscale", "versions-autoscale"):
        predictor.update(minReplicas=1, maxReplicas=random.choice([2, 3]))
    if variant in ("versions", "versions-autoscale"):
        tf["modelVersionPolicy"] = {"latest": {"numVersions": random.choice([1, 2])}}
    if variant == "no-auth":
        spec["authorization"] = {"mode": "Disabled"}
    if variant == "zero":
        predictor["replicas"] = 0
    if variant == "tf218":
        tf["runtimeVersion"] = "2.18.0"
    return spec


def isvc_doc(ns: str, name: str, variant: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": ns, "labels": {"chaos.isvc.dev/run": "1"}},
        "spec": isvc_spec(variant),
    }


def isvc_path(ns: str, name: str | None = None) -> str:
    return f"{GROUP_PATH}/namespaces/{ns}/inferenceservices" + (f"/{name}" if name else "")


def make_namespaces(api: KubeApi, names: list[str]) -> None:
    for ns in names:
        pv = f"{ns}-models"
        for path, body in [
            ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            (
                "/api/v1/persistentvolumes",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": pv, "labels": {"chaos.isvc.dev/ns": ns}},
                    "spec": {
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "",
                        "hostPath": {"path": "/tmp/isvc-models"},
                        "claimRef": {"namespace": ns, "name": "models"},
                    },
                },
            ),
            (
                f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "models", "namespace": ns},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": "",
                        "volumeName": pv,
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                },
            ),
        ]:
            try:
                api.request("POST", path, body=body)
            except ApiError as exc:
                if exc.status != 409:
                    raise
    wait(
        lambda: all(
            api.request("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/models")["status"].get("phase")
            == "Bound"
            for ns in names
        ),
        60,
        "the claims to bind",
    )


def delete_namespaces(api: KubeApi, names: list[str], timeout: float = 180) -> None:
    for ns in names:
        for path in (f"/api/v1/namespaces/{ns}", f"/api/v1/persistentvolumes/{ns}-models"):
            try:
                api.request("DELETE", path)
            except ApiError as exc:
                if exc.status != 404:
                    raise

    def gone() -> bool:
        for ns in names:
            try:
                api.request("GET", f"/api/v1/namespaces/{ns}")
                return False
            except ApiError as exc:
                if exc.status != 404:
                    return False
        return True

    wait(gone, timeout, f"namespaces {names} to be deleted", interval=1)


@dataclass
class Churn:
    """Creates, updates and deletes isvcs at random from one thread, tracking what it knows for sure."""

    api: KubeApi
    namespaces: list[str]
    n: int
    rate: float = 8.0  # operations per second
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    known: dict[tuple[str, str], str] = field(default_factory=dict)  # key -> "present" | "deleted" | "unknown"
    ops: dict[str, int] = field(default_factory=dict)
    failed_ops: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def keys(self) -> list[tuple[str, str]]:
        return [(self.namespaces[i % len(self.namespaces)], f"svc-{i:03d}") for i in range(self.n)]

    def _do(self, op: str, fn: Callable[[], Any], key: tuple[str, str], after: str) -> None:
        try:
            fn()
            self.known[key] = after
            self.ops[op] = self.ops.get(op, 0) + 1
        except ApiError as exc:
            if exc.status == 404 and op == "delete":
                self.known[key] = "deleted"
            elif exc.status == 409 and op == "create":
                self.known[key] = "unknown"  # it exists after all (an earlier ambiguous create)
            elif exc.status == 404 and op == "update":
                self.known[key] = "deleted"
            else:
                self.failed_ops += 1
                if exc.status in (0, 500, 502, 503, 504):
                    self.known[key] = "unknown"  # the request may or may not have happened
                    time.sleep(0.3)

    def step(self) -> None:
        key = self.rng.choice(self.keys())
        ns, name = key
        state = self.known.get(key, "deleted")
        variant = self.rng.choice(VARIANTS)
        if state == "deleted":
            self._do(
                "create",
                lambda: self.api.request("POST", isvc_path(ns), body=isvc_doc(ns, name, variant)),
                key,
                "present",
            )
        elif self.rng.random() < 0.78:
            self._do(
                "update",
                lambda: self.api.request(
                    "PATCH",
                    isvc_path(ns, name),
                    body=[{"op": "replace", "path": "/spec", "value": isvc_spec(variant)}],
                    content_type="application/json-patch+json",
                ),
                key,
                "present",
            )
        else:
            self._do("delete", lambda: self.api.request("DELETE", isvc_path(ns, name)), key, "deleted")

    def create_all(self) -> None:
        for key in self.keys():
            if self.known.get(key) != "present":
                ns, name = key
                self._do(
                    "create",
                    lambda: self.api.request("POST", isvc_path(ns), body=isvc_doc(ns, name, self.rng.choice(VARIANTS))),
                    key,
                    "present",
                )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()
            time.sleep(self.rng.expovariate(self.rate))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)


# --- verification ------------------------------------------------------------------------------


def _ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})


def expected_children(obj: dict[str, Any], istio: bool) -> dict[str, str]:
    name = obj["metadata"]["name"]
    predictor = obj["spec"]["predictor"]
    tf = predictor.get("tensorflow") or {}
    out = {"Deployment": f"{name}-predictor", "Service": name}
    if tf.get("modelVersionPolicy") or tf.get("versionLabels"):
        out["ConfigMap"] = f"{name}-model-config"
    if predictor.get("maxReplicas") is not None:
        out["HorizontalPodAutoscaler"] = f"{name}-predictor"
    if istio and (obj["spec"].get("authorization") or {}).get("mode", "Auto") != "Disabled":
        out["AuthorizationPolicy"] = name
    return out


def _pods_summary(api: KubeApi, ns: str, name: str) -> str:
    """ReplicaSets and pods of one isvc, to tell the fake kubelet or a controller from the operator."""
    try:
        selector = {"labelSelector": f"{LABEL_ISVC}={name}"}
        sets = api.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets", query=selector)["items"]
        pods = api.request("GET", f"/api/v1/namespaces/{ns}/pods", query=selector)["items"]
    except ApiError as exc:
        return f"(pods: {exc})"
    rs = [
        f"{r['metadata']['name']} want {r['spec'].get('replicas')} have {(r.get('status') or {}).get('replicas')} "
        f"ready {(r.get('status') or {}).get('readyReplicas')}"
        for r in sets
    ]
    ps = []
    for p in pods:
        ready = next(
            (c.get("status") for c in (p.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None
        )
        ps.append(
            f"{p['metadata']['name']} {(p.get('status') or {}).get('phase')} ready={ready} node={p['spec'].get('nodeName')}"
            f"{' deleting' if p['metadata'].get('deletionTimestamp') else ''}"
        )
    return f"ReplicaSets [{'; '.join(rs)}] pods [{'; '.join(ps)}]"


def verify(
    api: KubeApi, namespaces: list[str], churn: Churn | None, istio: bool, detail: bool = False
) -> dict[str, Any]:
    """The whole contract, from a fresh LIST of everything (not from any cache)."""
    problems: list[str] = []
    lost = duplicated = stuck = not_ready = orphans = stale = 0
    isvcs: dict[tuple[str, str], dict[str, Any]] = {}
    for ns in namespaces:
        for obj in api.request("GET", isvc_path(ns))["items"]:
            isvcs[(ns, obj["metadata"]["name"])] = obj
    children: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for ns in namespaces:
        for prefix, plural, kind in CHILD_KINDS:
            if kind == "AuthorizationPolicy" and not istio:
                continue
            for obj in api.request("GET", f"{prefix}/namespaces/{ns}/{plural}", query={"labelSelector": OURS})["items"]:
                owner = (obj["metadata"].get("labels") or {}).get(LABEL_ISVC, "?")
                children.setdefault((ns, owner), {}).setdefault(kind, []).append(obj)
                if obj["metadata"].get("deletionTimestamp"):
                    stuck += 1
                    problems.append(f"{kind} {ns}/{obj['metadata']['name']} has a deletionTimestamp")
    for key, obj in isvcs.items():
        ns, name = key
        if obj["metadata"].get("deletionTimestamp"):
            stuck += 1
            problems.append(f"isvc {ns}/{name} has a deletionTimestamp")
            continue
        cond = _ready(obj)
        if (
            cond.get("status") != "True"
            or (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]
        ):
            not_ready += 1
            # The Deployment's own view tells a stale operator apart from pods that never became ready.
            deployments = children.get(key, {}).get("Deployment") or [{}]
            dstatus = deployments[0].get("status") or {}
            problems.append(
                f"isvc {ns}/{name} not Ready at generation {obj['metadata']['generation']}: "
                f"{cond.get('status')} {cond.get('reason')} (observed {(obj.get('status') or {}).get('observedGeneration')}); "
                f"Deployment generation {(deployments[0].get('metadata') or {}).get('generation')} observed "
                f"{dstatus.get('observedGeneration')}, replicas {dstatus.get('replicas')} updated "
                f"{dstatus.get('updatedReplicas')} ready {dstatus.get('readyReplicas')} available {dstatus.get('availableReplicas')}; "
                f"{_pods_summary(api, ns, name) if detail else ''}"
            )
        want = expected_children(obj, istio)
        have = children.pop(key, {})
        for kind, child_name in want.items():
            objs = have.pop(kind, [])
            if not objs:
                lost += 1
                problems.append(f"isvc {ns}/{name}: {kind} {child_name} missing")
                continue
            for extra in objs:
                if extra["metadata"]["name"] != child_name:
                    duplicated += 1
                    problems.append(f"isvc {ns}/{name}: unexpected {kind} {extra['metadata']['name']}")
                elif [r.get("uid") for r in extra["metadata"].get("ownerReferences") or []] != [obj["metadata"]["uid"]]:
                    orphans += 1
                    problems.append(f"isvc {ns}/{name}: {kind} {child_name} owned by another incarnation")
            if kind == "HorizontalPodAutoscaler":
                hpa = objs[0]["spec"]
                predictor = obj["spec"]["predictor"]
                if (hpa.get("minReplicas"), hpa.get("maxReplicas")) != (
                    predictor.get("minReplicas", 1),
                    predictor["maxReplicas"],
                ):
                    stale += 1
                    problems.append(
                        f"isvc {ns}/{name}: HPA bounds {hpa.get('minReplicas')}-{hpa.get('maxReplicas')} are stale"
                    )
            if kind == "Deployment":
                image = objs[0]["spec"]["template"]["spec"]["containers"][0]["image"]
                tag = obj["spec"]["predictor"]["tensorflow"].get("runtimeVersion", "2.19.0")
                if not image.endswith(f":{tag}"):
                    stale += 1
                    problems.append(f"isvc {ns}/{name}: Deployment image {image} is stale (want {tag})")
        for kind, objs in have.items():  # children the spec does not want: a stale HPA/ConfigMap/policy
            stale += len(objs)
            problems.append(f"isvc {ns}/{name}: stale {kind} {[o['metadata']['name'] for o in objs]}")
    for (ns, owner), kinds in children.items():  # children of isvcs that do not exist
        count = sum(len(v) for v in kinds.values())
        orphans += count
        problems.append(f"orphans of missing isvc {ns}/{owner}: {sorted(kinds)}")
    if churn is not None:
        for key, state in churn.known.items():
            if state == "present" and key not in isvcs:
                lost += 1
                problems.append(f"isvc {key[0]}/{key[1]} was created/updated but is gone")
            if state == "deleted" and key in isvcs:
                stuck += 1
                problems.append(f"isvc {key[0]}/{key[1]} was deleted but still exists")
    return {
        "ok": not problems,
        "isvcs": len(isvcs),
        "lost": lost,
        "duplicated": duplicated,
        "stuck": stuck,
        "not_ready": not_ready,
        "orphans": orphans,
        "stale": stale,
        "problems": problems,
    }


def kubelet_resync(api: KubeApi, namespaces: list[str]) -> int:
    """Play the kubelet's part after a control-plane outage: kwok's fake kubelet readies a pod only
    while it is Pending, but kube-controller-manager's node lifecycle controller marks Running pods
    Ready=False when their node looked NotReady (its lease could not be renewed during the outage).
    A real kubelet reports them Ready again; here we patch the pods' status the same way.
    Returns how many pods it re-readied (reported as `kubelet_resyncs`)."""
    fixed = 0
    for ns in namespaces:
        for pod in api.request("GET", f"/api/v1/namespaces/{ns}/pods")["items"]:
            status = pod.get("status") or {}
            conds = {c.get("type"): c for c in status.get("conditions") or []}
            if (
                pod["metadata"].get("deletionTimestamp")
                or status.get("phase") != "Running"
                or (conds.get("Ready") or {}).get("status") != "False"
                or (conds.get("ContainersReady") or {}).get("status") != "True"
            ):
                continue
            now = datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
            patch = {"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}}
            try:
                api.request(
                    "PATCH",
                    f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/status",
                    body=patch,
                    content_type="application/strategic-merge-patch+json",
                )
                fixed += 1
            except ApiError:
                pass
    return fixed


def converge(
    api: KubeApi,
    namespaces: list[str],
    churn: Churn | None,
    istio: bool,
    deadline_s: float,
    resync: list[int] | None = None,
) -> tuple[float | None, dict[str, Any]]:
    """Seconds from this call until `verify` passes (None past the deadline) and the last
    verification. Callers call it as soon as the last fault is over and their own writes have
    stopped, so the figure is the operator's own convergence (`converge_s` in every row).
    With `resync` (a one-element counter), pods marked NotReady by a control-plane outage are
    re-readied as a kubelet would (see `kubelet_resync`)."""
    t0 = time.monotonic()
    last: dict[str, Any] = {}
    while time.monotonic() - t0 < deadline_s:
        if resync is not None:
            try:
                resync[0] += kubelet_resync(api, namespaces)
            except ApiError:
                pass
        try:
            last = verify(api, namespaces, churn, istio)
        except ApiError as exc:
            last = {"ok": False, "problems": [f"API: {exc}"]}
        if last.get("ok"):
            return time.monotonic() - t0, last
        time.sleep(1)
    try:  # once more with each not-Ready isvc's ReplicaSets and pods named (too costly for every poll)
        last = verify(api, namespaces, churn, istio, detail=True)
    except ApiError:
        pass
    return None, last


# --- scenarios ---------------------------------------------------------------------------------


@dataclass
class Context:
    api: KubeApi
    audit: Audit
    op_kubeconfig: Path
    workdir: Path
    operator_path: Path
    policy: Path
    istio: bool
    quick: bool
    converge_deadline: float


def result_row(
    name: str,
    faults: int,
    converge_s: float | None,
    check: dict[str, Any],
    writes: dict[str, int],
    extra: dict[str, Any] | None = None,
    crashes: int = 0,
    tracebacks: int = 0,
) -> dict[str, Any]:
    row = {
        "name": name,
        "faults": faults,
        "converge_s": round(converge_s, 1) if converge_s is not None else None,
        "lost": check.get("lost", 0),
        "duplicated": check.get("duplicated", 0),
        "stuck": check.get("stuck", 0),
        "not_ready": check.get("not_ready", 0),
        "orphans": check.get("orphans", 0),
        "stale": check.get("stale", 0),
        "operator_writes": operator_writes(writes),
        "operator_writes_by_resource": writes,
        "operator_crashes": crashes,
        "tracebacks": tracebacks,
        "isvcs_at_end": check.get("isvcs"),
        "converged": converge_s is not None,
        "problems": check.get("problems", [])[:20],
    }
    row.update(extra or {})
    return row


def churn_scenario(
    ctx: Context,
    name: str,
    n: int,
    churn_s: float,
    faults: list[float],
    inject: Callable[[int], float],
    operators: list[Operator],
    namespaces_n: int = 4,
    control_plane_fault: bool = False,
) -> dict[str, Any]:
    """Shared shape: namespaces, N isvcs, churn for churn_s with `inject(i)` at the given offsets
    (it returns when the fault is over, e.g. the component is back), then convergence."""
    api = ctx.api
    namespaces = [f"chaos-{name}-{i}" for i in range(namespaces_n)]
    make_namespaces(api, namespaces)
    mark = ctx.audit.mark()
    for op in operators:
        op.start()
    churn = Churn(api, namespaces, n)
    churn.create_all()
    churn.start()
    t0 = time.monotonic()
    last_fault_over = t0
    for i, at in enumerate(faults):
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        log(f"{name}: fault {i + 1}/{len(faults)}")
        inject(i)
        last_fault_over = time.monotonic()
    remaining = t0 + churn_s - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    churn.stop()
    # The churn runs on after the last fault until churn_s: converging starts when both are over.
    churn_after_fault = time.monotonic() - last_fault_over
    log(f"{name}: churn over ({churn.ops}, {churn.failed_ops} failed); converging")
    resync = [0] if control_plane_fault else None
    converge_s, check = converge(api, namespaces, churn, ctx.istio, ctx.converge_deadline, resync)
    if converge_s is None:
        log(f"{name}: NOT converged: {check.get('problems', [])[:5]}")
    crashes = sum(1 for op in operators if op.proc is not None and op.proc.poll() not in (None, -9))
    writes = ctx.audit.writes(mark)
    tracebacks = sum(op.tracebacks() for op in operators)
    for op in operators:
        op.stop()
    cleanup_problem = None
    try:
        delete_namespaces(api, namespaces)
    except ChaosError as exc:
        # After an etcd restart kube-controller-manager's namespace controller can take minutes
        # (the namespaces do go); the scenario's result is already measured, so report, don't fail.
        cleanup_problem = str(exc)
        log(f"{name}: cleanup: {exc}")
    return result_row(
        name,
        len(faults),
        converge_s,
        check,
        writes,
        crashes=crashes,
        tracebacks=tracebacks,
        extra={
            "cleanup_problem": cleanup_problem,
            "operator_log_writes": sum(op.log_writes() for op in operators),
            "kubelet_resyncs": resync[0] if resync else 0,
            "churn_ops": churn.ops,
            "churn_failed_ops": churn.failed_ops,
            "churn_after_last_fault_s": round(churn_after_fault, 1),
        },
    )


def scenario_operator_kill(ctx: Context) -> dict[str, Any]:
    n, kills, churn_s = (30, 5, 40) if ctx.quick else (100, 20, 150)
    rng = random.Random(11)
    op = Operator(ctx.op_kubeconfig, ctx.workdir, "kill", ctx.operator_path)
    slot = (churn_s - 10) / kills
    offsets = [5 + i * slot + rng.uniform(0, slot * 0.6) for i in range(kills)]

    def inject(i: int) -> float:
        op.kill9()
        time.sleep(rng.uniform(0, 1.5))
        op.start()
        return 0.0

    return churn_scenario(ctx, "operator-kill", n, churn_s, offsets, inject, [op])


def scenario_component_restart(ctx: Context, component: str) -> dict[str, Any]:
    n, churn_s = (30, 45) if ctx.quick else (100, 75)
    outages = [15] if ctx.quick else [12, 45]
    down_s = 8 if ctx.quick else 12
    op = Operator(ctx.op_kubeconfig, ctx.workdir, component, ctx.operator_path)

    def inject(i: int) -> float:
        pid = component_pid(component)
        if pid is None:
            raise ChaosError(f"{component} is not running")
        os.kill(pid, signal.SIGKILL)
        wait(lambda: component_pid(component) is None, 10, f"{component} to die")
        time.sleep(down_s)
        up(ctx.policy)  # starts what is not running, waits for /readyz
        if not op.alive():
            log(f"operator exited while {component} was down")
        return 0.0

    return churn_scenario(
        ctx, f"{component.removeprefix('kube-')}-restart", n, churn_s, outages, inject, [op], control_plane_fault=True
    )


def scenario_fighting_writer(ctx: Context) -> dict[str, Any]:
    n, fight_s, quiet_s = (10, 20, 15) if ctx.quick else (30, 60, 30)
    api = ctx.api
    namespaces = ["chaos-fight-0"]
    make_namespaces(api, namespaces)
    op = Operator(ctx.op_kubeconfig, ctx.workdir, "fight", ctx.operator_path)
    op.start()
    rng = random.Random(5)
    keys = []
    for i in range(n):
        name = f"fight-{i:02d}"
        api.request(
            "POST", isvc_path(namespaces[0]), body=isvc_doc(namespaces[0], name, ["plain", "versions-autoscale"][i % 2])
        )
        keys.append(name)
    settle_s, check = converge(api, namespaces, None, ctx.istio, ctx.converge_deadline)
    if settle_s is None:
        raise ChaosError(f"fighting-writer: initial convergence failed: {check['problems'][:5]}")
    ns = namespaces[0]
    fights: dict[str, int] = {}

    def fight() -> None:
        name = rng.choice(keys)
        autoscaled = int(name.split("-")[1]) % 2 == 1
        moves = [
            "delete-deployment",
            "delete-service",
            "service-type",
            "deployment-image",
            "deployment-label",
            "deployment-replicas",
            "service-ports",
        ]
        if autoscaled:
            moves += ["delete-configmap", "delete-hpa", "hpa-max", "configmap-data"]
        if ctx.istio:
            moves += ["delete-policy"]
        move = rng.choice(moves)
        dep = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}-predictor"
        svc = f"/api/v1/namespaces/{ns}/services/{name}"
        merge = "application/merge-patch+json"
        if move == "delete-deployment":
            api.request("DELETE", dep)
        elif move == "delete-service":
            api.request("DELETE", svc)
        elif move == "service-type":
            api.request("PATCH", svc, body={"spec": {"type": "NodePort"}}, content_type=merge)
        elif move == "service-ports":
            api.request(
                "PATCH",
                svc,
                body=[{"op": "replace", "path": "/spec/ports/0/port", "value": 1234}],
                content_type="application/json-patch+json",
            )
        elif move == "deployment-image":
            api.request(
                "PATCH",
                dep,
                body=[{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil:1"}],
                content_type="application/json-patch+json",
            )
        elif move == "deployment-label":
            # A field the operator does not set: must NOT be fought over (no write).
            api.request(
                "PATCH", dep, body={"metadata": {"labels": {"fighter": str(rng.randint(0, 9))}}}, content_type=merge
            )
        elif move == "deployment-replicas":
            if not autoscaled:
                api.request("PATCH", dep, body={"spec": {"replicas": 3}}, content_type=merge)
        elif move == "delete-configmap":
            api.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/{name}-model-config")
        elif move == "configmap-data":
            api.request(
                "PATCH",
                f"/api/v1/namespaces/{ns}/configmaps/{name}-model-config",
                body={"data": {"models.config": "garbage"}},
                content_type=merge,
            )
        elif move == "delete-hpa":
            api.request("DELETE", f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}-predictor")
        elif move == "hpa-max":
            api.request(
                "PATCH",
                f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{name}-predictor",
                body={"spec": {"maxReplicas": 9}},
                content_type=merge,
            )
        elif move == "delete-policy":
            api.request("DELETE", f"/apis/security.istio.io/v1/namespaces/{ns}/authorizationpolicies/{name}")
        fights[move] = fights.get(move, 0) + 1

    mark = ctx.audit.mark()
    t0 = time.monotonic()
    while time.monotonic() - t0 < fight_s:
        try:
            fight()
        except ApiError:
            pass  # e.g. deleting what is being re-created
        time.sleep(rng.uniform(0.05, 0.3))
    fight_end = time.time()
    # The fighter's moves are both the faults and the script's own writes: converging starts when they stop.
    converge_s, check = converge(api, namespaces, None, ctx.istio, ctx.converge_deadline)
    # Quiet window: converged, nobody writes; a hot loop would show up here.
    time.sleep(3)
    quiet_mark = ctx.audit.mark()
    time.sleep(quiet_s)
    time.sleep(2)  # audit backend flush
    quiet = ctx.audit.writes(quiet_mark, quiet_mark[1] + quiet_s)
    writes = ctx.audit.writes(mark, fight_end + (converge_s or 0) + 1)
    total_fights = sum(fights.values())
    crashes = 0 if op.alive() else 1
    tracebacks = op.tracebacks()
    op.stop()
    delete_namespaces(api, namespaces)
    # Deployment-label moves need no write; every other move needs about one (the Deployment
    # controller's own reactions are not the operator's). Status patches come on top.
    return result_row(
        "fighting-writer",
        total_fights,
        converge_s,
        check,
        writes,
        crashes=crashes,
        tracebacks=tracebacks,
        extra={
            "fighter_moves": fights,
            "operator_writes_per_move": round(operator_writes(writes) / max(1, total_fights), 2),
            "quiet_window_s": quiet_s,
            "quiet_window_writes": operator_writes(quiet),
            "operator_log_writes": op.log_writes(),
        },
    )


def scenario_leader_kill(ctx: Context) -> dict[str, Any]:
    n, churn_s = (30, 50) if ctx.quick else (100, 90)
    kills = [12] if ctx.quick else [12, 50]
    ops = [
        Operator(ctx.op_kubeconfig, ctx.workdir, f"replica{i}", ctx.operator_path, leader_elect=True) for i in range(2)
    ]
    takeovers: list[float] = []

    def inject(i: int) -> float:
        wait(lambda: any(op.leads() and op.alive() for op in ops), 60, "a leader")
        leader = next(op for op in ops if op.leads() and op.alive())
        follower = next(op for op in ops if op is not leader)
        leader.kill9()
        killed = time.monotonic()
        wait(lambda: follower.leads(), 60, "the follower to take the Lease")
        takeovers.append(round(time.monotonic() - killed, 1))
        log(f"leader-kill: takeover after {takeovers[-1]}s")
        leader.start()  # back as a follower, as its Deployment would restart it
        return 0.0

    row = churn_scenario(ctx, "leader-kill", n, churn_s, kills, inject, ops)
    row["takeover_s"] = takeovers
    return row


def scenario_fuzz(ctx: Context) -> dict[str, Any]:
    from tests.integration import test_fuzz as fuzz

    documents = 200 if ctx.quick else 1000
    api = ctx.api
    ns = "chaos-fuzz"
    make_namespaces(api, [ns])
    op = Operator(ctx.op_kubeconfig, ctx.workdir, "fuzz", ctx.operator_path)
    op.start()
    api.request("POST", isvc_path(ns), body={**isvc_doc(ns, "sentinel", "plain")})
    wait(lambda: fuzz.settled(api.request("GET", isvc_path(ns, "sentinel"))) == fuzz.READY_TRUE, 60, "the sentinel")
    log(f"fuzz: generating {documents} documents")
    cases = fuzz.generate(documents, seed=1)

    def submit(doc: dict[str, Any]) -> tuple[bool, str]:
        try:  # as `kubectl apply` does: server-side field validation Strict
            api.request("POST", isvc_path(ns), query={"fieldValidation": "Strict"}, body=doc)
            return True, ""
        except ApiError as exc:
            if exc.status in (0, 500, 503, 504):
                raise
            return False, exc.message

    def list_isvcs() -> list[dict[str, Any]]:
        return api.request("GET", isvc_path(ns))["items"]

    def delete_batch() -> None:
        api.request("DELETE", isvc_path(ns), query={"labelSelector": "fuzz.isvc.dev/doc=1"})
        wait(
            lambda: not api.request("GET", isvc_path(ns), query={"labelSelector": "fuzz.isvc.dev/doc=1"})["items"],
            120,
            "the batch to be deleted",
        )

    def inspect_ready(ready: list[Any]) -> None:
        if not ctx.istio:
            return
        items = api.request("GET", f"/apis/security.istio.io/v1/namespaces/{ns}/authorizationpolicies")["items"]
        policies = {p["metadata"]["name"]: p for p in items}
        for case in ready:
            case.problem = fuzz.policy_problem(case, policies.get(case.doc["metadata"]["name"]))

    def progress(batch: int, tally: Any) -> None:
        if batch % 2 == 1:
            log(f"fuzz: {len(tally.cases)} documents: {tally.counts()}")

    t0 = time.monotonic()
    # Kwok makes pods Ready within seconds: 45 s is ample for an accepted document to be judged.
    tally = fuzz.run_cases(
        cases,
        ns,
        submit,
        list_isvcs,
        delete_batch,
        batch=100,
        settle_s=45,
        on_batch=progress,
        inspect_ready=inspect_ready,
    )
    counts = tally.counts()
    crashes = 0 if op.alive() else 1
    report = fuzz.format_report(tally)
    (ctx.workdir / "fuzz-report.txt").write_text(report)
    sentinel_ok = fuzz.settled(api.request("GET", isvc_path(ns, "sentinel"))) == fuzz.READY_TRUE
    tracebacks = op.tracebacks()
    op.stop()
    delete_namespaces(api, [ns])
    return {
        "documents": counts["documents"],
        "rejected_by_apiserver": counts["rejected_by_apiserver"],
        "ready_false_with_reason": counts["ready_false_with_reason"],
        "accepted_ready": counts["accepted_ready"],
        "unsettled": counts["unsettled"],
        "runtime_only_ready": counts["runtime_only_ready"],
        "contract_violations": counts["contract_violations"],
        "operator_crashes": crashes,
        "tracebacks": tracebacks,
        "sentinel_not_ready_samples": len(tally.sentinel_not_ready),
        "sentinel_ready_at_end": sentinel_ok,
        "seconds": round(time.monotonic() - t0, 1),
        "by_mutation": {k: dict(v) for k, v in sorted(tally.by_mutation().items())},
        "violations": [
            {"mutations": list(c.mutations), "problem": c.problem, "doc": json.dumps(c.doc)[:800]}
            for c in tally.problems()[:30]
        ],
    }


SCENARIOS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "operator-kill": scenario_operator_kill,
    "apiserver-restart": lambda ctx: scenario_component_restart(ctx, "kube-apiserver"),
    "etcd-restart": lambda ctx: scenario_component_restart(ctx, "etcd"),
    "fighting-writer": scenario_fighting_writer,
    "leader-kill": scenario_leader_kill,
}


def print_table(rows: list[dict[str, Any]], fuzz: dict[str, Any] | None) -> None:
    head = [
        "scenario",
        "faults",
        "converge_s",
        "lost",
        "dup",
        "stuck",
        "orphans",
        "stale",
        "not_ready",
        "op_writes",
        "crashes",
        "tracebacks",
    ]
    print()
    print(" | ".join(f"{h:>10}" if i else f"{h:<18}" for i, h in enumerate(head)))
    print("-" * 140)
    for r in rows:
        values = [
            r["name"],
            r["faults"],
            "NOT CONVERGED" if r["converge_s"] is None else r["converge_s"],
            r["lost"],
            r["duplicated"],
            r["stuck"],
            r["orphans"],
            r["stale"],
            r.get("not_ready", 0),
            r["operator_writes"],
            r["operator_crashes"],
            r["tracebacks"],
        ]
        print(" | ".join(f"{v!s:>10}" if i else f"{v!s:<18}" for i, v in enumerate(values)))
    for r in rows:
        extra = {
            k: r[k]
            for k in (
                "takeover_s",
                "quiet_window_writes",
                "operator_writes_per_move",
                "operator_log_writes",
                "kubelet_resyncs",
                "churn_ops",
                "fighter_moves",
            )
            if k in r
        }
        print(f"  {r['name']}: writes by resource {r['operator_writes_by_resource']} {extra}")
        for p in r["problems"][:5]:
            print(f"    ! {p}")
    if fuzz:
        print()
        print(
            "fuzz: "
            + ", ".join(
                f"{k}={fuzz[k]}"
                for k in (
                    "documents",
                    "rejected_by_apiserver",
                    "ready_false_with_reason",
                    "accepted_ready",
                    "unsettled",
                    "runtime_only_ready",
                    "contract_violations",
                    "operator_crashes",
                    "tracebacks",
                    "sentinel_ready_at_end",
                    "seconds",
                )
            )
        )
        for v in fuzz.get("violations", [])[:10]:
            print(f"    ! {v['mutations']}: {v['problem'][:300]}")


def write_result(
    args: argparse.Namespace, ctx: Context, rows: list[dict[str, Any]], fuzz: dict[str, Any] | None, started: float
) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            merged(args, {"settings": {"quick": args.quick, "partial": True}, "scenarios": rows, "fuzz": fuzz}),
            indent=2,
        )
        + "\n"
    )


def merged(args: argparse.Namespace, result: dict[str, Any], record: bool = False) -> dict[str, Any]:
    """With --merge: the existing results with this run's scenarios replaced (by name), in order."""
    out = Path(args.out)
    if not args.merge or not out.exists():
        return result
    old = json.loads(out.read_text())
    legacy = {"kube-apiserver-restart": "apiserver-restart"}  # earlier name of the same scenario
    new_rows = {r["name"]: r for r in result["scenarios"]}
    old["scenarios"] = [r for r in old.get("scenarios", []) if legacy.get(r["name"]) not in new_rows]
    rows = [new_rows.pop(r["name"], r) for r in old.get("scenarios", [])] + list(new_rows.values())
    settings = {**old.get("settings", {}), **result["settings"]}
    if record:
        settings.setdefault("merged_runs", []).append(
            {"scenarios": [r["name"] for r in result["scenarios"]], "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        )
    return {
        "settings": settings,
        "scenarios": rows,
        "fuzz": result["fuzz"] if result["fuzz"] is not None else old.get("fuzz"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer isvcs, faults and documents (a few minutes)")
    parser.add_argument("--scenarios", default=",".join([*SCENARIOS, "fuzz"]), help="comma-separated subset")
    parser.add_argument("--out", default=str(ROOT / "bench/results/chaos.json"))
    parser.add_argument("--workdir", default="/tmp/isvc-chaos")
    parser.add_argument(
        "--operator-path", default=str(ROOT / "operator"), help="run another copy of the operator (e.g. a patched one)"
    )
    parser.add_argument("--converge-deadline", type=float, default=120)
    parser.add_argument("--keep-cluster", action="store_true", help="leave the chaos control plane running at the end")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update only the scenarios run now in an existing --out file (keep the others)",
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    wanted = [s for s in args.scenarios.split(",") if s]
    unknown = set(wanted) - set(SCENARIOS) - {"fuzz"}
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    cluster = None if args.keep_cluster else cluster_env(workdir / "audit-policy.yaml")
    with LeaveNothingBehind(cluster, log):
        return run(args, workdir, wanted)


def run(args: argparse.Namespace, workdir: Path, wanted: list[str]) -> int:
    started = time.monotonic()
    log(f"cluster {CLUSTER_DIR} (API :{API_PORT})")
    user, op_kubeconfig = ensure_cluster(workdir)
    ctx = Context(
        api=admin_api(),
        audit=Audit(user),
        op_kubeconfig=op_kubeconfig,
        workdir=workdir,
        operator_path=Path(args.operator_path),
        policy=workdir / "audit-policy.yaml",
        istio=ISTIO_CRD.exists(),
        quick=args.quick,
        converge_deadline=args.converge_deadline,
    )
    rows: list[dict[str, Any]] = []
    fuzz: dict[str, Any] | None = None
    for name in wanted:
        log(f"== {name}")
        t0 = time.monotonic()
        try:
            if name == "fuzz":
                fuzz = scenario_fuzz(ctx)
            else:
                rows.append(SCENARIOS[name](ctx))
                rows[-1]["seconds"] = round(time.monotonic() - t0, 1)
        except Exception as exc:  # noqa: BLE001 - report it, carry on with the next scenario
            log(f"{name} failed: {exc}")
            traceback.print_exc()
            if name == "fuzz":
                fuzz = {"error": str(exc)}
            else:
                rows.append(result_row(name, 0, None, {"problems": [f"scenario error: {exc}"]}, {}))
            try:  # put the control plane back for the next scenario
                up(ctx.policy)
            except Exception:  # noqa: BLE001
                pass
        log(f"== {name} done in {time.monotonic() - t0:.0f}s")
        write_result(args, ctx, rows, fuzz, started)  # after every scenario: a partial run still reports
    print_table(rows, fuzz)
    result = {
        "settings": {
            "quick": args.quick,
            "cluster": str(CLUSTER_DIR),
            "istio_crd": ctx.istio,
            "writes_counted_by": "kube-apiserver audit log (operator's ServiceAccount): create/update/patch/delete "
            "on children and isvc status; leases and events listed apart",
            "seconds": round(time.monotonic() - started, 1),
        },
        "scenarios": rows,
        "fuzz": fuzz,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.merge and out.exists():  # written after the last scenario: it already holds the merged rows
        previous = json.loads(out.read_text())
        recorded = merged(args, result, record=True)["settings"]
        result = {
            **previous,
            "settings": {**previous.get("settings", {}), **recorded, **result["settings"], "partial": False},
        }
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")
    bad = [
        r["name"]
        for r in rows
        if not r["converged"]
        or r["lost"]
        or r["duplicated"]
        or r["stuck"]
        or r["orphans"]
        or r["stale"]
        or r["operator_crashes"]
    ]
    if fuzz and (
        fuzz.get("error")
        or fuzz.get("contract_violations")
        or fuzz.get("operator_crashes")
        or fuzz.get("tracebacks")
        or fuzz.get("unsettled")
        or not fuzz.get("sentinel_ready_at_end")
    ):
        bad.append("fuzz")
    if bad:
        log(f"FAILED: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
