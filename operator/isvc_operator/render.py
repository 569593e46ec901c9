"""Offline preview: the exact children the operator would apply, for GitOps diffs and debugging."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from .builders import build_children
from .constants import API_VERSION, KIND
from .runtimes import load_catalog
from .spec import InvalidSpec, parse_inferenceservice


def render_documents(documents: Sequence[Mapping[str, Any] | None], *, catalog_path: str | None = None) -> str:
    """YAML of every child of every InferenceService in `documents`; other kinds are skipped."""
    catalog = load_catalog(catalog_path)
    children: list[dict[str, Any]] = []
    for doc in documents:
        if not doc or doc.get("kind") != KIND or doc.get("apiVersion") != API_VERSION:
            continue
        metadata = {"namespace": "default", "uid": "", "generation": 1, **(doc.get("metadata") or {})}
        try:
            children.extend(build_children(parse_inferenceservice({**doc, "metadata": metadata}), catalog))
        except InvalidSpec as exc:
            raise InvalidSpec(f"{metadata.get('namespace')}/{metadata.get('name')}: {exc}") from None
    if not children:
        raise ValueError(f"no {API_VERSION} {KIND} found in the input")
    return yaml.safe_dump_all(children, sort_keys=False)
