"""The Argo CD health check (manifests/argocd/health.lua) against status shaped as the operator writes it.

Runs the script with Lua 5.1 (Argo CD's gopher-lua speaks 5.1) the way Argo CD does: the object
as a global table `obj`, the chunk returning `{status, message}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

lupa_lua51 = pytest.importorskip("lupa.lua51", reason="lupa is in the test extras: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = ROOT / "manifests" / "argocd" / "health.lua"
CM_SNIPPET = ROOT / "manifests" / "argocd" / "argocd-cm-snippet.yaml"
HEALTH_KEY = "resource.customizations.health.serving.isvc.dev_InferenceService"
NOW = "2026-01-01T00:00:00Z"
URL = "http://dogs.ns.svc.cluster.local:8500/v1/models/dogs"


def run_health(script: str, obj: dict[str, Any]) -> dict[str, Any]:
    lua = lupa_lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return {"status": result["status"], "message": result["message"]}


def cond(type_: str, status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": NOW,
    }


def isvc(generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "dogs", "namespace": "ns", "generation": generation},
        "spec": {"predictor": {"tensorflow": {"storageUri": "pvc://models"}}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def served(generation: int = 1) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "url": URL,
        "replicas": 1,
        "readyReplicas": 1,
        "replicasSummary": "1/1",
        "conditions": [
            cond("Ready", "True", "Ready", f"model served at {URL}", generation),
            cond("PredictorReady", "True", "Available", "1 of 1 replicas available", generation),
            cond(
                "ServiceReady",
                "True",
                "Exposed",
                "NodePort Service dogs: http 8500->31000, grpc 9000->31001",
                generation,
            ),
        ],
    }


def loading(generation: int = 1) -> dict[str, Any]:
    message = "0 of 1 replicas available (the model is loading or not ready)"
    return {
        "observedGeneration": generation,
        "url": URL,
        "replicas": 1,
        "readyReplicas": 0,
        "replicasSummary": "0/1",
        "conditions": [
            cond("Ready", "Unknown", "ReplicasNotReady", message, generation),
            cond("PredictorReady", "Unknown", "ReplicasNotReady", message, generation),
            cond("ServiceReady", "True", "Exposed", "NodePort Service dogs: http 8500->31000", generation),
        ],
    }


def invalid(generation: int = 2) -> dict[str, Any]:
    message = "storageUri 's3://bucket/model': scheme 's3' is not supported (accepted: pvc://, http://, https://)"
    return {
        "observedGeneration": generation,
        "url": URL,
        "replicas": 1,
        "readyReplicas": 1,
        "replicasSummary": "1/1",
        "conditions": [
            cond("Ready", "False", "InvalidSpec", message, generation),
            cond("PredictorReady", "False", "InvalidSpec", message, generation),
            cond("ServiceReady", "True", "Exposed", "NodePort Service dogs: http 8500->31000", 1),
        ],
    }


@pytest.fixture(scope="module")
def script() -> str:
    return HEALTH_LUA.read_text(encoding="utf-8")


CASES = [
    pytest.param(isvc(1, served(1)), "Healthy", f"model served at {URL}", id="ready-true"),
    pytest.param(isvc(1), "Progressing", "Waiting for the isvc-operator to report status", id="new-object-no-status"),
    pytest.param(
        isvc(1, {}), "Progressing", "Waiting for the isvc-operator to observe generation 1", id="empty-status"
    ),
    pytest.param(
        isvc(3, served(2)),
        "Progressing",
        "Waiting for the isvc-operator to observe generation 3",
        id="old-generation-still-healthy-status",
    ),
    pytest.param(
        isvc(1, loading(1)),
        "Progressing",
        "ReplicasNotReady: 0 of 1 replicas available (the model is loading or not ready)",
        id="ready-unknown",
    ),
    pytest.param(
        isvc(2, invalid(2)),
        "Degraded",
        "InvalidSpec: storageUri 's3://bucket/model': scheme 's3' is not supported "
        "(accepted: pvc://, http://, https://)",
        id="invalid-spec",
    ),
    pytest.param(
        isvc(1, {"observedGeneration": 1, "conditions": [cond("ServiceReady", "True", "Exposed", "x", 1)]}),
        "Progressing",
        "Waiting for the Ready condition",
        id="no-ready-condition",
    ),
    pytest.param(
        isvc(2, {**served(1), "observedGeneration": 2}),
        "Progressing",
        "Waiting for the Ready condition of generation 2",
        id="ready-condition-of-older-generation",
    ),
]


@pytest.mark.parametrize(("obj", "status", "message"), CASES)
def test_health(script: str, obj: dict[str, Any], status: str, message: str) -> None:
    assert run_health(script, obj) == {"status": status, "message": message}


def test_ready_false_without_message_is_degraded_with_reason(script: str) -> None:
    status = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "ImagePullBackOff"}],
    }
    assert run_health(script, isvc(1, status)) == {"status": "Degraded", "message": "ImagePullBackOff"}


def test_status_from_the_operator_is_healthy_once_served(script: str) -> None:
    """The operator's own compute_status output, not a hand-written copy, reads as Healthy."""
    from isvc_operator.status import Observed, compute_status

    deployment = {
        "metadata": {"generation": 1},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
            "readyReplicas": 1,
        },
    }
    service = {"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8500, "nodePort": 31000}]}}
    status = compute_status(
        generation=1,
        observed=Observed(deployment=deployment, service=service),
        deployment_name="dogs-predictor",
        service_name="dogs",
        url=URL,
        previous=None,
        now=NOW,
    )
    assert run_health(script, isvc(1, status))["status"] == "Healthy"
    creating = compute_status(
        generation=1,
        observed=Observed(),
        deployment_name="dogs-predictor",
        service_name="dogs",
        url=URL,
        previous=None,
        now=NOW,
    )
    assert run_health(script, isvc(1, creating))["status"] == "Progressing"


def test_argocd_cm_snippet_holds_the_same_script(script: str) -> None:
    snippet = yaml.safe_load(CM_SNIPPET.read_text(encoding="utf-8"))
    assert snippet["kind"] == "ConfigMap" and snippet["metadata"]["name"] == "argocd-cm"
    assert HEALTH_KEY in snippet["data"], f"{CM_SNIPPET.name} lacks data key {HEALTH_KEY}"
    assert snippet["data"][HEALTH_KEY] == script, (
        f"{CM_SNIPPET.relative_to(ROOT)} differs from {HEALTH_LUA.relative_to(ROOT)}: "
        "copy health.lua into the snippet, indented by four spaces"
    )


def with_kstatus(status: dict[str, Any], reconciling: tuple[str, str, str], stalled: tuple[str, str, str]) -> dict:
    generation = status["observedGeneration"]
    return {
        **status,
        "conditions": [
            *status["conditions"],
            cond("Reconciling", *reconciling, generation),
            cond("Stalled", *stalled, generation),
        ],
    }


KSTATUS_CASES = [
    pytest.param(
        with_kstatus(served(1), ("False", "Ready", "converged"), ("False", "Ready", "nothing is stuck")),
        "Healthy",
        f"model served at {URL}",
        id="ready",
    ),
    pytest.param(
        with_kstatus(
            loading(1),
            ("True", "ReplicasNotReady", "waiting for 1 replicas to load the model"),
            ("False", "Reconciling", "still converging"),
        ),
        "Progressing",
        "ReplicasNotReady: waiting for 1 replicas to load the model",
        id="reconciling",
    ),
    pytest.param(
        with_kstatus(
            {
                **loading(1),
                "conditions": [cond("Ready", "False", "Unschedulable", "pod p cannot be scheduled", 1)],
            },
            ("True", "Unschedulable", "pod p cannot be scheduled"),
            ("False", "Reconciling", "still converging"),
        ),
        "Progressing",
        "Unschedulable: pod p cannot be scheduled",
        id="ready-false-but-reconciling-unschedulable",
    ),
    pytest.param(
        with_kstatus(
            invalid(2),
            ("False", "Stalled", "see Stalled"),
            ("True", "InvalidSpec", "storageUri 's3://bucket/model' is not supported"),
        ),
        "Degraded",
        "InvalidSpec: storageUri 's3://bucket/model' is not supported",
        id="stalled",
    ),
]


@pytest.mark.parametrize(("status", "health", "message"), KSTATUS_CASES)
def test_reconciling_and_stalled(script: str, status: dict[str, Any], health: str, message: str) -> None:
    assert run_health(script, isvc(status["observedGeneration"], status)) == {"status": health, "message": message}


def test_stalled_of_an_older_generation_is_not_read(script: str) -> None:
    status = with_kstatus(served(2), ("False", "Ready", "x"), ("True", "InvalidSpec", "old"))
    status["conditions"][-1]["observedGeneration"] = 1
    assert run_health(script, isvc(2, status))["status"] == "Healthy"


def test_health_agrees_with_the_operators_kstatus_conditions_for_every_reason(script: str) -> None:
    """Degraded exactly when the operator says Stalled, Progressing when Reconciling, Healthy when
    neither and Ready: Flux (kstatus) and Argo CD tell the same story."""
    from isvc_operator.status import STUCK_WAITING, condition, kstatus_conditions, stamp_conditions

    reasons = [*STUCK_WAITING, "InvalidSpec", "Unschedulable", "RolloutInProgress", "Creating", "Ready"]
    for status_value in ("True", "False", "Unknown"):
        for reason in reasons:
            for deadline_exceeded in (False, True):
                ready = condition("Ready", status_value, reason, f"{reason} message")
                computed = [ready, *kstatus_conditions(ready, deadline_exceeded=deadline_exceeded)]
                conditions = stamp_conditions(computed, [], 1, NOW)
                by_type = {c["type"]: c["status"] for c in conditions}
                expected = (
                    "Degraded"
                    if by_type["Stalled"] == "True"
                    else "Progressing"
                    if by_type["Reconciling"] == "True"
                    else "Healthy"
                )
                got = run_health(script, isvc(1, {"observedGeneration": 1, "conditions": conditions}))
                assert got["status"] == expected, (status_value, reason, deadline_exceeded, conditions, got)
