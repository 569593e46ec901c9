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
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf

logger = logging.getLogger("isvc_operator")
# Between restarts after a vanished resource: a CRD deleted and re-created in a loop must not spin.
VANISHED_BACKOFF_SECONDS = 1.0


def vanished_resource(error: BaseException) -> bool:
    """kopf's APINotFoundError (private) carries the HTTP status: a watched API is gone."""
    return getattr(error, "status", None) == 404


class OperatorRunner:
    """One kopf run after another until `stop()` or a stop that nobody asked a restart for.

    Handlers reach it as `memo.runner` (the memo passed to `run`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flag: asyncio.Event | None = None
        self._stopping = False
        self._restart = False
        self._before_restart: Callable[[], None] | None = None

    def run(self, **kopf_options: Any) -> None:
        """Block while kopf runs; return when stopped (signal, `stop()`, or kopf's own exit)."""
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
                if not self._restart or self._stopping:
                    return
                before, self._before_restart = self._before_restart, None
            if before is not None:
                before()
            logger.info("restarting kopf's watches")

    async def _operator(self, kopf_options: dict[str, Any]) -> None:
        with self._lock:
            self._loop, self._flag = asyncio.get_running_loop(), asyncio.Event()
            flag = self._flag
        try:
            await kopf.operator(stop_flag=flag, **kopf_options)
        except asyncio.CancelledError:
            pass
        finally:
            with self._lock:
                self._loop = self._flag = None

    def request_restart(self, before: Callable[[], None] | None = None) -> None:
        """From a handler, in kopf's loop: stop kopf, call `before` (no kopf running), start it again."""
        with self._lock:
            self._restart = True
            self._before_restart = before
            flag = self._flag
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
        if loop is not None and flag is not None:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # the loop closed in between: kopf is stopping anyway
                pass
