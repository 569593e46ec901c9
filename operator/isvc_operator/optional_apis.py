"""The APIs a cluster may or may not offer and the operator writes to where it does (Istio's, the
Gateway API's): one row each, whether discovery serves it, and its CRD's events."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .kinds import AUTHORIZATION_POLICY, HTTP_ROUTE, Kind
from .kube_api import KubeApi


@dataclass(frozen=True)
class OptionalApi:
    name: str  # as logs name it: "Istio not installed"
    marker: Kind  # the resource whose CRD says the API is installed

    @property
    def crd(self) -> str:
        return f"{self.marker.plural}.{self.marker.group}"


# Istio's VirtualService and DestinationRule come with its AuthorizationPolicy: one CRD marks all three.
ISTIO = OptionalApi("Istio", AUTHORIZATION_POLICY)
GATEWAY_API = OptionalApi("Gateway API", HTTP_ROUTE)
OPTIONAL_APIS: tuple[OptionalApi, ...] = (ISTIO, GATEWAY_API)
_BY_CRD = {api.crd: api for api in OPTIONAL_APIS}


def optional_api(crd_name: str) -> OptionalApi | None:
    """The row whose CRD this is; None for any other CRD."""
    return _BY_CRD.get(crd_name)


class ApiPresence:
    """What the operator believes now, per optional API; one instance per kopf run, shared by
    reference through the memo (kopf gives each object's handlers a shallow copy of it)."""

    def __init__(self, installed: Mapping[OptionalApi, bool]) -> None:
        self.installed = {api: bool(installed.get(api)) for api in OPTIONAL_APIS}

    def __getitem__(self, api: OptionalApi) -> bool:
        return self.installed[api]

    def summary(self) -> str:
        """For the start line: 'Istio installed; Gateway API not installed'."""
        return "; ".join(f"{api.name} {'installed' if on else 'not installed'}" for api, on in self.installed.items())


def served(api: KubeApi, optional: OptionalApi) -> bool:
    """Discovery lists the API's marker resource now."""
    return api.serves(optional.marker.api_version, optional.marker.plural)


def crd_established(optional: OptionalApi, event_type: str | None, crd: Mapping[str, Any]) -> bool:
    """The CRD, as a watch event shows it, is Established and serves the version we write."""
    if event_type == "DELETED":
        return False
    conditions = (crd.get("status") or {}).get("conditions") or []
    versions = (crd.get("spec") or {}).get("versions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions) and any(
        v.get("name") == optional.marker.version and v.get("served") for v in versions
    )


def wait_for_discovery(api: KubeApi, optional: OptionalApi, *, served_now: bool, timeout: float = 30) -> None:
    """Between kopf runs: until discovery lists the API's resource (or no longer does); it can lag
    behind the CRD."""
    deadline = time.monotonic() + timeout
    while served(api, optional) != served_now and time.monotonic() < deadline:
        time.sleep(0.2)
