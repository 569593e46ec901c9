"""The InferenceService spec as typed, frozen objects: everything after this trusts its input.

The CRD schema and its CEL rules reject what is plainly wrong at admission; `parse_inferenceservice`
catches what only makes sense with the whole object in view and raises `InvalidSpec`, which the
reconciler turns into `Ready=False, reason=InvalidSpec` without touching any child.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from .constants import BOOKKEEPING_PREFIXES, MAX_NAME_LENGTH

FRAMEWORKS = ("tensorflow", "pytorch", "containers")
PROBES = ("readinessProbe", "livenessProbe", "startupProbe")
SERVICE_TYPES = ("NodePort", "ClusterIP", "LoadBalancer")
# One row per kind of model store: how a storageUri names it, and how a person should write it.
STORAGE_FORMS = {
    "pvc": "pvc://CLAIM[/PATH]",
    "s3": "s3://BUCKET[/PREFIX]",
    "gs": "gs://BUCKET[/PREFIX]",
    "azure": "https://ACCOUNT.blob.core.windows.net/CONTAINER[/PREFIX]",
    "http": "http(s)://... (.tar.gz, .tgz, .tar or .zip archive)",
}
STORAGE_SCHEMES = ("pvc", "s3", "gs", "http", "https")
SUPPORTED_STORAGE = ", ".join(STORAGE_FORMS.values())
# Stores the storage init container fetches from (everything but a claim).
FETCHED_STORES = ("s3", "gs", "azure", "http")
# Stores whose credentials come from the predictor's ServiceAccount and its Secrets.
OBJECT_STORES = ("s3", "gs", "azure")
AZURE_BLOB_HOST_SUFFIX = ".blob.core.windows.net"
AUTHORIZATION_MODES = ("Auto", "Enabled", "Disabled")
STRATEGY_TYPES = ("RollingUpdate", "Recreate")

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# A namespace's name (RFC 1123 label): unlike a Service's, it may start with a digit.
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class InvalidSpec(ValueError):
    """A spec that passed the API server's schema but cannot be served; the message says why."""


@dataclass(frozen=True)
class Storage:
    """Where the model comes from: a claim mounted read-only, or a store the init container fetches from.

    `scheme` is the URI's own (pvc, s3, gs, http, https); `store` the kind of store behind it (pvc, s3,
    gs, azure, http): Azure Blob URLs are https URLs on a `*.blob.core.windows.net` host, as in KServe.
    """

    uri: str
    scheme: str
    claim: str | None = None
    sub_path: str | None = None
    store: str = ""
    bucket: str | None = None  # S3/GCS bucket or Azure container

    @property
    def fetched(self) -> bool:
        return self.store in FETCHED_STORES


@dataclass(frozen=True)
class ModelCache:
    """A ReadWriteMany claim shared by the isvc's pods: a model is downloaded into it once."""

    claim_name: str


@dataclass(frozen=True)
class VersionPolicy:
    """Which model versions TF Serving loads: latest N, a specific list, or all."""

    kind: str  # "latest" | "specific" | "all"
    num_versions: int = 1
    versions: tuple[int, ...] = ()


IntOrPercent = int | str  # a number of pods, or a percentage of them ("25%"), as Kubernetes' IntOrString


@dataclass(frozen=True)
class DeploymentStrategy:
    """How the Deployment replaces pods on a spec change. The default never serves with fewer
    ready replicas than asked for: a new pod must be ready before an old one goes."""

    type: str = "RollingUpdate"
    max_surge: IntOrPercent | None = "25%"
    max_unavailable: IntOrPercent | None = 0


@dataclass(frozen=True)
class DisruptionBudget:
    """What the user asked a PodDisruptionBudget to keep (exactly one of the two is set)."""

    min_available: IntOrPercent | None = None
    max_unavailable: IntOrPercent | None = None


@dataclass(frozen=True)
class GatewayRef:
    """The Gateway API Gateway (and listener) an HTTPRoute for the model attaches to."""

    name: str
    namespace: str | None = None  # None: the isvc's namespace
    section_name: str | None = None  # None: every listener that allows the route

    def describe(self, isvc_namespace: str) -> str:
        """`NAMESPACE/NAME` (and the listener), as status messages name it."""
        listener = f" (listener {self.section_name})" if self.section_name is not None else ""
        return f"{self.namespace or isvc_namespace}/{self.name}{listener}"


