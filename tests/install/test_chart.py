"""The Helm chart against the real local control plane, used as a user would: helm and kubectl.

Pods run on kwok's fake nodes (Running/Ready without running the image), so "the chart's
ServiceAccount and RBAC are enough to reconcile" is shown by running the operator locally under a
token of that ServiceAccount, in the namespace the chart told it to watch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import reserved_port, service_account_kubeconfig

from .conftest import CHART, ROOT, Cluster, poll

pytestmark = pytest.mark.cluster
CRD_NAME = "inferenceservices.serving.isvc.dev"


def get_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def exists(cluster: Cluster, *args: str) -> bool:
    proc = cluster.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    return proc.returncode == 0 and bool(proc.stdout.strip())


def deployment_args(cluster: Cluster, namespace: str, name: str) -> list[str]:
    deployment = get_json(cluster, "deployment", name, "-n", namespace)
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.fixture
def release(cluster: Cluster, namespace: str, unique_name: str) -> Iterator[str]:
    """The release name (also the ServiceAccount and ClusterRole name); uninstalled afterwards."""
    yield unique_name
    cluster.helm("uninstall", unique_name, "-n", namespace, "--wait", "--timeout", "60s", check=False)
    # Cluster-scoped leftovers, should a test have failed half-way through an install.
    cluster.kubectl("delete", "clusterrolebinding,clusterrole", unique_name, "--ignore-not-found", check=False)


def install(cluster: Cluster, namespace: str, release: str, *values: str, wait: bool = True) -> str:
    args = [
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--set",
        "image.pullPolicy=IfNotPresent",
        "--set",
        f"watchNamespaces={{{namespace}}}",
        *values,
    ]
    if wait:
        args += ["--wait", "--timeout", "120s"]
    return cluster.helm(*args).stdout


def test_chart_passes_server_side_dry_run(cluster: Cluster, namespace: str, unique_name: str) -> None:
    lint = cluster.helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in lint.stdout
    rendered = cluster.helm(
        "template",
        unique_name,
        str(CHART),
        "-n",
        namespace,
        "--include-crds",
        "--set",
        f"watchNamespaces={{{namespace}}}",
    ).stdout
    applied = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    kinds = {line.split("/")[0].split(".")[0] for line in applied.stdout.splitlines()}
    assert {
        "customresourcedefinition",
        "serviceaccount",
        "configmap",
        "clusterrole",
        "clusterrolebinding",
        "service",
        "deployment",
    } <= kinds, applied.stdout
    assert not exists(cluster, "deployment", unique_name, "-n", namespace), "a dry run created the Deployment"


def test_install_upgrade_uninstall(cluster: Cluster, namespace: str, release: str) -> None:
    output = install(cluster, namespace, release)
    assert "kubectl get isvc -A" in output, f"NOTES.txt should say what to run next:\n{output}"

    deployment = get_json(cluster, "deployment", release, "-n", namespace)
    assert deployment["status"].get("readyReplicas") == 1, deployment["status"]
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == release
    assert pod_spec["containers"][0]["args"][-2:] == ["-n", namespace]
    assert exists(cluster, "serviceaccount", release, "-n", namespace)
    assert exists(cluster, "configmap", f"{release}-runtimes", "-n", namespace)
    assert exists(cluster, "service", f"{release}-metrics", "-n", namespace)
    assert exists(cluster, "crd", CRD_NAME)
    role = get_json(cluster, "clusterrole", release)
    for rule in role["rules"]:
        assert not any("*" in item for values in rule.values() for item in values), f"wildcard in {rule}"
    binding = get_json(cluster, "clusterrolebinding", release)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": release, "namespace": namespace}]

    # What the ServiceAccount may do, as the API server's authorizer sees it.
    subject = f"system:serviceaccount:{namespace}:{release}"
    for allowed in (
        ["list", "inferenceservices.serving.isvc.dev"],
        ["patch", "inferenceservices.serving.isvc.dev", "--subresource=status"],
        ["create", "deployments.apps"],
        ["create", "leases.coordination.k8s.io"],
        ["get", "secrets"],
    ):
        assert (
            cluster.kubectl("auth", "can-i", *allowed, "-n", namespace, "--as", subject, check=False).stdout.strip()
            == "yes"
        ), f"{subject} should be allowed: {allowed}"
    for denied in (
        ["list", "secrets"],
        ["watch", "secrets"],
        ["delete", "inferenceservices.serving.isvc.dev"],
        ["create", "pods"],
        ["update", "clusterroles.rbac.authorization.k8s.io"],
    ):
        assert (
            cluster.kubectl("auth", "can-i", *denied, "-n", namespace, "--as", subject, check=False).stdout.strip()
            == "no"
        ), f"{subject} should be denied: {denied}"

    generation = deployment["metadata"]["generation"]
    cluster.helm(
        "upgrade",
        release,
        str(CHART),
        "-n",
        namespace,
        "--reuse-values",
        "--set",
        "logFormat=json",
        "--wait",
        "--timeout",
        "120s",
    )
    upgraded = get_json(cluster, "deployment", release, "-n", namespace)
    assert upgraded["metadata"]["generation"] > generation
    args = upgraded["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--log-format") + 1] == "json", args

    cluster.helm("uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
    gone = [
        ("deployment", release, "-n", namespace),
        ("serviceaccount", release, "-n", namespace),
        ("configmap", f"{release}-runtimes", "-n", namespace),
        ("clusterrole", release),
        ("clusterrolebinding", release),
    ]
    poll(
        "helm uninstall to remove the chart's objects",
        lambda: not any(exists(cluster, *obj) for obj in gone),
        timeout=60,
    )
    assert exists(cluster, "crd", CRD_NAME), "helm never deletes CRDs (and with them every InferenceService)"


def _service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig for the same API server whose user is the chart's ServiceAccount."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration", "1h").stdout.strip()
    return service_account_kubeconfig(cluster.kubeconfig, account, token, path, namespace)


def test_operator_reconciles_with_the_charts_service_account(
    cluster: Cluster,
    namespace: str,
    release: str,
    model_claim: str,
    tmp_path: Path,
) -> None:
    install(cluster, namespace, release, wait=False)
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    kubeconfig = _service_account_kubeconfig(cluster, namespace, release, tmp_path / "kubeconfig")
    # The runtime catalog as the chart ships it, read the way the pod would (ISVC_RUNTIME_CATALOG).
    configmap = get_json(cluster, "configmap", f"{release}-runtimes", "-n", namespace)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(configmap["data"]["catalog.yaml"], encoding="utf-8")
    # The chart's own arguments, with the liveness endpoint moved to a free local port.
    port = reserved_port()
    args = deployment_args(cluster, namespace, release)
    args[args.index("--liveness") + 1] = f"http://127.0.0.1:{port}/healthz"
    assert args[0] == "run" and args[-2:] == ["-n", namespace], args

    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env.update(KUBECONFIG=str(kubeconfig), ISVC_RUNTIME_CATALOG=str(catalog))
    log_path = tmp_path / "operator.log"
    with open(log_path, "w", encoding="utf-8") as log:
        operator = subprocess.Popen(
            [sys.executable, "-m", "isvc_operator", *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    try:

        def healthy() -> bool:
            if operator.poll() is not None:
                pytest.fail(
                    f"the operator exited {operator.returncode}:\n{log_path.read_text()[-4000:]}", pytrace=False
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        poll("the operator's liveness endpoint", healthy, timeout=60)
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml.safe_dump(
                {
                    "apiVersion": "serving.isvc.dev/v1alpha1",
                    "kind": "InferenceService",
                    "metadata": {"name": "smoke", "namespace": namespace},
                    "spec": {"predictor": {"tensorflow": {"storageUri": f"pvc://{model_claim}"}}},
                }
            ),
        )
        waited = cluster.kubectl(
            "wait", "--for=condition=Ready", "isvc/smoke", "-n", namespace, "--timeout=120s", check=False, timeout=150
        )
        isvc = get_json(cluster, "isvc", "smoke", "-n", namespace)
        assert waited.returncode == 0, (
            f"isvc/smoke did not become Ready under ServiceAccount {release}: {waited.stderr}\n"
            f"status: {json.dumps(isvc.get('status'), indent=1)}\noperator log:\n{log_path.read_text()[-4000:]}"
        )
        assert isvc["status"]["observedGeneration"] == isvc["metadata"]["generation"]
        assert isvc["status"]["url"].startswith(f"http://smoke.{namespace}.svc"), isvc["status"]
        deployments = get_json(cluster, "deployment", "-n", namespace, "-l", "serving.isvc.dev/inferenceservice=smoke")[
            "items"
        ]
        assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
        assert deployments[0]["metadata"]["ownerReferences"][0]["name"] == "smoke"
        log_text = log_path.read_text(encoding="utf-8")
        # Ready could also come from another operator on this cluster (e.g. an integration test
        # running at the same time): insist that this one, under the chart's account, did the work.
        assert f"reconcile {namespace}/smoke: " in log_text, (
            f"no successful reconcile of {namespace}/smoke in the operator's log:\n{log_text[-4000:]}"
        )
        # An RBAC denial reads 'is forbidden: User "system:serviceaccount:NS:NAME" cannot VERB ...'. Other
        # 403s are not the chart's business: e.g. a namespace another test is deleting refuses new
        # content ("forbidden: unable to create new content in namespace ... being terminated").
        denied = [line for line in log_text.splitlines() if re.search(r'forbidden: User "[^"]*" cannot', line)]
        assert not denied, "the chart's RBAC denied the operator something:\n" + "\n".join(denied[:10])
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait(timeout=10)
