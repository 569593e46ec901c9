"""kopf's lifetime (`OperatorRunner`): restarts asked by handlers, and runs ended by a vanished resource.

`kopf.operator` is replaced by small coroutines that do what kopf does at those moments: wait for
the stop flag, or raise its APINotFoundError (a 404 on a watch whose CRD was deleted).
"""

from __future__ import annotations

import asyncio

import pytest
from kopf._cogs.clients.errors import APINotFoundError, APIServerError

from isvc_operator import runner
from isvc_operator.runner import OperatorRunner


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> OperatorRunner:
    monkeypatch.setattr(runner, "VANISHED_BACKOFF_SECONDS", 0)
    return OperatorRunner()


def test_a_watch_of_a_deleted_resource_restarts_kopf(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def operator(stop_flag: asyncio.Event, **_: object) -> None:
        calls.append("run")
        if len(calls) == 1:
            raise APINotFoundError({"message": "404 page not found"}, status=404, headers={})

    monkeypatch.setattr(runner.kopf, "operator", operator)
    runs.run()
    assert calls == ["run", "run"]


def test_other_failures_end_the_run(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def operator(stop_flag: asyncio.Event, **_: object) -> None:
        calls.append("run")
        raise APIServerError({"message": "etcdserver: request timed out"}, status=500, headers={})

    monkeypatch.setattr(runner.kopf, "operator", operator)
    with pytest.raises(APIServerError):
        runs.run()
    assert calls == ["run"]


def test_a_requested_restart_calls_its_hook_between_runs(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def operator(stop_flag: asyncio.Event, **_: object) -> None:
        calls.append("run")
        if len(calls) == 1:
            runs.request_restart(before=lambda: calls.append("before"))
            await stop_flag.wait()
            calls.append("stopped")

    monkeypatch.setattr(runner.kopf, "operator", operator)
    runs.run()
    assert calls == ["run", "stopped", "before", "run"]


def test_stop_wins_over_a_restart(runs: OperatorRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def operator(stop_flag: asyncio.Event, **_: object) -> None:
        calls.append("run")
        runs.request_restart(before=lambda: calls.append("before"))
        runs.stop()
        await stop_flag.wait()

    monkeypatch.setattr(runner.kopf, "operator", operator)
    runs.run()
    assert calls == ["run"]