@dataclass(frozen=True)
class Predictor:
    framework: str
    storage: Storage | None
    cache: ModelCache | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    image: str | None = None
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    env: tuple[Mapping[str, Any], ...] = ()
    resources: Mapping[str, Any] | None = None
    ports: tuple[Mapping[str, Any], ...] = ()
    # A custom container's own probes (Kubernetes Probe objects), when it brings them.
    probes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Only what the user wrote: loosening the restricted defaults must be explicit.
    security_context: Mapping[str, Any] | None = None
    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_target: int | None = None
    version_policy: VersionPolicy | None = None
    version_labels: tuple[tuple[str, int], ...] = ()
    # Pod options passed through to the Deployment's pod template.
    node_selector: Mapping[str, str] | None = None
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] | None = None
    service_account_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    # Rollouts and voluntary disruptions (node drains): see _rollout_and_disruption.
    deployment_strategy: DeploymentStrategy = field(default_factory=DeploymentStrategy)
    disruption_budget: DisruptionBudget | None = None
    # The share of traffic a changed predictor gets while the last Ready revision keeps the rest
    # (None: a change replaces the running revision in place).
    canary_traffic_percent: int | None = None
    # Where an HTTPRoute carries the model's REST traffic (and splits it while a canary runs).
    gateway: GatewayRef | None = None

    @property
    def uses_model_config(self) -> bool:
        return self.version_policy is not None or bool(self.version_labels)


@dataclass(frozen=True)
class ServiceExposure:
    type: str = "NodePort"
    http_node_port: int | None = None
    grpc_node_port: int | None = None


@dataclass(frozen=True)
class Authorization:
    """Who may call the model through Istio: by default anyone, on the model's own paths only."""

    mode: str = "Auto"
    source_namespaces: tuple[str, ...] = ()
    principals: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class InferenceService:
    name: str
    namespace: str
    uid: str
    generation: int
    predictor: Predictor
    service: ServiceExposure = field(default_factory=ServiceExposure)
    authorization: Authorization = field(default_factory=Authorization)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def autoscaled(self) -> bool:
        return self.predictor.max_replicas is not None


# Bucket and container names as the stores define them (S3, GCS, Azure Blob), and Azure accounts.
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_AZURE_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_AZURE_CONTAINER = re.compile(r"^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])?$")


