#!/usr/bin/env python3
"""Operator benchmark: how close the operator gets to the floor the API server sets.

For each N (default 100, 300, 1000), on a private local control plane (started by this script
unless --no-cluster), it measures:

* floor: a plain asyncio client creates N InferenceServices (the operator is NOT running) and,
  as soon as each create returns its uid, exactly the children the operator would create
  (`build_children` + `with_hash`, server-side apply, field manager `isvc-operator`, force, real
  ownerReferences), with bounded concurrency. `floor_children_s`: until all 2N children exist
  (seen by a watch); `floor_ready_s`: until every Deployment is Available at its current
  generation.
* operator: `python -m isvc_operator run` as a separate process with its own ServiceAccount
  identity. The same client creates the N isvcs the same way; `op_children_s`: until all 2N
  children exist; `op_deployments_ready_s`: until every Deployment is Available at its current
  generation, the floor's end point (`ready_ratio` = op_deployments_ready_s / floor_ready_s);
  `op_ready_s`: until every isvc is Ready=True with status.observedGeneration ==
  metadata.generation, the operator's own end, which adds the status writes the floor does not make
  (`isvc_ready_ratio` = op_ready_s / floor_ready_s, reported apart). All windows start at the first
  isvc create, so all include the user's N isvc writes.
* idle: after all N are Ready (and 10 s of settling), the operator's requests to the API server
  over 60 s, by verb, counted from the kube-apiserver AUDIT LOG (policy: Metadata for the
  operator's ServiceAccount, None for everybody else), and its CPU seconds (/proc utime+stime).
* update wave: all N isvcs patched to a new runtimeVersion at once; `update_wave_s`: until every
  Deployment is Available with the new image (the floor's end point, `wave_ratio`);
  `update_wave_ready_s`: until, besides, every isvc is Ready=True at the new generation.
* memory: the operator's peak RSS (VmHWM) over the whole run at that N.

Each phase uses fresh namespaces (N isvcs spread over --namespaces), each with a Bound static PVC
`models`; they are deleted (and waited for) after the phase. Every phase has a deadline.

With --repeat K each N runs K (floor, operator) rounds, the floor first in odd rounds and the
operator first in even ones (so neither always runs on a cluster the other has just churned). Each
round's ratio pairs that round's floor and operator; the row reports the median of the rounds'
ratios (with 2 rounds: their mean, and says so) and the median times, worst case for idle writes,
idle CPU and RSS: on 2 shared cores one round's ratio swings widely. The run stops its control
plane and every process it started when it ends, fails or is interrupted (--keep-cluster: not the
control plane; --no-cluster uses a running one and leaves it).

Usage: python bench/operator_bench.py [--n 300] [--repeat 3] [--operator-path DIR] [--out bench/results/operator.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support import LeaveNothingBehind, kubectl_path, service_account_kubeconfig, wait_until  # noqa: E402

# The floor builds its children with the code of the operator under test (--operator-path): the
# CLI's own `render_documents` (parse -> resolve runtime -> build_children) plus `with_hash`.
API_VERSION, PLURAL = "serving.isvc.dev/v1alpha1", "inferenceservices"

CLUSTER_DIR = Path(os.environ.get("ISVC_BENCH_CLUSTER_DIR", "/tmp/bench-cluster"))
API_PORT = os.environ.get("ISVC_BENCH_API_PORT", "36443")
ETCD_PORT = os.environ.get("ISVC_BENCH_ETCD_PORT", "32379")
OP_NS = "isvc-bench"
OP_SA = "isvc-bench-operator"
OP_USER = f"system:serviceaccount:{OP_NS}:{OP_SA}"
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["{OP_USER}"]
- level: None
"""
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
VERSION_1, VERSION_2 = "2.19.0", "2.18.0"
ISVC_PATH = f"/apis/{API_VERSION}"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# A small asyncio client (aiohttp, one keep-alive pool): the floor's writer and the watches.


class Kube:
    def __init__(self, kubeconfig: Path, concurrency: int) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
        self.server = cluster["server"]
        ctx = ssl.create_default_context(cafile=cluster.get("certificate-authority"))
        if cluster.get("insecure-skip-tls-verify"):
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        self.ssl = ctx
        self.headers = {"Authorization": f"Bearer {user['token']}", "Accept": "application/json"}
        self.sem = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=0),
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *_: Any) -> None:
        assert self.session is not None
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        ctype: str = "application/json",
        params: dict[str, str] | None = None,
        ok_missing: bool = False,
        ok_exists: bool = False,
    ) -> Any:
        assert self.session is not None
        data = json.dumps(body) if body is not None else None
        for attempt in range(8):
            async with self.sem:
                try:
                    async with self.session.request(
                        method,
                        self.server + path,
                        data=data,
                        params=params,
                        headers={"Content-Type": ctype},
                        timeout=aiohttp.ClientTimeout(total=60),
                    ) as resp:
                        text = await resp.text()
                        status = resp.status
                except (TimeoutError, aiohttp.ClientError) as exc:
                    status, text = 0, str(exc)
            if status < 300:
                return json.loads(text) if text else {}
            if status == 404 and ok_missing:
                return None
            if status == 409 and ok_exists:
                return None
            if status in (0, 429) or status >= 500:
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
                continue
            raise BenchError(f"{method} {path}: {status} {text[:300]}")
        raise BenchError(f"{method} {path}: gave up after retries: {status} {text[:300]}")


