"""Lease-based leader election, so two replicas are safe: one reconciles, the other waits.

kopf's own peering pauses equal-priority peers instead; we use the `kubernetes` client's
LeaderElection with a coordination.k8s.io Lease. A leader that cannot renew its lease exits at once
(never two leaders); Kubernetes restarts it as a follower.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from kubernetes import client, config
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

logger = logging.getLogger("isvc_operator.leader")


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


def identity() -> str:
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def release_lease(namespace: str, name: str, me: str) -> None:
    """A clean stop hands the Lease over at once (client-go's ReleaseOnCancel): an empty holder is
    free for the next candidate's next try, instead of after the whole lease duration. Guarded by
    resourceVersion, so a Lease someone else holds by now is left alone."""
    api = client.CoordinationV1Api()
    try:
        lease = api.read_namespaced_lease(name, namespace)
        if lease.spec is None or lease.spec.holder_identity != me:
            return
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        api.replace_namespaced_lease(name, namespace, lease)
        logger.info("leader election: %s released Lease %s/%s", me, namespace, name)
    except Exception as exc:  # the Lease then expires as usual
        logger.warning("leader election: could not release Lease %s/%s: %s", namespace, name, exc)


def run_as_leader(
    run_operator: Callable[[], None],
    stop_operator: Callable[[], None],
    *,
    namespace: str,
    name: str,
    liveness: str | None,
    lease_duration: int = 15,
    renew_deadline: int = 10,
    retry_period: int = 2,
) -> None:
    """Block until this process holds the Lease, then run the operator; exit if the Lease is lost."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    me = identity()
    # The client logs every renewal attempt at INFO; our own lines say what matters.
    logging.getLogger("leaderelection").setLevel(logging.WARNING)
    follower = FollowerLiveness(liveness)
    finished = threading.Event()

    def started_leading() -> None:
        logger.info("leader election: %s leads (Lease %s/%s)", me, namespace, name)
        follower.stop()
        code = 0
        try:
            run_operator()
        except BaseException:
            # This runs in the election's thread: an error here would end the thread and leave a
            # leader that renews its Lease and reconciles nothing. Hand the Lease over and exit 1.
            logger.exception(
                "leader election: %s: the operator failed; releasing Lease %s/%s and exiting", me, namespace, name
            )
            code = 1
        finished.set()
        release_lease(namespace, name, me)
        os._exit(code)  # a stop ends the process, the renew loop with it

    def stopped_leading() -> None:
        if not finished.is_set():
            logger.error(
                "leader election: %s lost Lease %s/%s; exiting so that only one replica reconciles", me, namespace, name
            )
            os._exit(1)

    def on_sigterm(signum: int, frame: object) -> None:
        stop_operator()
        if not follower.server and finished.wait(30):
            return
        os._exit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    logger.info("leader election: %s waits for Lease %s/%s", me, namespace, name)
    election = electionconfig.Config(
        LeaseLock(name, namespace, me),
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        onstarted_leading=started_leading,
        onstopped_leading=stopped_leading,
    )
    leaderelection.LeaderElection(election).run()
