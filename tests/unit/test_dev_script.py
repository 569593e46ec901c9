"""`make dev`, `make dev-stop` and `make cluster-down` (hack/dev.sh) with stand-ins for kubectl and
the operator: which operator they start and stop, and which InferenceServices `make dev` waits for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FAKE_KUBECTL = textwrap.dedent(f"""\
    #!{sys.executable}
    # A cluster where our samples become Ready and someone else's InferenceService never does.
    import os, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
        log.write(" ".join(args) + "\\n")
    if args[:2] == ["get", "-f"]:
        print("persistentvolumeclaim/models")
        for name in ("custom-model", "iris", "dogs-vs-cats", "mnist"):
            print(f"inferenceservice.serving.isvc.dev/{{name}}")
    elif args[:1] == ["wait"] and "--for=condition=Ready" in args and ("--all" in args or "-A" in args):
        print("error: timed out waiting for the condition on inferenceservices/someone-elses", file=sys.stderr)
        sys.exit(1)
    """)
FAKE_OPERATOR = "#!/bin/sh\n# stands in for `isvc-operator run ...`\nwhile true; do sleep 1; done\n"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    kubectl, operator = tmp_path / "kubectl", tmp_path / "isvc-operator"
    kubectl.write_text(FAKE_KUBECTL)
    operator.write_text(FAKE_OPERATOR)
    kubectl.chmod(0o755)
    operator.chmod(0o755)
    (tmp_path / "kubeconfig").write_text("")
    environment = {
        **os.environ,
        "ISVC_CLUSTER_DIR": str(tmp_path / "cluster"),
        "ISVC_KUBECTL": str(kubectl),
        "ISVC_DEV_OPERATOR": str(operator),
        "KUBECONFIG": str(tmp_path / "kubeconfig"),
        "FAKE_KUBECTL_LOG": str(tmp_path / "kubectl.log"),
    }
    yield environment
    subprocess.run(["bash", "hack/dev.sh", "stop"], cwd=ROOT, env=environment, capture_output=True, timeout=60)


def dev(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "hack/dev.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def operator_pid(env: dict[str, str]) -> int:
    return int((Path(env["ISVC_CLUSTER_DIR"]) / "operator.pid").read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_make_dev_waits_for_its_own_samples_only(env: dict[str, str]) -> None:
    result = dev(env)
    assert result.returncode == 0, f"make dev failed:\n{result.stdout}\n{result.stderr}"
    waits = [line for line in Path(env["FAKE_KUBECTL_LOG"]).read_text().splitlines() if "condition=Ready" in line]
    assert waits and all("inferenceservice.serving.isvc.dev/iris" in line for line in waits), waits


def test_a_second_make_dev_keeps_the_running_operator(env: dict[str, str]) -> None:
    assert dev(env).returncode == 0
    first = operator_pid(env)
    again = dev(env)
    assert again.returncode == 0 and "operator already running" in again.stdout
    assert operator_pid(env) == first and alive(first)


def test_cluster_down_stops_the_dev_operator(env: dict[str, str]) -> None:
    assert dev(env).returncode == 0
    pid = operator_pid(env)
    down = subprocess.run(
        ["make", "-s", "cluster-down"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 0, down.stderr
    assert not alive(pid), "make cluster-down left the dev operator running against a stopped API server"


def test_a_stale_pidfile_is_not_taken_for_the_operator(env: dict[str, str]) -> None:
    other = subprocess.Popen(["sleep", "300"])  # the pid now belongs to something else
    try:
        state = Path(env["ISVC_CLUSTER_DIR"])
        state.mkdir(parents=True)
        (state / "operator.pid").write_text(str(other.pid))
        assert dev(env, "stop").returncode == 0
        assert alive(other.pid), "make dev-stop killed a process that is not the operator"
        (state / "operator.pid").write_text(str(other.pid))
        started = dev(env)
        assert started.returncode == 0 and "operator started" in started.stdout, started.stdout
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
