"""The Istio VirtualService that splits the model's traffic between the stable and the canary
revision by exact weights, while a canary runs (without Istio, the split follows ready replicas)."""

from __future__ import annotations

from typing import Any

from ..kinds import VIRTUAL_SERVICE
from ..resolved_runtime import ResolvedRuntime
from ..revisions import Revisions
from ..spec import InferenceService
from .destination_rule import service_host
from .metadata import child_metadata, service_name


def build_virtual_service(
    isvc: InferenceService, server: ResolvedRuntime, revisions: Revisions
) -> dict[str, Any] | None:
    """One route per port of the Service (REST, and gRPC when the runtime has it), each with a
    weight per revision: the canary's effective percent (0 until it is Ready), the stable one the rest."""
    if revisions.canary is None:
        return None
    host = service_host(isvc)
    ports = [("http", server.http_port)] + ([("grpc", server.grpc_port)] if server.grpc_port else [])
    routes = [
        {
            "name": name,
            "match": [{"port": port}],
            "route": [
                {"destination": {"host": host, "subset": r.role, "port": {"number": port}}, "weight": r.percent}
                for r in revisions.all
            ],
        }
        for name, port in ports
    ]
    return {
        "apiVersion": VIRTUAL_SERVICE.api_version,
        "kind": VIRTUAL_SERVICE.kind,
        "metadata": child_metadata(isvc, name=service_name(isvc)),
        "spec": {"hosts": [host], "http": routes},
    }