class Watcher:
    """List+watch of one resource cluster-wide, keeping `extract(obj)` for objects in our namespaces."""

    def __init__(
        self,
        kube: Kube,
        path: str,
        namespaces: set[str],
        extract: Callable[[dict], Any],
        label_selector: str | None = None,
    ) -> None:
        self.kube, self.path, self.namespaces, self.extract = kube, path, namespaces, extract
        self.label_selector = label_selector
        self.state: dict[tuple[str, str], Any] = {}
        self.task: asyncio.Task | None = None
        self.synced = asyncio.Event()

    def _update(self, kind: str, obj: dict) -> None:
        md = obj["metadata"]
        if md.get("namespace") not in self.namespaces:
            return
        key = (md["namespace"], md["name"])
        if kind == "DELETED":
            self.state.pop(key, None)
        else:
            self.state[key] = self.extract(obj)

    async def _run(self) -> None:
        assert self.kube.session is not None
        while True:
            params = {"limit": "500"}
            if self.label_selector:
                params["labelSelector"] = self.label_selector
            items, cont = [], None
            while True:
                if cont:
                    params["continue"] = cont
                page = await self.kube.request("GET", self.path, params=params)
                items += page["items"]
                cont = page["metadata"].get("continue")
                if not cont:
                    break
            rv = page["metadata"]["resourceVersion"]
            self.state.clear()
            for obj in items:
                self._update("ADDED", obj)
            self.synced.set()
            wparams = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true", "timeoutSeconds": "1800"}
            if self.label_selector:
                wparams["labelSelector"] = self.label_selector
            try:
                async with self.kube.session.get(
                    self.kube.server + self.path,
                    params=wparams,
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                ) as resp:
                    if resp.status != 200:
                        raise BenchError(f"watch {self.path}: {resp.status}")
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            break  # relist (e.g. 410 Gone)
                        if event["type"] == "BOOKMARK":
                            continue
                        self._update(event["type"], event["object"])
            except (TimeoutError, aiohttp.ClientError) as exc:
                log(f"watch {self.path} restarted: {exc}")

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.synced.wait(), 60)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass


def deployment_state(obj: dict) -> tuple[bool, str]:
    """(available at its current generation with every replica updated, image)."""
    spec, status, md = obj.get("spec") or {}, obj.get("status") or {}, obj["metadata"]
    want = spec.get("replicas", 1)
    conds = {c["type"]: c["status"] for c in status.get("conditions") or []}
    done = (
        status.get("observedGeneration", 0) >= md.get("generation", 0)
        and conds.get("Available") == "True"
        and status.get("updatedReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want
    )
    return done, spec["template"]["spec"]["containers"][0]["image"]


def isvc_state(obj: dict) -> tuple[bool, int]:
    """(Ready=True at the current generation, generation)."""
    status, generation = obj.get("status") or {}, obj["metadata"].get("generation")
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return ready.get("status") == "True" and status.get("observedGeneration") == generation, generation


async def until(what: str, predicate: Callable[[], bool], deadline_s: float, t0: float) -> float:
    """Seconds since t0 when predicate() first held; fails loudly past the deadline."""
    while not predicate():
        if time.monotonic() - t0 > deadline_s:
            raise BenchError(f"deadline of {deadline_s:.0f}s exceeded waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


# --------------------------------------------------------------------------------------------
# Cluster, identity, namespaces


def kubectl() -> str:
    return str(kubectl_path())


def cluster_env() -> dict[str, str]:
    return {
        **os.environ,
        "ISVC_CLUSTER_DIR": str(CLUSTER_DIR),
        "ISVC_REAL_NODE": "0",
        "ISVC_API_PORT": API_PORT,
        "ISVC_ETCD_PORT": ETCD_PORT,
        "ISVC_NODES": os.environ.get("ISVC_BENCH_NODES", "3"),
    }


def running_audit_policy() -> str | None:
    """The --audit-policy-file of the bench cluster's running kube-apiserver (None: not running)."""
    try:
        pid = int((CLUSTER_DIR / "kube-apiserver.pid").read_text())
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return args[args.index(b"--audit-policy-file") + 1].decode() if b"--audit-policy-file" in args else ""


def ensure_cluster(start: bool) -> Path:
    kubeconfig = CLUSTER_DIR / "kubeconfig"
    audit = CLUSTER_DIR / "logs" / "audit.log"
    if start:
        policy = CLUSTER_DIR.parent / f"{CLUSTER_DIR.name}-audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        env = {**cluster_env(), "ISVC_AUDIT_POLICY": str(policy)}
        # up.sh audits with its own default policy (ServiceAccounts' writes only) unless told
        # otherwise: a cluster started that way cannot count the operator's reads.
        running = running_audit_policy()
        if kubeconfig.exists() and (not audit.exists() or running not in (None, str(policy))):
            log(f"bench cluster runs without this run's audit policy ({running}): restarting it fresh")
            subprocess.run(["bash", str(ROOT / "hack/cluster/down.sh"), "--purge"], env=env, check=True)
        subprocess.run(
            ["bash", str(ROOT / "hack/cluster/up.sh")], env=env, check=True, stdout=subprocess.DEVNULL, timeout=1800
        )
    if not audit.exists():
        raise BenchError(f"no audit log at {audit}: start the cluster with ISVC_AUDIT_POLICY (see bench/README.md)")
    run_kubectl(kubeconfig, "apply", "-f", str(ROOT / "crds"))
    wait_established(kubeconfig, "inferenceservices.serving.isvc.dev")
    return kubeconfig


def wait_established(kubeconfig: Path, crd: str) -> None:
    """Poll the CRD: `kubectl wait` fails at once while a just-created CRD has no conditions yet."""
    established = '{.status.conditions[?(@.type=="Established")].status}'
    wait_until(
        lambda: run_kubectl(kubeconfig, "get", "crd", crd, "-o", f"jsonpath={established}") == "True",
        60,
        f"CRD {crd} to be Established",
        tolerate=(BenchError,),
        error=BenchError,
    )


def run_kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [kubectl(), "--kubeconfig", str(kubeconfig), *args], input=stdin, capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        raise BenchError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def operator_kubeconfig(admin: Path, workdir: Path) -> Path:
    """A kubeconfig for the operator's own ServiceAccount (cluster-admin), so the audit log names it."""
    run_kubectl(
        admin,
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OP_NS}},
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": OP_SA, "namespace": OP_NS}},
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": OP_SA},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": OP_SA, "namespace": OP_NS}],
                },
            ]
        ),
    )
    token = run_kubectl(admin, "-n", OP_NS, "create", "token", OP_SA, "--duration=24h").strip()
    return service_account_kubeconfig(admin, OP_SA, token, workdir / "operator-kubeconfig")


