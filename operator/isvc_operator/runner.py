"""kopf's lifetime: run it until stopped, and start it again when the watched resources change.

kopf discovers the resources it watches when it starts (and again on CRD events, racing the API
server's own discovery), so when Istio's CRD appears or disappears at run time a handler asks for
a restart: kopf stops, and a fresh kopf re-discovers. The stop flag is an `asyncio.Event` in
kopf's own loop: a `threading.Event` would park one of the loop's executor threads in `wait()`,
and the loop's shutdown would then wait for that thread forever after a SIGTERM.

kopf treats a 404 on a watch as fatal: when a watched resource's CRD is deleted, its watch is
closed and the reconnect gets 404 ("page not found") unless kopf's own rescan cancelled the watch
first. kopf then stops with that error. Such a run is restarted here (a fresh kopf re-discovers
without the resource) instead of leaving a process that watches nothing.

kopf can lose the cancellation of one of its root tasks, and then never returns: its namespace and
resource observers catch a 403 from their watch (kopf's `queueing.watcher`) and wait forever, and
that watcher's cleanup (a `finally` that awaits its workers under `suppress(CancelledError)`)
swallows a cancellation that arrives while it runs. When the observer's last retry of a 403 ends
within a few event-loop turns of another watcher's (both retry with the same backoffs from the same
start), kopf cancels the observer just then: the 403 goes on, the cancellation is gone, and kopf's
stop waits for that task without end. So kopf runs here as `spawn_tasks` + `run_tasks` (what
`kopf.operator` does), and a root task still running `RECANCEL_AFTER_SECONDS` after kopf began to
stop is cancelled once more. Whatever else keeps kopf from returning, a watchdog thread reports it
after `SHUTDOWN_GRACE_SECONDS` (`on_wedged`: the process exits 1; a leader releases its Lease first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import kopf

logger = logging.getLogger("isvc_operator")
# Between restarts after a vanished resource: a CRD deleted and re-created in a loop must not spin.
VANISHED_BACKOFF_SECONDS = 1.0
# kopf's root tasks end within about 2 s of their cancellation (a watcher waits for its workers up
# to settings.queueing.exit_timeout, 2 s): one still running after this has lost the cancellation.
RECANCEL_AFTER_SECONDS = 5.0
# The longest a kopf run may take to return once it began to stop: the re-cancellation above (5 s),
# kopf's wait for the tasks its root tasks left (5 s, then cancelled with 1 s polls) and the cleanup
# handlers, with margin. Well under a pod's termination grace period (30 s by default), so that a
# wedged leader releases its Lease before the kubelet's SIGKILL.
SHUTDOWN_GRACE_SECONDS = 20.0
# kopf's root task that waits for all the others and then runs the cleanup handlers: it is still
# running, rightly, while they stop, and cancelling it again would skip the cleanup.
KOPF_CLEANUP_TASK = "startup/cleanup activities"


@dataclass(frozen=True)
class Stopping:
    """kopf began to stop: when (`time.monotonic()`) and why."""

    since: float
    why: str


def overdue_stop(stopping: Stopping | None, still_running: Sequence[str], now: float, grace: float) -> str | None:
    """The line to log when kopf has not returned `grace` s after it began to stop; None until then.

    `still_running` names kopf's root tasks that have not ended (none: kopf is stuck after them,
    in its wait for the tasks they left or in the event loop's own shutdown)."""
    if stopping is None or now - stopping.since <= grace:
        return None
    stuck = (
        f"its root tasks {', '.join(repr(name) for name in still_running)} never ended"
        if still_running
        else "its root tasks ended, but not the wait for the tasks they left or the event loop's shutdown"
    )
    return (
        f"kopf is wedged: {now - stopping.since:.0f} s after it began to stop ({stopping.why}) it has not "
        f"returned (allowed: {grace:.0f} s); {stuck}"
    )


def flush_logs() -> None:
    """Before `os._exit`, which skips every flush."""
    for handler in logging.getLogger().handlers + logger.handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()


def exit_wedged(reason: str) -> None:
    """A wedged event loop never returns: end the process with status 1 (restarted by Kubernetes)."""
    flush_logs()
    os._exit(1)


