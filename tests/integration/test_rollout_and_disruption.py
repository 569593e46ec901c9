"""The Deployment's rollout strategy and the PodDisruptionBudget, against the real control plane:
what the operator writes, what the API server refuses, and what the budget does to an eviction."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Kube, condition, wait_until
from tests.integration.test_lifecycle import isvc, wait_ready
from tests.support import holds_for

pytestmark = pytest.mark.cluster


def patch_predictor(kube: Kube, name: str, namespace: str, predictor: dict) -> None:
    patch = json.dumps({"spec": {"predictor": predictor}})
    kube.run("patch", "isvc", name, "-n", namespace, "--type=merge", "-p", patch)


def budget(kube: Kube, name: str, namespace: str) -> dict | None:
    return kube.get("poddisruptionbudget", f"{name}-predictor", namespace)


def test_a_budget_follows_the_replicas_and_is_removed_when_one_is_left(kube, operator, namespace, model_claim):
    kube.apply(isvc("budget", namespace, replicas=3))
    wait_ready(kube, "budget", namespace)
    pdb = wait_until(lambda: budget(kube, "budget", namespace), 30, "PodDisruptionBudget budget-predictor")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"], pdb["spec"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    deployment = kube.get("deployment", "budget-predictor", namespace)
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    owner = pdb["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("InferenceService", "budget", True)
    assert pdb["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "isvc-operator"
    managed = json.loads(
        kube.run("get", "pdb", "budget-predictor", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    )["metadata"]["managedFields"]
    assert {m["manager"] for m in managed if m["operation"] == "Apply"} == {"isvc-operator"}, managed
    # The disruption controller counts the Deployment's pods under it.
    wait_until(
        lambda: (budget(kube, "budget", namespace).get("status") or {}).get("expectedPods") == 3,
        30,
        "the budget to count the 3 model pods",
    )

    patch_predictor(kube, "budget", namespace, {"minAvailable": "50%"})
    wait_until(
        lambda: (spec := budget(kube, "budget", namespace)["spec"]).get("minAvailable") == "50%"
        and "maxUnavailable" not in spec,
        30,
        "the budget to switch to minAvailable 50%",
    )

    patch_predictor(kube, "budget", namespace, {"replicas": 1})
    wait_until(lambda: budget(kube, "budget", namespace) is None, 30, "the budget to be deleted at 1 replica")
    wait_ready(kube, "budget", namespace, generation=3)

    patch_predictor(kube, "budget", namespace, {"replicas": 2, "minAvailable": None})
    pdb = wait_until(lambda: budget(kube, "budget", namespace), 30, "the budget to come back at 2 replicas")
    assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"], pdb["spec"]


def evict(kube: Kube, pod: str, namespace: str):
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    return kube.run(
        "create",
        "--raw",
        f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction",
        "-f",
        "-",
        input=json.dumps(eviction),
        check=False,
    )


def test_the_budget_lets_a_drain_evict_one_ready_replica_at_a_time(kube, operator, namespace, model_claim):
    kube.apply(isvc("drain", namespace, replicas=3))
    wait_ready(kube, "drain", namespace)
    wait_until(
        lambda: ((budget(kube, "drain", namespace) or {}).get("status") or {}).get("disruptionsAllowed") == 1,
        30,
        "the budget to allow 1 disruption with 3 ready replicas",
    )
    pods = json.loads(
        kube.run("get", "pods", "-n", namespace, "-l", "serving.isvc.dev/inferenceservice=drain", "-o", "json").stdout
    )["items"]
    names = [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(names) == 3, names
    nodes = kube.run("get", "nodes", "-l", "type=kwok", "-o", "name").stdout.split()
    # Cordoned, as a drain does: the evicted pod's replacement cannot start, so only 2 stay ready.
    for node in nodes:
        kube.run("cordon", node)
    try:
        first = evict(kube, names[0], namespace)
        assert first.returncode == 0, first.stderr
        second = evict(kube, names[1], namespace)
        assert second.returncode != 0 and "disruption budget" in second.stderr, (second.returncode, second.stderr)
    finally:
        for node in nodes:
            kube.run("uncordon", node)
    # The replacement starts; once it is ready, the next eviction is allowed.
    wait_until(lambda: evict(kube, names[1], namespace).returncode == 0, 60, "the second eviction to be allowed")


def test_the_default_rollout_keeps_every_replica_serving(kube, operator, namespace, model_claim):
    kube.apply(isvc("surge", namespace, replicas=2))
    wait_ready(kube, "surge", namespace)
    strategy = kube.get("deployment", "surge-predictor", namespace)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    nodes = kube.run("get", "nodes", "-l", "type=kwok", "-o", "name").stdout.split()
    # With every node cordoned the surge pod cannot start: an old pod may only go once a new one
    # is ready, so both old replicas keep serving for as long as the rollout is stuck.
    for node in nodes:
        kube.run("cordon", node)
    try:
        patch_predictor(
            kube, "surge", namespace, {"tensorflow": {"storageUri": "pvc://models", "runtimeVersion": "2.18.0"}}
        )
        wait_until(
            lambda: condition(kube.get("isvc", "surge", namespace), "Reconciling").get("status") == "True"
            and kube.get("isvc", "surge", namespace)["status"]["observedGeneration"] == 2,
            30,
            "Reconciling=True for the stuck rollout",
        )

        def both_serving():
            status = kube.get("deployment", "surge-predictor", namespace)["status"]
            return status.get("availableReplicas") == 2 and status

        holds_for(both_serving, 5, "2 available replicas", "the default strategy never takes an old pod first")
    finally:
        for node in nodes:
            kube.run("uncordon", node)
    wait_ready(kube, "surge", namespace, generation=2)


def test_recreate_and_back_to_rolling_update(kube, operator, namespace, model_claim):
    kube.apply(isvc("recreate", namespace, deploymentStrategy={"type": "Recreate"}))
    wait_ready(kube, "recreate", namespace)
    assert kube.get("deployment", "recreate-predictor", namespace)["spec"]["strategy"] == {"type": "Recreate"}
    patch_predictor(
        kube, "recreate", namespace, {"deploymentStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}
    )
    wait_until(
        lambda: kube.get("deployment", "recreate-predictor", namespace)["spec"]["strategy"]
        == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        30,
        "the Deployment's strategy to become RollingUpdate maxSurge 1",
    )
    # And back: the rollingUpdate block we wrote goes with our apply (the API server refuses it beside Recreate).
    patch_predictor(kube, "recreate", namespace, {"deploymentStrategy": {"type": "Recreate", "rollingUpdate": None}})
    wait_until(
        lambda: kube.get("deployment", "recreate-predictor", namespace)["spec"]["strategy"] == {"type": "Recreate"},
        30,
        "the Deployment's strategy to become Recreate again",
    )
    wait_ready(kube, "recreate", namespace, generation=3)


@pytest.mark.parametrize(
    ("predictor", "message"),
    [
        (
            {"replicas": 3, "minAvailable": 1, "maxUnavailable": 1},
            "set at most one of spec.predictor.minAvailable and spec.predictor.maxUnavailable",
        ),
        (
            {"minAvailable": "half"},
            "spec.predictor.minAvailable must be a number of replicas (0 or more) or a percentage",
        ),
        (
            {"deploymentStrategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}},
            "spec.predictor.deploymentStrategy.rollingUpdate is only allowed with type RollingUpdate, not Recreate",
        ),
        (
            {"deploymentStrategy": {"rollingUpdate": {"maxSurge": "0%"}}},
            "maxSurge and maxUnavailable are both 0 (maxUnavailable defaults to 0)",
        ),
        ({"deploymentStrategy": {"type": "BlueGreen"}}, 'Unsupported value: "BlueGreen"'),
    ],
)
def test_the_api_server_rejects_what_cannot_be_rolled_out(kube, namespace, predictor, message):
    result = kube.apply(isvc("rejected", namespace, **predictor), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert kube.get("isvc", "rejected", namespace) is None


def test_an_unchanged_budget_costs_no_writes(kube, operator, operator_audit, namespace, model_claim):
    kube.apply(isvc("steady-budget", namespace, replicas=2, minAvailable="50%"))
    wait_ready(kube, "steady-budget", namespace)
    wait_until(
        lambda: ((budget(kube, "steady-budget", namespace) or {}).get("status") or {}).get("expectedPods") == 2,
        30,
        "the budget to count the 2 model pods",
    )
    mark = operator_audit.mark()
    # Someone else's label on the budget: a watch event and a pass, which finds nothing of ours changed.
    kube.run("label", "pdb", "steady-budget-predictor", "-n", namespace, "team=models")
    # The label's event reaches the operator before the marker's, and a rewrite would follow it at
    # once: by the time the marker (a create, several passes) is Ready, it would be in the audit log.
    kube.apply(isvc("marker", namespace))
    wait_ready(kube, "marker", namespace)
    assert operator_audit.writes_besides(kube, mark, namespace, "marker") == []