async def make_namespaces(kube: Kube, names: list[str]) -> None:
    async def one(ns: str) -> None:
        pv = f"{ns}-models"
        await kube.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"isvc-bench": "1"}}},
        )
        await kube.request(
            "POST",
            "/api/v1/persistentvolumes",
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {"isvc-bench": "1"}},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "hostPath": {"path": "/tmp/isvc-models"},
                    "claimRef": {"namespace": ns, "name": "models"},
                },
            },
            ok_exists=True,
        )
        await kube.request(
            "POST",
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
        )
        t0 = time.monotonic()
        while True:
            pvc = await kube.request("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/models")
            if (pvc.get("status") or {}).get("phase") == "Bound":
                return
            if time.monotonic() - t0 > 60:
                raise BenchError(f"PVC {ns}/models did not bind in 60s")
            await asyncio.sleep(0.2)

    await asyncio.gather(*(one(ns) for ns in names))


async def delete_namespaces(kube: Kube, names: list[str], deadline_s: float) -> float:
    t0 = time.monotonic()
    for ns in names:
        await kube.request("DELETE", f"/api/v1/namespaces/{ns}", ok_missing=True)
        await kube.request("DELETE", f"/api/v1/persistentvolumes/{ns}-models", ok_missing=True)
    while True:
        left = [ns for ns in names if await kube.request("GET", f"/api/v1/namespaces/{ns}", ok_missing=True)]
        if not left:
            return time.monotonic() - t0
        if time.monotonic() - t0 > deadline_s:
            raise BenchError(f"namespaces {left[:3]}... not gone after {deadline_s:.0f}s")
        await asyncio.sleep(1)


def isvc_body(ns: str, name: str, version: str = VERSION_1) -> dict[str, Any]:
    # ClusterIP: the node-port range (2768 ports) cannot hold 2 ports x 1000 isvcs x 2 phases while
    # the previous phase's namespaces terminate; the service type does not change the operator's work.
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "predictor": {"tensorflow": {"storageUri": "pvc://models", "runtimeVersion": version}},
            "service": {"type": "ClusterIP"},
        },
    }


def plan(n: int, namespaces: list[str]) -> list[tuple[str, str]]:
    return [(namespaces[i % len(namespaces)], f"m{i:04d}") for i in range(n)]


async def create_isvcs(kube: Kube, items: list[tuple[str, str]], then: Callable[[dict], Any] | None = None) -> None:
    async def one(ns: str, name: str) -> None:
        created = await kube.request("POST", f"{ISVC_PATH}/namespaces/{ns}/{PLURAL}", isvc_body(ns, name))
        if then is not None:
            await then(created)

    await asyncio.gather(*(one(ns, name) for ns, name in items))


# --------------------------------------------------------------------------------------------
# Phases


class Watches:
    def __init__(self, kube: Kube, namespaces: set[str]) -> None:
        from isvc_operator.constants import LABEL_MANAGED_BY, OPERATOR_NAME

        sel = f"{LABEL_MANAGED_BY}={OPERATOR_NAME}"
        self.deployments = Watcher(kube, "/apis/apps/v1/deployments", namespaces, deployment_state, sel)
        self.services = Watcher(kube, "/api/v1/services", namespaces, lambda o: True, sel)
        self.isvcs = Watcher(kube, f"{ISVC_PATH}/{PLURAL}", namespaces, isvc_state)

    async def __aenter__(self) -> Watches:
        await asyncio.gather(self.deployments.start(), self.services.start(), self.isvcs.start())
        return self

    async def __aexit__(self, *_: Any) -> None:
        await asyncio.gather(self.deployments.stop(), self.services.stop(), self.isvcs.stop())

    def children(self) -> int:
        return len(self.deployments.state) + len(self.services.state)

    def deployments_ready(self, n: int, image_suffix: str | None = None) -> bool:
        states = self.deployments.state.values()
        return len(states) == n and all(
            ok and (image_suffix is None or img.endswith(image_suffix)) for ok, img in states
        )

    def isvcs_ready(self, n: int, generation: int = 1) -> bool:
        states = self.isvcs.state.values()
        return len(states) == n and all(ok and gen == generation for ok, gen in states)


