"""Names, labels and owner references every child shares."""

from __future__ import annotations

from typing import Any

from ..constants import (
    API_VERSION,
    COMPONENT_PREDICTOR,
    KIND,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_ISVC,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_PART_OF,
    OPERATOR_NAME,
)
from ..spec import InferenceService


def predictor_name(isvc: InferenceService) -> str:
    return f"{isvc.name}-predictor"


def service_name(isvc: InferenceService) -> str:
    return isvc.name


def selector_labels(isvc: InferenceService) -> dict[str, str]:
    """The Deployment's selector: immutable, so it names only what never changes."""
    return {LABEL_ISVC: isvc.name, LABEL_COMPONENT: COMPONENT_PREDICTOR}


def child_labels(isvc: InferenceService) -> dict[str, str]:
    """User labels first, ours last so they cannot be overridden."""
    return {
        **isvc.labels,
        LABEL_NAME: isvc.name,
        LABEL_INSTANCE: isvc.name,
        LABEL_COMPONENT: COMPONENT_PREDICTOR,
        LABEL_PART_OF: "inferenceservice",
        LABEL_MANAGED_BY: OPERATOR_NAME,
        LABEL_ISVC: isvc.name,
    }


def owner_reference(isvc: InferenceService) -> dict[str, Any]:
    """Children die with their isvc (garbage collector) and point `kubectl` users back at it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": isvc.name,
        "uid": isvc.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(isvc: InferenceService, *, name: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": isvc.namespace,
        "labels": child_labels(isvc),
        "ownerReferences": [owner_reference(isvc)],
    }
    if isvc.annotations:
        metadata["annotations"] = dict(isvc.annotations)
    return metadata
