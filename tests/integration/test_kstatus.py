"""What Flux and Argo CD make of live InferenceServices: kstatus itself (sigs.k8s.io/cli-utils, the
library Flux's health checks use, built from hack/kstatus) and the shipped Argo CD health check,
on the same objects, as the operator drives them through Ready, a rollout, an invalid spec and a
missing claim."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT, Kube, wait_until
from tests.integration.test_lifecycle import isvc, wait_ready
from tests.unit.test_argocd_health import HEALTH_LUA, run_health

pytestmark = pytest.mark.cluster


@cache
def kstatus_tool() -> Path:
    """hack/kstatus/build.sh: built once per content of that directory, cached with the cluster's binaries."""
    out = subprocess.run(
        ["bash", str(ROOT / "hack/kstatus/build.sh")], capture_output=True, text=True, check=True, timeout=1800
    ).stdout
    return Path(out.strip().splitlines()[-1])


def health(kube: Kube, name: str, namespace: str) -> tuple[str, str, str, dict]:
    """(kstatus status, kstatus message, Argo CD health) of the isvc as it is now, and the object."""
    obj = kube.get("isvc", name, namespace)
    assert obj is not None, f"isvc {namespace}/{name} is gone"
    result = json.loads(
        subprocess.run([str(kstatus_tool())], input=json.dumps(obj), capture_output=True, text=True, check=True).stdout
    )
    argo = run_health(HEALTH_LUA.read_text(encoding="utf-8"), obj)
    return result["status"], result["message"], argo["status"], obj


def wait_health(kube: Kube, name: str, namespace: str, kstatus: str, argo: str, generation: int) -> tuple[str, dict]:
    seen: list[tuple[str, str]] = []

    def reached():
        status, message, argo_status, obj = health(kube, name, namespace)
        seen.append((status, argo_status))
        observed = (obj.get("status") or {}).get("observedGeneration")
        return (message, obj) if (status, argo_status, observed) == (kstatus, argo, generation) else None

    try:
        return wait_until(
            reached, 60, f"kstatus {kstatus} and Argo CD {argo} for {namespace}/{name} at generation {generation}"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; (kstatus, Argo CD) seen: {sorted(set(seen))}") from None


def patch_predictor(kube: Kube, name: str, namespace: str, predictor: dict) -> None:
    kube.run(
        "patch", "isvc", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"predictor": predictor}})
    )


def test_ready_rolling_invalid_and_fixed(kube, operator, namespace, model_claim):
    kube.apply(isvc("flux", namespace))
    wait_ready(kube, "flux", namespace)
    wait_health(kube, "flux", namespace, "Current", "Healthy", 1)

    # A rollout that cannot finish yet (every node cordoned): in progress, not failed, not current.
    nodes = kube.run("get", "nodes", "-l", "type=kwok", "-o", "name").stdout.split()
    for node in nodes:
        kube.run("cordon", node)
    try:
        patch_predictor(
            kube, "flux", namespace, {"tensorflow": {"storageUri": "pvc://models", "runtimeVersion": "2.18.0"}}
        )
        message, obj = wait_health(kube, "flux", namespace, "InProgress", "Progressing", 2)
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] != "True" and message == ready["message"], (message, ready)
    finally:
        for node in nodes:
            kube.run("uncordon", node)
    wait_health(kube, "flux", namespace, "Current", "Healthy", 2)

    # A spec the schema accepts but no runtime serves: failed at once, with the operator's message.
    patch_predictor(
        kube, "flux", namespace, {"tensorflow": {"storageUri": "pvc://models", "runtime": "no-such-runtime"}}
    )
    message, obj = wait_health(kube, "flux", namespace, "Failed", "Degraded", 3)
    assert "no-such-runtime" in message, message
    stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec"), stalled

    # Someone acts: the isvc converges and both tools say so.
    patch_predictor(kube, "flux", namespace, {"tensorflow": {"storageUri": "pvc://models", "runtime": None}})
    wait_health(kube, "flux", namespace, "Current", "Healthy", 4)


def test_a_missing_claim_is_failed(kube, operator, namespace):
    kube.apply(isvc("no-claim", namespace, tensorflow={"storageUri": "pvc://missing-claim"}))
    message, obj = wait_health(kube, "no-claim", namespace, "Failed", "Degraded", 1)
    assert 'persistentvolumeclaim "missing-claim" not found' in message, message
    stalled = next(c for c in obj["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "PersistentVolumeClaimNotFound", stalled


def test_a_canary_is_in_progress_until_promoted_and_current_after(kube, operator, namespace, model_claim):
    """Ready stays True throughout (kubectl wait keeps working); kstatus and Argo CD read the running
    canary as in progress, a rolled-back one and a promoted one as done."""
    kube.apply(isvc("gitops-canary", namespace, replicas=2))
    wait_ready(kube, "gitops-canary", namespace)
    wait_health(kube, "gitops-canary", namespace, "Current", "Healthy", generation=1)
    canary = {"tensorflow": {"storageUri": "pvc://models", "runtimeVersion": "2.18.0"}, "canaryTrafficPercent": 50}
    patch_predictor(kube, "gitops-canary", namespace, canary)
    message, obj = wait_health(kube, "gitops-canary", namespace, "InProgress", "Progressing", generation=2)
    assert "canary" in message, message
    wait_ready(kube, "gitops-canary", namespace, generation=2)
    patch_predictor(kube, "gitops-canary", namespace, {"canaryTrafficPercent": 0})
    wait_health(kube, "gitops-canary", namespace, "Current", "Healthy", generation=3)
    patch_predictor(kube, "gitops-canary", namespace, {"canaryTrafficPercent": 100})
    wait_health(kube, "gitops-canary", namespace, "Current", "Healthy", generation=4)
    promoted = kube.get("isvc", "gitops-canary", namespace)
    assert "canaryPercent" not in promoted["status"]["components"]["predictor"]
