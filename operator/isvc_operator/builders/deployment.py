"""The Deployment that runs the model server with the model mounted read-only (and, for a model in
an object store or an http archive, the storage init container that fetches it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..constants import LABEL_REVISION, LABEL_ROLE, MODEL_MOUNT_PATH, MODEL_VOLUME
from ..kinds import DEPLOYMENT
from ..resolved_runtime import CONTAINER_NAME, ResolvedRuntime
from ..revisions import STABLE, Revision, revision_hash
from ..spec import InferenceService
from .metadata import child_labels, child_metadata, predictor_name, selector_labels
from .model_config import MODEL_CONFIG_DIR, MODEL_CONFIG_VOLUME, model_config_name
from .storage_credentials import NO_CREDENTIALS, StorageCredentials

# The restricted Pod Security profile, as defaults a runtime may extend but not weaken.
RESTRICTED_CONTAINER_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
    "readOnlyRootFilesystem": True,
}
# On a rollout or scale-down, Kubernetes removes a pod from the Service's endpoints and sends it
# SIGTERM at the same moment; kube-proxy (and any load balancer) keeps sending it new connections
# until it has seen the change. The model server keeps serving this long before it gets SIGTERM
# (measured on the local real node without it: 108 of 7,476 requests refused during a rollout), then
# has the rest of the grace period to finish what is in flight.
DRAIN_SECONDS = 10
TERMINATION_GRACE_SECONDS = DRAIN_SECONDS + 30
SCRATCH_VOLUME = "scratch"  # an emptyDir at /tmp: the only writable place besides the model volume
RESTRICTED_POD_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _ports(server: ResolvedRuntime) -> list[dict[str, Any]]:
    ports = [{"name": "http", "containerPort": server.http_port, "protocol": "TCP"}]
    if server.grpc_port:
        ports.append({"name": "grpc", "containerPort": server.grpc_port, "protocol": "TCP"})
    return ports


def _model_volume(isvc: InferenceService) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) for the model: a claim mounted read-only, or nothing for custom containers."""
    storage = isvc.predictor.storage
    if storage is None:
        return [], []
    if storage.scheme == "pvc":
        mount: dict[str, Any] = {"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT_PATH, "readOnly": True}
        if storage.sub_path:
            mount["subPath"] = storage.sub_path
        volume = {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": storage.claim, "readOnly": True}}
        return [volume], [mount]
    # Object stores and http(s) archives: an emptyDir the storage init container fills
    # (`python -m isvc_operator.storage`, see its docstring); with a cache, the claim too, read-only
    # here at the path the init container's links in the model directory point into.
    volumes: list[dict[str, Any]] = [{"name": MODEL_VOLUME, "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT_PATH, "readOnly": True}]
    cache = isvc.predictor.cache
    if cache is not None:
        volumes.append({"name": MODEL_CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache.claim_name}})
        mounts.append({"name": MODEL_CACHE_VOLUME, "mountPath": MODEL_CACHE_MOUNT_PATH, "readOnly": True})
    return volumes, mounts


STORAGE_INITIALIZER = "storage-initializer"
MODEL_CACHE_VOLUME = "model-cache"
MODEL_CACHE_MOUNT_PATH = "/mnt/model-cache"
# The layout check the storage program runs for each predictor kind (none for custom containers).
LAYOUT_OF_FRAMEWORK = {"tensorflow": "tensorflow", "pytorch": "pytorch"}


def build_storage_initializer(
    isvc: InferenceService, server: ResolvedRuntime, credentials: StorageCredentials = NO_CREDENTIALS
) -> dict[str, Any] | None:
    """The init container that fetches the model (object store or http(s) archive) into the model
    volume, or None for a claim. The store's credentials reach this container only."""
    storage = isvc.predictor.storage
    if storage is None or not storage.fetched:
        return None
    args = ["fetch", storage.uri, MODEL_MOUNT_PATH, "--max-bytes", server.storage.max_bytes]
    layout = LAYOUT_OF_FRAMEWORK.get(isvc.predictor.framework)
    if layout:
        args += ["--layout", layout]
    mounts: list[dict[str, Any]] = [{"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT_PATH}]
    if isvc.predictor.cache is not None:
        args += ["--cache-dir", MODEL_CACHE_MOUNT_PATH]
        mounts.append({"name": MODEL_CACHE_VOLUME, "mountPath": MODEL_CACHE_MOUNT_PATH})
    mounts += [dict(m) for m in credentials.mounts]
    return {
        "name": STORAGE_INITIALIZER,
        "image": server.storage.image,
        "command": ["python", "-m", "isvc_operator.storage"],
        "args": args,
        "env": [{"name": "TMPDIR", "value": MODEL_MOUNT_PATH}, *(dict(e) for e in credentials.env)],
        "volumeMounts": mounts,
        "securityContext": {**RESTRICTED_CONTAINER_CONTEXT, "runAsUser": 65532},
        # The program writes its one-line reason here; Kubernetes shows it in the pod's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def build_container(isvc: InferenceService, server: ResolvedRuntime) -> dict[str, Any]:
    volumes, mounts = _model_volume(isvc)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": server.image,
        "ports": _ports(server),
        # Ours, then the runtime's (e.g. runAsUser), then what the isvc explicitly asks for.
        "securityContext": {
            **RESTRICTED_CONTAINER_CONTEXT,
            **server.security_context,
            **(isvc.predictor.security_context or {}),
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
    }
    optional = {
        "command": list(server.command),
        "args": list(server.args),
        "env": [dict(e) for e in server.env],
        "resources": dict(server.resources or {}),
        "readinessProbe": dict(server.readiness_probe or {}),
        "livenessProbe": dict(server.liveness_probe or {}),
        "startupProbe": dict(server.startup_probe or {}),
    }
    container.update({key: value for key, value in optional.items() if value})
    container["volumeMounts"] = [*mounts, {"name": SCRATCH_VOLUME, "mountPath": "/tmp"}]
    if isvc.predictor.uses_model_config:
        container["volumeMounts"].append({"name": MODEL_CONFIG_VOLUME, "mountPath": MODEL_CONFIG_DIR, "readOnly": True})
    return container


def build_strategy(isvc: InferenceService) -> dict[str, Any]:
    """The Deployment's strategy; by default (maxUnavailable 0) a rollout never serves with fewer
    ready replicas than asked for."""
    strategy = isvc.predictor.deployment_strategy
    if strategy.type == "Recreate":
        return {"type": "Recreate"}
    return {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": strategy.max_surge, "maxUnavailable": strategy.max_unavailable},
    }


def build_pod_template(
    isvc: InferenceService, server: ResolvedRuntime, credentials: StorageCredentials = NO_CREDENTIALS
) -> dict[str, Any]:
    """The pod template the spec asks for, without its revision label (the revision is its hash)."""
    volumes, _ = _model_volume(isvc)
    initializer = build_storage_initializer(isvc, server, credentials)
    volumes = [*volumes, {"name": SCRATCH_VOLUME, "emptyDir": {}}]
    if initializer:
        volumes += [dict(v) for v in credentials.volumes]
    if isvc.predictor.uses_model_config:
        volumes.append({"name": MODEL_CONFIG_VOLUME, "configMap": {"name": model_config_name(isvc)}})
    predictor = isvc.predictor
    pod_spec: dict[str, Any] = {
        "containers": [build_container(isvc, server)],
        "securityContext": dict(RESTRICTED_POD_CONTEXT),
        # Model servers never call the Kubernetes API.
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
    }
    pod_options = {
        "serviceAccountName": predictor.service_account_name,
        "imagePullSecrets": [{"name": name} for name in predictor.image_pull_secrets],
        "nodeSelector": dict(predictor.node_selector or {}),
        "tolerations": [dict(t) for t in predictor.tolerations],
        "affinity": dict(predictor.affinity or {}),
    }
    pod_spec.update({key: value for key, value in pod_options.items() if value})
    if volumes:
        pod_spec["volumes"] = volumes
    if initializer:
        pod_spec["initContainers"] = [initializer]
    template_metadata: dict[str, Any] = {"labels": child_labels(isvc)}
    if isvc.annotations:
        template_metadata["annotations"] = dict(isvc.annotations)
    return {"metadata": template_metadata, "spec": pod_spec}


def with_revision_label(template: Mapping[str, Any], revision: str) -> dict[str, Any]:
    metadata = dict(template.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), LABEL_REVISION: revision}
    return {**template, "metadata": metadata}


def build_deployment(
    isvc: InferenceService,
    server: ResolvedRuntime,
    credentials: StorageCredentials = NO_CREDENTIALS,
    revision: Revision | None = None,
) -> dict[str, Any]:
    """The Deployment of one revision (by default: the isvc's only one, built from the spec).

    Every revision's Deployment selects the isvc's pods by the labels they all share (a selector is
    immutable, and the stable Deployment is rolled in place when no canary is asked for); each
    Deployment owns its ReplicaSets, so the two never take each other's pods. `replicas` is left
    out when an HPA owns it.
    """
    template = build_pod_template(isvc, server, credentials)
    if revision is None:
        replicas = None if isvc.autoscaled else (1 if isvc.predictor.replicas is None else isvc.predictor.replicas)
        hash_ = revision_hash(template)
        name, role = predictor_name(isvc), STABLE
    else:
        replicas, hash_, name, role = revision.replicas, revision.revision, revision.deployment, revision.role
        if revision.template is not None:
            template = dict(revision.template)
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(isvc)},
        "strategy": build_strategy(isvc),
        "template": with_revision_label(template, hash_),
    }
    if replicas is not None:
        spec["replicas"] = replicas
    metadata = child_metadata(isvc, name=name)
    metadata["labels"] = {**metadata["labels"], LABEL_REVISION: hash_, LABEL_ROLE: role}
    return {"apiVersion": DEPLOYMENT.api_version, "kind": DEPLOYMENT.kind, "metadata": metadata, "spec": spec}
