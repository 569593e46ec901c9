"""Canary rollouts against the real control plane (kwok nodes make pods Ready): a canary Deployment
beside the stable one, the replica split and the status shares, a canary that is never Ready,
promotion, rollback, a return to the stable predictor, an operator restart mid-canary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Kube, condition, operator_events, wait_established, wait_reason, wait_until
from tests.integration.test_authorization import ISTIO_CRD
from tests.integration.test_lifecycle import isvc, wait_ready
from tests.integration.test_rollout_and_disruption import patch_predictor

pytestmark = pytest.mark.cluster

CANARY_PREDICTOR = {"tensorflow": {"storageUri": "pvc://models", "runtimeVersion": "2.18.0"}}


def deployments(kube: Kube, name: str, namespace: str) -> dict[str, dict]:
    """The isvc's Deployments that are not being deleted, by name."""
    out = kube.run(
        "get", "deployments", "-n", namespace, "-l", f"serving.isvc.dev/inferenceservice={name}", "-o", "json"
    ).stdout
    items = json.loads(out)["items"]
    return {d["metadata"]["name"]: d for d in items if not d["metadata"].get("deletionTimestamp")}


def by_role(kube: Kube, name: str, namespace: str) -> dict[str, dict]:
    return {d["metadata"]["labels"]["serving.isvc.dev/role"]: d for d in deployments(kube, name, namespace).values()}


def predictor_status(kube: Kube, name: str, namespace: str) -> dict:
    return (((kube.get("isvc", name, namespace) or {}).get("status") or {}).get("components") or {}).get(
        "predictor"
    ) or {}


def reasons(kube: Kube, name: str, namespace: str) -> list[str]:
    return [event.split(": ")[1] for event in operator_events(kube, name, namespace)]


def start_canary(kube: Kube, name: str, namespace: str, percent: int, **predictor: object) -> None:
    patch_predictor(kube, name, namespace, {**CANARY_PREDICTOR, "canaryTrafficPercent": percent, **predictor})


def test_a_canary_gets_its_share_of_replicas_and_is_promoted(kube, operator, namespace, model_claim):
    kube.apply(isvc("split", namespace, replicas=4))
    wait_ready(kube, "split", namespace)
    stable_revision = deployments(kube, "split", namespace)["split-predictor"]["metadata"]["labels"][
        "serving.isvc.dev/revision"
    ]

    start_canary(kube, "split", namespace, 25)
    # Once the canary is Ready the stable revision gives up one of its 4 replicas: 3 + 1 = 25%.
    wait_until(
        lambda: predictor_status(kube, "split", namespace).get("canaryPercent") == 25
        and [t["readyReplicas"] for t in predictor_status(kube, "split", namespace)["traffic"]] == [3, 1],
        90,
        "the canary to serve 25% (1 of 4 ready replicas)",
    )
    roles = by_role(kube, "split", namespace)
    stable, canary = roles["stable"], roles["canary"]
    canary_revision = canary["metadata"]["labels"]["serving.isvc.dev/revision"]
    assert stable["metadata"]["name"] == "split-predictor"
    assert stable["metadata"]["labels"]["serving.isvc.dev/revision"] == stable_revision
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "tensorflow/serving:2.19.0"
    assert canary["metadata"]["name"] == f"split-predictor-{canary_revision}" != stable["metadata"]["name"]
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "tensorflow/serving:2.18.0"
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (3, 1)
    service = kube.get("service", "split", namespace)
    assert service["spec"]["selector"] == stable["spec"]["selector"]["matchLabels"]
    endpoints = wait_until(
        lambda: (s := kube.get("endpoints", "split", namespace))
        and sum(len(subset.get("addresses") or []) for subset in s.get("subsets") or []) == 4
        and s,
        30,
        "the Service's endpoints to hold the 4 ready pods of both revisions",
    )
    assert endpoints
    obj = kube.get("isvc", "split", namespace)
    assert condition(obj, "Ready")["status"] == "True"  # the stable revision serves
    assert condition(obj, "CanaryReady")["status"] == "True"
    assert condition(obj, "Reconciling")["reason"] == "CanaryInProgress"
    predictor = obj["status"]["components"]["predictor"]
    assert predictor["stableRevision"] == f"split-predictor-{stable_revision}"
    assert (
        predictor["latestCreatedRevision"] == predictor["latestReadyRevision"] == f"split-predictor-{canary_revision}"
    )
    assert predictor["trafficSplit"] == "ReadyReplicas" and predictor["message"].startswith("approximate")
    wait_until(lambda: "CanaryStarted" in reasons(kube, "split", namespace), 30, "a CanaryStarted Event")
    printed = kube.run("get", "isvc", "split", "-n", namespace).stdout
    assert "CANARY" in printed.splitlines()[0] and " 25 " in printed.splitlines()[1], printed

    patch_predictor(kube, "split", namespace, {"canaryTrafficPercent": 100})
    wait_until(
        lambda: list(deployments(kube, "split", namespace)) == [f"split-predictor-{canary_revision}"],
        90,
        "the old revision's Deployment to be deleted",
    )
    obj = wait_ready(kube, "split", namespace, generation=3)
    wait_until(
        lambda: by_role(kube, "split", namespace)["stable"]["spec"]["replicas"] == 4, 30, "the promoted one at 4"
    )
    predictor = wait_until(
        lambda: (p := predictor_status(kube, "split", namespace)) and "canaryPercent" not in p and p, 30, "no canary"
    )
    assert predictor["stableRevision"] == f"split-predictor-{canary_revision}"
    assert [(t["role"], t["percent"]) for t in predictor["traffic"]] == [("stable", 100)]
    wait_until(lambda: "CanaryPromoted" in reasons(kube, "split", namespace), 30, "a CanaryPromoted Event")
    obj = kube.get("isvc", "split", namespace)
    assert condition(obj, "Reconciling")["status"] == "False"
    assert condition(obj, "CanaryReady") == {}


