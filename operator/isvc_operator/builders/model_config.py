"""The TF Serving model config file (version policy and labels) as a ConfigMap.

TF Serving re-reads it every `--model_config_file_poll_wait_seconds`, so a version change is a
ConfigMap update and no pod restart.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2

from ..constants import MODEL_CONFIG_FILE
from ..kinds import CONFIG_MAP
from ..spec import InferenceService
from .metadata import child_metadata

MODEL_CONFIG_DIR = MODEL_CONFIG_FILE.rsplit("/", 1)[0]
MODEL_CONFIG_VOLUME = "model-config"


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("isvc_operator", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    return env.get_template("models.config.j2")


def model_config_name(isvc: InferenceService) -> str:
    return f"{isvc.name}-model-config"


def render_model_config(isvc: InferenceService, base_path: str) -> str:
    predictor = isvc.predictor
    return _template().render(
        namespace=isvc.namespace,
        model_name=isvc.name,
        base_path=base_path,
        policy=predictor.version_policy,
        labels=predictor.version_labels,
    )


def build_model_config(isvc: InferenceService, base_path: str) -> dict[str, Any] | None:
    """The ConfigMap, or None when the isvc asks for neither a version policy nor labels."""
    if not isvc.predictor.uses_model_config:
        return None
    return {
        "apiVersion": CONFIG_MAP.api_version,
        "kind": CONFIG_MAP.kind,
        "metadata": child_metadata(isvc, name=model_config_name(isvc)),
        "data": {"models.config": render_model_config(isvc, base_path)},
    }