async def floor_phase(kube: Kube, n: int, namespaces: list[str], deadline_s: float) -> dict[str, float]:
    from isvc_operator.constants import FIELD_MANAGER

    try:
        from isvc_operator.drift import with_hash
    except ImportError:  # --operator-path at a commit before apply.py was renamed drift.py
        from isvc_operator.apply import with_hash  # type: ignore[no-redef]
    from isvc_operator.kube_api import resource_path
    from isvc_operator.render import render_documents

    await make_namespaces(kube, namespaces)
    items = plan(n, namespaces)
    try:
        result = await _floor(
            kube, n, namespaces, items, deadline_s, with_hash, FIELD_MANAGER, resource_path, render_documents
        )
    finally:
        gone = await delete_namespaces(kube, namespaces, max(deadline_s, 600))
        log(f"floor N={n}: namespaces deleted in {gone:.1f}s")
    return result


async def _floor(
    kube: Kube,
    n: int,
    namespaces: list[str],
    items: list[tuple[str, str]],
    deadline_s: float,
    with_hash: Any,
    FIELD_MANAGER: str,
    resource_path: Any,
    render_documents: Any,
) -> dict[str, float]:
    async with Watches(kube, set(namespaces)) as w:

        async def children_of(isvc: dict) -> None:
            # The cluster has no Istio CRD, so the operator (discovery) and the floor agree: no policy.
            desired = [d for d in yaml.safe_load_all(render_documents([isvc])) if d]
            await asyncio.gather(
                *(
                    kube.request(
                        "PATCH",
                        resource_path(
                            obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]
                        ),
                        with_hash(obj),
                        ctype="application/apply-patch+yaml",
                        params={"fieldManager": FIELD_MANAGER, "force": "true"},
                    )
                    for obj in desired
                )
            )

        t0 = time.monotonic()
        writer = asyncio.create_task(create_isvcs(kube, items, then=children_of))
        children = await until(
            "floor children", lambda: w.children() == 2 * n or writer.done() and writer.exception(), deadline_s, t0
        )
        await writer
        writes_done = time.monotonic() - t0
        ready = await until("floor Deployments Available", lambda: w.deployments_ready(n), deadline_s, t0)
        log(f"floor N={n}: children {children:.2f}s (writes returned {writes_done:.2f}s), ready {ready:.2f}s")

        # Update wave: the same isvc patch as in the operator phase, then the re-rendered children.
        async def update(ns: str, name: str) -> None:
            await children_of(
                await kube.request(
                    "PATCH",
                    f"{ISVC_PATH}/namespaces/{ns}/{PLURAL}/{name}",
                    {"spec": {"predictor": {"tensorflow": {"runtimeVersion": VERSION_2}}}},
                    ctype="application/merge-patch+json",
                )
            )

        t0 = time.monotonic()
        await asyncio.gather(*(update(ns, name) for ns, name in items))
        wave = await until("floor update wave", lambda: w.deployments_ready(n, ":" + VERSION_2), deadline_s, t0)
        log(f"floor N={n}: update wave {wave:.2f}s")
    return {"floor_children_s": children, "floor_ready_s": ready, "floor_update_wave_s": wave}


class OperatorProcess:
    def __init__(self, kubeconfig: Path, operator_path: Path, logfile: Path) -> None:
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(operator_path), "PYTHONUNBUFFERED": "1"}
        self.logfile = logfile
        self.out = open(logfile, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "isvc_operator", "run"], env=env, stdout=self.out, stderr=subprocess.STDOUT, cwd="/"
        )

    def wait_started(self, timeout: float = 60) -> None:
        t0 = time.monotonic()
        while "isvc-operator started" not in self.logfile.read_text():
            if self.proc.poll() is not None:
                raise BenchError(f"operator exited {self.proc.returncode}: {self.logfile.read_text()[-2000:]}")
            if time.monotonic() - t0 > timeout:
                raise BenchError("operator did not start")
            time.sleep(0.1)
        time.sleep(2)  # its watch streams open

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def audit_counts(audit: Path, offset: int, start: float, end: float) -> dict[str, int]:
    """The operator's requests received in [start, end) (epoch seconds), by verb, from the audit log."""
    from datetime import datetime

    seen: dict[str, str] = {}
    with open(audit, "rb") as f:
        f.seek(offset)
        for raw in f:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if (event.get("user") or {}).get("username") != OP_USER:
                continue
            received = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00")).timestamp()
            if start <= received < end:
                seen[event["auditID"]] = event["verb"]
    counts: dict[str, int] = {}
    for verb in seen.values():
        counts[verb] = counts.get(verb, 0) + 1
    return dict(sorted(counts.items()))


