"""The Deployment's strategy and the PodDisruptionBudget: spec in, exact objects out, and the specs
that cannot be rendered."""

from __future__ import annotations

import copy

import pytest

from isvc_operator.builders import build_children
from isvc_operator.resolved_runtime import resolve_runtime
from isvc_operator.runtimes import load_catalog
from isvc_operator.spec import InvalidSpec, parse_inferenceservice

BASE = {
    "apiVersion": "serving.isvc.dev/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {"predictor": {"tensorflow": {"storageUri": "pvc://models"}}},
}
SELECTOR = {"matchLabels": {"serving.isvc.dev/inferenceservice": "m", "app.kubernetes.io/component": "predictor"}}


def children(**predictor):
    body = copy.deepcopy(BASE)
    body["spec"]["predictor"].update(predictor)
    isvc = parse_inferenceservice(body)
    return {c["kind"]: c for c in build_children(isvc, resolve_runtime(isvc, load_catalog()))}


@pytest.mark.parametrize(
    ("strategy", "rendered"),
    [
        (None, {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}),
        (
            {"type": "RollingUpdate"},
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        ),
        (
            {"rollingUpdate": {"maxSurge": 2}},
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}},
        ),
        (
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}},
            {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}},
        ),
        ({"type": "Recreate"}, {"type": "Recreate"}),
    ],
)
def test_deployment_strategy(strategy, rendered):
    predictor = {} if strategy is None else {"deploymentStrategy": strategy}
    assert children(**predictor)["Deployment"]["spec"]["strategy"] == rendered


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        (
            {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}},
            "spec.predictor.deploymentStrategy.rollingUpdate: only allowed with type RollingUpdate, not Recreate",
        ),
        (
            {"type": "BlueGreen"},
            "spec.predictor.deploymentStrategy.type: 'BlueGreen' is not one of RollingUpdate, Recreate",
        ),
        ({"rollingUpdate": {"maxSurge": 0}}, "maxSurge and maxUnavailable are both 0 (maxUnavailable defaults to 0)"),
        ({"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": 0}}, "maxSurge and maxUnavailable are both 0"),
        ({"rollingUpdate": {"maxSurge": "150%"}}, "maxSurge: '150%' is neither a number of pods"),
        ({"rollingUpdate": {"maxUnavailable": -1}}, "maxUnavailable: -1 is neither a number of pods"),
    ],
)
def test_strategies_that_cannot_be_rendered(strategy, message):
    with pytest.raises(InvalidSpec, match=message.replace("(", r"\(").replace(")", r"\)")):
        children(deploymentStrategy=strategy)


def budget(**predictor):
    return children(**predictor).get("PodDisruptionBudget")


def test_budget_for_several_replicas_defaults_to_one_unavailable():
    pdb = budget(replicas=3)
    assert pdb == {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": "m-predictor",
            "namespace": "ns",
            "labels": children(replicas=3)["Service"]["metadata"]["labels"],
            "ownerReferences": [
                {
                    "apiVersion": "serving.isvc.dev/v1alpha1",
                    "kind": "InferenceService",
                    "name": "m",
                    "uid": "u-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"selector": SELECTOR, "maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    }
    # It selects exactly the Deployment's pods.
    assert pdb["spec"]["selector"] == children(replicas=3)["Deployment"]["spec"]["selector"]


@pytest.mark.parametrize(
    ("predictor", "fields"),
    [
        ({"replicas": 3, "minAvailable": 2}, {"minAvailable": 2}),
        ({"replicas": 3, "minAvailable": "50%"}, {"minAvailable": "50%"}),
        ({"replicas": 4, "maxUnavailable": "25%"}, {"maxUnavailable": "25%"}),
        ({"replicas": 2, "maxUnavailable": 0}, {"maxUnavailable": 0}),
        ({"minReplicas": 2, "maxReplicas": 5}, {"maxUnavailable": 1}),
        ({"minReplicas": 3, "maxReplicas": 5, "minAvailable": 2}, {"minAvailable": 2}),
    ],
)
def test_budget_fields(predictor, fields):
    spec = budget(**predictor)["spec"]
    assert {k: v for k, v in spec.items() if k in ("minAvailable", "maxUnavailable")} == fields


@pytest.mark.parametrize(
    "predictor",
    [
        {},
        {"replicas": 1},
        {"replicas": 0},
        {"replicas": 1, "minAvailable": 1},
        {"maxReplicas": 5},
        {"minReplicas": 1, "maxReplicas": 5, "maxUnavailable": 1},
    ],
)
def test_no_budget_for_one_replica_or_none(predictor):
    assert budget(**predictor) is None


@pytest.mark.parametrize(
    ("predictor", "message"),
    [
        ({"replicas": 3, "minAvailable": 1, "maxUnavailable": 1}, "set at most one of minAvailable and maxUnavailable"),
        ({"replicas": 3, "minAvailable": "half"}, "spec.predictor.minAvailable: 'half' is neither a number of pods"),
        ({"replicas": 3, "maxUnavailable": "101%"}, "spec.predictor.maxUnavailable: '101%' is neither"),
        ({"replicas": 3, "maxUnavailable": True}, "spec.predictor.maxUnavailable: True is neither"),
    ],
)
def test_budgets_that_cannot_be_rendered(predictor, message):
    with pytest.raises(InvalidSpec, match=message):
        children(**predictor)