def test_the_autoscaler_and_the_budget_follow_the_promoted_revision(kube, operator, namespace, model_claim):
    kube.apply(isvc("scaled", namespace, minReplicas=2, maxReplicas=4))
    wait_ready(kube, "scaled", namespace)
    start_canary(kube, "scaled", namespace, 50)
    wait_until(
        lambda: (condition(kube.get("isvc", "scaled", namespace), "CanaryReady")).get("status") == "True",
        90,
        "the canary to be Ready",
    )
    hpa = kube.get("horizontalpodautoscaler", "scaled-predictor", namespace)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "scaled-predictor"
    patch_predictor(kube, "scaled", namespace, {"canaryTrafficPercent": None})
    promoted = wait_until(
        lambda: (names := list(deployments(kube, "scaled", namespace))) == [n for n in names if n != "scaled-predictor"]
        and len(names) == 1
        and names[0],
        90,
        "the canary promoted and the old Deployment deleted",
    )
    wait_until(
        lambda: kube.get("horizontalpodautoscaler", "scaled-predictor", namespace)["spec"]["scaleTargetRef"]["name"]
        == promoted,
        30,
        f"the HPA to target {promoted}",
    )
    wait_until(
        lambda: ((kube.get("poddisruptionbudget", "scaled-predictor", namespace) or {}).get("status") or {}).get(
            "expectedPods"
        )
        == 2,
        60,
        "the budget to count the promoted revision's 2 pods",
    )


