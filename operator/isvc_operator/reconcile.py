"""One idempotent, level-based pass: spec -> desired children -> apply -> observe -> status.

It runs on every change of the isvc or of any child, and on operator start; it reads the cluster
only through the caches the watches keep (`caches.WatchCaches`), so a pass over an unchanged isvc makes no
API request at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .api_errors import ApiError, ApiNotFound
from .builders.metadata import service_name
from .builders.service import model_url
from .drift import needs_apply
from .kinds import AUTHORIZATION_POLICY, DEPLOYMENT, HTTP_ROUTE, SERVICE, ObjectKey, kind_of
from .kube_api import KubeApi
from .plan import Plan, Plans, make_plan
from .revisions import canary_requested, observe_revisions
from .runtimes import Catalog
from .spec import InvalidSpec, storage_account
from .status import (
    Observed,
    canary_events,
    compute_status,
    invalid_spec_status,
    rejected_condition,
    status_changed,
    status_patch,
)
from .storage_access import StorageAccounts, StorageCredentialsNotFound


class ChildrenRejected(Exception):
    """The API server refused a child; its reason is already on the isvc's status."""


class IsvcGone(Exception):
    """The API server says the isvc no longer exists (404 on its status), although the cache
    still holds it: a watch relisted after an outage and never delivered its DELETED event."""


@dataclass
class Outcome:
    """What one pass did, for logs, metrics and Events."""

    result: str  # "unchanged" | "applied" | "invalid" | "skipped"
    writes: int = 0
    retry: bool = False  # run again later (with backoff) although nothing may change that we watch
    ready_before: Mapping[str, Any] | None = None
    ready_after: Mapping[str, Any] | None = None
    applied: list[ObjectKey] = field(default_factory=list)
    deleted: list[ObjectKey] = field(default_factory=list)
    status_written: bool = False
    # The objects as our writes returned them, so the caches can use them until the watch catches up.
    responses: dict[ObjectKey, Mapping[str, Any]] = field(default_factory=dict)
    isvc_response: Mapping[str, Any] | None = None
    # (reason, message) of each canary step the written status shows (started, promoted, ...).
    canary_events: list[tuple[str, str]] = field(default_factory=list)

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
        return (
            self.ready_after is not None
            and after in ("True", "False")
            and (
                before != after
                or (after == "False" and (self.ready_before or {}).get("reason") != self.ready_after.get("reason"))
            )
        )


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return next((c for c in (status or {}).get("conditions") or [] if c.get("type") == "Ready"), None)


async def reconcile(
    body: Mapping[str, Any],
    live_children: Mapping[ObjectKey, Mapping[str, Any]],
    api: KubeApi,
    catalog: Catalog,
    *,
    pods: Sequence[Mapping[str, Any]] = (),
    istio_installed: bool = False,
    gateway_api_installed: bool = False,
    plans: Plans | None = None,
    accounts: StorageAccounts | None = None,
    now: Callable[[], str] = utc_now,
) -> Outcome:
    """Apply what differs, prune what is no longer wanted, then write the status if it changed.

    `plans`: the operator's memo of each isvc's spec -> children (None: worked out afresh).
    `accounts`: where the predictor's ServiceAccount and Secrets are read (None: a reader of its own).
    """
    metadata = body.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return Outcome(result="skipped")  # the garbage collector removes the children
    previous = body.get("status") or {}
    generation = int(metadata.get("generation") or 0)
    try:
        account = storage_account(body)
        account_secrets = (
            await (accounts or StorageAccounts(api)).read(metadata.get("namespace", ""), account)
            if account is not None
            else None
        )
        live = observe_revisions(
            (child for (_, kind, _), child in live_children.items() if kind == DEPLOYMENT.kind),
            canary=canary_requested(body),
        )
        plan = (plans.get if plans is not None else make_plan)(
            body,
            catalog,
            istio_installed=istio_installed,
            gateway_api_installed=gateway_api_installed,
            account_secrets=account_secrets,
            live=live,
        )
    except (InvalidSpec, StorageCredentialsNotFound) as exc:
        missing = isinstance(exc, StorageCredentialsNotFound)
        status = invalid_spec_status(
            generation=generation,
            message=str(exc),
            previous=previous,
            now=now(),
            reason="StorageCredentialsNotFound" if missing else "InvalidSpec",
        )
        isvc_response = await _write_status(api, body, status) if status_changed(previous, status) else None
        return Outcome(
            result="invalid",
            # A missing account or Secret is no event of ours: retried with backoff until it appears.
            retry=missing,
            writes=int(isvc_response is not None),
            ready_before=_ready(previous),
            ready_after=_ready(status),
            status_written=isvc_response is not None,
            isvc_response=isvc_response,
        )

    applied, observed_children, rejected = await _apply_children(plan, live_children, api)
    deleted = await _prune(plan, live_children, api, metadata.get("namespace", ""))
    isvc, server, revisions = plan.isvc, plan.server, plan.revisions
    canary = revisions.canary
    observed = Observed(
        deployment=observed_children.get(DEPLOYMENT.key(revisions.stable.deployment)),
        canary_deployment=observed_children.get(DEPLOYMENT.key(canary.deployment)) if canary else None,
        service=observed_children.get(SERVICE.key(service_name(isvc))),
        authorization_policy=observed_children.get(AUTHORIZATION_POLICY.key(service_name(isvc))),
        http_route=observed_children.get(HTTP_ROUTE.key(service_name(isvc))),
        istio_installed=istio_installed,
        gateway_api_installed=gateway_api_installed,
        pods=pods,
    )
    status = compute_status(
        generation=generation,
        observed=observed,
        deployment_name=revisions.stable.deployment,
        service_name=service_name(isvc),
        url=model_url(isvc, server),
        previous=previous,
        now=now(),
        rejected=rejected,
        authorization_mode=isvc.authorization.mode,
        revisions=revisions,
        traffic_split=plan.traffic_split,
        gateway=isvc.predictor.gateway.describe(isvc.namespace) if isvc.predictor.gateway else None,
    )
    changed = status_changed(previous, status)
    isvc_response = await _write_status(api, body, status_patch(previous, status)) if changed else None
    if rejected:
        # Retried with backoff: a conflict (e.g. a node port held by another Service) can clear up.
        raise ChildrenRejected("; ".join(c["message"] for c in rejected.values()))
    writes = len(applied) + len(deleted) + int(isvc_response is not None)
    return Outcome(
        result="applied" if writes else "unchanged",
        writes=writes,
        ready_before=_ready(previous),
        ready_after=_ready(status),
        applied=applied,
        deleted=deleted,
        status_written=isvc_response is not None,
        responses={key: observed_children[key] for key in applied},
        isvc_response=isvc_response,
        canary_events=canary_events(previous, status) if isvc_response is not None else [],
    )


