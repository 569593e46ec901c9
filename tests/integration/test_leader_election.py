"""Two replicas with Lease-based leader election: exactly one reconciles; the other takes over."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import CLUSTER_DIR, wait_until
from tests.integration.test_lifecycle import isvc, wait_ready

pytestmark = pytest.mark.cluster
LEASE_SECONDS = 15


def start_replica(kube, namespace, index):
    log = CLUSTER_DIR / "logs" / f"leader-{namespace}-{index}.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "isvc_operator",
            "run",
            "-n",
            namespace,
            "--leader-elect",
            "--leader-election-namespace",
            namespace,
            "--log-format",
            "json",
        ],
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        env={**kube.env, "PYTHONUNBUFFERED": "1"},
    )
    return proc, log


def leading(log):
    return "leads (Lease" in log.read_text()


@pytest.fixture
def replicas(operator, operator_identity, namespace):
    """Starts leader-elected operator processes in `namespace` (the session's operator pauses: it
    would reconcile this namespace too); stops them afterwards and checks their logs."""
    started = []

    def start():
        started.append(start_replica(operator_identity[1], namespace, len(started)))
        return started[-1]

    operator.stop()
    try:
        yield start
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
        operator.start()
    for _, log in started:
        assert "Traceback" not in log.read_text(), f"traceback in {log}"


def test_one_leader_reconciles_and_the_follower_takes_over(kube, replicas, namespace, model_claim):
    pair = [replicas(), replicas()]
    wait_until(lambda: any(leading(log) for _, log in pair), 30, "one replica to take the Lease")
    time.sleep(3)  # a second leader would show up within one retry period
    leaders = [i for i, (_, log) in enumerate(pair) if leading(log)]
    assert len(leaders) == 1, f"expected exactly one leader, got {leaders}"
    leader, follower = pair[leaders[0]], pair[1 - leaders[0]]

    kube.apply(isvc("first", namespace))
    wait_ready(kube, "first", namespace)
    assert f"reconcile {namespace}/" not in follower[1].read_text(), "the follower reconciled while not leading"

    leader[0].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: leading(follower[1]), LEASE_SECONDS + 10, "the follower to take the Lease")
    takeover = time.monotonic() - killed_at
    assert takeover <= LEASE_SECONDS + 2 * 2 + 1, f"takeover took {takeover:.1f}s, more than the lease duration"

    kube.apply(isvc("second", namespace))
    wait_ready(kube, "second", namespace)
    holder = kube.get("lease", "isvc-operator-leader", namespace)["spec"]["holderIdentity"]
    assert holder.endswith(f"_{follower[0].pid}")


def test_a_rolling_update_hands_the_lease_over_without_a_gap(kube, replicas, namespace, model_claim):
    """As a Deployment rolls: a new replica starts, then the old leader gets SIGTERM. The leader
    releases the Lease on its way out, so a waiting replica leads within a retry period or two,
    not after the lease duration; never two leaders."""
    old = replicas()
    wait_until(lambda: leading(old[1]), 30, "the first replica to take the Lease")
    new = replicas()
    wait_until(lambda: "waits for Lease" in new[1].read_text(), 30, "the new replica to wait")

    old[0].send_signal(signal.SIGTERM)
    assert old[0].wait(timeout=20) == 0, "the old leader must exit cleanly on SIGTERM"
    assert "released Lease" in old[1].read_text()
    released_at = time.monotonic()
    wait_until(lambda: leading(new[1]), LEASE_SECONDS, "the new replica to take the released Lease")
    handover = time.monotonic() - released_at
    assert handover < LEASE_SECONDS / 2, f"handover took {handover:.1f}s: the Lease was not released"

    kube.apply(isvc("rolled", namespace))
    wait_ready(kube, "rolled", namespace)
    holder = kube.get("lease", "isvc-operator-leader", namespace)["spec"]["holderIdentity"]
    assert holder.endswith(f"_{new[0].pid}")