def parse_storage_uri(uri: str) -> Storage:
    """One of `STORAGE_FORMS`; anything else names every form we accept."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in STORAGE_SCHEMES:
        raise InvalidSpec(
            f"storageUri {uri!r}: unsupported scheme {scheme + '://' if sep else '(none)'}; supported: {SUPPORTED_STORAGE}"
        )
    if scheme == "pvc":
        claim, _, sub_path = rest.partition("/")
        if not claim or not _DNS_SUBDOMAIN.fullmatch(claim) or len(claim) > 253:
            raise InvalidSpec(
                f"storageUri {uri!r}: {claim!r} is not a valid PersistentVolumeClaim name "
                "(lower-case letters, digits, '-' and '.')"
            )
        sub_path = sub_path.strip("/")
        parts = [p for p in sub_path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise InvalidSpec(f"storageUri {uri!r}: the path inside the claim may not contain '.' or '..'")
        return Storage(uri=uri, scheme=scheme, claim=claim, sub_path="/".join(parts) or None, store="pvc")
    if scheme in ("s3", "gs"):
        bucket = rest.partition("/")[0]
        pattern, rule = (
            (_S3_BUCKET, "3-63 lower-case letters, digits, '.' and '-'")
            if scheme == "s3"
            else (_GCS_BUCKET, "3-222 lower-case letters, digits, '.', '_' and '-'")
        )
        if not pattern.fullmatch(bucket):
            raise InvalidSpec(
                f"storageUri {uri!r}: {bucket!r} is not a bucket name ({rule}); expected {STORAGE_FORMS[scheme]}"
            )
        return Storage(uri=uri, scheme=scheme, store=scheme, bucket=bucket)
    host, _, path = rest.partition("/")
    if not host:
        raise InvalidSpec(f"storageUri {uri!r}: no host after {scheme}://")
    if scheme == "https" and host.lower().endswith(AZURE_BLOB_HOST_SUFFIX):
        account = host[: -len(AZURE_BLOB_HOST_SUFFIX)]
        container = path.partition("/")[0]
        if not _AZURE_ACCOUNT.fullmatch(account) or not _AZURE_CONTAINER.fullmatch(container):
            raise InvalidSpec(
                f"storageUri {uri!r}: expected {STORAGE_FORMS['azure']} (account: 3-24 lower-case letters and "
                "digits; container: 3-63 lower-case letters, digits and '-')"
            )
        return Storage(uri=uri, scheme=scheme, store="azure", bucket=container)
    return Storage(uri=uri, scheme=scheme, store="http")


def _model_cache(predictor: Mapping[str, Any], storage: Storage | None) -> ModelCache | None:
    cache = (predictor.get("storage") or {}).get("cache")
    if cache is None:
        return None
    claim = cache.get("claimName") or ""
    if not _DNS_SUBDOMAIN.fullmatch(claim) or len(claim) > 253:
        raise InvalidSpec(
            f"spec.predictor.storage.cache.claimName: {claim!r} is not a valid PersistentVolumeClaim name "
            "(lower-case letters, digits, '-' and '.')"
        )
    if storage is None or not storage.fetched:
        found = storage.uri if storage else "no storageUri"
        raise InvalidSpec(
            f"spec.predictor.storage.cache caches what the storage init container downloads, but the model "
            f"comes from {found}: use it with s3://, gs://, Azure Blob or http(s) archives"
        )
    return ModelCache(claim_name=claim)


def storage_account(body: Mapping[str, Any]) -> str | None:
    """The ServiceAccount whose Secrets hold the isvc's object-store credentials, or None when none is
    read: no object store (a claim, an http archive) or no `serviceAccountName` (anonymous access, or
    workload identity through the node or a webhook). A spec this cannot read is left to `parse_inferenceservice`."""
    predictor = (body.get("spec") or {}).get("predictor") or {}
    account = predictor.get("serviceAccountName")
    if not isinstance(account, str) or not account:
        return None
    bodies = [predictor.get(k) for k in ("tensorflow", "pytorch")] + list(predictor.get("containers") or [])[:1]
    uris: list[str] = [
        b["storageUri"] for b in bodies if isinstance(b, Mapping) and isinstance(b.get("storageUri"), str)
    ]
    if len(uris) != 1:
        return None
    try:
        store = parse_storage_uri(uris[0]).store
    except InvalidSpec:
        return None
    return account if store in OBJECT_STORES else None


def _int_or_none(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{what}: expected an integer, found {value!r}")
    return value


def _predictor(spec: Mapping[str, Any]) -> Predictor:
    predictor = spec.get("predictor") or {}
    kinds = [k for k in FRAMEWORKS if predictor.get(k) is not None]
    if len(kinds) != 1:
        found = ", ".join(kinds) or "none"
        raise InvalidSpec(f"spec.predictor: set exactly one of tensorflow, pytorch, containers (found: {found})")
    framework = kinds[0]
    if framework == "containers":
        containers = predictor["containers"]
        if len(containers) != 1:
            raise InvalidSpec(f"spec.predictor.containers: exactly one container is supported, found {len(containers)}")
        body = containers[0]
    else:
        body = predictor[framework]
    uri = body.get("storageUri")
    storage = parse_storage_uri(uri) if uri else None
    if storage is None and framework != "containers":
        raise InvalidSpec(f"spec.predictor.{framework}.storageUri is required")

    replicas = _int_or_none(predictor.get("replicas"), "spec.predictor.replicas")
    min_replicas = _int_or_none(predictor.get("minReplicas"), "spec.predictor.minReplicas")
    max_replicas = _int_or_none(predictor.get("maxReplicas"), "spec.predictor.maxReplicas")
    scale_target = _int_or_none(predictor.get("scaleTarget"), "spec.predictor.scaleTarget")
    if replicas is not None and (min_replicas is not None or max_replicas is not None):
        raise InvalidSpec("spec.predictor: set either replicas or minReplicas/maxReplicas, not both")
    if min_replicas is not None and max_replicas is None:
        raise InvalidSpec("spec.predictor.minReplicas needs maxReplicas (autoscaling)")
    if max_replicas is not None and min_replicas is not None and min_replicas > max_replicas:
        raise InvalidSpec(f"spec.predictor: minReplicas {min_replicas} is greater than maxReplicas {max_replicas}")

    where = f"spec.predictor.{framework}{'[0]' if framework == 'containers' else ''}"
    runtime_version = body.get("runtimeVersion")
    if runtime_version is not None and not _IMAGE_TAG.fullmatch(str(runtime_version)):
        raise InvalidSpec(
            f"{where}.runtimeVersion: {runtime_version!r} is not an image tag "
            "(letters, digits, '_', '.', '-', at most 128, optionally @sha256:DIGEST)"
        )
    _check_quantities(body.get("resources"), f"{where}.resources")
    ports = tuple(body.get("ports") or ())
    _unique_ports(ports, f"{where}.ports")

    def _tuple(key: str) -> tuple[Any, ...] | None:
        value = body.get(key)
        return tuple(value) if value is not None else None

    version_policy, version_labels = _versions(framework, body)
    deployment_strategy, disruption_budget = _rollout_and_disruption(predictor)
    canary = _int_or_none(predictor.get("canaryTrafficPercent"), "spec.predictor.canaryTrafficPercent")
    if canary is not None and not 0 <= canary <= 100:
        raise InvalidSpec(f"spec.predictor.canaryTrafficPercent: {canary} is not a percentage from 0 to 100")
    return Predictor(
        canary_traffic_percent=canary,
        gateway=_gateway(predictor.get("gateway")),
        deployment_strategy=deployment_strategy,
        disruption_budget=disruption_budget,
        framework=framework,
        cache=_model_cache(predictor, storage),
        version_policy=version_policy,
        version_labels=version_labels,
        node_selector=predictor.get("nodeSelector"),
        tolerations=tuple(predictor.get("tolerations") or ()),
        affinity=predictor.get("affinity"),
        service_account_name=predictor.get("serviceAccountName"),
        image_pull_secrets=tuple(
            s["name"] if isinstance(s, Mapping) else s for s in predictor.get("imagePullSecrets") or ()
        ),
        storage=storage,
        runtime=body.get("runtime"),
        runtime_version=runtime_version,
        image=body.get("image"),
        command=_tuple("command"),
        args=_tuple("args"),
        env=tuple(body.get("env") or ()),
        resources=body.get("resources"),
        ports=ports,
        probes={key: body[key] for key in PROBES if body.get(key) is not None},
        security_context=body.get("securityContext"),
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        scale_target=scale_target,
    )


# An image tag as registries define it, optionally pinned to a digest.
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(@sha256:[a-f0-9]{64})?$")
# The API server's own pattern: a string it cannot convert fails the whole apply with a 500.
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")


def _gateway(value: Any) -> GatewayRef | None:
    if value is None:
        return None
    where = "spec.predictor.gateway"
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{where}: expected {{name, namespace?, sectionName?}}, got {value!r}")
    name, namespace, section = value.get("name"), value.get("namespace"), value.get("sectionName")
    if not isinstance(name, str) or not _DNS_SUBDOMAIN.fullmatch(name) or len(name) > 253:
        raise InvalidSpec(f"{where}.name: {name!r} is not a Gateway name (a DNS subdomain)")
    if namespace is not None and (
        not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace) or len(namespace) > 63
    ):
        raise InvalidSpec(f"{where}.namespace: {namespace!r} is not a namespace name (a DNS label)")
    if section is not None and (
        not isinstance(section, str) or not _DNS_SUBDOMAIN.fullmatch(section) or len(section) > 253
    ):
        raise InvalidSpec(f"{where}.sectionName: {section!r} is not a listener name (a DNS subdomain)")
    return GatewayRef(name=name, namespace=namespace, section_name=section)


def _is_quantity(value: Any) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    if not (isinstance(value, str) and _QUANTITY.fullmatch(value)):
        return False
    try:
        parse_quantity(value)  # the pattern alone lets e.g. "1.5.5" through
    except (ValueError, ArithmeticError):
        return False
    return True


def _check_quantities(resources: Any, where: str) -> None:
    if not isinstance(resources, Mapping):
        return
    for section in ("limits", "requests"):
        for resource, value in (resources.get(section) or {}).items():
            if not _is_quantity(value):
                raise InvalidSpec(
                    f"{where}.{section}.{resource}: {value!r} is not a quantity (e.g. 500m, 2, 128Mi, 1Gi)"
                )


def _unique_ports(ports: tuple[Any, ...], where: str) -> None:
    """Two ports with one name (or number) would leave one of them silently unserved."""
    for field_name in ("name", "containerPort"):
        seen: set[Any] = set()
        for port in ports:
            value = port.get(field_name) if isinstance(port, Mapping) else None
            if value is None:
                continue
            if value in seen:
                raise InvalidSpec(f"{where}: two ports with {field_name} {value!r}; each port needs its own")
            seen.add(value)


_VERSION_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _versions(framework: str, body: Mapping[str, Any]) -> tuple[VersionPolicy | None, tuple[tuple[str, int], ...]]:
    policy_spec = body.get("modelVersionPolicy")
    labels_spec = body.get("versionLabels") or {}
    if (policy_spec or labels_spec) and framework != "tensorflow":
        raise InvalidSpec(
            f"spec.predictor.{framework}: modelVersionPolicy and versionLabels are TensorFlow Serving features"
        )
    policy = None
    if policy_spec:
        kinds = [k for k in ("latest", "specific", "all") if policy_spec.get(k) is not None]
        if len(kinds) != 1:
            raise InvalidSpec("spec.predictor.tensorflow.modelVersionPolicy: set exactly one of latest, specific, all")
        kind = kinds[0]
        if kind == "latest":
            policy = VersionPolicy(kind, num_versions=int(policy_spec["latest"].get("numVersions", 1)))
        elif kind == "specific":
            versions = tuple(sorted(set(policy_spec["specific"].get("versions") or ())))
            if not versions:
                raise InvalidSpec(
                    "spec.predictor.tensorflow.modelVersionPolicy.specific.versions: list at least one version"
                )
            policy = VersionPolicy(kind, versions=versions)
        else:
            policy = VersionPolicy(kind)
    labels = tuple(sorted((str(k), int(v)) for k, v in labels_spec.items()))
    unsafe = [k for k, _ in labels if not _VERSION_LABEL.fullmatch(k)]
    if unsafe:
        # Written into TF Serving's text config between quotes: only plain names, no injection.
        raise InvalidSpec(
            f"spec.predictor.tensorflow.versionLabels: {', '.join(map(repr, unsafe))}: a label is letters, "
            "digits, '_', '-' and '.' (at most 63)"
        )
    if policy is not None and policy.kind == "specific":
        unknown = [f"{k}={v}" for k, v in labels if v not in policy.versions]
        if unknown:
            raise InvalidSpec(
                f"spec.predictor.tensorflow.versionLabels: {', '.join(unknown)} point at versions that "
                f"modelVersionPolicy.specific does not load ({', '.join(map(str, policy.versions))})"
            )
    return policy, labels


_PERCENT = re.compile(r"^(100|[1-9]?[0-9])%$")


def _int_or_percent(value: Any, what: str) -> IntOrPercent | None:
    """A number of pods (0 or more) or a percentage "0%".."100%", as the CRD's rules accept."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _PERCENT.fullmatch(value):
        return value
    raise InvalidSpec(f"{what}: {value!r} is neither a number of pods (0 or more) nor a percentage such as 25%")


