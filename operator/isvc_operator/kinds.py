"""The kinds of object the operator owns, in one table, and how objects are keyed.

Adding a child kind is one row in `CHILD_KINDS`: the watches (an index and an event handler per
kind), the API paths and the condition a rejected write of it feeds all read this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .constants import GROUP, KIND, PLURAL, VERSION

IsvcKey = tuple[str, str]  # (namespace, name) of an InferenceService
ObjectKey = tuple[str, str, str]  # (apiVersion, kind, name) of an object in the isvc's namespace


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core API
    version: str
    kind: str
    plural: str
    condition: str = ""  # the isvc condition a rejected write of a child of this kind feeds

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def key(self, name: str) -> ObjectKey:
        return (self.api_version, self.kind, name)


DEPLOYMENT = Kind("apps", "v1", "Deployment", "deployments", "PredictorReady")
SERVICE = Kind("", "v1", "Service", "services", "ServiceReady")
CONFIG_MAP = Kind("", "v1", "ConfigMap", "configmaps", "PredictorReady")
AUTOSCALER = Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "PredictorReady")
DISRUPTION_BUDGET = Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "PredictorReady")
# Istio's: watched only where its CRD is installed (kopf skips resources discovery does not list).
AUTHORIZATION_POLICY = Kind(
    "security.istio.io", "v1", "AuthorizationPolicy", "authorizationpolicies", "AuthorizationReady"
)
# A canary's exact traffic split (only while a canary runs, and only where Istio is installed).
VIRTUAL_SERVICE = Kind("networking.istio.io", "v1", "VirtualService", "virtualservices", "ServiceReady")
DESTINATION_RULE = Kind("networking.istio.io", "v1", "DestinationRule", "destinationrules", "ServiceReady")
# The Gateway API's route from a Gateway the spec names (only where its CRD is installed). Its
# condition does not feed Ready: the Service serves the model with or without it.
HTTP_ROUTE = Kind("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes", "IngressReady")

CHILD_KINDS: tuple[Kind, ...] = (
    DEPLOYMENT,
    SERVICE,
    CONFIG_MAP,
    AUTOSCALER,
    DISRUPTION_BUDGET,
    AUTHORIZATION_POLICY,
    VIRTUAL_SERVICE,
    DESTINATION_RULE,
    HTTP_ROUTE,
)
INFERENCE_SERVICE = Kind(GROUP, VERSION, KIND, PLURAL)
POD = Kind("", "v1", "Pod", "pods")
# Read (get only) for the storage init container's credentials.
SERVICE_ACCOUNT = Kind("", "v1", "ServiceAccount", "serviceaccounts")
SECRET = Kind("", "v1", "Secret", "secrets")

_BY_API_VERSION_KIND: dict[tuple[str, str], Kind] = {
    (k.api_version, k.kind): k for k in (*CHILD_KINDS, INFERENCE_SERVICE, POD, SERVICE_ACCOUNT, SECRET)
}


def kind_of(api_version: str, kind: str) -> Kind:
    """The table row for an apiVersion and kind; KeyError for a kind the operator does not handle."""
    return _BY_API_VERSION_KIND[(api_version, kind)]


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    return (obj.get("apiVersion", ""), obj.get("kind", ""), (obj.get("metadata") or {}).get("name", ""))


def without_managed_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy as cached: without managedFields, which nothing reads and which dominate its size."""
    return {**obj, "metadata": {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}}
