"""The PodDisruptionBudget that keeps a node drain from taking every model-server replica at once."""

from __future__ import annotations

from typing import Any

from ..kinds import DISRUPTION_BUDGET
from ..spec import InferenceService
from .metadata import child_metadata, predictor_name, selector_labels

# Neither minAvailable nor maxUnavailable given: drains evict one replica at a time.
DEFAULT_MAX_UNAVAILABLE = 1


def planned_replicas(isvc: InferenceService) -> int:
    """The replicas the isvc asks for at least: fixed replicas, or the autoscaler's lower bound."""
    predictor = isvc.predictor
    if isvc.autoscaled:
        return predictor.min_replicas or 1
    return 1 if predictor.replicas is None else predictor.replicas


def build_disruption_budget(isvc: InferenceService) -> dict[str, Any] | None:
    """None for a single replica (or none): a budget there either blocks every drain or allows all.

    Pods that are not ready may always be evicted (`unhealthyPodEvictionPolicy: AlwaysAllow`): a
    model that never loads must not hold a node drain up.
    """
    if planned_replicas(isvc) <= 1:
        return None
    budget = isvc.predictor.disruption_budget
    spec: dict[str, Any] = {"selector": {"matchLabels": selector_labels(isvc)}}
    if budget is not None and budget.min_available is not None:
        spec["minAvailable"] = budget.min_available
    else:
        spec["maxUnavailable"] = DEFAULT_MAX_UNAVAILABLE if budget is None else budget.max_unavailable
    spec["unhealthyPodEvictionPolicy"] = "AlwaysAllow"
    return {
        "apiVersion": DISRUPTION_BUDGET.api_version,
        "kind": DISRUPTION_BUDGET.kind,
        "metadata": child_metadata(isvc, name=predictor_name(isvc)),
        "spec": spec,
    }