async def operator_phase(
    kube: Kube,
    n: int,
    namespaces: list[str],
    op_kubeconfig: Path,
    operator_path: Path,
    audit: Path,
    workdir: Path,
    deadline_s: float,
    idle_s: float,
    profile: str | None,
) -> dict[str, Any]:
    await make_namespaces(kube, namespaces)
    items = plan(n, namespaces)
    op = OperatorProcess(op_kubeconfig, operator_path, workdir / f"operator-{n}.log")
    spy = None
    result: dict[str, Any] = {}
    try:
        op.wait_started()
        async with Watches(kube, set(namespaces)) as w:
            audit_offset = audit.stat().st_size
            if profile:
                spy = subprocess.Popen(
                    [
                        profile,
                        "record",
                        "-p",
                        str(op.proc.pid),
                        "-o",
                        str(workdir / f"profile-{n}.txt"),
                        "-f",
                        "raw",
                        "-r",
                        "50",
                        "--gil",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            cpu0, wall0 = op.cpu_s(), time.time()
            t0 = time.monotonic()
            writer = asyncio.create_task(create_isvcs(kube, items))
            children = await until("operator children", lambda: w.children() == 2 * n, deadline_s, t0)
            deployments_ready, ready = await asyncio.gather(
                until("operator Deployments Available", lambda: w.deployments_ready(n), deadline_s, t0),
                until("isvcs Ready", lambda: w.isvcs_ready(n), deadline_s, t0),
            )
            await writer
            create_cpu, create_end = op.cpu_s() - cpu0, time.time()
            log(
                f"operator N={n}: children {children:.2f}s, Deployments Available {deployments_ready:.2f}s, "
                f"isvcs Ready {ready:.2f}s, operator CPU {create_cpu:.1f}s"
            )
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            await asyncio.sleep(10)  # settle: late status events of the Deployments
            create_requests = audit_counts(audit, audit_offset, wall0, create_end)
            cpu_a, idle_start = op.cpu_s(), time.time()
            await asyncio.sleep(idle_s)
            cpu_b, idle_end = op.cpu_s(), time.time()
            await asyncio.sleep(2)  # the audit backend flushes
            idle = audit_counts(audit, audit_offset, idle_start, idle_end)
            idle_writes = sum(v for k, v in idle.items() if k in WRITE_VERBS)
            log(f"operator N={n}: idle {idle_s:.0f}s: requests {idle or 'none'}, CPU {cpu_b - cpu_a:.2f}s")

            # Update wave: a new runtimeVersion on every isvc at once.
            t0 = time.monotonic()
            await asyncio.gather(
                *(
                    kube.request(
                        "PATCH",
                        f"{ISVC_PATH}/namespaces/{ns}/{PLURAL}/{name}",
                        {"spec": {"predictor": {"tensorflow": {"runtimeVersion": VERSION_2}}}},
                        ctype="application/merge-patch+json",
                    )
                    for ns, name in items
                )
            )
            wave, wave_ready = await asyncio.gather(
                until("update wave Deployments", lambda: w.deployments_ready(n, ":" + VERSION_2), deadline_s, t0),
                until(
                    "update wave Ready",
                    lambda: w.isvcs_ready(n, 2) and w.deployments_ready(n, ":" + VERSION_2),
                    deadline_s,
                    t0,
                ),
            )
            log(f"operator N={n}: update wave: Deployments {wave:.2f}s, isvcs Ready {wave_ready:.2f}s")
            result = {
                "op_children_s": children,
                "op_deployments_ready_s": deployments_ready,
                "op_ready_s": ready,
                "op_create_cpu_s": create_cpu,
                "op_create_requests": create_requests,
                "idle_requests_60s": idle,
                "idle_writes_60s": idle_writes,
                "idle_cpu_s_60s": cpu_b - cpu_a,
                "update_wave_s": wave,
                "update_wave_ready_s": wave_ready,
                "peak_rss_mb": op.peak_rss_mb(),
            }
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        op.stop()
        gone = await delete_namespaces(kube, namespaces, max(deadline_s, 600))
    log(f"operator N={n}: namespaces deleted in {gone:.1f}s")
    return result


# --------------------------------------------------------------------------------------------
# Stretch: KServe's controller (raw deployment mode, no webhooks) on the same control plane.

KSERVE_NS = "kserve"
KSERVE_ISVC_PATH = "/apis/serving.kserve.io/v1beta1"
KSERVE_LABEL = "serving.kserve.io/inferenceservice"


def kserve_setup(admin: Path, src: Path, workdir: Path) -> Path:
    """CRDs, the inferenceservice-config ConfigMap (RawDeployment, no Ingress), the TF runtime, certs."""
    for crd in sorted((src / "config/crd/full").glob("serving.kserve.io_*.yaml")):
        run_kubectl(admin, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    wait_established(admin, "inferenceservices.serving.kserve.io")
    cm = next(
        d
        for d in yaml.safe_load_all((src / "config/configmap/inferenceservice.yaml").read_text())
        if d and d.get("kind") == "ConfigMap"
    )
    data = cm["data"]
    data["deploy"] = json.dumps({"defaultDeploymentMode": "RawDeployment"})
    ingress = json.loads(data["ingress"])
    ingress["disableIngressCreation"] = True
    data["ingress"] = json.dumps(ingress)
    cm["metadata"] = {"name": "inferenceservice-config", "namespace": KSERVE_NS}
    runtime = yaml.safe_load((src / "config/runtimes/kserve-tensorflow-serving.yaml").read_text())
    runtime["spec"]["containers"][0]["image"] = "tensorflow/serving:2.6.2"  # the kustomization's image
    run_kubectl(
        admin,
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KSERVE_NS}}, cm, runtime]
        ),
    )
    certs = workdir / "kserve-tmp" / "k8s-webhook-server" / "serving-certs"
    certs.mkdir(parents=True, exist_ok=True)
    if not (certs / "tls.crt").exists():  # the (unregistered) webhook server needs a cert to start
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=kserve",
                "-keyout",
                str(certs / "tls.key"),
                "-out",
                str(certs / "tls.crt"),
            ],
            check=True,
            capture_output=True,
        )
    return certs


