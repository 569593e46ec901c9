"""The runtime catalog: framework -> serving image, start command and probes, loaded from YAML.

Kept out of code so an operator admin can pin versions, mirror images or add a runtime with a
ConfigMap instead of a release. Arguments and probe strings are Jinja2 templates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

CATALOG_ENV = "ISVC_RUNTIME_CATALOG"
BUILTIN_CATALOG = Path(__file__).with_name("catalog.yaml")

_jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False)
_compile_template = lru_cache(maxsize=512)(_jinja.from_string)


class CatalogError(ValueError):
    """The catalog file is malformed, or a spec names a runtime it does not have."""


@dataclass(frozen=True)
class Runtime:
    name: str
    framework: str
    image: str
    default_version: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    ports: Mapping[str, int]
    gpu_tag_suffix: str = ""
    readiness_probe: Mapping[str, Any] | None = None
    liveness_probe: Mapping[str, Any] | None = None
    startup_probe: Mapping[str, Any] | None = None
    security_context: Mapping[str, Any] = field(default_factory=dict)
    authorized_paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    model_config_args: tuple[str, ...] = ()

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def grpc_port(self) -> int | None:
        return self.ports.get("grpc")


@dataclass(frozen=True)
class StorageInitializer:
    image: str = "ghcr.io/isvc-operator/isvc-operator:0.1.0"
    max_bytes: str = "10Gi"


@dataclass(frozen=True)
class Catalog:
    runtimes: Mapping[str, Runtime]
    defaults: Mapping[str, str]
    storage_initializer: StorageInitializer = field(default_factory=StorageInitializer)

    def resolve(self, framework: str, name: str | None) -> Runtime:
        """The runtime a predictor asked for by name, or its framework's default."""
        chosen = name or self.defaults.get(framework)
        runtime = self.runtimes.get(chosen or "")
        if runtime is None:
            known = ", ".join(sorted(r.name for r in self.runtimes.values() if r.framework == framework))
            raise CatalogError(
                f"runtime {chosen!r} is not in the runtime catalog for {framework} (known: {known or 'none'})"
            )
        if runtime.framework != framework:
            raise CatalogError(f"runtime {chosen!r} serves {runtime.framework}, not {framework}")
        return runtime


def parse_catalog(document: Mapping[str, Any]) -> Catalog:
    runtimes: dict[str, Runtime] = {}
    for name, entry in (document.get("runtimes") or {}).items():
        try:
            runtimes[name] = Runtime(
                name=name,
                framework=entry["framework"],
                image=entry["image"],
                default_version=str(entry["defaultVersion"]),
                command=tuple(entry.get("command") or ()),
                args=tuple(entry.get("args") or ()),
                ports=dict(entry["ports"]),
                gpu_tag_suffix=entry.get("gpuTagSuffix", ""),
                readiness_probe=entry.get("readinessProbe"),
                liveness_probe=entry.get("livenessProbe"),
                startup_probe=entry.get("startupProbe"),
                security_context=dict(entry.get("securityContext") or {}),
                authorized_paths={k: tuple(v) for k, v in (entry.get("authorizedPaths") or {}).items()},
                model_config_args=tuple(entry.get("modelConfigArgs") or ()),
            )
        except (KeyError, TypeError) as exc:
            raise CatalogError(f"runtime catalog entry {name!r}: missing or malformed field {exc}") from None
        if "http" not in runtimes[name].ports:
            raise CatalogError(f"runtime catalog entry {name!r}: ports.http is required")
    defaults = dict(document.get("defaults") or {})
    for framework, name in defaults.items():
        if name not in runtimes:
            raise CatalogError(f"runtime catalog: default for {framework} is {name!r}, which is not defined")
    initializer = document.get("storageInitializer") or {}
    storage_initializer = StorageInitializer(
        image=initializer.get("image", StorageInitializer.image),
        max_bytes=str(initializer.get("maxBytes", StorageInitializer.max_bytes)),
    )
    return Catalog(runtimes=runtimes, defaults=defaults, storage_initializer=storage_initializer)


@lru_cache(maxsize=4)
def load_catalog(path: str | None = None) -> Catalog:
    """The catalog from `path`, `$ISVC_RUNTIME_CATALOG`, or the built-in one, in that order."""
    source = Path(path or os.environ.get(CATALOG_ENV) or BUILTIN_CATALOG)
    return parse_catalog(yaml.safe_load(source.read_text()))


def render_template_tree(value: Any, context: Mapping[str, Any]) -> Any:
    """Every string in a nested structure rendered as a Jinja2 template; other values as they are."""
    if isinstance(value, str):
        return _compile_template(value).render(**context) if "{{" in value or "{%" in value else value
    if isinstance(value, Mapping):
        return {k: render_template_tree(v, context) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_template_tree(v, context) for v in value]
    return value
