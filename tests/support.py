"""Helpers the tests and the benchmarks share: the pinned tool versions, polling with a deadline,
and a kubeconfig for a ServiceAccount. Imported as `tests.support` (bench/ puts the checkout on
sys.path)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("ISVC_CACHE", Path.home() / ".cache/isvc-operator"))


def shell_vars(path: Path) -> dict[str, str]:
    """The KEY=VALUE lines of a file the shell scripts source (comments, `source` lines and trailing
    `# ...` left out)."""
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "source")):
            key, _, value = line.partition("=")
            values[key.strip()] = value.split("#", 1)[0].strip()
    return values


def pinned_versions() -> dict[str, str]:
    """hack/cluster/versions.env: KUBE_VERSION, HELM_VERSION, ... (the one place they are pinned)."""
    return shell_vars(ROOT / "hack/cluster/versions.env")


def built_tool(name: str) -> Path:
    """A Go-built tool of hack/cluster/build.sh (helm, actionlint...), built on first use and cached."""
    out = subprocess.run(
        ["bash", str(ROOT / "hack/cluster/build.sh"), name], capture_output=True, text=True, check=True, timeout=1800
    ).stdout
    return Path(out.strip().splitlines()[-1]) / f"{name}-{pinned_versions()[f'{name.upper()}_VERSION']}"


def kubectl_path() -> Path:
    """The kubectl hack/cluster/build.sh caches, of the control plane's version."""
    return CACHE / "bin" / f"kubectl-{pinned_versions()['KUBE_VERSION']}"


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = 0.2,
    *,
    tolerate: tuple[type[BaseException], ...] = (),
    error: Callable[[str], BaseException] = AssertionError,
) -> Any:
    """Poll until `predicate()` is truthy and return its value; raise `error` saying what was awaited
    and the last value seen. Exceptions in `tolerate` count as a falsy value (e.g. an API server
    that is down on purpose)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except tolerate as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise error(f"timed out after {timeout:g}s waiting for {what}; last value: {last!r}")


# Local ports for the servers the tests start (operator metrics, liveness endpoints): below Linux's
# ephemeral range (ip_local_port_range, 32768-60999 by default), so the kernel never hands one of
# them out for bind(0) or an outgoing connection between our check and the server's own bind.
# Each process starts at its own offset, so that concurrent sessions rarely try the same port.
TEST_PORTS = range(28000, 30000)
_next_port = TEST_PORTS.start + (os.getpid() % 100) * 20


def reserved_port() -> int:
    """The next port of TEST_PORTS that nothing listens on, each once per process."""
    global _next_port
    for _ in range(len(TEST_PORTS)):
        port, _next_port = _next_port, TEST_PORTS.start + (_next_port + 1 - TEST_PORTS.start) % len(TEST_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError(f"every port of {TEST_PORTS} is in use")


def holds_for(predicate: Callable[[], Any], seconds: float, what: str, why: str, interval: float = 0.2) -> None:
    """For "nothing happens": poll `predicate` for `seconds` and fail at the first falsy value. The
    bound is not a guess: `why` says why what is watched would have changed within it."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if not value:
            raise AssertionError(f"expected {what} to hold for {seconds:g}s ({why}); it stopped: {value!r}")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def service_account_kubeconfig(
    admin_kubeconfig: Path, account: str, token: str, path: Path, namespace: str | None = None
) -> Path:
    """A kubeconfig for the admin kubeconfig's API server whose user is `account` with `token`
    (from `kubectl create token`), written to `path` (mode 0600)."""
    admin = yaml.safe_load(admin_kubeconfig.read_text(encoding="utf-8"))
    current = next(
        (c["context"] for c in admin.get("contexts") or [] if c["name"] == admin.get("current-context")), None
    )
    cluster = next((c for c in admin["clusters"] if current and c["name"] == current["cluster"]), admin["clusters"][0])
    context: dict[str, Any] = {"cluster": cluster["name"], "user": account}
    if namespace:
        context["namespace"] = namespace
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [{"name": account, "context": context}],
                "current-context": account,
            }
        ),
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def chart_identity(namespace: str) -> tuple[str, list[dict[str, Any]]]:
    """The chart's ServiceAccount, ClusterRole and ClusterRoleBinding for a release named after
    `namespace` (the shipped RBAC, as helm renders it), and the ServiceAccount's name."""
    rendered = subprocess.run(
        [
            str(built_tool("helm")),
            "template",
            namespace,
            str(ROOT / "charts/isvc-operator"),
            "--namespace",
            namespace,
            "-s",
            "templates/serviceaccount.yaml",
            "-s",
            "templates/rbac.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    return next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"), docs


def descendants(pid: int) -> list[int]:
    """The processes below `pid` (children first), from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop(0)
        out.append(child)
        todo.extend(children.get(child, []))
    return out


class LeaveNothingBehind:
    """For a benchmark's lifetime: when it ends (done, failed, or stopped by SIGINT, SIGTERM or
    SIGHUP) it stops every process it started: its own child processes (operators, profilers,
    kubectl) and, with `cluster_env`, its private control plane (hack/cluster/down.sh, which also
    finds components restarted mid-run by their cluster dir). A signal ends the run at once with
    128 + its number, after that cleanup; a second signal meanwhile is ignored.

    Use as a context manager around the whole run."""

    def __init__(self, cluster_env: dict[str, str] | None, log: Any = print) -> None:
        self.cluster_env = cluster_env
        self.log = log
        self.done = False

    def __enter__(self) -> LeaveNothingBehind:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *_: object) -> None:
        self.cleanup()

    def _on_signal(self, signum: int, frame: object) -> None:
        for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(other, signal.SIG_IGN)
        self.log(f"{signal.Signals(signum).name}: stopping what this run started")
        self.cleanup()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)

    def cleanup(self) -> None:
        if self.done:
            return
        self.done = True
        children = descendants(os.getpid())
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        # The operator drains and exits within about 2 s of SIGTERM; give every child up to 20 s.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
            for pid in children:
                try:
                    os.waitpid(pid, os.WNOHANG)  # reap our own children, or they stay zombies
                except ChildProcessError:
                    pass
            time.sleep(0.1)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.cluster_env is not None:
            self.log(f"stopping the control plane in {self.cluster_env['ISVC_CLUSTER_DIR']}")
            subprocess.run(
                ["bash", str(ROOT / "hack/cluster/down.sh")],
                env=self.cluster_env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=120,
            )
