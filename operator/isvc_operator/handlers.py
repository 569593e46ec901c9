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
from collections.abc import Mapping
from typing import Any

import kopf

from . import metrics
from .caches import WatchCaches
from .constants import GROUP, LABEL_ISVC, LABEL_MANAGED_BY, LABEL_REVISION, OPERATOR_NAME, PLURAL, VERSION
from .controller import Controller
from .kinds import CHILD_KINDS, POD, IsvcKey, without_managed_fields
from .kube_api import KubeApi, load_api_client
from .optional_apis import (
    GATEWAY_API,
    ISTIO,
    OPTIONAL_APIS,
    ApiPresence,
    crd_established,
    optional_api,
    served,
    wait_for_discovery,
)
from .reconcile import reconcile
from .reporting import OutcomeReporter
from .runner import OperatorRunner
from .runtimes import load_catalog
from .storage_access import StorageAccounts

OURS: dict[str, Any] = {LABEL_MANAGED_BY: OPERATOR_NAME, LABEL_ISVC: kopf.PRESENT}
API_CONCURRENCY = 32
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


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Quiet kopf's own bookkeeping (we keep no state on the objects) and build the controller."""
    # API calls run in threads (the client is synchronous): as many as its connection pool, not
    # asyncio's default of cpu_count + 4, which capped writes in flight at 6 during a burst.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=API_CONCURRENCY, thread_name_prefix="kube-api")
    )
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
    caches = memo.caches = WatchCaches()  # fresh per kopf run: the indexes are the new run's
    # Known before the first pass, so a running operator never prunes policies or routes it cannot see yet.
    apis = memo.apis = ApiPresence(
        {optional: await asyncio.to_thread(served, api, optional) for optional in OPTIONAL_APIS}
    )
    accounts = StorageAccounts(api)
    memo.controller = Controller(
        lookup=caches.lookup,
        run_pass=lambda body, children, pods: reconcile(
            body,
            children,
            api,
            catalog,
            pods=pods,
            istio_installed=apis[ISTIO],
            gateway_api_installed=apis[GATEWAY_API],
            plans=caches.plans,
            accounts=accounts,
        ),
        on_outcome=OutcomeReporter(caches.recent),
        on_gone=caches.forget,
        delete_orphan=lambda child: asyncio.to_thread(
            api.delete,
            child["apiVersion"],
            child["kind"],
            child["metadata"]["namespace"],
            child["metadata"]["name"],
            child["metadata"].get("uid"),
        ),
    )
    logger.info(
        "isvc-operator started: runtimes %s; %s; metrics on port %s",
        ", ".join(sorted(catalog.runtimes)),
        apis.summary(),
        memo.get("metrics_port") or "off",
    )


@kopf.on.cleanup()
async def stop_retries(memo: kopf.Memo, **_: Any) -> None:
    memo.controller.close()
    runner: OperatorRunner | None = memo.get("runner")
    if runner is not None:
        runner.release_stop_flag()


# The indexers are coroutines although they never wait: kopf runs a plain function in a thread of
# its executor (a context copy, a hand-off and a wake-up per event), a coroutine in its own loop.
@kopf.index(GROUP, VERSION, PLURAL)
async def inferenceservices(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[IsvcKey, Any]:
    return {(namespace or "", name): without_managed_fields(body)}


# The children we own, by kind (kinds.CHILD_KINDS): each gets a cache (kopf index) keyed by its
# isvc, and its events re-converge that isvc.
async def _index_child(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[IsvcKey, Any]:
    return {(namespace or "", labels[LABEL_ISVC]): without_managed_fields(body)}


for _kind in CHILD_KINDS:
    kopf.index(_kind.group, _kind.version, _kind.plural, labels=OURS, id=f"owned_{_kind.plural}")(_index_child)


@kopf.index(POD.group, POD.version, POD.plural, labels=OURS)
async def model_pods(
    namespace: str | None, labels: kopf.Labels, name: str, meta: kopf.Meta, status: kopf.Status, **_: Any
) -> dict[IsvcKey, Any]:
    """Only what failure reasons need, so thousands of pods stay cheap to hold."""
    return {
        (namespace or "", labels[LABEL_ISVC]): {
            "metadata": {
                "name": name,
                "deletionTimestamp": meta.get("deletionTimestamp"),
                # Which revision's pod it is, so a failing canary's pods never explain the stable one's state.
                "labels": {LABEL_REVISION: labels.get(LABEL_REVISION, "")},
            },
            "status": {key: status.get(key) for key in ("conditions", "initContainerStatuses", "containerStatuses")},
        }
    }


def _bind(memo: kopf.Memo, kwargs: Mapping[str, Any]) -> Controller:
    caches: WatchCaches = memo.caches
    if not caches.bound:
        caches.bind(
            kwargs["inferenceservices"], [kwargs[f"owned_{kind.plural}"] for kind in CHILD_KINDS], kwargs["model_pods"]
        )
    controller: Controller = memo.controller
    return controller


@kopf.on.event(GROUP, VERSION, PLURAL)
async def inferenceservice_changed(
    namespace: str | None, name: str, type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    """Any change of an isvc, and every isvc once at operator start, converges it."""
    caches: WatchCaches = memo.caches
    key = (namespace or "", name)
    if type == "DELETED":
        metrics.forget(key)
        caches.deleted(key)
        # A pass of a deleted isvc watches that its children follow it (see Controller._orphans).
        await _bind(memo, kwargs).trigger(key)
        return
    caches.recent.observed(key, body)
    await _bind(memo, kwargs).trigger(key)


async def child_changed(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
) -> None:
    """A child edited, deleted or progressing (rollouts, readiness) re-converges its isvc."""
    caches: WatchCaches = memo.caches
    key = (namespace or "", labels[LABEL_ISVC])
    caches.recent.observed(key, body)
    await _bind(memo, kwargs).trigger(key)


for _kind in (*CHILD_KINDS, POD):
    kopf.on.event(_kind.group, _kind.version, _kind.plural, labels=OURS, id=f"{_kind.plural}_changed")(child_changed)


@kopf.on.event(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    when=lambda name, **_: optional_api(name) is not None,
)
async def optional_api_crd_changed(name: str, type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Istio or the Gateway API installed or removed while we run: every isvc re-evaluates its
    AuthorizationPolicy, traffic split and HTTPRoute."""
    changed = optional_api(name)
    if changed is None:
        return
    established = crd_established(changed, type, body)
    apis: ApiPresence = memo.apis
    if established == apis[changed]:
        return
    # kopf watches what discovery lists when it starts, so the watches restart, once discovery
    # agrees (it can lag behind the CRD), and the fresh kopf re-lists every isvc and child
    # (unchanged ones cost no writes). On removal the old watch must also stop before the API
    # server tears the resource's storage down (about 1 s after the CRD is deleted): the watch's
    # reconnect would get 404, which kopf takes as fatal.
    api: KubeApi = memo.api
    apis.installed[changed] = established
    logger.info("%s's CRD %s is %s: restarting the watches", changed.name, name, "installed" if established else "gone")
    runner: OperatorRunner = memo.runner
    runner.request_restart(before=lambda: wait_for_discovery(api, changed, served_now=established))