def thread_stacks() -> str:
    """Where every thread is: a blocked event loop shows here, not in its tasks."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    return "\n".join(
        f"thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items()
    )


def await_chain(task: asyncio.Task[Any]) -> str:
    """The task's coroutine and each coroutine it awaits, down to the innermost await (a task's
    own `get_stack` shows only its outermost frame)."""
    lines = []
    awaited: Any = task.get_coro()
    while awaited is not None and getattr(awaited, "cr_frame", None) is not None:
        frame = awaited.cr_frame
        lines.append(f'  File "{frame.f_code.co_filename}", line {frame.f_lineno}, in {frame.f_code.co_name}\n')
        awaited = awaited.cr_await
    if awaited is not None:
        lines.append(f"  awaiting {awaited!r}\n")
    return "".join(lines)


def task_stacks() -> str:
    """Every task of the running loop and the await it waits in: what a stuck shutdown is stuck on."""
    return "\n".join(
        f"{task!r}:\n{await_chain(task)}" for task in sorted(asyncio.all_tasks(), key=asyncio.Task.get_name)
    )


def vanished_resource(error: BaseException) -> bool:
    """kopf's APINotFoundError (private) carries the HTTP status: a watched API is gone."""
    return getattr(error, "status", None) == 404


def root_task_outcome(task: asyncio.Task[Any]) -> str:
    """How one of kopf's root tasks ended, for the watchdog's line."""
    if task.cancelled():
        return f"kopf's root task {task.get_name()!r} was cancelled"
    error = task.exception()
    if error is not None:
        return f"kopf's root task {task.get_name()!r} failed: {error!r}"
    return f"kopf's root task {task.get_name()!r} ended"


async def recancel_lost_cancellations(root_tasks: Collection[asyncio.Task[Any]], after: float) -> None:
    """Once one root task has ended, kopf cancels the others: cancel again those still running after
    `after` s (see the module's docstring), but the cleanup task, which waits for them."""
    others = {task for task in root_tasks if task.get_name() != KOPF_CLEANUP_TASK}
    if not others:
        return
    _, still_running = await asyncio.wait(others, timeout=after)
    if still_running:
        logger.warning(
            "kopf's root tasks %s still run %.0f s after kopf began to stop (their cancellation was lost): "
            "cancelling them again",
            ", ".join(sorted(repr(task.get_name()) for task in still_running)),
            after,
        )
        for task in still_running:
            task.cancel()


