"""Pure builders: spec in, desired children out. No I/O, no clock, no kopf, no clients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..resolved_runtime import ResolvedRuntime
from ..revisions import LiveRevision, Revisions, plan_revisions, revision_hash
from ..spec import InferenceService, InvalidSpec
from ..status import HTTP_ROUTE_WEIGHTS, ISTIO_WEIGHTS, READY_REPLICAS
from .authorization import authorization_wanted, build_authorization_policy
from .autoscaler import build_autoscaler
from .deployment import build_deployment, build_pod_template
from .destination_rule import build_destination_rule
from .disruption_budget import build_disruption_budget
from .http_route import build_http_route, build_revision_services
from .metadata import predictor_name
from .model_config import build_model_config
from .service import build_service
from .storage_credentials import AccountSecrets, build_storage_credentials
from .virtual_service import build_virtual_service


def build_revisions(
    isvc: InferenceService,
    server: ResolvedRuntime,
    live: Iterable[LiveRevision],
    account_secrets: AccountSecrets | None = None,
) -> Revisions:
    """The revisions to run, given the Deployments observed: the spec's revision is its pod template's hash."""
    storage = isvc.predictor.storage
    credentials = build_storage_credentials(storage.store if storage else "", account_secrets)
    template = build_pod_template(isvc, server, credentials)
    revisions = plan_revisions(isvc, revision_hash(template), live, predictor_name(isvc))
    if revisions.canary is not None and revisions.stable.template is not None:
        # One Service serves both revisions: its ports are the new spec's, so they must be the stable one's too.
        before, after = _ports(revisions.stable.template), _ports(template)
        if before != after:
            raise InvalidSpec(
                f"spec.predictor: a canary cannot change the model server's ports ({before or 'none'} -> "
                f"{after or 'none'}, e.g. by switching frameworks): both revisions share one Service. "
                "Remove canaryTrafficPercent to replace the running revision, or deploy the new one as its own isvc"
            )
    return revisions


def _ports(template: Mapping[str, Any]) -> str:
    containers = (template.get("spec") or {}).get("containers") or [{}]
    return ", ".join(f"{p.get('name')} {p.get('containerPort')}" for p in containers[0].get("ports") or [])


def traffic_split(isvc: InferenceService, *, istio_installed: bool, gateway_api_installed: bool) -> str:
    """How a canary's traffic is split, by what the cluster has. A Gateway the spec names wins over
    Istio: the user asked for that route, and one set of weights per isvc leaves no doubt which
    applies (Istio, when it is the Gateway's implementation, reads the HTTPRoute itself)."""
    if gateway_api_installed and isvc.predictor.gateway is not None:
        return HTTP_ROUTE_WEIGHTS
    if istio_installed:
        return ISTIO_WEIGHTS
    return READY_REPLICAS


def build_children(
    isvc: InferenceService,
    server: ResolvedRuntime,
    *,
    istio_installed: bool = False,
    gateway_api_installed: bool = False,
    account_secrets: AccountSecrets | None = None,
    revisions: Revisions | None = None,
) -> list[dict[str, Any]]:
    """Every child the isvc should have, in the order they are applied.

    The AuthorizationPolicy, VirtualService and DestinationRule are left out when Istio is not installed, even in mode Enabled: there is
    nowhere to write it, and the AuthorizationReady condition says so; the HTTPRoute (and the
    per-revision Services it weighs) likewise without the Gateway API (IngressReady says so).
    `account_secrets`: the predictor's ServiceAccount and its Secrets, when its model is in an
    object store. `revisions`: from `build_revisions` (None: the isvc's only Deployment, built from
    the spec).
    """
    storage = isvc.predictor.storage
    credentials = build_storage_credentials(storage.store if storage else "", account_secrets)
    if revisions is None:
        deployments = [build_deployment(isvc, server, credentials)]
        target = None
    else:
        deployments = [build_deployment(isvc, server, credentials, revision) for revision in revisions.all]
        target = revisions.stable.deployment
    children = [*deployments, build_service(isvc, server)]
    optional = (
        build_model_config(isvc, server.model_base_path),
        build_autoscaler(isvc, target),
        build_disruption_budget(isvc),
    )
    children.extend(child for child in optional if child is not None)
    if istio_installed and authorization_wanted(isvc, istio_installed):
        children.append(build_authorization_policy(isvc, server))
    split = traffic_split(isvc, istio_installed=istio_installed, gateway_api_installed=gateway_api_installed)
    if split == HTTP_ROUTE_WEIGHTS:
        # Always the route from the Gateway; while a canary runs, a Service per revision for its weights.
        route = build_http_route(isvc, server, revisions)
        children.extend([*build_revision_services(isvc, server, revisions), *([route] if route is not None else [])])
    elif split == ISTIO_WEIGHTS and revisions is not None:
        # While a canary runs: exact weights per revision (the policy above selects both revisions' pods).
        weights = (build_destination_rule(isvc, revisions), build_virtual_service(isvc, server, revisions))
        children.extend(child for child in weights if child is not None)
    return children
