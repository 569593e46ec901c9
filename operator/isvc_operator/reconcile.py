"""One idempotent, level-based pass: spec -> desired children -> apply -> observe -> status.

It runs on every change of the isvc or of any child, and on operator start; it reads the cluster
only through the caches the watches keep (`Children`), so a pass over an unchanged isvc makes no
API request at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .apply import ChildKey, needs_apply
from .builders.metadata import predictor_name, service_name
from .builders.service import model_url
from .kube_api import ApiError, KubeApi
from .plan import Plans, make_plan
from .runtimes import Catalog
from .spec import InvalidSpec
from .status import Observed, compute_status, invalid_spec_status, rejected_condition, status_changed

CONDITION_OF_KIND = {"Deployment": "PredictorReady", "ConfigMap": "PredictorReady", "HorizontalPodAutoscaler": "PredictorReady",
                     "Service": "ServiceReady", "AuthorizationPolicy": "AuthorizationReady"}


class ChildrenRejected(Exception):
    """The API server refused a child; its reason is already on the isvc's status."""


@dataclass
class Outcome:
    """What one pass did, for logs, metrics and Events."""

    result: str  # "unchanged" | "applied" | "invalid" | "skipped"
    writes: int = 0
    ready_before: Mapping[str, Any] | None = None
    ready_after: Mapping[str, Any] | None = None
    applied: list[ChildKey] = field(default_factory=list)
    deleted: list[ChildKey] = field(default_factory=list)
    status_written: bool = False
    # The objects as our writes returned them, so the caches can use them until the watch catches up.
    responses: dict[ChildKey, Mapping[str, Any]] = field(default_factory=dict)
    isvc_response: Mapping[str, Any] | None = None

    @property
    def summary(self) -> str:
        """What was written, e.g. 'Deployment, Service, status'."""
        parts = [kind for _, kind, _ in self.applied] + [f"-{kind}" for _, kind, _ in self.deleted]
        return ", ".join(parts + (["status"] if self.status_written else []))

    @property
    def ready_changed(self) -> bool:
        """An Event when Ready becomes True or False, and per new failure reason: outcomes, not the
        steps of a rollout (Unknown is in the status; an Event for it doubled the Events written)."""
        before = (self.ready_before or {}).get("status")
        after = (self.ready_after or {}).get("status")
        return self.ready_after is not None and after in ("True", "False") and (before != after or (
            after == "False" and (self.ready_before or {}).get("reason") != self.ready_after.get("reason")))


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == "Ready"), None)


async def reconcile(
    body: Mapping[str, Any],
    live_children: Mapping[ChildKey, Mapping[str, Any]],
    api: KubeApi,
    catalog: Catalog,
    *,
    pods: Sequence[Mapping[str, Any]] = (),
    istio_installed: bool = False,
    plans: Plans | None = None,
    now: Callable[[], str] = utc_now,
) -> Outcome:
    """`plans`: the operator's memo of each isvc's spec -> children (None: worked out afresh)."""
    metadata = body.get("metadata") or {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    if metadata.get("deletionTimestamp"):
        return Outcome(result="skipped")  # the garbage collector removes the children
    previous = body.get("status") or {}
    generation = int(metadata.get("generation") or 0)
    writes = 0

    try:
        plan = (plans.get(body, catalog, istio_installed=istio_installed) if plans is not None
                else make_plan(body, catalog, istio_installed=istio_installed))
    except InvalidSpec as exc:
        status = invalid_spec_status(generation=generation, message=str(exc), previous=previous, now=now())
        isvc_response = None
        if status_changed(previous, status):
            isvc_response = await asyncio.to_thread(api.patch_status, namespace, name, status)
            writes += 1
        return Outcome(result="invalid", writes=writes, ready_before=_ready(previous), ready_after=_ready(status),
                       status_written=writes > 0, isvc_response=isvc_response)

    observed_children: dict[ChildKey, Mapping[str, Any]] = {}
    applied: list[ChildKey] = []
    to_apply = []
    isvc, server = plan.isvc, plan.server
    for child in plan.children:
        live = live_children.get(child.key)
        if needs_apply(child.desired, live, child.digest):
            to_apply.append((child.key, child))
        elif live is not None:
            observed_children[child.key] = live
    # Children of one isvc are independent: write them concurrently.
    results = await asyncio.gather(
        *(asyncio.to_thread(api.apply_or_replace, child.to_apply, exists=key in live_children) for key, child in to_apply),
        return_exceptions=True)
    rejected: dict[str, dict[str, Any]] = {}
    retryable: BaseException | None = None
    for (key, _), result in zip(to_apply, results):
        if isinstance(result, ApiError) and not result.retryable:
            _, kind, child_name = key
            rejected[CONDITION_OF_KIND[kind]] = rejected_condition(CONDITION_OF_KIND[kind], kind, child_name, result.message)
        elif isinstance(result, BaseException):
            retryable = result
        else:
            observed_children[key] = result
            applied.append(key)
    if retryable is not None:
        raise retryable
    writes += len(applied)

    # Prune: children we own that are no longer desired (e.g. autoscaling switched off).
    desired_keys = {child.key for child in plan.children}
    stale = [key for key in live_children if key not in desired_keys]
    for api_version, kind, child_name in stale:
        uid = ((live_children[(api_version, kind, child_name)].get("metadata")) or {}).get("uid")
        await asyncio.to_thread(api.delete, api_version, kind, namespace, child_name, uid)
    writes += len(stale)

    observed = Observed(
        deployment=observed_children.get(("apps/v1", "Deployment", predictor_name(isvc))),
        service=observed_children.get(("v1", "Service", service_name(isvc))),
        authorization_policy=observed_children.get(("security.istio.io/v1", "AuthorizationPolicy", service_name(isvc))),
        istio_installed=istio_installed,
        pods=pods,
    )
    status = compute_status(
        generation=generation,
        observed=observed,
        deployment_name=predictor_name(isvc),
        service_name=service_name(isvc),
        url=model_url(isvc, server),
        previous=previous,
        now=now(),
        rejected=rejected,
        authorization_mode=isvc.authorization.mode,
    )
    status_written = status_changed(previous, status)
    isvc_response = None
    if status_written:
        isvc_response = await asyncio.to_thread(api.patch_status, namespace, name, status)
        writes += 1
    if rejected:
        # Retried with backoff: a conflict (e.g. a node port held by another Service) can clear up.
        raise ChildrenRejected("; ".join(c["message"] for c in rejected.values()))
    return Outcome(
        result="applied" if writes else "unchanged",
        writes=writes,
        ready_before=_ready(previous),
        ready_after=_ready(status),
        applied=applied,
        deleted=stale,
        status_written=status_written,
        responses={key: observed_children[key] for key in applied},
        isvc_response=isvc_response,
    )
