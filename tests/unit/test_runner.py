"""kopf's lifetime (`OperatorRunner`): restarts asked by handlers, runs ended by a vanished resource,
root tasks that lose their cancellation, and the watchdog of a stop that never ends.

kopf's root tasks (`kopf.spawn_tasks`) are replaced by small coroutines that do what kopf's do at
those moments: wait for the stop flag, raise its APINotFoundError (a 404 on a watch whose CRD was
deleted), or swallow a cancellation as its watcher's cleanup does; kopf's own `run_tasks` runs them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from kopf._cogs.clients.errors import APIForbiddenError, APINotFoundError, APIServerError

from isvc_operator import runner
from isvc_operator.runner import OperatorRunner, Stopping, overdue_stop

Root = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> OperatorRunner:
    monkeypatch.setattr(runner, "VANISHED_BACKOFF_SECONDS", 0)
    return OperatorRunner()


def fake_kopf(monkeypatch: pytest.MonkeyPatch, *roots: Root) -> None:
    """kopf's root tasks are these coroutines (named after their functions), given the stop flag."""

    async def spawn_tasks(stop_flag: asyncio.Event, **_: object) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(root(stop_flag), name=root.__name__) for root in roots]

    monkeypatch.setattr(runner.kopf, "spawn_tasks", spawn_tasks)


