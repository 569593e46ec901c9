"""The few Kubernetes API calls the operator makes, as plain JSON over the official client.

Plain dicts in and out (no model classes): the builders already speak dicts, and skipping
(de)serialisation into generated models keeps a reconcile cheap at thousands of objects.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client, config

from .api_errors import ApiError, ApiInvalid, ApiNotFound, ApiTransportError, api_error
from .constants import FIELD_MANAGER
from .kinds import INFERENCE_SERVICE, kind_of

logger = logging.getLogger("isvc_operator")

# What a request that got no answer raises: urllib3's connection, TLS, timeout and protocol errors,
# and the socket's own. Anything else (a TypeError, a KeyError) is a bug and propagates as it is.
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def resource_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    plural = kind_of(api_version, kind).plural
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def load_api_client(pool_size: int = 32) -> client.ApiClient:
    """In-cluster config when running in a pod, else $KUBECONFIG / ~/.kube/config."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class KubeApi:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, _, _ = self.api_client.param_serialize(
            method=method, resource_path=path, header_params=headers, auth_settings=["BearerToken"]
        )
        if query:
            url = f"{url}?{urlencode(query)}"
        try:
            # The client serialises dict bodies as JSON, which is also valid for apply-patch+yaml.
            response = self.api_client.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
            response.read()
        except client.ApiException as exc:
            if not exc.status:
                raise ApiTransportError(exc.reason or type(exc).__name__, str(exc)) from exc
            raise api_error(exc.status, exc.reason or "", exc.body) from None
        except TRANSPORT_ERRORS as exc:  # connection refused, TLS, timeouts: all worth a retry
            raise ApiTransportError(type(exc).__name__, str(exc)) from exc
        if response.status >= 300:
            raise api_error(response.status, response.reason or "", response.data)
        return json.loads(response.data) if response.data else {}

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", resource_path(api_version, kind, namespace, name))
        except ApiNotFound:
            return None

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply with our one field manager; force takes fields back from hand edits."""
        metadata = obj["metadata"]
        path = resource_path(obj["apiVersion"], obj["kind"], metadata["namespace"], metadata["name"])
        return self.request(
            "PATCH",
            path,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=yaml_safe_json(obj),
            content_type="application/apply-patch+yaml",
        )

    def apply_or_replace(self, obj: Mapping[str, Any], *, exists: bool) -> dict[str, Any]:
        """Server-side apply; if the API server rejects the merge only because another field manager
        owns list entries beside ours (e.g. a Service port renumbered by hand: two ports named
        `http`), replace the child with exactly our object. A forced apply cannot take those entries
        back: they are keyed by a value we do not set, so it keeps them and fails every time."""
        try:
            return self.apply(obj)
        except ApiInvalid as exc:
            if not exists:
                raise
            rejected = exc
        live = self.get(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if live is None:
            raise rejected  # deleted in between: the next pass creates it
        replacement = _replacement(obj, live)
        metadata = replacement["metadata"]
        try:
            replaced = self.request(
                "PUT",
                resource_path(obj["apiVersion"], obj["kind"], metadata["namespace"], metadata["name"]),
                query={"fieldManager": FIELD_MANAGER},
                body=replacement,
            )
        except ApiInvalid:
            raise rejected from None  # our object itself is invalid
        logger.info(
            "%s %s/%s: replaced (apply was rejected: %s)",
            obj["kind"],
            metadata["namespace"],
            metadata["name"],
            rejected.message,
        )
        return replaced

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str | None = None) -> None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", resource_path(api_version, kind, namespace, name), body=body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def serves(self, api_version: str, plural: str) -> bool:
        """Whether the API server serves this resource now (discovery), e.g. Istio's AuthorizationPolicy."""
        try:
            resources = self.request("GET", f"/apis/{api_version}").get("resources") or []
        except ApiError as exc:
            if exc.status in (404, 503):
                return False
            raise
        return any(r.get("name") == plural for r in resources)

    def patch_status(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch the status; with `resource_version`, only over that version (409 otherwise)."""
        path = resource_path(INFERENCE_SERVICE.api_version, INFERENCE_SERVICE.kind, namespace, name) + "/status"
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request("PATCH", path, body=body, content_type="application/merge-patch+json")


# A JSON surrogate pair (Python's json escapes characters beyond U+FFFF so) is not a valid YAML
# escape, and apply bodies are parsed as YAML: write such characters as YAML's \\UXXXXXXXX instead.
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _replacement(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """Our object for a PUT over `live`: others' labels and annotations stay (e.g. the Deployment
    controller's revision), and so do `replicas` when we leave them to an autoscaler."""
    live_metadata = live.get("metadata") or {}
    metadata = dict(desired["metadata"])
    for field in ("labels", "annotations"):
        metadata[field] = {**(live_metadata.get(field) or {}), **(metadata.get(field) or {})}
    metadata["resourceVersion"] = live_metadata["resourceVersion"]
    replacement = {**desired, "metadata": metadata}
    live_spec, spec = live.get("spec") or {}, desired.get("spec")
    if isinstance(spec, Mapping) and "replicas" in live_spec and "replicas" not in spec:
        replacement["spec"] = {**spec, "replicas": live_spec["replicas"]}
    return replacement


def _astral(match: re.Match[str]) -> str:
    high, low = int(match.group(2), 16), int(match.group(3), 16)
    return f"{match.group(1)}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08X}"


def yaml_safe_json(obj: Any) -> bytes:
    """JSON that a YAML parser reads as the same object (JSON is YAML 1.2 except for surrogate escapes)."""
    return _SURROGATE_PAIR.sub(_astral, json.dumps(obj)).encode()