def test_a_canary_that_is_never_ready_gets_nothing_then_rolls_back_and_goes(kube, operator, namespace, model_claim):
    kube.apply(isvc("unready", namespace, replicas=2))
    wait_ready(kube, "unready", namespace)
    # No node has this label: the canary's pod stays Pending (Unschedulable) for good.
    start_canary(kube, "unready", namespace, 50, nodeSelector={"example.com/no-such-node": "x"})
    obj = wait_reason(kube, "unready", namespace, "CanaryReady", "Unschedulable", 60)
    assert "gets 0% of traffic until it is Ready (50% asked)" in condition(obj, "CanaryReady")["message"]
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "PredictorReady")["status"] == "True"  # the canary's pods never explain the stable one
    predictor = obj["status"]["components"]["predictor"]
    assert predictor["canaryPercent"] == 0
    assert [(t["role"], t["desiredPercent"], t["percent"]) for t in predictor["traffic"]] == [
        ("stable", 50, 100),
        ("canary", 50, 0),
    ]
    roles = by_role(kube, "unready", namespace)
    assert roles["stable"]["spec"]["replicas"] == 2  # keeps every replica while the canary is not Ready

    patch_predictor(kube, "unready", namespace, {"canaryTrafficPercent": 0})
    wait_until(
        lambda: by_role(kube, "unready", namespace)["canary"]["spec"]["replicas"] == 0,
        30,
        "the rolled-back canary scaled to 0 but kept",
    )
    obj = wait_reason(kube, "unready", namespace, "CanaryReady", "RolledBack", 30)
    assert condition(obj, "Reconciling")["status"] == "False" and condition(obj, "Ready")["status"] == "True"
    wait_until(lambda: "CanaryRolledBack" in reasons(kube, "unready", namespace), 30, "a CanaryRolledBack Event")

    # The predictor back as the stable revision has it: the canary goes.
    patch_predictor(kube, "unready", namespace, {"nodeSelector": None, "tensorflow": {"runtimeVersion": None}})
    wait_until(
        lambda: list(deployments(kube, "unready", namespace)) == ["unready-predictor"],
        60,
        "the canary Deployment to be deleted",
    )
    wait_until(lambda: "CanaryRemoved" in reasons(kube, "unready", namespace), 30, "a CanaryRemoved Event")


def test_an_operator_restart_mid_canary_keeps_the_split_and_writes_nothing(
    kube, operator, operator_audit, namespace, model_claim
):
    kube.apply(isvc("steady-canary", namespace, replicas=3))
    wait_ready(kube, "steady-canary", namespace)
    start_canary(kube, "steady-canary", namespace, 34)
    wait_until(
        lambda: [t["readyReplicas"] for t in predictor_status(kube, "steady-canary", namespace).get("traffic", [])]
        == [2, 1],
        90,
        "the split 2 + 1",
    )
    before = {
        name: d["metadata"]["resourceVersion"] for name, d in deployments(kube, "steady-canary", namespace).items()
    }
    status_before = predictor_status(kube, "steady-canary", namespace)
    assert operator.stop() == 0
    mark = operator_audit.mark()
    operator.start()
    kube.apply(isvc("marker", namespace))
    wait_ready(kube, "marker", namespace)
    writes = operator_audit.writes_besides(kube, mark, namespace, marker="marker")
    assert writes == [], f"the restarted operator rewrote the canary isvc or its children: {writes}"
    after = {
        name: d["metadata"]["resourceVersion"] for name, d in deployments(kube, "steady-canary", namespace).items()
    }
    assert after == before
    assert predictor_status(kube, "steady-canary", namespace) == status_before


def test_a_canary_that_switches_frameworks_is_explained_and_touches_nothing(kube, operator, namespace, model_claim):
    kube.apply(isvc("switch", namespace, replicas=2))
    wait_ready(kube, "switch", namespace)
    before = deployments(kube, "switch", namespace)["switch-predictor"]["metadata"]["resourceVersion"]
    kube.run(
        "patch",
        "isvc",
        "switch",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps(
            [
                {"op": "remove", "path": "/spec/predictor/tensorflow"},
                {"op": "add", "path": "/spec/predictor/pytorch", "value": {"storageUri": "pvc://models"}},
                {"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": 10},
            ]
        ),
    )
    ready = wait_until(
        lambda: (c := condition(kube.get("isvc", "switch", namespace), "Ready")).get("reason") == "InvalidSpec" and c,
        30,
        "Ready=False InvalidSpec",
    )
    assert ready["status"] == "False"
    assert "a canary cannot change the model server's ports" in ready["message"], ready["message"]
    assert list(deployments(kube, "switch", namespace)) == ["switch-predictor"]
    assert deployments(kube, "switch", namespace)["switch-predictor"]["metadata"]["resourceVersion"] == before


