"""Whether a child differs from what we want; this module computes and writes nothing.

A child is written (by `reconcile`, through `kube_api`) only when it differs: its stored hash of
our desired object is stale, or a field we set was changed or removed by someone else. So an
unchanged isvc costs no writes, and a hand edit is undone by one forced server-side apply.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from .constants import ANNOTATION_SPEC_HASH

# Maps whose values are resource quantities (resources.limits/requests, PVC requests, emptyDir).
QUANTITY_MAPS = frozenset({"limits", "requests", "sizeLimit", "capacity"})


def desired_hash(obj: Mapping[str, Any]) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def with_hash(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object plus the hash annotation that lets the next reconcile skip it."""
    metadata = dict(obj["metadata"])
    metadata["annotations"] = {**(metadata.get("annotations") or {}), ANNOTATION_SPEC_HASH: desired_hash(obj)}
    return {**obj, "metadata": metadata}


def _same_quantity(desired: Any, live: Any) -> bool:
    """The API server stores quantities canonically (`1073741824` -> `1Gi`, `0.5` -> `500m`)."""
    try:
        return bool(parse_quantity(desired) == parse_quantity(live))
    except (ValueError, TypeError, ArithmeticError):
        return False


def is_subset(desired: Any, live: Any, *, quantities: bool = False) -> bool:
    """Every field we set is present in `live` with the same value (server defaults may add more)."""
    if desired == live:  # whole equal subtrees in one C-level comparison (most lists, all leaves)
        return True
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and is_subset(v, live[k], quantities=quantities or k in QUANTITY_MAPS) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    return quantities and _same_quantity(desired, live)


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None, digest: str | None = None) -> bool:
    """`digest`: desired_hash(desired) when the caller has it already."""
    if live is None:
        return True
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if annotations.get(ANNOTATION_SPEC_HASH) != (digest or desired_hash(desired)):
        return True
    # Same desired object as last time: only a hand edit or deletion of our fields can make it differ.
    return not is_subset(desired, live)
