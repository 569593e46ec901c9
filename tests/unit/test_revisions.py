"""Canary revisions as pure functions: the revision of a spec, the replicas that approximate a
share, which revisions run after each step (start, promote, roll back, return), their status and Events."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from isvc_operator.builders import build_children, build_revisions
from isvc_operator.resolved_runtime import resolve_runtime
from isvc_operator.revisions import (
    CANARY,
    STABLE,
    LiveRevision,
    canary_requested,
    observe_revision,
    observe_revisions,
    split_replicas,
)
from isvc_operator.runtimes import load_catalog
from isvc_operator.spec import InvalidSpec, parse_inferenceservice
from isvc_operator.status import Observed, canary_events, compute_status, status_patch

CATALOG = load_catalog()
BASE = {
    "apiVersion": "serving.isvc.dev/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {"predictor": {"tensorflow": {"storageUri": "pvc://models"}, "replicas": 4}},
}


def isvc(version: str = "2.19.0", **predictor: Any):
    body = copy.deepcopy(BASE)
    body["spec"]["predictor"]["tensorflow"]["runtimeVersion"] = version
    body["spec"]["predictor"].update(predictor)
    return parse_inferenceservice(body)


def revisions(spec, live=()):
    return build_revisions(spec, resolve_runtime(spec, CATALOG), live)


def live_of(deployment: dict[str, Any], *, ready_replicas: int | None = None) -> LiveRevision:
    """The Deployment as the cluster would report it once its replicas are all available (or `ready_replicas`)."""
    replicas = deployment["spec"].get("replicas", 1)
    ready = replicas if ready_replicas is None else ready_replicas
    observed = {
        **deployment,
        "metadata": {**deployment["metadata"], "generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }
    return observe_revision(observed)


def deployments(spec, plan):
    return [
        c for c in build_children(spec, resolve_runtime(spec, CATALOG), revisions=plan) if c["kind"] == "Deployment"
    ]


def running(spec, live=(), **ready):
    """Apply `spec` over `live` and report the Deployments as running (ready replicas by name)."""
    plan = revisions(spec, live)
    return plan, tuple(live_of(d, ready_replicas=ready.get(d["metadata"]["name"])) for d in deployments(spec, plan))


@pytest.mark.parametrize(
    ("total", "percent", "split"),
    [
        (4, 25, (3, 1)),
        (4, 50, (2, 2)),
        (10, 10, (9, 1)),
        (1, 10, (1, 1)),
        (4, 0, (4, 0)),
        (4, 100, (0, 4)),
        (2, 99, (1, 1)),
        (0, 50, (0, 0)),
    ],
)
def test_split_replicas_approximates_the_share_and_keeps_one_of_each(total, percent, split):
    assert split_replicas(total, percent) == split


def test_a_revision_is_the_hash_of_the_pod_template():
    assert revisions(isvc()).stable.revision == revisions(isvc()).stable.revision
    assert revisions(isvc()).stable.revision != revisions(isvc("2.18.0")).stable.revision
    # replicas are not part of the pod template: scaling is no new revision
    assert revisions(isvc()).stable.revision == revisions(isvc(replicas=2)).stable.revision


@pytest.mark.parametrize("percent", [-1, 101])
def test_canary_percent_outside_0_to_100_is_invalid(percent):
    with pytest.raises(InvalidSpec, match="canaryTrafficPercent: .* is not a percentage from 0 to 100"):
        isvc(canaryTrafficPercent=percent)


def test_without_canary_percent_a_change_rolls_the_one_deployment_in_place():
    _, live = running(isvc())
    plan = revisions(isvc("2.18.0"), live)
    assert plan.canary is None
    assert plan.stable.deployment == "m-predictor"
    assert plan.stable.revision == revisions(isvc("2.18.0")).stable.revision


def test_a_change_with_canary_percent_starts_a_canary_beside_the_stable_revision():
    _, live = running(isvc())
    old = live[0]
    plan = revisions(isvc("2.18.0", canaryTrafficPercent=25), live)
    assert plan.canary is not None
    assert (plan.stable.deployment, plan.stable.revision, plan.stable.role) == ("m-predictor", old.revision, STABLE)
    assert plan.canary.deployment == f"m-predictor-{plan.canary.revision}"
    assert plan.canary.role == CANARY
    # not Ready yet: the canary gets nothing, the stable revision keeps every replica meanwhile
    assert (plan.canary.desired_percent, plan.canary.percent, plan.canary.replicas) == (25, 0, 1)
    assert (plan.stable.desired_percent, plan.stable.percent, plan.stable.replicas) == (75, 100, 4)
    stable, canary = deployments(isvc("2.18.0", canaryTrafficPercent=25), plan)
    assert stable["spec"]["template"] == old.template  # the stable revision is kept as it runs
    assert canary["spec"]["template"]["metadata"]["labels"]["serving.isvc.dev/revision"] == plan.canary.revision
    assert stable["spec"]["selector"] == canary["spec"]["selector"]  # one Service selects both


def test_a_ready_canary_gets_its_share_and_the_stable_revision_gives_up_replicas():
    spec = isvc("2.18.0", canaryTrafficPercent=25)
    _, live = running(isvc())
    _, live = running(spec, live)
    plan = revisions(spec, live)
    assert plan.canary is not None
    assert (plan.canary.percent, plan.canary.replicas, plan.stable.replicas) == (25, 1, 3)


def test_a_canary_that_never_becomes_ready_gets_nothing():
    spec = isvc("2.18.0", canaryTrafficPercent=50)
    _, live = running(isvc())
    plan = revisions(spec, live)
    assert plan.canary is not None
    _, live = running(spec, live, **{plan.canary.deployment: 0})
    plan = revisions(spec, live)
    assert plan.canary is not None
    assert (plan.canary.percent, plan.stable.percent, plan.stable.replicas) == (0, 100, 4)


@pytest.mark.parametrize("promote", [{"canaryTrafficPercent": 100}, {}])
def test_promotion_makes_the_ready_canary_the_only_revision(promote):
    _, live = running(isvc())
    _, live = running(isvc("2.18.0", canaryTrafficPercent=25), live)
    canary = next(r for r in live if r.role == CANARY)
    plan = revisions(isvc("2.18.0", **promote), live)
    assert plan.canary is None
    assert (plan.stable.deployment, plan.stable.revision, plan.stable.replicas) == (
        canary.deployment,
        canary.revision,
        4,
    )


def test_promotion_waits_for_the_canary_to_be_ready():
    _, live = running(isvc())
    plan = revisions(isvc("2.18.0", canaryTrafficPercent=25), live)
    _, live = running(isvc("2.18.0", canaryTrafficPercent=25), live, **{plan.canary.deployment: 0})
    plan = revisions(isvc("2.18.0", canaryTrafficPercent=100), live)
    assert plan.canary is not None
    assert (plan.stable.replicas, plan.stable.percent, plan.canary.percent) == (4, 100, 0)


def test_rollback_sends_everything_to_the_stable_revision_and_keeps_the_canary_at_zero():
    _, live = running(isvc())
    _, live = running(isvc("2.18.0", canaryTrafficPercent=25), live)
    plan = revisions(isvc("2.18.0", canaryTrafficPercent=0), live)
    assert plan.canary is not None
    assert (plan.stable.replicas, plan.stable.percent, plan.canary.replicas, plan.canary.percent) == (4, 100, 0, 0)


def test_returning_to_the_stable_predictor_removes_the_canary():
    _, live = running(isvc())
    _, live = running(isvc("2.18.0", canaryTrafficPercent=25), live)
    plan = revisions(isvc(canaryTrafficPercent=25), live)
    assert plan.canary is None
    assert plan.stable.deployment == "m-predictor"


def test_a_further_change_replaces_the_canary_never_edits_it():
    _, live = running(isvc())
    first, live = running(isvc("2.18.0", canaryTrafficPercent=25), live)
    plan = revisions(isvc("2.17.0", canaryTrafficPercent=25), live)
    assert plan.canary is not None and first.canary is not None
    assert plan.canary.deployment != first.canary.deployment
    assert plan.stable.deployment == "m-predictor"
    assert len(plan.all) == 2


def test_no_earlier_ready_revision_means_no_canary():
    plan = revisions(isvc(canaryTrafficPercent=25))
    assert plan.canary is None and "no earlier revision" in plan.note
    _, live = running(isvc(), **{"m-predictor": 0})
    plan = revisions(isvc("2.18.0", canaryTrafficPercent=25), live)
    assert plan.canary is None and "no ready replicas" in plan.note


def test_the_autoscaler_follows_the_stable_revision():
    base = {"replicas": None, "minReplicas": 2, "maxReplicas": 5}
    _, live = running(isvc(**base))
    spec = isvc("2.18.0", canaryTrafficPercent=25, **base)
    _, live = running(spec, live)
    promoted = isvc("2.18.0", **base)
    plan = revisions(promoted, live)
    children = {c["kind"]: c for c in build_children(promoted, resolve_runtime(promoted, CATALOG), revisions=plan)}
    assert children["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == plan.stable.deployment
    assert plan.stable.deployment != "m-predictor"


def _status(spec, live, previous=None):
    plan = revisions(spec, live)
    by_name = {r.deployment: r for r in live}
    docs = {d["metadata"]["name"]: d for d in deployments(spec, plan)}

    def observed(name):
        if name not in docs:
            return None
        return {
            **docs[name],
            "metadata": {**docs[name]["metadata"], "generation": 1},
            "status": {
                "observedGeneration": 1,
                "replicas": docs[name]["spec"]["replicas"],
                "updatedReplicas": docs[name]["spec"]["replicas"],
                "readyReplicas": by_name[name].ready_replicas if name in by_name else 0,
                "availableReplicas": by_name[name].ready_replicas if name in by_name else 0,
            },
        }

    return compute_status(
        generation=1,
        observed=Observed(
            deployment=observed(plan.stable.deployment),
            canary_deployment=observed(plan.canary.deployment) if plan.canary else None,
            service={"spec": {"type": "NodePort", "ports": []}},
        ),
        deployment_name=plan.stable.deployment,
        service_name="m",
        url="http://m",
        previous=previous,
        now="T",
        revisions=plan,
    )


def test_status_during_a_canary_keeps_ready_and_tells_the_share():
    before = _status(isvc(), running(isvc())[1])
    _, live = running(isvc())
    spec = isvc("2.18.0", canaryTrafficPercent=25)
    _, live = running(spec, live)  # the canary becomes Ready beside 4 stable replicas (1 of 5: 20%) ...
    _, live = running(spec, live)  # ... then the stable revision gives one up
    status = _status(spec, live, before)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["CanaryReady"]["status"] == "True"
    assert conditions["Reconciling"]["status"] == "True"  # Argo CD shows Progressing while a canary runs
    predictor = status["components"]["predictor"]
    assert predictor["canaryPercent"] == 25  # 1 of 4 ready replicas
    assert predictor["trafficSplit"] == "ReadyReplicas" and predictor["message"].startswith("approximate")
    assert predictor["latestCreatedRevision"] == predictor["latestReadyRevision"] != predictor["stableRevision"]
    assert [(t["role"], t["desiredPercent"], t["percent"]) for t in predictor["traffic"]] == [
        ("stable", 75, 75),
        ("canary", 25, 25),
    ]
    assert [reason for reason, _ in canary_events(before, status)] == ["CanaryStarted"]


def test_status_of_a_canary_that_is_not_ready_says_why_it_gets_nothing():
    _, live = running(isvc())
    spec = isvc("2.18.0", canaryTrafficPercent=50)
    plan = revisions(spec, live)
    _, live = running(spec, live, **{plan.canary.deployment: 0})
    status = _status(spec, live)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["CanaryReady"]["status"] != "True"
    assert "gets 0% of traffic until it is Ready (50% asked)" in conditions["CanaryReady"]["message"]
    assert status["components"]["predictor"]["canaryPercent"] == 0


def test_events_for_rollback_and_promotion():
    _, live = running(isvc())
    spec = isvc("2.18.0", canaryTrafficPercent=25)
    _, live = running(spec, live)
    started = _status(spec, live)
    rolled_back = _status(isvc("2.18.0", canaryTrafficPercent=0), live, started)
    assert [r for r, _ in canary_events(started, rolled_back)] == ["CanaryRolledBack"]
    assert {c["type"]: c["reason"] for c in rolled_back["conditions"]}["CanaryReady"] == "RolledBack"
    promoted = _status(isvc("2.18.0", canaryTrafficPercent=100), live, started)
    assert "canaryPercent" not in promoted["components"]["predictor"]
    assert [r for r, _ in canary_events(started, promoted)] == ["CanaryPromoted"]
    back = _status(isvc(canaryTrafficPercent=25), live, started)
    assert [r for r, _ in canary_events(started, back)] == ["CanaryRemoved"]


def test_the_status_patch_removes_what_a_promotion_leaves_out():
    _, live = running(isvc())
    spec = isvc("2.18.0", canaryTrafficPercent=25)
    _, live = running(spec, live)
    started = _status(spec, live)
    promoted = _status(isvc("2.18.0", canaryTrafficPercent=100), live, started)
    patch = status_patch(started, promoted)
    assert patch["components"]["predictor"]["canaryPercent"] is None
    assert status_patch(promoted, promoted) == promoted


def istio_children(spec, plan):
    children = build_children(spec, resolve_runtime(spec, CATALOG), istio_installed=True, revisions=plan)
    return {c["kind"]: c for c in children}


def test_with_istio_a_canary_gets_exact_weights_by_subset():
    _, live = running(isvc())
    spec = isvc("2.18.0", canaryTrafficPercent=10)
    plan = revisions(spec, live)
    children = istio_children(spec, plan)
    host = "m.ns.svc.cluster.local"
    assert children["DestinationRule"]["spec"] == {
        "host": host,
        "subsets": [
            {"name": "stable", "labels": {"serving.isvc.dev/revision": plan.stable.revision}},
            {"name": "canary", "labels": {"serving.isvc.dev/revision": plan.canary.revision}},
        ],
    }

    def weights(children):
        return {
            r["name"]: [
                (d["destination"]["subset"], d["destination"]["port"]["number"], d["weight"]) for d in r["route"]
            ]
            for r in children["VirtualService"]["spec"]["http"]
        }

    # Not Ready yet: nothing for the canary, on the REST and the gRPC port.
    assert weights(children) == {
        "http": [("stable", 8500, 100), ("canary", 8500, 0)],
        "grpc": [("stable", 9000, 100), ("canary", 9000, 0)],
    }
    assert children["VirtualService"]["spec"]["hosts"] == [host]
    _, live = running(spec, live)
    assert weights(istio_children(spec, revisions(spec, live)))["http"] == [("stable", 8500, 90), ("canary", 8500, 10)]
    # The policy selects the pods of both revisions.
    selector = children["AuthorizationPolicy"]["spec"]["selector"]["matchLabels"]
    for deployment in (
        c for c in build_children(spec, resolve_runtime(spec, CATALOG), revisions=plan) if c["kind"] == "Deployment"
    ):
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_without_a_canary_or_without_istio_there_is_no_virtual_service():
    _, live = running(isvc())
    assert "VirtualService" not in istio_children(
        isvc(canaryTrafficPercent=10), revisions(isvc(canaryTrafficPercent=10), live)
    )
    spec = isvc("2.18.0", canaryTrafficPercent=10)
    kinds = {c["kind"] for c in build_children(spec, resolve_runtime(spec, CATALOG), revisions=revisions(spec, live))}
    assert kinds.isdisjoint({"VirtualService", "DestinationRule"})


def test_argocd_shows_progressing_while_a_canary_runs_and_healthy_once_promoted():
    from tests.unit.test_argocd_health import HEALTH_LUA, run_health

    script = HEALTH_LUA.read_text(encoding="utf-8")

    def health(status):
        return run_health(script, {"metadata": {"name": "m", "generation": 1}, "status": status})

    _, live = running(isvc())
    spec = isvc("2.18.0", canaryTrafficPercent=25)
    _, live = running(spec, live)
    running_canary = health(_status(spec, live))
    assert running_canary["status"] == "Progressing" and running_canary["message"].startswith("CanaryInProgress: ")
    promoted = isvc("2.18.0", canaryTrafficPercent=100)
    _, scaled = running(promoted, live)  # the promoted revision scales up to every replica
    assert health(_status(promoted, scaled))["status"] == "Healthy"
    assert health(_status(isvc("2.18.0", canaryTrafficPercent=0), live))["status"] == "Healthy"  # rolled back


def test_a_canary_that_switches_frameworks_is_invalid():
    _, live = running(isvc())
    body = copy.deepcopy(BASE)
    body["spec"]["predictor"] = {"pytorch": {"storageUri": "pvc://models"}, "replicas": 4, "canaryTrafficPercent": 10}
    with pytest.raises(
        InvalidSpec, match=r"a canary cannot change the model server's ports \(http 8500, grpc 9000 -> http 8080"
    ):
        revisions(parse_inferenceservice(body), live)
    body["spec"]["predictor"].pop("canaryTrafficPercent")
    assert revisions(parse_inferenceservice(body), live).canary is None  # replaced in place, as without a canary


def test_without_a_canary_the_plan_does_not_read_readiness():
    """So the plan memo is not recomputed on each step of a rollout of an isvc without a canary."""
    deployment = deployments(isvc(), revisions(isvc()))[0]
    rolling = {**deployment, "status": {"readyReplicas": 1}}
    ready = {**deployment, "status": {"readyReplicas": 4}}
    assert observe_revisions([rolling], canary=False) == observe_revisions([ready], canary=False)
    assert observe_revisions([rolling], canary=True) != observe_revisions([ready], canary=True)
    assert canary_requested({"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    assert not canary_requested({"spec": {"predictor": {}}})
