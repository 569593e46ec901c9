"""The HorizontalPodAutoscaler for minReplicas/maxReplicas; when it exists, it alone sets replicas."""

from __future__ import annotations

from typing import Any

from ..kinds import AUTOSCALER, DEPLOYMENT
from ..spec import InferenceService
from .metadata import child_metadata, predictor_name

DEFAULT_CPU_TARGET = 80


def build_autoscaler(isvc: InferenceService, target: str | None = None) -> dict[str, Any] | None:
    """`target`: the stable revision's Deployment (default: the isvc's first one)."""
    predictor = isvc.predictor
    if predictor.max_replicas is None:
        return None
    return {
        "apiVersion": AUTOSCALER.api_version,
        "kind": AUTOSCALER.kind,
        "metadata": child_metadata(isvc, name=predictor_name(isvc)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": DEPLOYMENT.api_version,
                "kind": DEPLOYMENT.kind,
                "name": target or predictor_name(isvc),
            },
            "minReplicas": predictor.min_replicas or 1,
            "maxReplicas": predictor.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": predictor.scale_target or DEFAULT_CPU_TARGET,
                        },
                    },
                }
            ],
        },
    }
