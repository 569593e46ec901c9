"""Lease-based leader election, so two replicas are safe: one reconciles, the other waits.

kopf's own peering pauses equal-priority peers instead; we use the `kubernetes` client's
LeaderElection with a coordination.k8s.io Lease. A leader that cannot renew its lease exits at once
(never two leaders); Kubernetes restarts it as a follower. A leader whose operator has stopped, failed
or wedged stops renewing, hands the Lease over and exits: it never renews a Lease for a dead controller.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from kubernetes import client, config
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from .runner import flush_logs

logger = logging.getLogger("isvc_operator.leader")
# Each API call of the Lease's release: best effort on the way out (else the Lease expires as usual).
RELEASE_TIMEOUT_SECONDS = 5


class _Alive(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"role": "follower"}')

    def log_message(self, *args: object) -> None:
        pass


class FollowerLiveness:
    """Answers the liveness probe while waiting for the lease; kopf's own endpoint takes over when leading."""

    def __init__(self, endpoint: str | None) -> None:
        self.server: ThreadingHTTPServer | None = None
        if endpoint:
            url = urlparse(endpoint)
            ThreadingHTTPServer.allow_reuse_address = True
            self.server = ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 80), _Alive)
            threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class WriteGate:
    """Writes that end for good at `close()`, which returns once none is in flight: the election
    renews the Lease from its own thread, and one more renewal after the release would take the
    empty Lease back (an empty holder is free for anyone, this process included)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    def write(self, call: Callable[[], Any]) -> bool:
        """`call()`'s truth, or False without calling it once the gate is closed."""
        with self._lock:
            return not self._closed and bool(call())

    def close(self, timeout: float) -> bool:
        """True once closed; False if a write in flight outlasts `timeout` (then it stays open)."""
        if not self._lock.acquire(timeout=timeout):
            return False
        self._closed = True
        self._lock.release()
        return True


class StoppableLeaseLock:
    """The client's LeaseLock, as the election uses it, with its writes behind a `WriteGate`."""

    def __init__(self, name: str, namespace: str, identity: str) -> None:
        self._lease = LeaseLock(name, namespace, identity)
        self.name, self.namespace, self.identity = name, namespace, self._lease.identity
        self.renewals = WriteGate()

    def get(self, name: str, namespace: str) -> Any:
        return self._lease.get(name, namespace)

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        return self.renewals.write(lambda: self._lease.create(name, namespace, election_record))

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        return self.renewals.write(lambda: self._lease.update(name, namespace, updated_record))


def identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def release_lease(namespace: str, name: str, me: str) -> None:
    """A clean stop hands the Lease over at once (client-go's ReleaseOnCancel): an empty holder is
    free for the next candidate's next try, instead of after the whole lease duration. Guarded by
    resourceVersion, so a Lease someone else holds by now is left alone."""
    api = client.CoordinationV1Api()
    try:
        lease = api.read_namespaced_lease(name, namespace, _request_timeout=RELEASE_TIMEOUT_SECONDS)
        if lease.spec is None or lease.spec.holder_identity != me:
            return
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        api.replace_namespaced_lease(name, namespace, lease, _request_timeout=RELEASE_TIMEOUT_SECONDS)
        logger.info("leader election: %s released Lease %s/%s", me, namespace, name)
    except Exception as exc:  # the Lease then expires as usual
        logger.warning("leader election: could not release Lease %s/%s: %s", namespace, name, exc)


def run_as_leader(
    run_operator: Callable[[Callable[[str], None]], None],
    stop_operator: Callable[[], None],
    *,
    namespace: str,
    name: str,
    liveness: str | None,
    lease_duration: int = 15,
    renew_deadline: int = 10,
    retry_period: int = 2,
) -> None:
    """Block until this process holds the Lease, then run the operator; exit if the Lease is lost.

    `run_operator(on_wedged)` blocks while the operator runs, and calls `on_wedged(reason)` from
    another thread if the operator can neither run nor return: this hands the Lease over and exits 1."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    me = identity()
    # The client logs every renewal attempt at INFO; our own lines say what matters.
    logging.getLogger("leaderelection").setLevel(logging.WARNING)
    follower = FollowerLiveness(liveness)
    finished = threading.Event()
    leading = threading.Event()
    lock = StoppableLeaseLock(name, namespace, me)

    def hand_over_and_exit(code: int) -> None:
        finished.set()
        if lock.renewals.close(RELEASE_TIMEOUT_SECONDS):
            release_lease(namespace, name, me)
        else:
            logger.warning("leader election: a renewal of Lease %s/%s hangs: not released; it expires", namespace, name)
        flush_logs()
        os._exit(code)  # a stop ends the process, the renew loop with it

    def wedged(reason: str) -> None:
        logger.error(
            "leader election: %s: the operator is wedged; releasing Lease %s/%s and exiting", me, namespace, name
        )
        hand_over_and_exit(1)

    def started_leading() -> None:
        logger.info("leader election: %s leads (Lease %s/%s)", me, namespace, name)
        leading.set()
        follower.stop()
        code = 0
        try:
            run_operator(wedged)
        except BaseException:
            # This runs in the election's thread: an error here would end the thread and leave a
            # leader that renews its Lease and reconciles nothing. Hand the Lease over and exit 1.
            logger.exception(
                "leader election: %s: the operator failed; releasing Lease %s/%s and exiting", me, namespace, name
            )
            code = 1
        hand_over_and_exit(code)

    def stopped_leading() -> None:
        if finished.is_set():
            # The renewals stopped for the hand-over, whose thread ends the process (within its
            # bounded calls): returning here would end it first, with status 0.
            time.sleep(3 * RELEASE_TIMEOUT_SECONDS + 10)  # the hand-over's bound, with margin
            os._exit(1)
        logger.error(
            "leader election: %s lost Lease %s/%s; exiting so that only one replica reconciles", me, namespace, name
        )
        os._exit(1)

    def on_sigterm(signum: int, frame: object) -> None:
        """In the main thread, which renews the Lease: it must not wait here (it may hold the lock's
        writes, which the hand-over needs). The leading thread hands over and exits once the
        operator stops, or the operator's watchdog does if it cannot stop."""
        if not leading.is_set():
            os._exit(0)  # a follower holds nothing
        stop_operator()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    logger.info("leader election: %s waits for Lease %s/%s", me, namespace, name)
    election = electionconfig.Config(
        lock,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        onstarted_leading=started_leading,
        onstopped_leading=stopped_leading,
    )
    leaderelection.LeaderElection(election).run()
