"""Two replicas with Lease-based leader election: exactly one reconciles; the other takes over."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import CLUSTER_DIR, Kube, wait_until
from tests.integration.test_lifecycle import isvc, wait_ready
from tests.support import holds_for, service_account_kubeconfig

pytestmark = pytest.mark.cluster
LEASE = "isvc-operator-leader"
LEASE_SECONDS = 15  # the operator's defaults (leader.py)
RETRY_PERIOD = 2


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
    would reconcile this namespace too), under the chart's identity or `as_user`; stops them
    afterwards and checks that their logs hold no traceback (but the one a test expects)."""
    started = []
    expected_failures = {}  # log -> the error its traceback must show

    def start(as_user=None, fails_with=None):
        started.append(start_replica(as_user or operator_identity[1], namespace, len(started)))
        if fails_with:
            expected_failures[started[-1][1]] = fails_with
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
        expected = expected_failures.get(log)
        # One JSON record per line: a traceback is on the line of the record that logged it.
        tracebacks = [line for line in log.read_text().splitlines() if "Traceback" in line]
        unexpected = [line for line in tracebacks if not (expected and expected in line)]
        assert not unexpected, f"traceback in {log} (expected: only of {expected or 'none'}): {unexpected[0][:300]}"


def holder(kube, namespace):
    lease = kube.get("lease", LEASE, namespace)
    return (lease or {}).get("spec", {}).get("holderIdentity")


def test_one_leader_reconciles_and_the_follower_takes_over(kube, replicas, namespace, model_claim):
    pair = [replicas(), replicas()]
    wait_until(lambda: any(leading(log) for _, log in pair), 30, "one replica to take the Lease")
    wait_until(lambda: all("waits for Lease" in log.read_text() for _, log in pair), 30, "both replicas to campaign")
    holds_for(
        lambda: sum(leading(log) for _, log in pair) == 1,
        2 * RETRY_PERIOD + 1,
        "exactly one leader",
        f"a follower tries to acquire the Lease every retry period ({RETRY_PERIOD} s): two tries",
    )
    leaders = [i for i, (_, log) in enumerate(pair) if leading(log)]
    leader, follower = pair[leaders[0]], pair[1 - leaders[0]]
    assert holder(kube, namespace).endswith(f"_{leader[0].pid}")

    kube.apply(isvc("first", namespace))
    wait_ready(kube, "first", namespace)
    assert f"reconcile {namespace}/" not in follower[1].read_text(), "the follower reconciled while not leading"

    # Killed: no release; the follower takes the Lease once it expires. Waited for on the Lease's
    # holder with a generous deadline (how long it takes is the reliability benchmark's business).
    leader[0].send_signal(signal.SIGKILL)
    wait_until(
        lambda: (holder(kube, namespace) or "").endswith(f"_{follower[0].pid}"),
        LEASE_SECONDS * 4,
        "the follower to hold the Lease after the leader was killed",
    )
    wait_until(lambda: leading(follower[1]), 30, "the follower to say it leads")

    kube.apply(isvc("second", namespace))
    wait_ready(kube, "second", namespace)


def test_a_rolling_update_hands_the_lease_over_without_a_gap(kube, replicas, namespace, model_claim):
    """As a Deployment rolls: a new replica starts, then the old leader gets SIGTERM. The leader
    releases the Lease on its way out (an empty holder, free at the next try instead of after the
    lease duration), so the Lease never names a process that is gone; never two leaders."""
    old = replicas()
    wait_until(lambda: leading(old[1]), 30, "the first replica to take the Lease")
    new = replicas()
    wait_until(lambda: "waits for Lease" in new[1].read_text(), 30, "the new replica to wait")
    assert holder(kube, namespace).endswith(f"_{old[0].pid}")

    old[0].send_signal(signal.SIGTERM)
    assert old[0].wait(timeout=20) == 0, "the old leader must exit cleanly on SIGTERM"
    assert "released Lease" in old[1].read_text()
    # Read at once after the exit: released (empty) or already the new replica's, never the old one's.
    after_exit = holder(kube, namespace)
    assert not (after_exit or "").endswith(f"_{old[0].pid}"), (
        f"the Lease still names the exited leader ({after_exit}): it was not released, so the new "
        f"replica waits out the lease duration; see {old[1]}"
    )
    wait_until(
        lambda: (holder(kube, namespace) or "").endswith(f"_{new[0].pid}"),
        LEASE_SECONDS * 4,
        "the new replica to hold the released Lease",
    )
    wait_until(lambda: leading(new[1]), 30, "the new replica to say it leads")

    kube.apply(isvc("rolled", namespace))
    wait_ready(kube, "rolled", namespace)