class OperatorRunner:
    """One kopf run after another until `stop()` or a stop that nobody asked a restart for.

    Handlers reach it as `memo.runner` (the memo passed to `run`)."""

    def __init__(self, shutdown_grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flag: asyncio.Event | None = None
        self._stopping = False
        self._restart = False
        self._before_restart: Callable[[], None] | None = None
        self._shutdown_grace = shutdown_grace
        self._began_stopping: Stopping | None = None
        self._root_tasks: tuple[asyncio.Task[Any], ...] = ()

    def run(self, on_wedged: Callable[[str], None] = exit_wedged, **kopf_options: Any) -> None:
        """Block while kopf runs; return when stopped (signal, `stop()`, or kopf's own exit).

        Should kopf not return `shutdown_grace` s after it began to stop, `on_wedged` is called
        (from the watchdog's thread) with a line that says what is stuck; it must end the process."""
        returned = threading.Event()
        threading.Thread(target=self._watch, args=(on_wedged, returned), name="kopf-watchdog", daemon=True).start()
        try:
            self._run(kopf_options)
        finally:
            returned.set()

    def _run(self, kopf_options: dict[str, Any]) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._restart = False
            try:
                asyncio.run(self._operator(kopf_options))
            except Exception as error:
                if not vanished_resource(error):
                    raise
                logger.warning("a watched resource is gone (%s): restarting kopf's watches without it", error)
                with self._lock:
                    self._restart = True
                time.sleep(VANISHED_BACKOFF_SECONDS)
            with self._lock:
                self._began_stopping, self._root_tasks = None, ()  # kopf returned: nothing is stuck
                if not self._restart or self._stopping:
                    return
                before, self._before_restart = self._before_restart, None
            if before is not None:
                before()
            logger.info("restarting kopf's watches")

    def _watch(self, on_wedged: Callable[[str], None], returned: threading.Event) -> None:
        """The watchdog: a thread, so that it works while kopf's event loop is stuck or blocked."""
        while not returned.wait(1.0):
            with self._lock:
                stopping, root_tasks = self._began_stopping, self._root_tasks
            still_running = [task.get_name() for task in root_tasks if not task.done()]
            verdict = overdue_stop(stopping, still_running, time.monotonic(), self._shutdown_grace)
            if verdict is not None and not returned.is_set():
                logger.error(verdict)
                self.dump_stacks()
                on_wedged(verdict)
                return

    def _note_stopping(self, why: str) -> None:
        """The first reason counts: what came after it is kopf stopping because of it."""
        with self._lock:
            if self._began_stopping is None:
                self._began_stopping = Stopping(time.monotonic(), why)

    async def _operator(self, kopf_options: dict[str, Any]) -> None:
        with self._lock:
            self._loop, self._flag = asyncio.get_running_loop(), asyncio.Event()
            flag = self._flag
        try:
            await self._run_kopf(flag, kopf_options)
        except asyncio.CancelledError:
            pass
        finally:
            with self._lock:
                self._loop = self._flag = None

    async def _run_kopf(self, flag: asyncio.Event, kopf_options: dict[str, Any]) -> None:
        """`kopf.operator`'s two steps, with the root tasks in view while they stop."""
        existing = asyncio.all_tasks()  # this task too: kopf's end must not cancel its caller
        root_tasks = await kopf.spawn_tasks(stop_flag=flag, **kopf_options)
        with self._lock:
            self._root_tasks = tuple(root_tasks)
        for task in root_tasks:
            task.add_done_callback(lambda task: self._note_stopping(root_task_outcome(task)))
        run = asyncio.create_task(kopf.run_tasks(root_tasks, ignored=existing), name="kopf run_tasks")
        try:
            await asyncio.wait(root_tasks, return_when=asyncio.FIRST_COMPLETED)
            await recancel_lost_cancellations(root_tasks, RECANCEL_AFTER_SECONDS)
        except asyncio.CancelledError:
            run.cancel()  # kopf's own reaction to a cancelled operator: cancel all, no grace
            await asyncio.wait({run})
            raise
        await run

    def request_restart(self, before: Callable[[], None] | None = None) -> None:
        """From a handler, in kopf's loop: stop kopf, call `before` (no kopf running), start it again."""
        with self._lock:
            self._restart = True
            self._before_restart = before
            flag = self._flag
        self._note_stopping("a restart was requested")
        if flag is not None:
            flag.set()

    def release_stop_flag(self) -> None:
        """From kopf's cleanup, in its loop: after a signal kopf leaves its stop-flag waiter pending
        and then waits 5 s for it as a hung task; setting the flag ends it (not a restart)."""
        if self._flag is not None:
            self._flag.set()

    def stop(self) -> None:
        """From any thread (a signal handler, the leader election): stop kopf for good."""
        with self._lock:
            self._stopping = True
            loop, flag = self._loop, self._flag
        self._note_stopping("a stop was requested")
        if loop is not None and flag is not None:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # the loop closed in between: kopf is stopping anyway
                pass

    def dump_stacks(self, wait: float = 2.0) -> None:
        """From any thread but the loop's (SIGUSR1 starts one): log every thread's stack, then every
        asyncio task's, which the loop itself must list (waited for up to `wait` s: a blocked loop
        never answers, and its thread's stack above says where it is blocked)."""
        logger.warning("stack dump: threads\n%s", thread_stacks())
        with self._lock:
            loop = self._loop
        if loop is None:
            logger.warning("stack dump: no kopf run (no asyncio tasks)")
            return
        listed = threading.Event()

        def log_tasks() -> None:
            logger.warning("stack dump: asyncio tasks\n%s", task_stacks())
            listed.set()

        try:
            loop.call_soon_threadsafe(log_tasks)
        except RuntimeError:  # the loop closed in between
            return
        if not listed.wait(wait):
            logger.warning("stack dump: the event loop did not list its tasks within %.0f s: it is blocked", wait)
