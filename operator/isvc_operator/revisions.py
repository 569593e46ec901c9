"""Revisions of the predictor, and which of them serve: the canary model, as pure functions.

A revision is one version of the predictor's pod template, named after its hash. Without
`canaryTrafficPercent` an isvc has one Deployment (its stable revision), rolled in place on every
change. With it, a changed predictor gets a Deployment of its own (the canary) beside the last
revision that served (the stable one); the two share the Service's selector and split the traffic.
Which Deployment is which is recorded in their labels (`LABEL_REVISION`, `LABEL_ROLE`), so the
split is worked out again from the observed Deployments after an operator restart.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from .constants import LABEL_REVISION, LABEL_ROLE
from .spec import InferenceService
from .status import TRUE, predictor_condition

STABLE, CANARY = "stable", "canary"
REVISION_HASH_LENGTH = 8


def revision_hash(template: Mapping[str, Any]) -> str:
    """Names a pod template: equal templates, equal revisions."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_HASH_LENGTH]


def revision_name(isvc: InferenceService, revision: str) -> str:
    return f"{isvc.name}-predictor-{revision}"


@dataclass(frozen=True)
class LiveRevision:
    """A Deployment of the isvc as observed."""

    deployment: str
    revision: str  # "" for a Deployment made before revisions were labelled
    role: str  # STABLE or CANARY ("" before roles were labelled: read as stable)
    template: Mapping[str, Any]
    ready: bool  # fully available, as PredictorReady reads it
    ready_replicas: int


def observe_revision(deployment: Mapping[str, Any]) -> LiveRevision:
    metadata = deployment.get("metadata") or {}
    labels = metadata.get("labels") or {}
    name = metadata.get("name", "")
    return LiveRevision(
        deployment=name,
        revision=labels.get(LABEL_REVISION, ""),
        role=labels.get(LABEL_ROLE, ""),
        template=(deployment.get("spec") or {}).get("template") or {},
        ready=predictor_condition(deployment, name)["status"] == TRUE,
        ready_replicas=(deployment.get("status") or {}).get("readyReplicas") or 0,
    )


def canary_requested(body: Mapping[str, Any]) -> bool:
    predictor = (body.get("spec") or {}).get("predictor") or {}
    return predictor.get("canaryTrafficPercent") is not None


def observe_revisions(deployments: Iterable[Mapping[str, Any]], *, canary: bool = True) -> tuple[LiveRevision, ...]:
    """The isvc's Deployments as `plan_revisions` reads them. `canary`: whether the spec asks for one;
    if not, and one Deployment runs, its readiness cannot change the plan and is left out, so the
    plan memo (plan.Plans) is not recomputed on every step of a rollout."""
    live = sorted((observe_revision(d) for d in deployments), key=lambda r: r.deployment)
    if not canary and len(live) <= 1:
        live = [replace(r, ready=False, ready_replicas=0) for r in live]
    return tuple(live)


@dataclass(frozen=True)
class Revision:
    """One revision the isvc should run."""

    name: str
    revision: str
    deployment: str
    role: str
    replicas: int | None  # None: the HorizontalPodAutoscaler owns it
    desired_percent: int  # what the spec asks for
    percent: int  # what it gets: a canary that is not Ready gets 0
    ready: bool
    # The pod template to keep (the stable revision's, while a canary runs); None: built from the spec.
    template: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Revisions:
    stable: Revision
    canary: Revision | None = None
    note: str = ""  # why a requested canary is not running

    @property
    def all(self) -> tuple[Revision, ...]:
        return (self.stable,) if self.canary is None else (self.stable, self.canary)


def split_replicas(total: int, percent: int) -> tuple[int, int]:
    """(stable, canary) replicas approximating `percent` for the canary, when traffic follows ready
    replicas: each side that should get traffic keeps at least one replica."""
    if total <= 0 or percent <= 0:
        return max(total, 0), 0
    if percent >= 100:
        return 0, total
    canary = min(max(1, round(total * percent / 100)), max(1, total - 1))
    return max(1, total - canary), canary


def _total_replicas(isvc: InferenceService) -> int:
    predictor = isvc.predictor
    if isvc.autoscaled:
        return predictor.min_replicas or 1
    return 1 if predictor.replicas is None else predictor.replicas


def plan_revisions(
    isvc: InferenceService, revision: str, live: Iterable[LiveRevision], default_deployment: str
) -> Revisions:
    """Which revisions run, with how many replicas and what share, given the spec's revision and
    the Deployments observed. `default_deployment`: the name of an isvc's first Deployment."""
    percent = isvc.predictor.canary_traffic_percent
    live = tuple(live)
    stable_live = next((r for r in live if r.role == STABLE), None) or next((r for r in live if r.role != CANARY), None)
    canary_live = next((r for r in live if r.role == CANARY and r is not stable_live), None)
    autoscaled = isvc.autoscaled
    total = _total_replicas(isvc)

    def single(deployment: str, ready: bool, note: str = "") -> Revisions:
        stable = Revision(
            name=revision_name(isvc, revision),
            revision=revision,
            deployment=deployment,
            role=STABLE,
            replicas=None if autoscaled else total,
            desired_percent=100,
            percent=100,
            ready=ready,
        )
        return Revisions(stable=stable, note=note)

    if stable_live is None:
        if canary_live is not None and canary_live.revision == revision:
            return single(canary_live.deployment, canary_live.ready)  # its stable was deleted by hand
        note = "" if percent is None else "no earlier revision to split traffic with: this one serves all of it"
        return single(default_deployment, False, note)
    if stable_live.revision == revision:
        return single(stable_live.deployment, stable_live.ready)  # the spec is the stable's: any canary goes
    same_canary = canary_live is not None and canary_live.revision == revision
    if percent is None or percent == 100:
        if same_canary and canary_live is not None and canary_live.ready:
            return single(canary_live.deployment, True)  # promoted
        if not same_canary and percent is None:
            return single(stable_live.deployment, False)  # no canary asked for: rolled in place
        percent = 100
    if canary_live is None and (stable_live.ready_replicas == 0 or not stable_live.revision):
        note = (
            "the running revision has no ready replicas: the new one replaces it in place"
            if stable_live.ready_replicas == 0
            else "the running Deployment predates revision labels: the new revision replaces it in place"
        )
        return single(stable_live.deployment, False, note)

    canary_ready = same_canary and canary_live is not None and canary_live.ready
    if autoscaled:
        stable_replicas, canary_replicas = None, split_replicas(total, percent)[1]
    else:
        stable_replicas, canary_replicas = split_replicas(total, percent)
        if not canary_ready:
            stable_replicas = total  # the stable one keeps serving everything until the canary is Ready
    effective = percent if canary_ready else 0
    stable = Revision(
        name=revision_name(isvc, stable_live.revision),
        revision=stable_live.revision,
        deployment=stable_live.deployment,
        role=STABLE,
        replicas=stable_replicas,
        desired_percent=100 - percent,
        percent=100 - effective,
        ready=stable_live.ready,
        template=stable_live.template,
    )
    canary = Revision(
        name=revision_name(isvc, revision),
        revision=revision,
        deployment=canary_live.deployment
        if same_canary and canary_live is not None
        else f"{default_deployment}-{revision}",
        role=CANARY,
        replicas=canary_replicas,
        desired_percent=percent,
        percent=effective,
        ready=canary_ready,
    )
    return Revisions(stable=stable, canary=canary)
