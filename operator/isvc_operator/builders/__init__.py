"""Pure builders: spec in, desired children out. No I/O, no clock, no kopf, no clients."""

from __future__ import annotations

from typing import Any

from ..model_server import resolve_model_server
from ..runtimes import Catalog
from ..spec import InferenceService
from .deployment import build_deployment
from .service import build_service


def build_children(isvc: InferenceService, catalog: Catalog) -> list[dict[str, Any]]:
    """Every child the isvc should have, in the order they are applied."""
    server = resolve_model_server(isvc, catalog)
    return [build_deployment(isvc, server), build_service(isvc, server)]
