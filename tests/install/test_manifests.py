"""The chart rendered offline (helm template): generated install.yaml, RBAC, values and schema.

No cluster needed; only the pinned helm binary (hack/cluster/build.sh helm).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from isvc_operator.runtimes import BUILTIN_CATALOG, parse_catalog

from .conftest import CHART, ROOT, run

INSTALL_YAML = ROOT / "manifests" / "install.yaml"
REGENERATE = "bash hack/render-manifests.sh"

# The ClusterRole the operator needs, and nothing more (DESIGN.md: least privilege, no wildcards).
CHILD_VERBS = ["get", "list", "watch", "create", "patch", "update", "delete"]
EXPECTED_RULES = [
    (["serving.isvc.dev"], ["inferenceservices"], ["get", "list", "watch"]),
    (["serving.isvc.dev"], ["inferenceservices/status"], ["get", "patch", "update"]),
    (["apps"], ["deployments"], CHILD_VERBS),
    ([""], ["services", "configmaps"], CHILD_VERBS),
    (["autoscaling"], ["horizontalpodautoscalers"], CHILD_VERBS),
    (["policy"], ["poddisruptionbudgets"], CHILD_VERBS),
    (["security.istio.io"], ["authorizationpolicies"], CHILD_VERBS),
    (["networking.istio.io"], ["virtualservices", "destinationrules"], CHILD_VERBS),
    (["gateway.networking.k8s.io"], ["httproutes"], CHILD_VERBS),
    ([""], ["events"], ["create", "patch"]),
    (["events.k8s.io"], ["events"], ["create", "patch"]),
    ([""], ["pods"], ["get", "list", "watch"]),
    ([""], ["serviceaccounts", "secrets"], ["get"]),
    (["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"]),
    ([""], ["namespaces"], ["get", "list", "watch"]),
    (["coordination.k8s.io"], ["leases"], ["get", "list", "watch", "create", "update", "patch"]),
]


def template(helm: Path, *args: str, check: bool = True) -> Any:
    proc = run([helm, "template", "isvc-operator", CHART, "--namespace", "isvc-system", *args], check=check)
    if not check:
        return proc
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_install_yaml_is_up_to_date(helm: Path) -> None:
    rendered = run(["bash", ROOT / "hack" / "render-manifests.sh", "-"], env={**os.environ, "HELM": str(helm)}).stdout
    committed = INSTALL_YAML.read_text(encoding="utf-8") if INSTALL_YAML.exists() else ""
    if rendered != committed:
        diff = "".join(
            difflib.unified_diff(
                committed.splitlines(True),
                rendered.splitlines(True),
                "manifests/install.yaml (committed)",
                "rendered from the chart",
                n=1,
            )
        )
        pytest.fail(
            f"manifests/install.yaml is stale; regenerate it with `{REGENERATE}` and commit it.\n{diff[:4000]}",
            pytrace=False,
        )


def test_install_yaml_starts_with_namespace_then_crd() -> None:
    docs = [d for d in yaml.safe_load_all(INSTALL_YAML.read_text(encoding="utf-8")) if d]
    assert [d["kind"] for d in docs[:2]] == ["Namespace", "CustomResourceDefinition"]
    assert docs[0]["metadata"]["name"] == "isvc-system"
    namespaced = [
        d
        for d in docs
        if d["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")
    ]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"isvc-system"}


def test_default_runtimes_equal_the_builtin_catalog() -> None:
    """The chart's ConfigMap must serve what the operator would use without it."""
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    builtin = yaml.safe_load(BUILTIN_CATALOG.read_text(encoding="utf-8"))
    assert values["runtimes"] == builtin, (
        "charts/isvc-operator/values.yaml `runtimes:` differs from operator/isvc_operator/runtimes/catalog.yaml; "
        "copy the catalog (indented two spaces) under `runtimes:`"
    )


def test_catalog_configmap_parses_as_the_operator_reads_it(helm: Path) -> None:
    docs = template(helm)
    (configmap,) = by_kind(docs, "ConfigMap")
    catalog = parse_catalog(yaml.safe_load(configmap["data"]["catalog.yaml"]))
    assert catalog.resolve("tensorflow", None).args[0] == "--port={{ grpc_port }}"
    container = operator_container(docs)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "runtimes")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ISVC_RUNTIME_CATALOG"] == f"{mount['mountPath']}/catalog.yaml"