def kserve_isvc(ns: str, name: str) -> dict[str, Any]:
    small = {"cpu": "10m", "memory": "32Mi"}  # the runtime asks 1 CPU/2Gi: 3 fake nodes would hold 192 pods
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": {
                "serving.kserve.io/deploymentMode": "RawDeployment",
                "serving.kserve.io/autoscalerClass": "none",
            },
        },
        # The model/runtime form: without KServe's defaulting webhook the `tensorflow:` shorthand
        # yields a container without name or image.
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "tensorflow", "version": "2"},
                    "runtime": "kserve-tensorflow-serving",
                    "storageUri": "pvc://models",
                    "runtimeVersion": VERSION_1,
                    "resources": {"requests": small, "limits": small},
                }
            }
        },
    }


async def kserve_phase(
    kube: Kube, n: int, namespaces: list[str], admin: Path, manager: Path, certs: Path, workdir: Path, deadline_s: float
) -> dict[str, Any]:
    await make_namespaces(kube, namespaces)
    items = plan(n, namespaces)
    logfile = workdir / f"kserve-{n}.log"
    out = open(logfile, "w")
    proc = subprocess.Popen(
        [
            str(manager),
            "--metrics-addr=0",
            "--health-probe-addr=127.0.0.1:0",
            "--webhook-port=39443",
            "--leader-elect=false",
        ],
        env={**os.environ, "KUBECONFIG": str(admin), "POD_NAMESPACE": KSERVE_NS, "TMPDIR": str(certs.parents[1])},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    result: dict[str, Any] = {}
    try:
        # controller-runtime's webhook server reads $TMPDIR/k8s-webhook-server/serving-certs.
        time.sleep(5)
        if proc.poll() is not None:
            raise BenchError(f"KServe manager exited {proc.returncode}: {logfile.read_text()[-2000:]}")
        ns_set = set(namespaces)
        deployments = Watcher(kube, "/apis/apps/v1/deployments", ns_set, deployment_state, KSERVE_LABEL)
        services = Watcher(kube, "/api/v1/services", ns_set, lambda o: True, KSERVE_LABEL)
        isvcs = Watcher(kube, f"{KSERVE_ISVC_PATH}/inferenceservices", ns_set, isvc_state)
        await asyncio.gather(deployments.start(), services.start(), isvcs.start())
        try:
            cpu0 = _proc_cpu(proc.pid)
            t0 = time.monotonic()
            await asyncio.gather(
                *(
                    kube.request("POST", f"{KSERVE_ISVC_PATH}/namespaces/{ns}/inferenceservices", kserve_isvc(ns, name))
                    for ns, name in items
                )
            )
            children = await until(
                "KServe children", lambda: len(deployments.state) + len(services.state) >= 2 * n, deadline_s, t0
            )
            ready = await until(
                "KServe isvcs Ready",
                lambda: len(isvcs.state) == n and all(ok for ok, _ in isvcs.state.values()),
                deadline_s,
                t0,
            )
            result = {
                "kserve_children_s": children,
                "kserve_ready_s": ready,
                "kserve_create_cpu_s": _proc_cpu(proc.pid) - cpu0,
            }
            log(f"KServe N={n}: children {children:.2f}s, ready {ready:.2f}s")
        finally:
            await asyncio.gather(deployments.stop(), services.stop(), isvcs.stop())
    finally:
        try:  # while the manager runs: it removes its finalizers from the isvcs
            gone = await delete_namespaces(kube, namespaces, max(deadline_s, 600))
            log(f"KServe N={n}: namespaces deleted in {gone:.1f}s")
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            out.close()
    return result


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "kernel": platform.release(),
        "load_avg_at_start": os.getloadavg(),
    }


def versions(kube_version: str, operator_path: Path) -> dict[str, Any]:
    import importlib.metadata as md

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=operator_path, capture_output=True, text=True)
        return out.stdout.strip()

    return {
        "python": platform.python_version(),
        "kopf": md.version("kopf"),
        "kubernetes_client": md.version("kubernetes"),
        "aiohttp": md.version("aiohttp"),
        "kube_apiserver": kube_version,
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--", ".")),
        "operator_path": str(operator_path),
    }


def row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        **r,
        "children_ratio": r["op_children_s"] / r["floor_children_s"],
        "ready_ratio": r["op_deployments_ready_s"] / r["floor_ready_s"],
        "isvc_ready_ratio": r["op_ready_s"] / r["floor_ready_s"],
        "wave_ratio": r["update_wave_s"] / r["floor_update_wave_s"],
        "op_ready_s_per_isvc": r["op_ready_s"] / r["n"],
        "idle_requests_per_isvc": sum(r["idle_requests_60s"].values()) / r["n"],
    }


# Worst case over rounds for the absolute targets; medians for times and ratios.
WORST_OF_ROUNDS = ("idle_writes_60s", "idle_cpu_s_60s", "peak_rss_mb")
RATIOS = ("children_ratio", "ready_ratio", "isvc_ready_ratio", "wave_ratio")
ROUND_FIELDS = (
    "first",
    "floor_children_s",
    "op_children_s",
    "children_ratio",
    "floor_ready_s",
    "op_deployments_ready_s",
    "ready_ratio",
    "op_ready_s",
    "isvc_ready_ratio",
    "floor_update_wave_s",
    "update_wave_s",
    "wave_ratio",
    "update_wave_ready_s",
    "op_create_cpu_s",
)


def combined_by(rounds: int) -> str:
    """What a row's times and ratios are over its rounds: with two, the median is their mean."""
    return {1: "one round", 2: "mean of 2 rounds"}.get(rounds, f"median of {rounds} rounds")


