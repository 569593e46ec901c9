"""The Istio DestinationRule that names a subset per revision while a canary runs (the
VirtualService's weights point at these subsets)."""

from __future__ import annotations

from typing import Any

from ..constants import LABEL_REVISION
from ..kinds import DESTINATION_RULE
from ..revisions import Revisions
from ..spec import InferenceService
from .metadata import child_metadata, service_name


def service_host(isvc: InferenceService) -> str:
    return f"{service_name(isvc)}.{isvc.namespace}.svc.cluster.local"


def build_destination_rule(isvc: InferenceService, revisions: Revisions) -> dict[str, Any] | None:
    """None without a canary: the Service alone reaches the one revision."""
    if revisions.canary is None:
        return None
    subsets = [{"name": r.role, "labels": {LABEL_REVISION: r.revision}} for r in revisions.all]
    return {
        "apiVersion": DESTINATION_RULE.api_version,
        "kind": DESTINATION_RULE.kind,
        "metadata": child_metadata(isvc, name=service_name(isvc)),
        "spec": {"host": service_host(isvc), "subsets": subsets},
    }