def _is_zero(value: IntOrPercent | None) -> bool:
    return value in (0, "0%")


def _rollout_and_disruption(predictor: Mapping[str, Any]) -> tuple[DeploymentStrategy, DisruptionBudget | None]:
    """spec.predictor.deploymentStrategy and minAvailable/maxUnavailable (the PodDisruptionBudget)."""
    strategy_spec = predictor.get("deploymentStrategy") or {}
    where = "spec.predictor.deploymentStrategy"
    kind = strategy_spec.get("type", "RollingUpdate")
    if kind not in STRATEGY_TYPES:
        raise InvalidSpec(f"{where}.type: {kind!r} is not one of {', '.join(STRATEGY_TYPES)}")
    rolling = strategy_spec.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            raise InvalidSpec(f"{where}.rollingUpdate: only allowed with type RollingUpdate, not Recreate")
        strategy = DeploymentStrategy(type=kind, max_surge=None, max_unavailable=None)
    else:
        rolling = rolling or {}
        default = DeploymentStrategy()
        surge = _int_or_percent(rolling.get("maxSurge"), f"{where}.rollingUpdate.maxSurge")
        unavailable = _int_or_percent(rolling.get("maxUnavailable"), f"{where}.rollingUpdate.maxUnavailable")
        strategy = DeploymentStrategy(
            type=kind,
            max_surge=default.max_surge if surge is None else surge,
            max_unavailable=default.max_unavailable if unavailable is None else unavailable,
        )
        if _is_zero(strategy.max_surge) and _is_zero(strategy.max_unavailable):
            raise InvalidSpec(
                f"{where}.rollingUpdate: maxSurge and maxUnavailable are both 0 (maxUnavailable defaults to 0): "
                "a rollout could never replace a pod; allow at least one of them"
            )
    min_available = _int_or_percent(predictor.get("minAvailable"), "spec.predictor.minAvailable")
    max_unavailable = _int_or_percent(predictor.get("maxUnavailable"), "spec.predictor.maxUnavailable")
    if min_available is not None and max_unavailable is not None:
        raise InvalidSpec("spec.predictor: set at most one of minAvailable and maxUnavailable (PodDisruptionBudget)")
    budget = None
    if min_available is not None or max_unavailable is not None:
        budget = DisruptionBudget(min_available=min_available, max_unavailable=max_unavailable)
    return strategy, budget


