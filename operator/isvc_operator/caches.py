"""What a pass reads: the watch caches (kopf indexes) of isvcs, children and pods, with our own
recent writes laid over them, and the isvcs the API server says are gone.

kopf hands its indexes only to handlers (as kwargs), so the first handler call binds them here.
One instance per kopf run, shared through kopf's memo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .kinds import IsvcKey, ObjectKey, object_key
from .plan import Plans
from .recent import RecentWrites

# kopf's index for one resource: isvc key -> the bodies indexed under it.
Index = Mapping[IsvcKey, Any]


class WatchCaches:
    def __init__(self) -> None:
        self.isvcs: Index | None = None
        self.children: tuple[Index, ...] = ()
        self.pods: Index | None = None
        self.recent = RecentWrites()
        self.plans = Plans()
        # uids of isvcs the API server says are gone while kopf's index still holds them (kopf's
        # relist after a watch gap yields the listed objects only, never DELETED for the others);
        # an entry lasts only while the index holds that body.
        self.gone: dict[IsvcKey, set[str]] = {}

    @property
    def bound(self) -> bool:
        return self.isvcs is not None

    def bind(self, isvcs: Index, children: Sequence[Index], pods: Index) -> None:
        self.isvcs, self.children, self.pods = isvcs, tuple(children), pods

    def forget(self, key: IsvcKey, body: Mapping[str, Any]) -> None:
        """The API server says this incarnation of the isvc is gone: passes no longer see it."""
        uid = (body.get("metadata") or {}).get("uid")
        if uid:
            self.gone.setdefault(key, set()).add(uid)

    def deleted(self, key: IsvcKey) -> None:
        """kopf delivered the isvc's DELETED event: nothing of ours about it is news any more."""
        self.recent.forget(key)
        self.plans.forget(key)

    def lookup(self, key: IsvcKey) -> tuple[Mapping[str, Any] | None, dict[ObjectKey, Mapping[str, Any]], list[Any]]:
        """The isvc body (None: deleted), its children by key, and its pods, as a pass sees them."""
        cached = list(self.isvcs.get(key, ()) if self.isvcs is not None else ())
        gone = self.gone.get(key)
        if gone is not None:
            gone.intersection_update((b.get("metadata") or {}).get("uid") for b in cached)
            if not gone:
                del self.gone[key]
        # Several bodies under one key: a ghost of a deleted incarnation next to the live one.
        bodies = [b for b in cached if not gone or (b.get("metadata") or {}).get("uid") not in gone]
        body = max(bodies, key=lambda b: (b.get("metadata") or {}).get("creationTimestamp") or "", default=None)
        children: dict[ObjectKey, Mapping[str, Any]] = {}
        for index in self.children:
            for child in index.get(key, ()):
                children[object_key(child)] = child
        if body is None:
            self.recent.forget(key)
            return None, children, []  # what is left of a deleted isvc
        body = self.recent.overlay(key, object_key(body), body)
        assert body is not None
        for child_key in self.recent.pending(key):
            if child_key != object_key(body):
                overlaid = self.recent.overlay(key, child_key, children.get(child_key))
                if overlaid is not None:
                    children[child_key] = overlaid
        pods = list(self.pods.get(key, ())) if self.pods is not None else []
        return body, children, pods
