"""kopf doorways: watches feed caches (indexes) and trigger reconcile passes; nothing else here.

We use kopf's low-level event handlers and indexes rather than create/update handlers: those are
edge-triggered and store their progress in annotations on the isvc (a write per change), whereas
a level-based pass from cached state needs neither. kopf still owns the watches, reconnects,
the event loop, Events and logging; `Controller` adds per-isvc serialisation and retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from .apply import ChildKey
from .constants import GROUP, LABEL_ISVC, LABEL_MANAGED_BY, OPERATOR_NAME, PLURAL, VERSION
from .controller import Controller, Key
from . import metrics
from .kube_api import ApiError, KubeApi, load_api_client
from .reconcile import Outcome, reconcile
from .plan import Plans
from .recent import RecentWrites, object_key
from .runtimes import load_catalog
from .watches import WATCHES

OURS = {LABEL_MANAGED_BY: OPERATOR_NAME, LABEL_ISVC: kopf.PRESENT}
API_CONCURRENCY = 32
ISTIO_GROUP, ISTIO_VERSION, ISTIO_PLURAL = "security.istio.io", "v1", "authorizationpolicies"
ISTIO_CRD = f"{ISTIO_PLURAL}.{ISTIO_GROUP}"
logger = logging.getLogger("isvc_operator")


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's change detection, switched off: it serves create/update handlers, which we do not use,
    yet kopf builds a deep copy of every watched body for it on every event (Pods and Deployments
    included): 12-17% of the operator's Python CPU in a create burst (py-spy --gil)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


class _Caches:
    """The kopf indexes, captured from handler kwargs (kopf hands them only to handlers), and what
    the cluster offers. Shared by reference: kopf gives each object a shallow copy of the memo."""

    isvcs: Any = None
    children: tuple[Any, ...] = ()
    pods: Any = None
    istio_installed: bool = False

    def __init__(self) -> None:
        self.recent = RecentWrites()
        self.plans = Plans()
        # uids of isvcs the API server says are gone while kopf's index still holds them (kopf's
        # relist after a watch gap yields the listed objects only, never DELETED for the others).
        self.gone: set[str] = set()

    def forget(self, key: Key, body: Mapping[str, Any]) -> None:
        uid = (body.get("metadata") or {}).get("uid")
        if uid:
            self.gone.add(uid)

    def lookup(self, key: Key) -> tuple[Mapping[str, Any] | None, dict[ChildKey, Mapping[str, Any]], list[Any]]:
        # Several bodies under one key: a ghost of a deleted incarnation next to the live one.
        bodies = [b for b in (self.isvcs.get(key, ()) if self.isvcs is not None else ())
                  if (b.get("metadata") or {}).get("uid") not in self.gone]
        body = max(bodies, key=lambda b: (b.get("metadata") or {}).get("creationTimestamp") or "", default=None)
        children: dict[ChildKey, Mapping[str, Any]] = {}
        for index in self.children:
            for child in index.get(key, ()):
                children[object_key(child)] = child
        if body is None:
            self.recent.forget(key)
            return None, children, []  # what is left of a deleted isvc
        body = self.recent.overlay(key, object_key(body), body)
        for child_key in self.recent.pending(key):
            if child_key != object_key(body):
                children[child_key] = self.recent.overlay(key, child_key, children.get(child_key))
        pods = list(self.pods.get(key, ())) if self.pods is not None else []
        return body, children, pods


CACHES = _Caches()


def _report(key: Key, body: Mapping[str, Any], outcome: Outcome | None, error: BaseException | None, seconds: float) -> None:
    namespace, name = key
    if error is not None:
        metrics.record_pass(key, "error", seconds, None, error.status if isinstance(error, ApiError) else None)
        logger.warning("reconcile %s/%s failed after %.3fs: %s", namespace, name, seconds, error)
        return
    assert outcome is not None
    metrics.record_pass(key, outcome.result, seconds, outcome.ready_after)
    responses = dict(outcome.responses)
    if outcome.isvc_response:
        responses[object_key(outcome.isvc_response)] = outcome.isvc_response
    CACHES.recent.record(key, responses)
    if outcome.result != "unchanged":
        logger.info("reconcile %s/%s: %s (%d writes: %s) in %.3fs", namespace, name, outcome.result, outcome.writes,
                    outcome.summary, seconds)
    if outcome.ready_changed and outcome.ready_after is not None:
        ready = outcome.ready_after
        kopf.event(
            dict(body),
            type="Normal" if ready["status"] != "False" else "Warning",
            reason=ready["reason"],
            message=f"Ready={ready['status']}: {ready['message']}"[:1024],
        )


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Quiet kopf's own bookkeeping (we keep no state on the objects) and build the controller."""
    # API calls run in threads (the client is synchronous): as many as its connection pool, not
    # asyncio's default of cpu_count + 4, which capped writes in flight at 6 during a burst.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=API_CONCURRENCY, thread_name_prefix="kube-api"))
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = NoDiffBase()
    # kopf posts each object's Events from its own worker over a connection pool without a limit:
    # the Ready burst of 1000 isvcs held ~430 TLS connections open at once (+115 MB of OpenSSL and
    # aiohttp buffers in the main heap, kept). As many posters as API threads keep up with the
    # burst if each leaves as soon as its object has nothing to post (it idles 1 s by default,
    # holding its slot: 8 posters managed only 8 Events/s).
    settings.posting.worker_limit = API_CONCURRENCY
    settings.posting.idle_timeout = 0.1
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.networking.error_backoffs = [1, 2, 5, 10]
    api = KubeApi(load_api_client(pool_size=API_CONCURRENCY))
    memo.api = api
    catalog = load_catalog()
    global CACHES
    caches = CACHES = _Caches()  # fresh per kopf run: the indexes are the new run's
    memo.caches = caches
    # Known before the first pass, so a running operator never prunes policies it cannot see yet.
    caches.istio_installed = await asyncio.to_thread(_istio_served, api)
    memo.controller = Controller(
        lookup=caches.lookup,
        run_pass=lambda body, children, pods: reconcile(
            body, children, api, catalog, pods=pods, istio_installed=caches.istio_installed, plans=caches.plans),
        on_outcome=_report,
        on_gone=caches.forget,
        delete_orphan=lambda child: asyncio.to_thread(
            api.delete, child["apiVersion"], child["kind"], child["metadata"]["namespace"], child["metadata"]["name"],
            child["metadata"].get("uid")),
    )
    logger.info("isvc-operator started: runtimes %s; Istio %s; metrics on port %s",
                ", ".join(sorted(catalog.runtimes)), "installed" if caches.istio_installed else "not installed",
                memo.get("metrics_port") or "off")


