"""The Istio AuthorizationPolicy that lets requests reach the model (Kubeflow's dogs-vs-cats example applies one by hand).

KServe users meet "RBAC: access denied" because nothing creates one; ours is scoped to the model's
pods (selector) and to its API paths, ALLOW only.
"""

from __future__ import annotations

from typing import Any

from ..kinds import AUTHORIZATION_POLICY
from ..resolved_runtime import ResolvedRuntime
from ..spec import InferenceService
from .metadata import child_metadata, selector_labels

DEFAULT_METHODS = ("GET", "POST")


def authorization_wanted(isvc: InferenceService, istio_installed: bool) -> bool:
    """Enabled always wants one (Ready=False if Istio is missing); Auto only where Istio is installed."""
    mode = isvc.authorization.mode
    return mode == "Enabled" or (mode == "Auto" and istio_installed)


def build_authorization_policy(isvc: InferenceService, server: ResolvedRuntime) -> dict[str, Any]:
    auth = isvc.authorization
    rule: dict[str, Any] = {
        "to": [
            {
                "operation": {
                    "methods": list(dict.fromkeys(DEFAULT_METHODS + auth.methods)),
                    "paths": list(dict.fromkeys(server.authorized_paths + auth.paths)),
                }
            }
        ],
    }
    source: dict[str, Any] = {}
    if auth.source_namespaces:
        source["namespaces"] = list(auth.source_namespaces)
    if auth.principals:
        source["principals"] = list(auth.principals)
    if source:
        rule["from"] = [{"source": source}]
    return {
        "apiVersion": AUTHORIZATION_POLICY.api_version,
        "kind": AUTHORIZATION_POLICY.kind,
        "metadata": child_metadata(isvc, name=isvc.name),
        "spec": {"selector": {"matchLabels": selector_labels(isvc)}, "action": "ALLOW", "rules": [rule]},
    }
