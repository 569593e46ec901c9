"""The Gateway API HTTPRoute that carries the model's REST traffic from a named Gateway, and the
per-revision Services its weighted backendRefs point at while a canary runs (a backendRef names a
Service, not a subset of pods, so each revision needs a Service of its own)."""

from __future__ import annotations

from typing import Any

from ..constants import LABEL_REVISION
from ..kinds import HTTP_ROUTE, SERVICE
from ..resolved_runtime import ResolvedRuntime
from ..revisions import Revisions
from ..spec import InferenceService
from .metadata import child_metadata, selector_labels, service_name


def revision_service_name(isvc: InferenceService, role: str) -> str:
    """`NAME-stable` / `NAME-canary`: named after the role, so the route's backendRefs keep their
    names when a canary is promoted or replaced."""
    return f"{service_name(isvc)}-{role}"


def build_revision_services(
    isvc: InferenceService, server: ResolvedRuntime, revisions: Revisions | None
) -> list[dict[str, Any]]:
    """A ClusterIP Service per revision, selecting its pods by revision label; only while a canary
    runs behind a Gateway (otherwise the route points at the main Service)."""
    if isvc.predictor.gateway is None or revisions is None or revisions.canary is None:
        return []
    return [
        {
            "apiVersion": SERVICE.api_version,
            "kind": SERVICE.kind,
            "metadata": child_metadata(isvc, name=revision_service_name(isvc, r.role)),
            "spec": {
                "type": "ClusterIP",
                "selector": {**selector_labels(isvc), LABEL_REVISION: r.revision},
                "ports": [{"name": "http", "port": server.http_port, "targetPort": "http", "protocol": "TCP"}],
            },
        }
        for r in revisions.all
    ]


def build_http_route(
    isvc: InferenceService, server: ResolvedRuntime, revisions: Revisions | None
) -> dict[str, Any] | None:
    """One rule to the REST port: the main Service at weight 100 without a canary; with one, a
    backendRef per revision weighted as for Istio (the canary 0 until it is Ready)."""
    gateway = isvc.predictor.gateway
    if gateway is None:
        return None
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway.name}
    if gateway.namespace is not None:
        parent["namespace"] = gateway.namespace
    if gateway.section_name is not None:
        parent["sectionName"] = gateway.section_name
    if revisions is None or revisions.canary is None:
        backends = [(service_name(isvc), 100)]
    else:
        backends = [(revision_service_name(isvc, r.role), r.percent) for r in revisions.all]
    return {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": child_metadata(isvc, name=service_name(isvc)),
        "spec": {
            "parentRefs": [parent],
            "rules": [
                {
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": name, "port": server.http_port, "weight": weight}
                        for name, weight in backends
                    ]
                }
            ],
        },
    }