@kopf.on.cleanup()
async def stop_retries(memo: kopf.Memo, **_: Any) -> None:
    memo.controller.close()
    WATCHES.release_stop_flag()


# The indexers are coroutines although they never wait: kopf runs a plain function in a thread of
# its executor (a context copy, a hand-off and a wake-up per event), a coroutine in its own loop.
@kopf.index(GROUP, VERSION, PLURAL)
async def inferenceservices(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): _slim(body)}


# The children we own, by kind: each gets a cache (kopf index) keyed by its isvc, and its events
# re-converge that isvc. Istio's resource is watched only where its CRD exists.
CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("autoscaling", "v2", "horizontalpodautoscalers"),
    (ISTIO_GROUP, ISTIO_VERSION, ISTIO_PLURAL),
)


def _slim(body: kopf.Body) -> dict[str, Any]:
    """The body as cached: without managedFields, which nothing reads and which dominate its size."""
    obj = dict(body)
    obj["metadata"] = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    return obj


async def _index_child(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, labels[LABEL_ISVC]): _slim(body)}


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.index(_group, _version, _plural, labels=OURS, id=f"owned_{_plural}")(_index_child)


@kopf.index("", "v1", "pods", labels=OURS)
async def model_pods(namespace: str, labels: kopf.Labels, name: str, meta: kopf.Meta, status: kopf.Status, **_: Any) -> dict[Key, Any]:
    """Only what failure reasons need, so thousands of pods stay cheap to hold."""
    return {(namespace, labels[LABEL_ISVC]): {
        "metadata": {"name": name, "deletionTimestamp": meta.get("deletionTimestamp")},
        "status": {key: status.get(key) for key in ("conditions", "initContainerStatuses", "containerStatuses")},
    }}