def in_thread(run: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Runs `run` in a daemon thread (a hang must fail the test, not block it); collects its error."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def forbidden() -> APIForbiddenError:
    return APIForbiddenError({"message": "namespaces is forbidden"}, status=403, headers={})


def test_a_watch_of_a_deleted_resource_restarts_kopf(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def operator(stop_flag: asyncio.Event) -> None:
        calls.append("run")
        if len(calls) == 1:
            raise APINotFoundError({"message": "404 page not found"}, status=404, headers={})

    fake_kopf(monkeypatch, operator)
    runs.run()
    assert calls == ["run", "run"]


def test_other_failures_end_the_run(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def operator(stop_flag: asyncio.Event) -> None:
        calls.append("run")
        raise APIServerError({"message": "etcdserver: request timed out"}, status=500, headers={})

    fake_kopf(monkeypatch, operator)
    with pytest.raises(APIServerError):
        runs.run()
    assert calls == ["run"]


def test_a_requested_restart_calls_its_hook_between_runs(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def operator(stop_flag: asyncio.Event) -> None:
        calls.append("run")
        if len(calls) == 1:
            runs.request_restart(before=lambda: calls.append("before"))
            await stop_flag.wait()
            calls.append("stopped")

    fake_kopf(monkeypatch, operator)
    runs.run()
    assert calls == ["run", "stopped", "before", "run"]


def test_stop_wins_over_a_restart(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def operator(stop_flag: asyncio.Event) -> None:
        calls.append("run")
        runs.request_restart(before=lambda: calls.append("before"))
        runs.stop()
        await stop_flag.wait()

    fake_kopf(monkeypatch, operator)
    runs.run()
    assert calls == ["run"]


async def watcher_fails(stop_flag: asyncio.Event) -> None:
    """kopf's multitasker when a watch gets 403 after all its retries: the root task fails."""
    raise forbidden()


async def observer_loses_its_cancellation(stop_flag: asyncio.Event) -> None:
    """kopf's namespace observer: its watch (`queueing.watcher`) gets 403; the watcher's cleanup
    swallows a cancellation that arrives meanwhile; the observer takes the 403 for "not allowed to
    watch namespaces" and waits forever."""
    try:
        try:
            await asyncio.sleep(0)
            raise forbidden()
        finally:
            try:
                await asyncio.Event().wait()  # the cleanup, when kopf's cancellation arrives
            except asyncio.CancelledError:
                pass  # kopf: `with contextlib.suppress(asyncio.CancelledError): await asyncio.shield(...)`
    except APIForbiddenError:
        await asyncio.Event().wait()


def test_a_root_task_that_lost_its_cancellation_is_cancelled_again(
    runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runner, "RECANCEL_AFTER_SECONDS", 0.1)
    fake_kopf(monkeypatch, watcher_fails, observer_loses_its_cancellation)
    thread, errors = in_thread(runs.run)
    thread.join(60)
    assert not thread.is_alive(), "the run never returned: the observer's lost cancellation was not delivered again"
    assert [type(error) for error in errors] == [APIForbiddenError], "the run must end with the watcher's error"
    assert "'observer_loses_its_cancellation' still run" in caplog.text, (
        "the re-cancellation must say what it re-cancels"
    )


def test_a_stop_that_never_ends_is_reported_with_what_is_stuck(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A root task that ignores every cancellation (as a task blocked in a thread would): the
    watchdog calls `on_wedged` with a line naming it and why kopf stopped, after a stack dump."""
    monkeypatch.setattr(runner, "RECANCEL_AFTER_SECONDS", 0.1)
    loop_of_run: list[asyncio.AbstractEventLoop] = []
    released = asyncio.Event()  # bound to the run's loop at its first wait

    async def ignores_cancellation(stop_flag: asyncio.Event) -> None:
        loop_of_run.append(asyncio.get_running_loop())
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue

    reasons: queue.Queue[str] = queue.Queue()

    def on_wedged(reason: str) -> None:
        reasons.put(reason)  # the operator's own on_wedged ends the process; this test ends the task
        loop_of_run[0].call_soon_threadsafe(released.set)

    fake_kopf(monkeypatch, watcher_fails, ignores_cancellation)
    with caplog.at_level(logging.WARNING, logger="isvc_operator"):
        thread, errors = in_thread(lambda: OperatorRunner(shutdown_grace=0.5).run(on_wedged=on_wedged))
        reason = reasons.get(timeout=60)
        thread.join(60)
    assert "'ignores_cancellation' never ended" in reason, reason
    assert "'watcher_fails' failed: APIForbiddenError" in reason, reason
    assert "in ignores_cancellation" in caplog.text, "the stack dump must show where the stuck task waits"
    assert not thread.is_alive() and [type(error) for error in errors] == [APIForbiddenError]


def test_a_stop_that_ends_in_time_calls_no_watchdog(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    async def waits_for_the_stop(stop_flag: asyncio.Event) -> None:
        runs.stop()
        await stop_flag.wait()

    wedged: list[str] = []
    fake_kopf(monkeypatch, waits_for_the_stop)
    runs.run(on_wedged=wedged.append)
    assert wedged == []


@pytest.mark.parametrize(
    ("stopping", "still_running", "now", "expected"),
    [
        (None, ["namespace observer"], 1000.0, None),
        (Stopping(100.0, "a stop was requested"), ["namespace observer"], 120.0, None),
        (
            Stopping(100.0, "kopf's root task 'multidimensional multitasker' failed: APIForbiddenError()"),
            ["namespace observer", "startup/cleanup activities"],
            121.0,
            "kopf is wedged: 21 s after it began to stop (kopf's root task 'multidimensional multitasker' failed: "
            "APIForbiddenError()) it has not returned (allowed: 20 s); its root tasks 'namespace observer', "
            "'startup/cleanup activities' never ended",
        ),
        (
            Stopping(100.0, "a stop was requested"),
            [],
            130.0,
            "kopf is wedged: 30 s after it began to stop (a stop was requested) it has not returned (allowed: 20 s); "
            "its root tasks ended, but not the wait for the tasks they left or the event loop's shutdown",
        ),
    ],
    ids=["running", "stopping-within-grace", "root-tasks-stuck", "stuck-after-root-tasks"],
)
def test_overdue_stop(stopping: Stopping | None, still_running: list[str], now: float, expected: str | None) -> None:
    assert overdue_stop(stopping, still_running, now, grace=20.0) == expected
