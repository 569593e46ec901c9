"""Status is an API: computed from the children's live state by pure functions, written once.

Conditions follow the Kubernetes API conventions. `Unknown` means "still converging" (creating,
rolling out), `False` means "stuck until someone acts" and carries a reason saying what to fix.
`Ready` aggregates the others so `kubectl wait` and Argo CD read one field; `Reconciling` and
`Stalled` restate it in the kstatus conventions Flux reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .constants import LABEL_REVISION

if TYPE_CHECKING:  # revisions reads Deployments through this module's predictor_condition
    from .revisions import Revision, Revisions

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"
# status.components.predictor.trafficSplit: how a canary's traffic is split (builders.traffic_split decides).
READY_REPLICAS, ISTIO_WEIGHTS, HTTP_ROUTE_WEIGHTS = "ReadyReplicas", "IstioWeights", "HTTPRouteWeights"


@dataclass(frozen=True)
class Observed:
    """The children as the cluster last reported them (None: absent), and what the cluster offers."""

    deployment: Mapping[str, Any] | None = None
    service: Mapping[str, Any] | None = None
    authorization_policy: Mapping[str, Any] | None = None
    pods: Sequence[Mapping[str, Any]] = ()
    istio_installed: bool = False
    canary_deployment: Mapping[str, Any] | None = None  # while a canary revision runs
    http_route: Mapping[str, Any] | None = None  # where spec.predictor.gateway names a Gateway
    gateway_api_installed: bool = False


def condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def _conditions_by_type(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {c.get("type"): c for c in ((obj.get("status") or {}).get("conditions") or [])}


# Container waiting reasons that will not resolve by waiting, as the kubelet reports them.
STUCK_WAITING = (
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)


def _termination(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get("terminated") or {}


def pod_failure(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """The first real reason the model's pods cannot serve, as (reason, message), or None."""
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if (
                cond.get("type") == "PodScheduled"
                and cond.get("status") == FALSE
                and cond.get("reason") == "Unschedulable"
            ):
                message = cond.get("message", "")
                if "persistentvolumeclaim" in message and "not found" in message:
                    return "PersistentVolumeClaimNotFound", f"pod {name} cannot be scheduled: {message}"
                return "Unschedulable", f"pod {name} cannot be scheduled: {message}"
        for init in status.get("initContainerStatuses") or []:
            waiting = (init.get("state") or {}).get("waiting") or {}
            terminated = _termination(init)
            if terminated.get("exitCode") not in (None, 0) or waiting.get("reason") == "CrashLoopBackOff":
                detail = (terminated.get("message") or terminated.get("reason") or waiting.get("message") or "").strip()
                return "StorageInitializerFailed", f"init container {init.get('name')} of pod {name} failed: {detail}"
            if waiting.get("reason") in STUCK_WAITING:
                return waiting[
                    "reason"
                ], f"init container {init.get('name')} image {init.get('image')}: {waiting.get('message', '')}".strip()
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason == "CrashLoopBackOff":
                terminated = _termination(container)
                last = (terminated.get("message") or "").strip() or f"exit code {terminated.get('exitCode', '?')}"
                return (
                    reason,
                    f"container {container.get('name')} of pod {name} keeps crashing; last termination: {last}",
                )
            if reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
                return reason, f"image {container.get('image')} cannot be pulled: {waiting.get('message', reason)}"
            if reason in STUCK_WAITING:
                return reason, f"container {container.get('name')} of pod {name}: {waiting.get('message', reason)}"
    return None