def combine_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One row per N from repeated (floor, operator) rounds. On 2 shared cores the same code's
    ratio swings from round to round (floor and operator phases run minutes apart), so a single
    round proves little: each ratio is taken within its round (that round's operator over that
    round's floor), and the row reports the median of those ratios, not a ratio of medians."""
    if len(rounds) == 1:
        return {**rounds[0], "combined_by": combined_by(1)}
    worst = max(rounds, key=lambda r: (r["idle_writes_60s"], r["idle_cpu_s_60s"]))
    out = {**worst}
    for key in ROUND_FIELDS[1:] + ("op_ready_s_per_isvc",):
        out[key] = statistics.median(r[key] for r in rounds)
    for key in WORST_OF_ROUNDS:
        out[key] = max(r[key] for r in rounds)
    out["rounds"] = [{key: r[key] for key in ROUND_FIELDS} for r in rounds]
    out["combined_by"] = combined_by(len(rounds))
    return out


def print_table(runs: list[dict[str, Any]]) -> None:
    cols = [
        ("N", "n", "{:d}"),
        ("floor_ch s", "floor_children_s", "{:.2f}"),
        ("op_ch s", "op_children_s", "{:.2f}"),
        ("ch ratio", "children_ratio", "{:.2f}"),
        ("floor_rdy s", "floor_ready_s", "{:.2f}"),
        ("op_rdy s", "op_deployments_ready_s", "{:.2f}"),
        ("rdy ratio", "ready_ratio", "{:.2f}"),
        ("isvc_rdy s", "op_ready_s", "{:.2f}"),
        ("isvc ratio", "isvc_ready_ratio", "{:.2f}"),
        ("ms/isvc", "op_ready_s_per_isvc", "{:.1f}"),
        ("idle req", "idle_reqs", "{}"),
        ("idle wr", "idle_writes_60s", "{:d}"),
        ("req/isvc", "idle_requests_per_isvc", "{:.3f}"),
        ("idle cpu s", "idle_cpu_s_60s", "{:.2f}"),
        ("rss MB", "peak_rss_mb", "{:.0f}"),
        ("floor wave s", "floor_update_wave_s", "{:.2f}"),
        ("wave s", "update_wave_s", "{:.2f}"),
        ("wave ratio", "wave_ratio", "{:.2f}"),
    ]
    lines = [[h for h, _, _ in cols]]
    for r in runs:
        r = {
            **r,
            "op_ready_s_per_isvc": r["op_ready_s_per_isvc"] * 1000,
            "idle_reqs": sum(r["idle_requests_60s"].values()),
        }
        lines.append([fmt.format(r[k]) for _, k, fmt in cols])
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    for line in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=False)))
    for r in runs:
        if "kserve_ready_s" in r:
            print(
                f"N={r['n']}: KServe (raw mode, no webhooks) children {r['kserve_children_s']:.2f}s "
                f"(ours {r['op_children_s']:.2f}s, floor {r['floor_children_s']:.2f}s), ready {r['kserve_ready_s']:.2f}s "
                f"(ours {r['op_ready_s']:.2f}s, floor {r['floor_ready_s']:.2f}s)"
            )
        elif "kserve_error" in r:
            print(f"N={r['n']}: KServe failed: {r['kserve_error']}")
    for r in runs:
        if "rounds" in r:
            order = ", ".join(f"{x['first']} first" for x in r["rounds"])
            print(f"N={r['n']}: times and ratios are the {r['combined_by']} ({order})")
            for key in RATIOS:
                print(
                    f"N={r['n']}: {key} by round "
                    + ", ".join(f"{x[key]:.2f}" for x in r["rounds"])
                    + f" ({r['combined_by']}: {r[key]:.2f})"
                )
    for r in runs:
        print(
            f"N={r['n']}: idle requests by verb {r['idle_requests_60s'] or '{}'}; "
            f"operator requests while creating {r['op_create_requests']}; operator CPU while creating {r['op_create_cpu_s']:.1f}s"
        )


def check_targets(runs: list[dict[str, Any]]) -> list[str]:
    by_n = {r["n"]: r for r in runs}
    out = []
    if 300 in by_n:
        r = by_n[300]
        out.append(
            f"children ratio at 300: {r['children_ratio']:.2f} (<= 1.25: {'met' if r['children_ratio'] <= 1.25 else 'MISSED'})"
        )
        out.append(
            f"ready ratio at 300: {r['ready_ratio']:.2f} (<= 1.25: {'met' if r['ready_ratio'] <= 1.25 else 'MISSED'})"
        )
    for r in runs:
        ok = r["idle_writes_60s"] == 0 and r["idle_cpu_s_60s"] < 0.5
        out.append(
            f"idle at {r['n']}: {r['idle_writes_60s']} writes, {r['idle_cpu_s_60s']:.2f} CPU s ({'met' if ok else 'MISSED'})"
        )
    if 100 in by_n and 1000 in by_n:
        k = by_n[1000]["op_ready_s_per_isvc"] / by_n[100]["op_ready_s_per_isvc"]
        out.append(f"s/isvc 1000 vs 100: {k:.2f}x (<= 1.2: {'met' if k <= 1.2 else 'MISSED'})")
        # The API server's own scaling in the same run: what the operator's figure is measured against.
        floor_k = (by_n[1000]["floor_ready_s"] / 1000) / (by_n[100]["floor_ready_s"] / 100)
        out.append(
            f"floor s/isvc 1000 vs 100: {floor_k:.2f}x (the control plane's own growth; operator/floor {k / floor_k:.2f})"
        )
    if 1000 in by_n:
        m = by_n[1000]["peak_rss_mb"]
        out.append(f"peak RSS at 1000: {m:.0f} MB (< 250: {'met' if m < 250 else 'MISSED'})")
    return out


