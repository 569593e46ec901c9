"""Runs reconcile passes: one at a time per isvc, coalescing bursts, retrying failures with backoff.

Watch events for an isvc and for each of its children arrive on different kopf workers; this is
the one place that turns them into a single serial stream of passes per isvc (a workqueue in
controller-runtime terms), so two passes never race on the same object.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .api_errors import ApiError
from .kinds import IsvcKey, ObjectKey
from .reconcile import ChildrenRejected, IsvcGone, Outcome

logger = logging.getLogger("isvc_operator.controller")


@dataclass
class _KeyState:
    running: bool = False
    dirty: bool = False
    failures: int = 0
    retry: asyncio.TimerHandle | None = None
    orphans_since: float | None = None


@dataclass
class Controller:
    """`lookup(key)` returns the isvc body and its live children from the watch caches."""

    lookup: Callable[[IsvcKey], tuple[Mapping[str, Any] | None, Mapping[ObjectKey, Mapping[str, Any]], list[Any]]]
    run_pass: Callable[[Mapping[str, Any], Mapping[ObjectKey, Mapping[str, Any]], list[Any]], Awaitable[Outcome]]
    on_outcome: Callable[[IsvcKey, Mapping[str, Any], Outcome | None, BaseException | None, float], None]
    max_backoff: float = 60.0
    on_gone: Callable[[IsvcKey, Mapping[str, Any]], None] = lambda key, body: None
    # Deletes children left behind by a deleted isvc (see `_orphans`); None: leave them to the GC.
    delete_orphan: Callable[[Mapping[str, Any]], Awaitable[None]] | None = None
    orphan_grace: float = 30.0
    pass_timeout: float = 120.0
    _states: dict[IsvcKey, _KeyState] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _closing: bool = False

    def close(self) -> None:
        """Operator stopping: no more retries (kopf is about to shut its executor down)."""
        self._closing = True
        for state in self._states.values():
            if state.retry is not None:
                state.retry.cancel()
                state.retry = None
        for task in self._tasks:
            task.cancel()

    async def trigger(self, key: IsvcKey) -> None:
        if self._closing:
            return
        state = self._states.setdefault(key, _KeyState())
        if state.running:
            state.dirty = True  # the running pass loops once more with the newest state
            return
        state.running = True
        try:
            while True:
                state.dirty = False
                await self._pass(key, state)
                if not state.dirty:
                    break
        finally:
            state.running = False
            if not state.dirty and state.failures == 0 and state.retry is None:
                self._states.pop(key, None)

    async def _pass(self, key: IsvcKey, state: _KeyState) -> None:
        body, children, pods = self.lookup(key)
        loop = asyncio.get_running_loop()
        if body is None:
            await self._orphans(key, state, children)
            return
        state.orphans_since = None
        started = loop.time()
        try:
            # A pass that hangs (a request stuck past its own timeout) must not block its isvc for
            # good: it is abandoned and retried with backoff like any failure. Its request in
            # flight still runs in its thread and may land late: a status patch then fails its
            # resourceVersion guard (reconcile._write_status), a child apply is undone by the
            # pass its watch event triggers.
            outcome = await asyncio.wait_for(self.run_pass(body, children, pods), self.pass_timeout)
        except Exception as exc:  # noqa: BLE001 - one isvc's failure must never stop the others
            if self._closing:
                return  # interrupted by the operator's own shutdown; the next start converges it
            if isinstance(exc, IsvcGone):
                # The isvc itself is gone although the cache still holds it: stop converging it,
                # or its children are re-created and garbage-collected in a loop.
                self.on_gone(key, body)
                self.on_outcome(key, body, None, exc, loop.time() - started)
                self._forget_retry(state)
                return
            if not isinstance(exc, (ApiError, ChildrenRejected, TimeoutError)):
                # A bug, not a condition of the cluster: the same pass would fail the same way.
                # Its traceback once; the next change of the isvc or a child runs a pass again.
                self.on_outcome(key, body, None, exc, loop.time() - started)
                logger.exception("reconcile of %s/%s failed (not retried until the isvc or a child changes)", *key)
                self._forget_retry(state)
                return
            delay = self._schedule_retry(key, state)
            self.on_outcome(key, body, None, exc, loop.time() - started)
            if isinstance(exc, TimeoutError):
                logger.warning(
                    "reconcile of %s/%s took over %.0fs: abandoned, retrying in %.1fs", *key, self.pass_timeout, delay
                )
            return
        if isinstance(outcome, Outcome) and outcome.retry:
            self._schedule_retry(key, state)  # e.g. a missing ServiceAccount: nothing we watch says when it comes
        else:
            self._forget_retry(state)
        self.on_outcome(key, body, outcome, None, loop.time() - started)

    def _schedule_retry(self, key: IsvcKey, state: _KeyState) -> float:
        state.failures += 1
        # Capped exponent: 2 ** 1024 does not fit a float (OverflowError after 1024 failures).
        delay: float = min(self.max_backoff, 0.5 * 2 ** min(state.failures - 1, 16))
        if state.retry is not None:
            state.retry.cancel()
        state.retry = asyncio.get_running_loop().call_later(delay, self._retry, key)
        return delay

    @staticmethod
    def _forget_retry(state: _KeyState) -> None:
        if state.retry is not None:
            state.retry.cancel()
            state.retry = None
        state.failures = 0

    async def _orphans(self, key: IsvcKey, state: _KeyState, children: Mapping[ObjectKey, Mapping[str, Any]]) -> None:
        """The isvc is gone: Kubernetes' garbage collector removes its children, normally within a
        second. After an API server outage its per-object backoff can hold some for minutes (seen
        in the chaos suite), so whatever is still here after `orphan_grace` seconds we delete."""
        left = [c for c in children.values() if not (c.get("metadata") or {}).get("deletionTimestamp")]
        if not left or self.delete_orphan is None:
            state.orphans_since = None
            return
        loop = asyncio.get_running_loop()
        if state.orphans_since is None:
            state.orphans_since = loop.time()
        waited = loop.time() - state.orphans_since
        if waited < self.orphan_grace:
            if state.retry is None:
                state.retry = loop.call_later(self.orphan_grace - waited, self._retry, key)
            return
        for child in left:
            meta = child.get("metadata") or {}
            logger.warning(
                "%s %s/%s outlived its deleted InferenceService by %.0fs: deleting it",
                child.get("kind"),
                meta.get("namespace"),
                meta.get("name"),
                waited,
            )
            try:
                await self.delete_orphan(child)
            except ApiError as exc:
                logger.warning(
                    "deleting %s %s/%s failed: %s", child.get("kind"), meta.get("namespace"), meta.get("name"), exc
                )
        state.orphans_since = None

    def _retry(self, key: IsvcKey) -> None:
        state = self._states.get(key)
        if state is not None:
            state.retry = None
        task = asyncio.ensure_future(self.trigger(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
