"""The per-isvc controller: serial passes, retries with backoff, and children a deleted isvc left behind.

The controller's timing (backoff, grace, pass timeout) runs on a virtual clock: the loop jumps to
its next timer instead of waiting for it, so these tests assert exact schedules, take no real time
and cannot be flaky on a loaded machine.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from isvc_operator.api_errors import ApiTransportError
from isvc_operator.controller import Controller
from isvc_operator.reconcile import IsvcGone, Outcome


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock starts at 0 and advances only when nothing is ready: then it jumps
    to the next timer (a wait with nothing scheduled still blocks, e.g. on a thread)."""

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self.now = 0.0
        real_select = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> list[Any]:
            if timeout is None:
                return real_select(None)
            events = real_select(0)
            if not events:
                self.now += timeout
            return events

        self._selector.select = select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self.now


def on_virtual_clock(main: Callable[[], Awaitable[None]]) -> None:
    loop = VirtualClockLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def child(name: str, deleting: bool = False) -> dict:
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta}


def run_orphan_scenario(
    children: dict, *, gc_removes_after: float | None, grace: float = 30
) -> list[tuple[str, float]]:
    """A deleted isvc with `children` in the cache; the GC removes them after `gc_removes_after`
    seconds. Which children the controller deleted, and when (virtual seconds)."""
    deleted: list[tuple[str, float]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        def lookup(key):
            gone = gc_removes_after is not None and loop.time() >= gc_removes_after
            return None, ({} if gone else children), []

        async def delete_orphan(obj):
            deleted.append((obj["metadata"]["name"], loop.time()))
            children.pop(obj["metadata"]["name"])

        async def never(*_):
            raise AssertionError("a deleted isvc must not be reconciled")

        controller = Controller(
            lookup=lookup, run_pass=never, on_outcome=lambda *a: None, delete_orphan=delete_orphan, orphan_grace=grace
        )
        await controller.trigger(("ns", "gone"))
        await asyncio.sleep(grace * 10)  # virtual: ten graces, long past the one check at the grace
        controller.close()

    on_virtual_clock(main)
    return deleted


def test_children_the_garbage_collector_removes_in_time_are_left_to_it():
    assert run_orphan_scenario({"a": child("a")}, gc_removes_after=29) == []


def test_children_outliving_their_deleted_isvc_are_deleted_after_the_grace():
    deleted = run_orphan_scenario({"a": child("a"), "b": child("b", deleting=True)}, gc_removes_after=None)
    assert deleted == [("a", 30)], "exactly the child not already being deleted, once, 30 s after the isvc went"


def test_a_hung_pass_is_abandoned_and_retried():
    calls: list[float] = []
    outcomes: list = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def run_pass(body, children, pods):
            calls.append(loop.time())
            if len(calls) == 1:
                await asyncio.sleep(3600)  # stuck
            return None

        controller = Controller(
            lookup=lambda key: ({"metadata": {}}, {}, []),
            run_pass=run_pass,
            on_outcome=lambda key, body, outcome, error, s: outcomes.append(error),
        )
        await controller.trigger(("ns", "stuck"))
        await asyncio.sleep(3600)
        controller.close()

    on_virtual_clock(main)
    # Abandoned at the pass timeout (120 s), retried after the first backoff (0.5 s), then done.
    assert calls == [0, 120.5]
    assert isinstance(outcomes[0], TimeoutError)
    assert outcomes[1:] == [None], "the retry ran to completion"


def run_failing_pass(error: BaseException, until: float = 200) -> tuple[list[float], list, list]:
    """A pass that always raises `error`: when passes ran in `until` virtual seconds, the outcomes
    reported and the isvcs reported gone."""
    calls: list[float] = []
    outcomes: list = []
    gone: list = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def run_pass(body, children, pods):
            calls.append(loop.time())
            raise error

        controller = Controller(
            lookup=lambda key: ({"metadata": {"uid": "u"}}, {}, []),
            run_pass=run_pass,
            on_outcome=lambda key, body, outcome, exc, s: outcomes.append(exc),
            on_gone=lambda key, body: gone.append(key),
        )
        await controller.trigger(("ns", "a"))
        await asyncio.sleep(until)
        controller.close()

    on_virtual_clock(main)
    return calls, outcomes, gone


def test_a_transient_api_error_is_retried_with_exponential_backoff_up_to_60_s():
    calls, outcomes, gone = run_failing_pass(ApiTransportError("ConnectionRefusedError", "refused"))
    # Delays 0.5, 1, 2, 4, 8, 16, 32, then 60 (the cap) each time.
    assert calls == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5, 63.5, 123.5, 183.5]
    assert gone == [] and all(isinstance(o, ApiTransportError) for o in outcomes)


@pytest.mark.parametrize(
    "error", [TypeError("'NoneType' object is not subscriptable"), IsvcGone("404 Not Found: ")], ids=type
)
def test_a_pass_that_would_fail_the_same_way_again_is_not_retried(error):
    # 200 virtual seconds: past three retries at the longest backoff (60 s).
    calls, outcomes, _ = run_failing_pass(error)
    assert calls == [0], "the same pass fails the same way: no retry loop"
    assert outcomes == [error]


def test_a_programming_error_is_logged_with_its_traceback_once(caplog):
    run_failing_pass(TypeError("'NoneType' object is not subscriptable"))
    tracebacks = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], TypeError)]
    assert len(tracebacks) == 1


def test_an_isvc_the_api_server_says_is_gone_is_forgotten():
    _, _, gone = run_failing_pass(IsvcGone("404 Not Found: "))
    assert gone == [("ns", "a")]


def test_an_outcome_that_asks_for_a_retry_is_retried_with_backoff_until_it_no_longer_does():
    """E.g. a missing ServiceAccount: the pass succeeds (the status names it) but nothing watched says when it comes."""
    calls: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def run_pass(body, children, pods):
            calls.append(loop.time())
            return Outcome(result="invalid", retry=len(calls) < 4)

        controller = Controller(
            lookup=lambda key: ({"metadata": {"uid": "u"}}, {}, []), run_pass=run_pass, on_outcome=lambda *a: None
        )
        await controller.trigger(("ns", "a"))
        await asyncio.sleep(200)
        controller.close()

    on_virtual_clock(main)
    assert calls == [0, 0.5, 1.5, 3.5], "backoff 0.5, 1, 2 s, then no more retries once the outcome is settled"
