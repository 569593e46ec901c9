"""The per-isvc controller: serial passes, and children a deleted isvc left behind."""

from __future__ import annotations

import asyncio

from isvc_operator.api_errors import ApiTransportError
from isvc_operator.controller import Controller
from isvc_operator.reconcile import IsvcGone


def child(name: str, deleting: bool = False) -> dict:
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta}


def run_orphan_scenario(children: dict, *, gc_removes_after: float | None, grace: float = 0.2) -> list[str]:
    """A deleted isvc with `children` in the cache; the GC removes them after `gc_removes_after`."""
    deleted: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()

        def lookup(key):
            gone = gc_removes_after is not None and loop.time() - started >= gc_removes_after
            return None, ({} if gone else children), []

        async def delete_orphan(obj):
            deleted.append(obj["metadata"]["name"])
            children.pop(obj["metadata"]["name"])

        async def never(*_):
            raise AssertionError("a deleted isvc must not be reconciled")

        controller = Controller(
            lookup=lookup, run_pass=never, on_outcome=lambda *a: None, delete_orphan=delete_orphan, orphan_grace=grace
        )
        await controller.trigger(("ns", "gone"))
        await asyncio.sleep(grace * 2.5)
        controller.close()

    asyncio.run(main())
    return deleted


def test_children_the_garbage_collector_removes_in_time_are_left_to_it():
    assert run_orphan_scenario({"a": child("a")}, gc_removes_after=0.05) == []


def test_children_outliving_their_deleted_isvc_are_deleted_after_the_grace():
    assert run_orphan_scenario({"a": child("a"), "b": child("b", deleting=True)}, gc_removes_after=None) == ["a"]


def test_a_hung_pass_is_abandoned_and_retried():
    calls: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def run_pass(body, children, pods):
            calls.append(loop.time())
            if len(calls) == 1:
                await asyncio.sleep(3600)  # stuck
            return None

        outcomes: list = []
        controller = Controller(
            lookup=lambda key: ({"metadata": {}}, {}, []),
            run_pass=run_pass,
            on_outcome=lambda key, body, outcome, error, s: outcomes.append(error),
            pass_timeout=0.05,
        )
        await controller.trigger(("ns", "stuck"))
        await asyncio.sleep(0.8)  # the first retry comes after 0.5 s
        controller.close()
        assert isinstance(outcomes[0], TimeoutError)
        assert outcomes[1] is None, "the retry ran to completion"

    asyncio.run(main())
    assert len(calls) == 2


def run_failing_pass(error: BaseException, wait: float = 0.8) -> tuple[int, list, list]:
    """A pass that always raises `error`: how many passes ran in `wait` seconds, the outcomes
    reported and the isvcs reported gone."""
    calls: list[int] = []
    outcomes: list = []
    gone: list = []

    async def main() -> None:
        async def run_pass(body, children, pods):
            calls.append(1)
            raise error

        controller = Controller(
            lookup=lambda key: ({"metadata": {"uid": "u"}}, {}, []),
            run_pass=run_pass,
            on_outcome=lambda key, body, outcome, exc, s: outcomes.append(exc),
            on_gone=lambda key, body: gone.append(key),
        )
        await controller.trigger(("ns", "a"))
        await asyncio.sleep(wait)  # the first retry comes after 0.5 s
        controller.close()

    asyncio.run(main())
    return len(calls), outcomes, gone


def test_a_transient_api_error_is_retried():
    calls, outcomes, gone = run_failing_pass(ApiTransportError("ConnectionRefusedError", "refused"))
    assert calls == 2 and gone == []


def test_a_programming_error_is_logged_with_its_traceback_once_and_not_retried(caplog):
    calls, outcomes, _ = run_failing_pass(TypeError("'NoneType' object is not subscriptable"))
    assert calls == 1, "the same pass fails the same way: no retry loop"
    assert isinstance(outcomes[0], TypeError)
    tracebacks = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], TypeError)]
    assert len(tracebacks) == 1


def test_an_isvc_the_api_server_says_is_gone_is_forgotten_not_retried():
    calls, _, gone = run_failing_pass(IsvcGone("404 Not Found: "))
    assert (calls, gone) == (1, [("ns", "a")])
