"""The Service that exposes the model's REST and gRPC ports (NodePort by default, as Kubeflow's TF Serving examples expose it)."""

from __future__ import annotations

from typing import Any

from ..kinds import SERVICE
from ..resolved_runtime import ResolvedRuntime
from ..spec import InferenceService
from .metadata import child_metadata, selector_labels, service_name


def _port(name: str, port: int, node_port: int | None, service_type: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
    if node_port is not None and service_type != "ClusterIP":
        entry["nodePort"] = node_port
    return entry


def build_service(isvc: InferenceService, server: ResolvedRuntime) -> dict[str, Any]:
    # Port names "http"/"grpc" also tell Istio which protocol it carries.
    ports = [_port("http", server.http_port, isvc.service.http_node_port, isvc.service.type)]
    if server.grpc_port:
        ports.append(_port("grpc", server.grpc_port, isvc.service.grpc_node_port, isvc.service.type))
    return {
        "apiVersion": SERVICE.api_version,
        "kind": SERVICE.kind,
        "metadata": child_metadata(isvc, name=service_name(isvc)),
        "spec": {"type": isvc.service.type, "selector": selector_labels(isvc), "ports": ports},
    }


def model_url(isvc: InferenceService, server: ResolvedRuntime) -> str:
    """The cluster-local REST URL of the model, as TF Serving clients address it."""
    return (
        f"http://{service_name(isvc)}.{isvc.namespace}.svc.cluster.local:{server.http_port}"
        f"{server.rest_path_prefix}{isvc.name}"
    )
