"""Whether the cluster offers Istio's AuthorizationPolicy: discovery, and its CRD's events."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .kinds import AUTHORIZATION_POLICY
from .kube_api import KubeApi

ISTIO_CRD = f"{AUTHORIZATION_POLICY.plural}.{AUTHORIZATION_POLICY.group}"


class IstioPresence:
    """What the operator believes now; one instance per kopf run, shared by reference through the
    memo (kopf gives each object's handlers a shallow copy of it)."""

    def __init__(self, installed: bool) -> None:
        self.installed = installed


def istio_served(api: KubeApi) -> bool:
    """Discovery lists the AuthorizationPolicy resource now."""
    return api.serves(AUTHORIZATION_POLICY.api_version, AUTHORIZATION_POLICY.plural)


def crd_established(event_type: str | None, crd: Mapping[str, Any]) -> bool:
    """The CRD, as a watch event shows it, is Established and serves the version we write."""
    if event_type == "DELETED":
        return False
    conditions = (crd.get("status") or {}).get("conditions") or []
    versions = (crd.get("spec") or {}).get("versions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions) and any(
        v.get("name") == AUTHORIZATION_POLICY.version and v.get("served") for v in versions
    )


def wait_for_discovery(api: KubeApi, *, served: bool, timeout: float = 30) -> None:
    """Between kopf runs: until discovery lists Istio's resource (or no longer does); it can lag
    behind the CRD."""
    deadline = time.monotonic() + timeout
    while istio_served(api) != served and time.monotonic() < deadline:
        time.sleep(0.2)
