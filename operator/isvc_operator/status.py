"""Status is an API: computed from the children's live state by pure functions, written once.

Conditions follow the Kubernetes API conventions. `Unknown` means "still converging" (creating,
rolling out), `False` means "stuck until someone acts" and carries a reason saying what to fix.
`Ready` aggregates the others so `kubectl wait` and Argo CD read one field; `Reconciling` and
`Stalled` restate it in the kstatus conventions Flux reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"


@dataclass(frozen=True)
class Observed:
    """The children as the cluster last reported them (None: absent), and what the cluster offers."""

    deployment: Mapping[str, Any] | None = None
    service: Mapping[str, Any] | None = None
    authorization_policy: Mapping[str, Any] | None = None
    pods: Sequence[Mapping[str, Any]] = ()
    istio_installed: bool = False


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
) -> dict[str, Any]:
    """`rejected` maps a condition type to the failure that replaces it (the API server refused a child)."""
    rejected = rejected or {}
    predictor = rejected.get("PredictorReady") or predictor_condition(
        observed.deployment, deployment_name, observed.pods
    )
    service = rejected.get("ServiceReady") or service_condition(observed.service, service_name)
    authorization = rejected.get("AuthorizationReady") or authorization_condition(
        authorization_mode, observed.istio_installed, observed.authorization_policy, service_name
    )
    ready = aggregate_ready([predictor, service, authorization], url)
    deployment = observed.deployment or {}
    desired = (deployment.get("spec") or {}).get("replicas")
    ready_replicas = (deployment.get("status") or {}).get("readyReplicas") or 0
    desired = 0 if desired is None else desired
    return {
        "observedGeneration": generation,
        "url": url,
        "replicas": desired,
        "readyReplicas": ready_replicas,
        "replicasSummary": f"{ready_replicas}/{desired}",
        "conditions": stamp_conditions(
            [
                ready,
                predictor,
                service,
                authorization,
                *kstatus_conditions(ready, deadline_exceeded=progress_deadline_exceeded(observed.deployment)),
            ],
            (previous or {}).get("conditions") or [],
            generation,
            now,
        ),
    }


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


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` would change anything (timestamps come from `current` when equal)."""
    current = current or {}
    return any(current.get(key) != value for key, value in desired.items())
