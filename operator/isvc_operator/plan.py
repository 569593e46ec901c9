"""What an isvc asks for (typed spec, model server, desired children with their hashes), worked out
once per change of its inputs rather than once per pass.

Most passes are triggered by a child's or a pod's progress, not by the isvc: at 1000 isvcs a
create burst runs ~8 passes per isvc, and parsing, rendering the runtime's Jinja2 templates and
hashing the children cost ~1 ms of CPU a pass on the one core the operator's event loop has, taken
from the API server's two. The inputs are compared by value (a dict comparison in C), so the plan
is exactly the one a fresh computation would give: no reliance on `generation` being bumped.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .builders import build_children, build_revisions, traffic_split
from .builders.storage_credentials import AccountSecrets
from .drift import desired_hash, with_hash
from .kinds import IsvcKey, ObjectKey, object_key
from .resolved_runtime import ResolvedRuntime, resolve_runtime
from .revisions import LiveRevision, Revisions
from .runtimes import Catalog
from .spec import InferenceService, InvalidSpec, parse_inferenceservice


@dataclass(frozen=True)
class Child:
    key: ObjectKey
    desired: Mapping[str, Any]
    digest: str  # desired_hash(desired), as stored in the child's annotation

    @property
    def to_apply(self) -> dict[str, Any]:
        return with_hash(self.desired)


@dataclass(frozen=True)
class Plan:
    isvc: InferenceService
    server: ResolvedRuntime
    children: tuple[Child, ...]
    revisions: Revisions
    traffic_split: str  # how a canary's traffic is split here (status.READY_REPLICAS, ...)


def make_plan(
    body: Mapping[str, Any],
    catalog: Catalog,
    *,
    istio_installed: bool,
    gateway_api_installed: bool = False,
    account_secrets: AccountSecrets | None = None,
    live: tuple[LiveRevision, ...] = (),
) -> Plan:
    """Raises InvalidSpec with the message for the isvc's status. `account_secrets`: the predictor's
    ServiceAccount and its Secrets (without values), read when the model is in an object store.
    `live`: the isvc's Deployments as observed, which decide the stable and canary revisions."""
    isvc = parse_inferenceservice(body)
    server = resolve_runtime(isvc, catalog)
    revisions = build_revisions(isvc, server, live, account_secrets)
    desired = build_children(
        isvc,
        server,
        istio_installed=istio_installed,
        gateway_api_installed=gateway_api_installed,
        account_secrets=account_secrets,
        revisions=revisions,
    )
    return Plan(
        isvc,
        server,
        tuple(Child(object_key(obj), obj, desired_hash(obj)) for obj in desired),
        revisions,
        traffic_split(isvc, istio_installed=istio_installed, gateway_api_installed=gateway_api_installed),
    )


def _inputs(
    body: Mapping[str, Any],
    catalog: Catalog,
    istio_installed: bool,
    gateway_api_installed: bool,
    account_secrets: AccountSecrets | None,
    live: tuple[LiveRevision, ...],
) -> tuple[Any, ...]:
    """Everything `make_plan` reads. Status and resourceVersion are not inputs (they change on
    every status patch)."""
    metadata = body.get("metadata") or {}
    return (
        metadata.get("name"),
        metadata.get("namespace"),
        metadata.get("uid"),
        metadata.get("generation"),
        metadata.get("labels"),
        metadata.get("annotations"),
        body.get("spec"),
        istio_installed,
        gateway_api_installed,
        id(catalog),
        account_secrets,
        live,
    )


class Plans:
    """The last plan (or InvalidSpec) of each isvc, reused while its inputs are equal."""

    def __init__(self, max_entries: int = 20000) -> None:
        self._entries: OrderedDict[IsvcKey, tuple[tuple[Any, ...], Plan | InvalidSpec]] = OrderedDict()
        self._max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def get(
        self,
        body: Mapping[str, Any],
        catalog: Catalog,
        *,
        istio_installed: bool,
        gateway_api_installed: bool = False,
        account_secrets: AccountSecrets | None = None,
        live: tuple[LiveRevision, ...] = (),
    ) -> Plan:
        metadata = body.get("metadata") or {}
        key = (metadata.get("namespace", ""), metadata.get("name", ""))
        inputs = _inputs(body, catalog, istio_installed, gateway_api_installed, account_secrets, live)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == inputs:
            self.hits += 1
            self._entries.move_to_end(key)
            result = entry[1]
        else:
            self.misses += 1
            try:
                result = make_plan(
                    body,
                    catalog,
                    istio_installed=istio_installed,
                    gateway_api_installed=gateway_api_installed,
                    account_secrets=account_secrets,
                    live=live,
                )
            except InvalidSpec as exc:
                result = exc
            # A copy: the cached bodies are never mutated today, but a stale plan must not follow if one is.
            self._entries[key] = (copy.deepcopy(inputs), result)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        if isinstance(result, InvalidSpec):
            raise InvalidSpec(str(result))
        return result

    def forget(self, key: IsvcKey) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