@pytest.mark.parametrize("percent", [-1, 101])
def test_the_api_server_rejects_a_share_outside_0_to_100(kube, namespace, percent):
    result = kube.apply(isvc("bad-share", namespace, canaryTrafficPercent=percent), check=False)
    assert result.returncode != 0
    assert "spec.predictor.canaryTrafficPercent must be a percentage from 0 to 100" in result.stderr, result.stderr


ISTIO_NETWORKING_CRDS = Path(__file__).resolve().parents[1] / "fixtures/istio-networking-crds.yaml"
NETWORKING = ("virtualservices.networking.istio.io", "destinationrules.networking.istio.io")
AUTHORIZATION = "authorizationpolicies.security.istio.io"


@pytest.fixture
def istio(kube, operator):
    """Istio's CRDs, AuthorizationPolicy last: its arrival restarts the operator's watches, which
    then cover the VirtualServices and DestinationRules too. On teardown the AuthorizationPolicy
    CRD goes (the operator reads Istio as gone); the other two stay, as nothing else reads them."""
    kube.run("delete", "crd", AUTHORIZATION, "--ignore-not-found", "--wait=true")
    kube.run("apply", "--server-side", "-f", "-", input=ISTIO_NETWORKING_CRDS.read_text())
    for crd in NETWORKING:
        wait_established(kube, crd)
    kube.apply(ISTIO_CRD.read_text())
    wait_established(kube, AUTHORIZATION)
    yield
    seen = len(operator.log())
    kube.run("delete", "crd", AUTHORIZATION, "--ignore-not-found", "--wait=true")
    # Its watches restart; a SIGTERM in the middle of that (the session ending) would kill it.
    wait_until(
        lambda: "Istio not installed" in operator.log()[seen:], 60, "the operator to restart its watches without Istio"
    )


def weights(kube: Kube, name: str, namespace: str) -> dict[str, list[tuple[str, int]]]:
    service = kube.get("virtualservices.networking.istio.io", name, namespace) or {}
    return {
        route["name"]: [(r["destination"]["subset"], r["weight"]) for r in route["route"]]
        for route in (service.get("spec") or {}).get("http") or []
    }


def test_with_istio_a_canary_gets_exact_weights(kube, operator, namespace, model_claim, istio):
    kube.apply(isvc("mesh", namespace, replicas=2))
    # The policy shows the operator has seen Istio arrive.
    wait_until(lambda: kube.get(AUTHORIZATION, "mesh", namespace), 60, "the AuthorizationPolicy of 'mesh'")
    wait_ready(kube, "mesh", namespace)
    assert kube.get("virtualservices.networking.istio.io", "mesh", namespace) is None  # no canary, no split

    start_canary(kube, "mesh", namespace, 20)
    wait_until(
        lambda: weights(kube, "mesh", namespace)
        == {"http": [("stable", 80), ("canary", 20)], "grpc": [("stable", 80), ("canary", 20)]},
        90,
        "the VirtualService to weigh the Ready canary 20",
    )
    roles = by_role(kube, "mesh", namespace)
    rule = kube.get("destinationrules.networking.istio.io", "mesh", namespace)
    assert rule["spec"]["host"] == f"mesh.{namespace}.svc.cluster.local"
    assert {s["name"]: s["labels"] for s in rule["spec"]["subsets"]} == {
        role: {"serving.isvc.dev/revision": d["metadata"]["labels"]["serving.isvc.dev/revision"]}
        for role, d in roles.items()
    }
    predictor = predictor_status(kube, "mesh", namespace)
    assert (predictor["trafficSplit"], predictor["canaryPercent"]) == ("IstioWeights", 20)
    policy = kube.get(AUTHORIZATION, "mesh", namespace)
    for deployment in roles.values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["selector"]["matchLabels"].items() <= labels.items()

    patch_predictor(kube, "mesh", namespace, {"canaryTrafficPercent": 100})
    wait_until(
        lambda: kube.get("virtualservices.networking.istio.io", "mesh", namespace) is None
        and kube.get("destinationrules.networking.istio.io", "mesh", namespace) is None
        and len(deployments(kube, "mesh", namespace)) == 1,
        90,
        "the split removed after promotion",
    )
