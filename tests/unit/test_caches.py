"""What a pass sees: the watch caches merged with our recent writes and the isvcs known gone."""

from __future__ import annotations

from typing import Any

from isvc_operator.caches import WatchCaches
from isvc_operator.kinds import DEPLOYMENT, SERVICE, object_key

KEY = ("ns", "iris")


def isvc(uid: str, rv: int, created: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "apiVersion": "serving.isvc.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {
            "name": "iris",
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": str(rv),
            "creationTimestamp": created,
        },
    }


def child(kind, rv: int, name: str = "iris") -> dict[str, Any]:
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {"name": name, "resourceVersion": str(rv)}}


def caches_with(isvcs: list, children: list, pods: list | None = None) -> WatchCaches:
    caches = WatchCaches()
    caches.bind({KEY: isvcs} if isvcs else {}, [{KEY: children}], {KEY: pods or []})
    return caches


def test_a_deleted_incarnation_next_to_the_live_one_is_not_the_body():
    old, new = isvc("uid-old", 5, "2026-01-01T00:00:00Z"), isvc("uid-new", 9, "2026-01-02T00:00:00Z")
    body, _, _ = caches_with([old, new], []).lookup(KEY)
    assert body is new


def test_an_isvc_known_gone_is_seen_as_deleted_with_its_children():
    old = isvc("uid-1", 5)
    deployment = child(DEPLOYMENT, 6, "iris-predictor")
    caches = caches_with([old], [deployment])
    caches.forget(KEY, old)
    body, children, pods = caches.lookup(KEY)
    assert body is None and children == {object_key(deployment): deployment} and pods == []


def test_a_gone_uid_is_kept_only_while_the_cache_holds_that_body():
    old = isvc("uid-1", 5)
    caches = caches_with([old], [])
    caches.forget(KEY, old)
    caches.isvcs = {}  # the watch dropped it
    caches.lookup(KEY)
    assert caches.gone == {}, "the set of gone uids must not grow with every isvc ever deleted"
    reborn = isvc("uid-2", 8)
    caches.isvcs = {KEY: [reborn]}
    assert caches.lookup(KEY)[0] is reborn


def test_our_write_wins_over_an_older_cached_object_until_the_watch_catches_up():
    cached_service = child(SERVICE, 10)
    caches = caches_with([isvc("uid-1", 5)], [cached_service])
    written_service, written_deployment = child(SERVICE, 12), child(DEPLOYMENT, 13, "iris-predictor")
    written_isvc = isvc("uid-1", 14)
    caches.recent.record(KEY, {object_key(s): s for s in (written_service, written_deployment, written_isvc)})
    body, children, _ = caches.lookup(KEY)
    assert body["metadata"]["resourceVersion"] == "14"
    assert children[object_key(cached_service)] == written_service
    assert children[object_key(written_deployment)] == written_deployment, "a child created by us, not yet watched"
    # The watch delivers a later state of the Service: the cache wins from then on.
    newer_service = child(SERVICE, 20)
    caches.children = ({KEY: [newer_service, written_deployment]},)
    _, children, _ = caches.lookup(KEY)
    assert children[object_key(newer_service)] is newer_service
    assert len(caches.recent) == 1  # the isvc's write only; the watch has not delivered rv 14


def test_a_deleted_isvc_drops_our_writes_and_its_plan():
    caches = caches_with([isvc("uid-1", 5)], [])
    caches.recent.record(KEY, {object_key(child(SERVICE, 12)): child(SERVICE, 12)})
    caches.deleted(KEY)
    assert len(caches.recent) == 0