async def _apply_children(
    plan: Plan, live_children: Mapping[ObjectKey, Mapping[str, Any]], api: KubeApi
) -> tuple[list[ObjectKey], dict[ObjectKey, Mapping[str, Any]], dict[str, dict[str, Any]]]:
    """Write the children that differ from the plan, concurrently (they are independent).

    Returns what was applied, every child as now known (live or as the write returned it), and the
    conditions of children the API server refused (by condition type). A transient error, or an
    error that is no API answer at all, is raised once every write has finished.
    """
    observed: dict[ObjectKey, Mapping[str, Any]] = {}
    to_apply = []
    for child in plan.children:
        live = live_children.get(child.key)
        if needs_apply(child.desired, live, child.digest):
            to_apply.append(child)
        elif live is not None:
            observed[child.key] = live
    results = await asyncio.gather(
        *(
            asyncio.to_thread(api.apply_or_replace, child.to_apply, exists=child.key in live_children)
            for child in to_apply
        ),
        return_exceptions=True,
    )
    applied: list[ObjectKey] = []
    rejected: dict[str, dict[str, Any]] = {}
    failure: BaseException | None = None
    for child, result in zip(to_apply, results, strict=False):
        if isinstance(result, ApiError) and not result.transient:
            _, kind, child_name = child.key
            condition = kind_of(*child.key[:2]).condition
            rejected[condition] = rejected_condition(condition, kind, child_name, result.message)
        elif isinstance(result, BaseException):
            failure = result
        else:
            observed[child.key] = result
            applied.append(child.key)
    if failure is not None:
        raise failure
    return applied, observed, rejected


async def _prune(
    plan: Plan, live_children: Mapping[ObjectKey, Mapping[str, Any]], api: KubeApi, namespace: str
) -> list[ObjectKey]:
    """Delete the children we own that are no longer desired (e.g. autoscaling switched off)."""
    desired_keys = {child.key for child in plan.children}
    stale = [key for key in live_children if key not in desired_keys]
    for key in stale:
        api_version, kind, child_name = key
        uid = (live_children[key].get("metadata") or {}).get("uid")
        await asyncio.to_thread(api.delete, api_version, kind, namespace, child_name, uid)
    return stale


async def _write_status(api: KubeApi, body: Mapping[str, Any], status: Mapping[str, Any]) -> Mapping[str, Any]:
    """Patch the status, guarded by the resourceVersion the pass read: a pass that was abandoned
    after its timeout can still have this request in flight, and a newer status must not lose to
    it (the API server answers 409 instead, and the next pass reads the newer object)."""
    metadata = body.get("metadata") or {}
    try:
        return await asyncio.to_thread(
            api.patch_status,
            metadata.get("namespace", ""),
            metadata.get("name", ""),
            status,
            resource_version=metadata.get("resourceVersion"),
        )
    except ApiNotFound as exc:
        raise IsvcGone(str(exc)) from exc