def _bind(memo: kopf.Memo, kwargs: Mapping[str, Any]) -> Controller:
    caches: _Caches = memo.caches
    if caches.isvcs is None:
        caches.isvcs = kwargs["inferenceservices"]
        caches.children = tuple(kwargs[f"owned_{plural}"] for _, _, plural in CHILD_RESOURCES)
        caches.pods = kwargs["model_pods"]
    return memo.controller


@kopf.on.event(GROUP, VERSION, PLURAL)
async def inferenceservice_changed(namespace: str, name: str, type: str | None, body: kopf.Body, memo: kopf.Memo,
                                  **kwargs: Any) -> None:
    """Any change of an isvc, and every isvc once at operator start, converges it."""
    if type == "DELETED":
        metrics.forget((namespace, name))
        CACHES.recent.forget((namespace, name))
        CACHES.plans.forget((namespace, name))
        # A pass of a deleted isvc watches that its children follow it (see Controller._orphans).
        await _bind(memo, kwargs).trigger((namespace, name))
        return
    CACHES.recent.observed((namespace, name), body)
    await _bind(memo, kwargs).trigger((namespace, name))


async def child_changed(namespace: str, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A child edited, deleted or progressing (rollouts, readiness) re-converges its isvc."""
    CACHES.recent.observed((namespace, labels[LABEL_ISVC]), body)
    await _bind(memo, kwargs).trigger((namespace, labels[LABEL_ISVC]))


for _group, _version, _plural in (*CHILD_RESOURCES, ("", "v1", "pods")):
    kopf.on.event(_group, _version, _plural, labels=OURS, id=f"{_plural}_changed")(child_changed)


@kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions", when=lambda name, **_: name == ISTIO_CRD)
async def istio_crd_changed(type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Istio installed or removed while we run: every isvc re-evaluates its AuthorizationPolicy."""
    established = type != "DELETED" and any(
        c.get("type") == "Established" and c.get("status") == "True" for c in (body.get("status") or {}).get("conditions") or []
    ) and any(v.get("name") == ISTIO_VERSION and v.get("served") for v in (body.get("spec") or {}).get("versions") or [])
    caches: _Caches = memo.caches
    if established == caches.istio_installed:
        return
    # kopf watches what discovery lists when it starts, so the watches restart, once discovery
    # agrees (it can lag behind the CRD), and the fresh kopf re-lists every isvc and child
    # (unchanged ones cost no writes). On removal the old watch must also stop before the API
    # server tears the resource's storage down (about 1 s after the CRD is deleted): the watch's
    # reconnect would get 404, which kopf takes as fatal.
    api: KubeApi = memo.api
    caches.istio_installed = established
    logger.info("Istio's AuthorizationPolicy CRD is %s: restarting the watches", "installed" if established else "gone")
    WATCHES.request_restart(before=lambda: _wait_for_discovery(api, served=established))


def _istio_served(api: KubeApi) -> bool:
    return api.serves(f"{ISTIO_GROUP}/{ISTIO_VERSION}", ISTIO_PLURAL)


def _wait_for_discovery(api: KubeApi, *, served: bool, timeout: float = 30) -> None:
    """Between kopf runs: until discovery lists Istio's resource (or no longer does)."""
    deadline = time.monotonic() + timeout
    while _istio_served(api) != served and time.monotonic() < deadline:
        time.sleep(0.2)
