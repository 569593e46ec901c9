"""Offline preview: the exact children the operator would apply, for GitOps diffs and debugging."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .constants import API_VERSION, KIND
from .plan import make_plan
from .runtimes import load_catalog
from .spec import InvalidSpec


def render_documents(
    documents: Sequence[Mapping[str, Any] | None], *, catalog_path: str | None = None, istio: bool = False
) -> str:
    """YAML of every child of every InferenceService in `documents`; other kinds are skipped.

    `istio`: render as for a cluster with Istio. An isvc whose authorization mode is Enabled
    requires Istio, so its AuthorizationPolicy is rendered either way. An isvc that names a Gateway
    (spec.predictor.gateway) asks for its HTTPRoute, so it is rendered as for a cluster with the
    Gateway API.
    """
    catalog = load_catalog(catalog_path)
    children: list[dict[str, Any]] = []
    for doc in documents:
        if not doc or doc.get("kind") != KIND or doc.get("apiVersion") != API_VERSION:
            continue
        metadata = {"namespace": "default", "uid": "", "generation": 1, **(doc.get("metadata") or {})}
        try:
            body = {**doc, "metadata": metadata}
            plan = make_plan(body, catalog, istio_installed=istio, gateway_api_installed=True)
            if not istio and plan.isvc.authorization.mode == "Enabled":
                plan = make_plan(body, catalog, istio_installed=True, gateway_api_installed=True)
            children.extend(dict(child.desired) for child in plan.children)
        except InvalidSpec as exc:
            raise InvalidSpec(f"{metadata.get('namespace')}/{metadata.get('name')}: {exc}") from None
    if not children:
        raise ValueError(f"no {API_VERSION} {KIND} found in the input")
    return yaml.safe_dump_all(children, sort_keys=False)