def test_a_leader_that_cannot_renew_exits_so_there_are_never_two(kube, replicas, namespace):
    """README: a leader that cannot renew its Lease exits at once (exit 1, restarted by Kubernetes as
    a follower). Here another holder takes the Lease over (as after a partition): the old leader's
    renewals fail, and it must exit rather than keep reconciling beside the new holder."""
    proc, log = replicas()
    wait_until(lambda: leading(log), 30, "the replica to take the Lease")
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube.run(
        "patch",
        "lease",
        LEASE,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        f'{{"spec":{{"holderIdentity":"intruder","leaseDurationSeconds":3600,"renewTime":"{stamp}","acquireTime":"{stamp}"}}}}',
    )
    wait_until(lambda: proc.poll() is not None, LEASE_SECONDS * 4, "the leader that cannot renew to exit")
    assert proc.returncode == 1, f"expected exit code 1, got {proc.returncode}; see {log}"
    assert "lost Lease" in log.read_text(), f"the leader did not say why it exited: see {log}"
    assert holder(kube, namespace) == "intruder", "the exiting leader must not take the Lease back or release it"


def lease_only_identity(kube, namespace):
    """A ServiceAccount that may hold the Lease in `namespace` and do nothing else: the operator it
    runs cannot list what it watches (a ClusterRole broken by hand, a binding deleted)."""
    account = "lease-only"
    kube.run("create", "serviceaccount", account, "-n", namespace)
    kube.run(
        "create",
        "role",
        "lease",
        "-n",
        namespace,
        "--verb=get,list,watch,create,update,patch",
        "--resource=leases.coordination.k8s.io",
    )
    kube.run(
        "create", "rolebinding", "lease", "-n", namespace, "--role=lease", f"--serviceaccount={namespace}:{account}"
    )
    token = kube.run("create", "token", account, "-n", namespace).stdout.strip()
    path = service_account_kubeconfig(
        Path(kube.kubeconfig), account, token, CLUSTER_DIR / f"lease-only-{namespace}.kubeconfig"
    )
    return Kube(kube.kubectl, str(path))


def test_a_leader_whose_operator_fails_releases_the_lease_and_exits_1(kube, replicas, namespace, model_claim):
    """README: a leader whose operator fails (for a reason other than a vanished resource) releases
    its Lease and exits 1, so Kubernetes restarts it and a follower takes over at its next try
    rather than after the lease duration. The failure is real: the replica's ServiceAccount may
    hold the Lease but not list what kopf watches; kopf retries the 403s, then stops with the error.
    Its namespace observer retries its own 403s alongside and, in some runs, gets its last one just
    as kopf cancels it, which kopf's watcher swallows: the operator must end anyway (runner.py)."""
    proc, log = replicas(as_user=lease_only_identity(kube, namespace), fails_with="APIForbiddenError")
    wait_until(lambda: leading(log), 30, "the replica to take the Lease")
    assert holder(kube, namespace).endswith(f"_{proc.pid}")
    follower = replicas()
    wait_until(lambda: "waits for Lease" in follower[1].read_text(), 30, "the follower to wait for the Lease")
    # kopf retries a 403 with its backoffs (1+2+5+10 s, the operator's settings) twice over (its
    # namespace observer lists, then watches) before it gives up.
    wait_until(lambda: proc.poll() is not None, 120, "the leader whose operator fails to exit")
    text = log.read_text()
    assert proc.returncode == 1, f"expected exit code 1, got {proc.returncode}; see {log}"
    assert "the operator failed; releasing Lease" in text, f"the leader did not say why it exited: see {log}"
    # Read at once after the exit: released (empty) or already the follower's, never the exited leader's.
    after_exit = holder(kube, namespace)
    assert not (after_exit or "").endswith(f"_{proc.pid}"), (
        f"the Lease still names {after_exit} after its leader exited: not released, so the follower "
        f"waits out the lease duration; see {log}"
    )
    wait_until(
        lambda: (holder(kube, namespace) or "").endswith(f"_{follower[0].pid}"),
        LEASE_SECONDS * 4,
        "the follower to hold the released Lease",
    )
    wait_until(lambda: leading(follower[1]), 30, "the follower to say it leads")
    kube.apply(isvc("after-failure", namespace))
    wait_ready(kube, "after-failure", namespace)