async def amain(args: argparse.Namespace) -> int:
    kubeconfig = ensure_cluster(not args.no_cluster)
    audit = CLUSTER_DIR / "logs" / "audit.log"
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    op_kubeconfig = operator_kubeconfig(kubeconfig, workdir)
    operator_path = Path(args.operator_path).resolve()
    sys.path.insert(0, str(operator_path))
    runs = []
    kserve_certs = kserve_setup(kubeconfig, Path(args.kserve_src), workdir) if args.kserve_manager else None
    async with Kube(kubeconfig, args.concurrency) as kube:
        kube_version = (await kube.request("GET", "/version"))["gitVersion"]
        leftovers = [
            ns["metadata"]["name"]
            for ns in (await kube.request("GET", "/api/v1/namespaces", params={"labelSelector": "isvc-bench=1"}))[
                "items"
            ]
        ]
        if leftovers:
            log(f"deleting {len(leftovers)} namespaces left by an earlier run")
            await delete_namespaces(kube, leftovers, 600)
        info = {
            "machine": machine(),
            "versions": versions(kube_version, operator_path),
            "settings": {
                "client_concurrency": args.concurrency,
                "namespaces": args.namespaces,
                "idle_window_s": args.idle,
                "nodes": int(os.environ.get("ISVC_BENCH_NODES", "3")),
                "idle_requests_counted_by": "kube-apiserver audit log (operator's ServiceAccount)",
            },
        }
        for n in args.n:
            rounds = []
            for round_no in range(args.repeat):
                run_id = uuid.uuid4().hex[:5]
                deadline = args.deadline or max(300.0, 1.0 * n)
                floor_ns = [f"bf-{n}-{run_id}-{k}" for k in range(args.namespaces)]
                op_ns = [f"bo-{n}-{run_id}-{k}" for k in range(args.namespaces)]
                # Alternate which phase runs first: the second always meets a cluster that has just
                # deleted the first one's namespaces (and etcd that has grown by them).
                first = "floor" if round_no % 2 == 0 else "operator"
                phases: dict[str, Any] = {}
                for phase in ("floor", "operator") if first == "floor" else ("operator", "floor"):
                    log(f"N={n}: {phase} phase (round {round_no + 1}/{args.repeat}, {first} first)")
                    if phase == "floor":
                        phases[phase] = await floor_phase(kube, n, floor_ns, deadline)
                    else:
                        phases[phase] = await operator_phase(
                            kube,
                            n,
                            op_ns,
                            op_kubeconfig,
                            operator_path,
                            audit,
                            workdir,
                            deadline,
                            args.idle,
                            args.profile,
                        )
                floor, op = phases["floor"], phases["operator"]
                peer: dict[str, Any] = {}
                if args.kserve_manager and round_no == 0:
                    log(f"N={n}: KServe phase")
                    try:
                        peer = await kserve_phase(
                            kube,
                            n,
                            [f"bk-{n}-{run_id}-{k}" for k in range(args.namespaces)],
                            kubeconfig,
                            Path(args.kserve_manager),
                            kserve_certs,
                            workdir,
                            min(deadline, 120 + n / 2),
                        )
                    except BenchError as exc:  # the stretch never hides our own numbers
                        log(f"KServe N={n} failed: {exc}; not run at larger N")
                        peer = {"kserve_error": str(exc)}
                        args.kserve_manager = None
                rounds.append(row({"n": n, "first": first, **floor, **op, **peer}))
            runs.append(combine_rounds(rounds))
    print_table(runs)
    targets = check_targets(runs)
    for line in targets:
        print(line)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**info, "runs": runs, "targets": targets}, indent=2) + "\n")
        log(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, action="append", help="size (repeatable); default 100, 300, 1000")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of (floor, operator) per N; the table shows median times and ratios",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="the bench client's requests in flight")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--idle", type=float, default=60.0, help="idle window, seconds")
    parser.add_argument("--deadline", type=float, default=0, help="per-phase deadline (default max(300, N) s)")
    parser.add_argument(
        "--operator-path",
        default=str(ROOT / "operator"),
        help="PYTHONPATH of the operator under test (e.g. a patched copy)",
    )
    parser.add_argument("--no-cluster", action="store_true", help="use a running bench cluster as is (and leave it)")
    parser.add_argument("--keep-cluster", action="store_true", help="leave the bench control plane running at the end")
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        default=None,
        help="path of a py-spy binary: profile the operator while it creates (raw folded stacks of the thread holding the GIL, in --workdir)",
    )
    parser.add_argument(
        "--kserve-manager",
        default=None,
        help="stretch: a KServe manager binary (go build ./cmd/manager) to run as a peer",
    )
    parser.add_argument("--kserve-src", default=None, help="the KServe module source (its config/ directory)")
    parser.add_argument("--workdir", default="/tmp/isvc-bench", help="operator logs, profiles, kubeconfig")
    parser.add_argument("--out", default=str(ROOT / "bench/results/operator.json"))
    args = parser.parse_args()
    args.n = args.n or [100, 300, 1000]
    with LeaveNothingBehind(None if args.no_cluster or args.keep_cluster else cluster_env(), log):
        try:
            return asyncio.run(amain(args))
        except BenchError as exc:
            log(f"FAILED: {exc}")
            return 1


if __name__ == "__main__":
    sys.exit(main())