def _service(spec: Mapping[str, Any]) -> ServiceExposure:
    service = spec.get("service") or {}
    kind = service.get("type", "NodePort")
    if kind not in SERVICE_TYPES:
        raise InvalidSpec(f"spec.service.type: {kind!r} is not one of {', '.join(SERVICE_TYPES)}")
    http_port = _int_or_none(service.get("httpNodePort"), "spec.service.httpNodePort")
    grpc_port = _int_or_none(service.get("grpcNodePort"), "spec.service.grpcNodePort")
    if kind == "ClusterIP" and (http_port or grpc_port):
        raise InvalidSpec("spec.service: httpNodePort/grpcNodePort need type NodePort or LoadBalancer, not ClusterIP")
    if http_port is not None and http_port == grpc_port:
        raise InvalidSpec(f"spec.service: httpNodePort and grpcNodePort are both {http_port}; they must differ")
    return ServiceExposure(type=kind, http_node_port=http_port, grpc_node_port=grpc_port)


def _passthrough(mapping: Mapping[str, str] | None) -> dict[str, str]:
    """The isvc's own labels/annotations, minus the bookkeeping of kubectl, kopf, Helm and GitOps tools."""
    return {k: v for k, v in (mapping or {}).items() if not k.startswith(BOOKKEEPING_PREFIXES)}