def test_cluster_role_is_exactly_least_privilege(helm: Path) -> None:
    (role,) = by_kind(template(helm), "ClusterRole")
    rules = [(r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"]]
    assert rules == EXPECTED_RULES
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            assert not any("*" in item for item in rule.get(field, [])), f"wildcard in {rule}"


def test_default_deployment(helm: Path) -> None:
    docs = template(helm)
    (deployment,) = by_kind(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = operator_container(docs)
    assert deployment["spec"]["replicas"] == 1
    assert container["image"] == "ghcr.io/isvc-operator/isvc-operator:0.1.0"
    assert container["args"] == [
        "run",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--log-format",
        "plain",
        "--metrics-port",
        "9090",
        "--leader-elect",
        "--leader-election-namespace",
        "isvc-system",
    ]
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}[probe["port"]] == 8080
    assert spec["serviceAccountName"] == by_kind(docs, "ServiceAccount")[0]["metadata"]["name"]
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": spec["serviceAccountName"], "namespace": "isvc-system"}
    ]
    # The restricted Pod Security profile.
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert {"name": tmp["name"], "emptyDir": {}} in spec["volumes"]
    (service,) = by_kind(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert by_kind(docs, "ServiceMonitor") == []


def test_values_change_the_deployment(helm: Path) -> None:
    docs = template(
        helm,
        "--set",
        "watchNamespaces={team-a,team-b}",
        "--set",
        "logFormat=json",
        "--set",
        "logLevel=debug",
        "--set",
        "image.tag=dev",
        "--set",
        "replicas=2",
    )
    container = operator_container(docs)
    assert container["args"] == [
        "run",
        "--liveness",
        "http://0.0.0.0:8080/healthz",
        "--log-format",
        "json",
        "--metrics-port",
        "9090",
        "--leader-elect",
        "--leader-election-namespace",
        "isvc-system",
        "--debug",
        "-n",
        "team-a",
        "-n",
        "team-b",
    ]
    assert container["image"] == "ghcr.io/isvc-operator/isvc-operator:dev"
    assert by_kind(docs, "Deployment")[0]["spec"]["replicas"] == 2


def test_runtime_override_rolls_the_deployment(helm: Path) -> None:
    def checksum(*args: str) -> str:
        (deployment,) = by_kind(template(helm, *args), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/runtimes"]

    changed = checksum("--set", "runtimes.runtimes.tensorflow-serving.defaultVersion=2.18.0")
    assert changed != checksum()


def test_service_monitor_only_when_enabled(helm: Path) -> None:
    docs = template(
        helm,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prometheus",
    )
    (monitor,) = by_kind(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == by_kind(docs, "Service")[0]["spec"]["selector"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "logFormat=xml"], "at '/logFormat': value must be one of 'plain', 'full', 'json'"),
        (["--set", "replicas=0"], "at '/replicas': minimum: got 0, want 1"),
        (["--set-string", "replicas=two"], "at '/replicas': got string, want integer"),
        (["--set", "watchNamespaces[0]=1"], "at '/watchNamespaces/0': got number, want string"),
        (["--set", "watchNamespaces=team-a"], "at '/watchNamespaces': got string, want array"),
        (["--set", "logFormt=json"], "additional properties 'logFormt' not allowed"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of"),
    ],
)
def test_schema_rejects_wrong_values_readably(helm: Path, args: list[str], message: str) -> None:
    proc = template(helm, *args, check=False)
    assert proc.returncode != 0, f"helm template {args} was accepted:\n{proc.stdout[:2000]}"
    assert message in proc.stderr, f"expected {message!r} in helm's error, got:\n{proc.stderr}"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--set", "metrics.serviceMonitor.enabled=true", "--set", "watchNamespaces={a,b}", "--set", "logLevel=verbose"],
    ],
)
def test_helm_lint_strict(helm: Path, args: list[str]) -> None:
    proc = run([helm, "lint", "--strict", CHART, *args])
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout
