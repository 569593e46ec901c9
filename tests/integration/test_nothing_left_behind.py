"""A benchmark leaves nothing running when it is interrupted: bench/chaos.py, stopped by Ctrl-C
(SIGINT) while its operator reconciles, or by SIGTERM after it has killed and restarted its
kube-apiserver, stops its control plane (the restarted component too) and its operator processes.

The processes of that run are found the way an engineer would look for them afterwards: every
process whose command line or environment names the run's own cluster dir or work dir
(/proc/*/cmdline, /proc/*/environ), whether or not a pid file still names it. The run gets a
private cluster dir and ports, so nothing of the tests' own cluster is touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, reserved_port, wait_until

pytestmark = pytest.mark.cluster


def processes_of(*dirs: Path) -> list[str]:
    """Live processes whose command line or environment names one of `dirs` (zombies have neither)."""
    needles = [str(d).encode() for d in dirs]
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        try:
            cmdline, environ = (proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()
        except OSError:  # gone meanwhile
            continue
        if any(n in cmdline or n in environ for n in needles):
            args = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{proc.name}: {args[:160]}")
    return found


def etcd_ports() -> int:
    """A reserved port whose successor is free too (etcd's peer port)."""
    while True:
        port = reserved_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def live_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def named(found: list[str], binary: str) -> bool:
    return any(f" {binary}" in line or f"/{binary}" in line for line in found)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c-mid-churn", "sigterm-after-restart"])
def test_an_interrupted_chaos_run_leaves_no_process(tmp_path, signum):
    cluster, workdir = tmp_path / "cluster", tmp_path / "work"
    env = {
        **os.environ,
        "ISVC_CHAOS_CLUSTER_DIR": str(cluster),
        "ISVC_CHAOS_API_PORT": str(reserved_port()),
        "ISVC_CHAOS_ETCD_PORT": str(etcd_ports()),
    }
    log = tmp_path / "chaos.log"
    run = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench/chaos.py"),
            "--quick",
            "--scenarios",
            "apiserver-restart",
            "--workdir",
            str(workdir),
            "--out",
            str(tmp_path / "chaos.json"),
        ],
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        wait_until(
            lambda: run.poll() is not None
            or any("isvc-operator started" in log.read_text() for log in workdir.glob("operator-*.log")),
            300,
            "the chaos run's operator to start",
        )
        assert run.poll() is None, f"the chaos run ended early ({run.returncode}): see {log}"
        if signum == signal.SIGTERM:
            first = live_pid(cluster / "kube-apiserver.pid")
            wait_until(
                lambda: run.poll() is not None or live_pid(cluster / "kube-apiserver.pid") not in (None, first),
                120,
                "the chaos run to kill and restart its kube-apiserver",
            )
            assert run.poll() is None, f"the chaos run ended early ({run.returncode}): see {log}"
        before = processes_of(cluster, workdir)
        # What must go: the control plane (a restarted kube-apiserver among it) and the operator.
        for binary in ("etcd-", "kube-apiserver-", "kube-controller-manager-", "kube-scheduler-", "kwok-"):
            assert named(before, binary), f"no {binary}* process of the run to watch: {before}"
        assert any("isvc_operator run" in line for line in before), f"no operator process of the run: {before}"

        run.send_signal(signum)
        code = run.wait(timeout=120)
        left = processes_of(cluster, workdir)
        assert not left, f"processes of the interrupted run still running ({signum.name}; see {log}): {left}"
        assert code == 128 + signum, f"expected exit status {128 + signum} after {signum.name}, got {code}; see {log}"
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        subprocess.run(
            ["bash", str(ROOT / "hack/cluster/down.sh")], env={**env, "ISVC_CLUSTER_DIR": str(cluster)}, check=False
        )
        for line in processes_of(cluster, workdir):  # what a failed run left (its operators): not for long
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