def parse_inferenceservice(body: Mapping[str, Any]) -> InferenceService:
    """The typed InferenceService, or `InvalidSpec` with a message that quotes what was found."""
    metadata = body.get("metadata") or {}
    name = metadata.get("name", "")
    if len(name) > MAX_NAME_LENGTH or not _DNS_LABEL.fullmatch(name):
        raise InvalidSpec(
            f"metadata.name {name!r}: must be a DNS label of at most {MAX_NAME_LENGTH} characters "
            "(lower-case letters, digits and '-', starting with a letter)"
        )
    spec = body.get("spec") or {}
    authorization = spec.get("authorization") or {}
    mode = authorization.get("mode", "Auto")
    if mode not in AUTHORIZATION_MODES:
        raise InvalidSpec(f"spec.authorization.mode: {mode!r} is not one of {', '.join(AUTHORIZATION_MODES)}")
    principals = list(authorization.get("principals") or ())
    for account in authorization.get("serviceAccounts") or ():
        account_namespace, sep, account_name = account.partition("/")
        if not sep or not account_namespace or not account_name:
            raise InvalidSpec(f"spec.authorization.serviceAccounts: {account!r} is not NAMESPACE/NAME")
        principals.append(f"cluster.local/ns/{account_namespace}/sa/{account_name}")
    return InferenceService(
        name=name,
        namespace=metadata.get("namespace", "default"),
        uid=metadata.get("uid", ""),
        generation=int(metadata.get("generation") or 0),
        predictor=_predictor(spec),
        service=_service(spec),
        authorization=Authorization(
            mode=mode,
            source_namespaces=tuple(authorization.get("sourceNamespaces") or ()),
            principals=tuple(principals),
            paths=tuple(authorization.get("paths") or ()),
            methods=tuple(authorization.get("methods") or ()),
        ),
        labels=_passthrough(metadata.get("labels")),
        annotations=_passthrough(metadata.get("annotations")),
    )