def predictor_condition(
    deployment: Mapping[str, Any] | None, name: str, pods: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """PredictorReady from the Deployment (and its pods' reasons): True only when fully available."""
    result = _deployment_condition(deployment, name)
    if result["status"] != TRUE:
        failure = pod_failure(pods)
        if failure is not None:
            return condition("PredictorReady", FALSE, *failure)
    return result


def _deployment_condition(deployment: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    kind = "PredictorReady"
    if deployment is None:
        return condition(kind, UNKNOWN, "Creating", f"Deployment {name} is being created")
    metadata = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    generation = metadata.get("generation") or 0
    rolling_out = condition(
        kind, UNKNOWN, "RolloutInProgress", f"Deployment {name} is rolling out generation {generation}"
    )
    # One message per phase, without counts that tick: every message change is a status write.
    if (status.get("observedGeneration") or 0) < generation:
        return rolling_out
    progressing = _conditions_by_type(deployment).get("Progressing") or {}
    if progressing.get("status") == FALSE and progressing.get("reason") == "ProgressDeadlineExceeded":
        return condition(
            kind,
            FALSE,
            "ProgressDeadlineExceeded",
            f"Deployment {name} made no progress: {progressing.get('message', '')}".rstrip(": "),
        )
    failure = _conditions_by_type(deployment).get("ReplicaFailure") or {}
    if failure.get("status") == TRUE:
        # Its ReplicaSet cannot create pods (quota, admission, an image the pod API refuses).
        return condition(
            kind,
            FALSE,
            failure.get("reason") or "ReplicaFailure",
            f"Deployment {name} cannot create pods: {failure.get('message', '')}".rstrip(": "),
        )
    desired = (deployment.get("spec") or {}).get("replicas")
    desired = 1 if desired is None else desired
    total = status.get("replicas") or 0
    updated = status.get("updatedReplicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < desired or total > updated:
        return rolling_out
    if desired == 0:
        return condition(kind, TRUE, "ScaledToZero", f"Deployment {name} is scaled to 0 replicas: the model is stopped")
    if available < updated:
        return condition(
            kind, UNKNOWN, "ReplicasNotReady", f"waiting for {desired} replicas to load the model (readiness probe)"
        )
    return condition(kind, TRUE, "Available", f"{available} of {desired} replicas available")


def rejected_condition(type_: str, kind: str, name: str, error: str) -> dict[str, Any]:
    """The API server refused to store a child: nothing will change until the spec (or a conflict) does."""
    return condition(type_, FALSE, f"{kind}Rejected", f"the API server rejected {kind} {name}: {error}")


def service_condition(service: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    kind = "ServiceReady"
    if service is None:
        return condition(kind, UNKNOWN, "Creating", f"Service {name} is being created")
    spec = service.get("spec") or {}
    ports = ", ".join(
        f"{p.get('name')} {p.get('port')}" + (f"->{p['nodePort']}" if p.get("nodePort") else "")
        for p in spec.get("ports") or []
    )
    return condition(kind, TRUE, "Exposed", f"{spec.get('type', 'ClusterIP')} Service {name}: {ports}")


def authorization_condition(
    mode: str, istio_installed: bool, policy: Mapping[str, Any] | None, name: str
) -> dict[str, Any]:
    """AuthorizationReady: what was done about the Istio AuthorizationPolicy, and why."""
    kind = "AuthorizationReady"
    if mode == "Disabled":
        return condition(
            kind, TRUE, "Disabled", "spec.authorization.mode is Disabled: no AuthorizationPolicy is created"
        )
    if not istio_installed:
        if mode == "Enabled":
            return condition(
                kind,
                FALSE,
                "IstioNotInstalled",
                "spec.authorization.mode is Enabled but the AuthorizationPolicy CRD (security.istio.io/v1) is not "
                "installed: install Istio, or set mode Auto or Disabled",
            )
        return condition(kind, TRUE, "IstioNotInstalled", "Istio is not installed: no AuthorizationPolicy is needed")
    if policy is None:
        return condition(kind, UNKNOWN, "Creating", f"AuthorizationPolicy {name} is being created")
    return condition(kind, TRUE, "Applied", f"AuthorizationPolicy {name} allows requests to the model's paths")


def ingress_condition(
    gateway: str, gateway_api_installed: bool, route: Mapping[str, Any] | None, name: str
) -> dict[str, Any]:
    """IngressReady, where spec.predictor.gateway names a Gateway: whether the HTTPRoute from it
    exists. Like CanaryReady it does not feed Ready: Service NAME serves the model either way."""
    kind = "IngressReady"
    if not gateway_api_installed:
        return condition(
            kind,
            FALSE,
            "GatewayAPINotInstalled",
            f"spec.predictor.gateway names Gateway {gateway}, but the Gateway API's HTTPRoute CRD "
            f"(gateway.networking.k8s.io/v1) is not installed: no HTTPRoute is created, and the model is "
            f"reached through Service {name} only. Install the Gateway API's CRDs (the route follows without "
            f"a restart), or remove spec.predictor.gateway",
        )
    if route is None:
        return condition(kind, UNKNOWN, "Creating", f"HTTPRoute {name} is being created")
    return condition(
        kind, TRUE, "Applied", f"HTTPRoute {name} attaches to Gateway {gateway} and routes to the model's REST port"
    )


def aggregate_ready(parts: Sequence[Mapping[str, Any]], url: str | None) -> dict[str, Any]:
    """Ready is True when every part is; otherwise it carries the first failure, else the first wait."""
    for wanted in (FALSE, UNKNOWN):
        for part in parts:
            if part["status"] == wanted:
                return condition("Ready", wanted, part["reason"], part["message"])
    return condition("Ready", TRUE, "Ready", f"model served at {url}" if url else "all components ready")


# Ready=False reasons that can clear without anyone acting on the isvc: the cluster may free or add
# room (another workload leaves, a node autoscaler adds a node). They count as reconciling until the
# Deployment's progress deadline passes, as kstatus reads a Deployment's own status.
MAY_CLEAR_BY_ITSELF = frozenset({"Unschedulable"})


def progress_deadline_exceeded(deployment: Mapping[str, Any] | None) -> bool:
    progressing = _conditions_by_type(deployment or {}).get("Progressing") or {}
    return progressing.get("status") == FALSE and progressing.get("reason") == "ProgressDeadlineExceeded"


def kstatus_conditions(ready: Mapping[str, Any], *, deadline_exceeded: bool = False) -> list[dict[str, Any]]:
    """Reconciling and Stalled beside Ready, as kstatus (Flux's health checks) reads them: Reconciling
    True is InProgress, Stalled True is Failed, neither (with Ready True) is Current. Without them
    kstatus reads any Ready=False as InProgress, so a wait on an isvc that will never converge only
    ends at its timeout. At most one of the two is True."""
    status, reason, message = ready["status"], ready["reason"], ready["message"]
    if status == TRUE:
        return [
            condition("Reconciling", FALSE, reason, "the isvc has converged to its spec"),
            condition("Stalled", FALSE, reason, "nothing is stuck"),
        ]
    if status == FALSE and (reason not in MAY_CLEAR_BY_ITSELF or deadline_exceeded):
        return [
            condition("Reconciling", FALSE, "Stalled", "nothing will change until someone acts: see Stalled"),
            condition("Stalled", TRUE, reason, message),
        ]
    return [
        condition("Reconciling", TRUE, reason, message),
        condition("Stalled", FALSE, "Reconciling", "still converging: see Reconciling"),
    ]


def stamp_conditions(
    conditions: Sequence[Mapping[str, Any]],
    previous: Sequence[Mapping[str, Any]],
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """Add observedGeneration and lastTransitionTime, which moves only when status flips."""
    before = {c.get("type"): c for c in previous or []}
    stamped = []
    for cond in conditions:
        old = before.get(cond["type"])
        changed = old is None or old.get("status") != cond["status"]
        stamped.append(
            {
                **cond,
                "observedGeneration": generation,
                "lastTransitionTime": now if changed or old is None else old.get("lastTransitionTime", now),
            }
        )
    return stamped


def compute_status(
    *,
    generation: int,
    observed: Observed,
    deployment_name: str,
    service_name: str,
    url: str | None,
    previous: Mapping[str, Any] | None,
    now: str,
    rejected: Mapping[str, Mapping[str, Any]] | None = None,
    authorization_mode: str = "Auto",
    revisions: Revisions | None = None,
    traffic_split: str = READY_REPLICAS,
    gateway: str | None = None,
) -> dict[str, Any]:
    """`rejected` maps a condition type to the failure that replaces it (the API server refused a child).
    `revisions`: the stable (and canary) revision the pass applied; `traffic_split`: how a canary's
    traffic is split (by ready replicas, Istio's weights or the HTTPRoute's); `gateway`: the Gateway
    spec.predictor.gateway names, as `NAMESPACE/NAME` (None: no route asked for)."""
    rejected = rejected or {}
    stable_pods = observed.pods if revisions is None else pods_of(observed.pods, revisions.stable, revisions)
    predictor = rejected.get("PredictorReady") or predictor_condition(observed.deployment, deployment_name, stable_pods)
    service = rejected.get("ServiceReady") or service_condition(observed.service, service_name)
    authorization = rejected.get("AuthorizationReady") or authorization_condition(
        authorization_mode, observed.istio_installed, observed.authorization_policy, service_name
    )
    ready = aggregate_ready([predictor, service, authorization], url)
    deployment = observed.deployment or {}
    desired = (deployment.get("spec") or {}).get("replicas")
    ready_replicas = (deployment.get("status") or {}).get("readyReplicas") or 0
    desired = 0 if desired is None else desired
    extra: list[Mapping[str, Any]] = []
    if gateway is not None:
        extra.append(
            rejected.get("IngressReady")
            or ingress_condition(gateway, observed.gateway_api_installed, observed.http_route, service_name)
        )
    kstatus = kstatus_conditions(ready, deadline_exceeded=progress_deadline_exceeded(observed.deployment))
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "url": url,
        "replicas": desired,
        "readyReplicas": ready_replicas,
        "replicasSummary": f"{ready_replicas}/{desired}",
    }
    if revisions is not None:
        canary = revisions.canary
        canary_ready = None
        if canary is not None:
            canary_ready = canary_condition(
                canary, observed.canary_deployment, pods_of(observed.pods, canary, revisions), revisions.stable
            )
            extra.append(canary_ready)
            if ready["status"] == TRUE and canary.desired_percent > 0:
                kstatus = [
                    condition("Reconciling", TRUE, "CanaryInProgress", canary_ready["message"]),
                    condition("Stalled", FALSE, "Reconciling", "still converging: see Reconciling"),
                ]
        split = traffic_split if canary is not None else READY_REPLICAS
        status["components"] = {
            "predictor": predictor_component(
                revisions,
                observed,
                predictor,
                canary_ready,
                traffic_split=split,
                exact_message=_exact(split, service_name),
            )
        }
    status["conditions"] = stamp_conditions(
        [ready, predictor, service, authorization, *extra, *kstatus],
        (previous or {}).get("conditions") or [],
        generation,
        now,
    )
    return status


def pods_of(pods: Sequence[Mapping[str, Any]], revision: Revision, revisions: Revisions) -> list[Mapping[str, Any]]:
    """The pods of one revision; pods without a revision label (older ones) count as the stable's."""
    wanted = {revision.revision} | ({""} if revision is revisions.stable else set())
    return [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(LABEL_REVISION, "") in wanted]


def canary_condition(
    canary: Revision, deployment: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], stable: Revision
) -> dict[str, Any]:
    """CanaryReady: whether the canary revision can take its share, and why it gets none if not.
    It does not feed Ready: the stable revision serves meanwhile."""
    kind = "CanaryReady"
    if canary.desired_percent == 0:
        return condition(
            kind,
            FALSE,
            "RolledBack",
            f"canaryTrafficPercent is 0: all traffic goes to stable revision {stable.name}; set the predictor "
            f"back to it to remove canary {canary.name}, or raise canaryTrafficPercent to try it again",
        )
    state = predictor_condition(deployment, canary.deployment, pods)
    if state["status"] == TRUE and canary.ready:
        return condition(
            kind,
            TRUE,
            "Serving",
            f"canary {canary.name} gets {canary.desired_percent}% of traffic, stable {stable.name} the rest",
        )
    return condition(
        kind,
        state["status"] if state["status"] == FALSE else UNKNOWN,
        state["reason"],
        f"canary {canary.name} gets 0% of traffic until it is Ready ({canary.desired_percent}% asked): "
        f"{state['message']}",
    )


def _exact(traffic_split: str, service: str) -> str:
    """How an exact split is done, for status.components.predictor.message."""
    if traffic_split == HTTP_ROUTE_WEIGHTS:
        return (
            f"exact through the Gateway: HTTPRoute {service} sends each revision's Service ({service}-stable, "
            f"{service}-canary) its weight; requests straight to Service {service} reach every ready pod of both"
        )
    return "exact: an Istio VirtualService sends each revision its weight"


def _ready_replicas(deployment: Mapping[str, Any] | None) -> int:
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)


def predictor_component(
    revisions: Revisions,
    observed: Observed,
    stable_ready: Mapping[str, Any],
    canary_ready: Mapping[str, Any] | None,
    *,
    traffic_split: str,
    exact_message: str = "",
) -> dict[str, Any]:
    """status.components.predictor: the revisions, their shares (asked for and effective) and
    which one is the latest created, latest ready and stable (as KServe names them)."""
    stable, canary = revisions.stable, revisions.canary
    ready = {stable.name: _ready_replicas(observed.deployment)}
    deployments = {stable.name: observed.deployment}
    if canary is not None:
        ready[canary.name] = _ready_replicas(observed.canary_deployment)
        deployments[canary.name] = observed.canary_deployment
    total_ready = sum(ready.values())
    exact_split = traffic_split != READY_REPLICAS
    if canary is None:
        percents = {stable.name: 100}
    elif exact_split:
        percents = {stable.name: stable.percent, canary.name: canary.percent}
    else:
        # Every ready pod of either revision is an endpoint of the Service: the share is theirs.
        canary_share = round(100 * ready[canary.name] / total_ready) if total_ready else 0
        percents = {stable.name: 100 - canary_share if total_ready else 0, canary.name: canary_share}
    traffic = []
    for revision in revisions.all:
        spec = (deployments[revision.name] or {}).get("spec") or {}
        traffic.append(
            {
                "revisionName": revision.name,
                "deployment": revision.deployment,
                "role": revision.role,
                "desiredPercent": revision.desired_percent,
                "percent": percents[revision.name],
                "replicas": int(spec.get("replicas") or 0),
                "readyReplicas": ready[revision.name],
            }
        )
    component: dict[str, Any] = {
        "stableRevision": stable.name,
        "latestCreatedRevision": (canary or stable).name,
        "trafficSplit": traffic_split,
        "traffic": traffic,
    }
    if canary is not None and canary_ready is not None and canary_ready["status"] == TRUE:
        component["latestReadyRevision"] = canary.name
    elif stable_ready["status"] == TRUE:
        component["latestReadyRevision"] = stable.name
    if canary is not None:
        component["canaryPercent"] = percents[canary.name]
        if exact_split:
            component["message"] = exact_message
        else:
            component["message"] = (
                f"approximate: the Service sends requests to every ready pod of both revisions; "
                f"{ready[canary.name]} of {total_ready} ready replicas are the canary's"
            )
    elif revisions.note:
        component["message"] = revisions.note
    return component


def canary_events(previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(reason, message) of each step of a canary between two statuses: started, replaced,
    rolled back, promoted or removed."""

    def roles(st: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
        traffic = (((st or {}).get("components") or {}).get("predictor") or {}).get("traffic") or []
        return {t.get("role", ""): t for t in traffic}

    before, after = roles(previous), roles(status)
    old, new = before.get("canary"), after.get("canary")
    stable = (after.get("stable") or {}).get("revisionName", "?")
    if new is not None and (old is None or old.get("revisionName") != new.get("revisionName")):
        what = "started" if old is None else f"replaces canary {old.get('revisionName')}"
        return [
            (
                "CanaryStarted",
                f"canary {new.get('revisionName')} {what}: {new.get('desiredPercent')}% of traffic once Ready, "
                f"stable {stable} keeps the rest",
            )
        ]
    if new is not None and old is not None and new.get("desiredPercent") == 0 and old.get("desiredPercent") != 0:
        return [("CanaryRolledBack", f"canary {new.get('revisionName')} gets no traffic: all of it goes to {stable}")]
    if new is not None and old is not None and old.get("desiredPercent") == 0 and new.get("desiredPercent") != 0:
        return [("CanaryResumed", f"canary {new.get('revisionName')} asks for {new.get('desiredPercent')}% again")]
    if new is None and old is not None:
        if old.get("revisionName") == stable:
            return [
                ("CanaryPromoted", f"canary {stable} is promoted: it serves all traffic, the old revision is removed")
            ]
        return [
            ("CanaryRemoved", f"canary {old.get('revisionName')} is removed: the predictor is back to stable {stable}")
        ]
    return []


def invalid_spec_status(
    *, generation: int, message: str, previous: Mapping[str, Any] | None, now: str, reason: str = "InvalidSpec"
) -> dict[str, Any]:
    """A spec that cannot be served (or whose storage credentials are missing, `reason`
    StorageCredentialsNotFound): Ready=False with the reason, children left as they were."""
    previous = previous or {}
    ready = condition("Ready", FALSE, reason, message)
    predictor = condition("PredictorReady", FALSE, reason, message)
    computed = [ready, predictor, *kstatus_conditions(ready)]
    kept = [c for c in previous.get("conditions") or [] if c.get("type") not in {c["type"] for c in computed}]
    conditions = stamp_conditions(computed, previous.get("conditions") or [], generation, now)
    return {
        **{k: v for k, v in previous.items() if k != "conditions"},
        "observedGeneration": generation,
        "conditions": conditions + kept,
    }


def status_patch(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """`desired` as a merge patch over `current`: a field of components.predictor it no longer has
    (canaryPercent once a canary is gone) is sent as null, which removes it."""
    old = (((current or {}).get("components") or {}).get("predictor")) or {}
    new = (desired.get("components") or {}).get("predictor")
    if new is None:
        return dict(desired)
    gone = {key: None for key in old if key not in new}
    return {**desired, "components": {**desired["components"], "predictor": {**new, **gone}}}


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change anything (timestamps come from `current` when equal)."""
    current = current or {}
    return any(current.get(key) != value for key, value in desired.items())
