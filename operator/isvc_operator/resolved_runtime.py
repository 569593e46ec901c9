"""The runtime an InferenceService resolves to: its runtime catalog entry (or custom container) with
the user's overrides applied: image, command, args, ports, probes, security context.

Not the PyTorch model server (servers/pytorch); the container this describes may run that server.

Resolved once per plan so the Deployment and the Service builders agree on ports and names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .constants import MODEL_CONFIG_FILE, MODEL_MOUNT_PATH
from .runtimes import Catalog, CatalogError, StorageInitializer, render_template_tree
from .spec import InferenceService, InvalidSpec

CONTAINER_NAME = "model-server"


@dataclass(frozen=True)
class ResolvedRuntime:
    runtime: str | None
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    http_port: int
    grpc_port: int | None
    readiness_probe: Mapping[str, Any] | None
    liveness_probe: Mapping[str, Any] | None
    startup_probe: Mapping[str, Any] | None
    security_context: Mapping[str, Any]
    env: tuple[Mapping[str, Any], ...]
    resources: Mapping[str, Any] | None
    model_base_path: str
    storage: StorageInitializer = StorageInitializer()
    # HTTP paths (and gRPC service paths) the Istio policy allows by default.
    authorized_paths: tuple[str, ...] = ("/v1/models/*", "/v2", "/v2/models/*", "/v2/health/*")

    @property
    def rest_path_prefix(self) -> str:
        return "/v1/models/"


def _image(image: str, tag: str, gpu_suffix: str, resources: Mapping[str, Any] | None) -> str:
    wants_gpu = any("gpu" in key for key in ((resources or {}).get("limits") or {}))
    return f"{image}:{tag}{gpu_suffix if wants_gpu and not tag.endswith(gpu_suffix) else ''}"


def _custom_container(isvc: InferenceService, catalog: Catalog) -> ResolvedRuntime:
    predictor = isvc.predictor
    if not predictor.image:
        raise InvalidSpec("spec.predictor.containers[0].image is required")
    ports = list(predictor.ports)
    if not ports:
        raise InvalidSpec("spec.predictor.containers[0].ports: declare the port your server listens on")
    http = next((p for p in ports if p.get("name") in ("http", "http1")), ports[0])
    grpc = next((p for p in ports if p.get("name") in ("grpc", "h2c")), None)
    http_port = int(http["containerPort"])
    tcp_probe = {"tcpSocket": {"port": http_port}, "periodSeconds": 2, "failureThreshold": 3}
    return ResolvedRuntime(
        runtime=None,
        image=predictor.image,
        command=predictor.command or (),
        args=predictor.args or (),
        http_port=http_port,
        grpc_port=int(grpc["containerPort"]) if grpc else None,
        readiness_probe=predictor.probes.get("readinessProbe", tcp_probe),
        liveness_probe=predictor.probes.get("livenessProbe", {**tcp_probe, "periodSeconds": 30}),
        startup_probe=predictor.probes.get("startupProbe", {**tcp_probe, "periodSeconds": 1, "failureThreshold": 600}),
        security_context={},
        env=predictor.env,
        resources=predictor.resources,
        model_base_path=MODEL_MOUNT_PATH,
        storage=catalog.storage_initializer,
    )


def resolve_runtime(isvc: InferenceService, catalog: Catalog) -> ResolvedRuntime:
    """Catalog entry with the isvc's overrides applied, templates rendered; InvalidSpec if unknown."""
    predictor = isvc.predictor
    if predictor.framework == "containers":
        return _custom_container(isvc, catalog)
    try:
        runtime = catalog.resolve(predictor.framework, predictor.runtime)
    except CatalogError as exc:
        raise InvalidSpec(f"spec.predictor.{predictor.framework}.runtime: {exc}") from None
    context = {
        "model_name": isvc.name,
        "model_base_path": MODEL_MOUNT_PATH,
        "model_config_file": MODEL_CONFIG_FILE,
        "http_port": runtime.http_port,
        "grpc_port": runtime.grpc_port,
    }
    default_args = runtime.args
    if predictor.uses_model_config:
        if not runtime.model_config_args:
            raise InvalidSpec(f"runtime {runtime.name!r} does not support modelVersionPolicy/versionLabels")
        default_args = runtime.model_config_args
    image = predictor.image or _image(
        runtime.image, predictor.runtime_version or runtime.default_version, runtime.gpu_tag_suffix, predictor.resources
    )
    return ResolvedRuntime(
        runtime=runtime.name,
        image=image,
        command=predictor.command or tuple(render_template_tree(list(runtime.command), context)),
        args=predictor.args or tuple(render_template_tree(list(default_args), context)),
        http_port=runtime.http_port,
        grpc_port=runtime.grpc_port,
        readiness_probe=render_template_tree(runtime.readiness_probe, context),
        liveness_probe=render_template_tree(runtime.liveness_probe, context),
        startup_probe=render_template_tree(runtime.startup_probe, context),
        security_context=runtime.security_context,
        env=predictor.env,
        resources=predictor.resources,
        model_base_path=MODEL_MOUNT_PATH,
        storage=catalog.storage_initializer,
        authorized_paths=tuple(runtime.authorized_paths.get("http", ()) + runtime.authorized_paths.get("grpc", ()))
        or ResolvedRuntime.authorized_paths,
    )
