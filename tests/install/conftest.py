"""Fixtures for the install tier: helm, and the local control plane of tests/conftest.py.

Paths are relative to the repository root, so the tests run from a fresh clone. helm comes from
hack/cluster/build.sh (cached outside the checkout, built on first use). The `namespace` fixture
(a fresh namespace per test, deleted afterwards) is tests/conftest.py's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import pinned_versions, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "isvc-operator"
VERSIONS = pinned_versions()


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    input: str | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure the message carries the command, its exit code and its output."""
    proc = subprocess.run(
        [str(c) for c in cmd], input=input, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"`{shlex.join(str(c) for c in cmd)}` exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


def poll(what: str, condition: Callable[[], object], *, timeout: float = 60, interval: float = 0.5) -> object:
    """tests/conftest.py's `wait_until`, failing without a traceback of the polling itself."""
    try:
        return wait_until(condition, timeout, what, interval)
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)


def _bin_dir(what: str) -> Path:
    out = run(["bash", ROOT / "hack" / "cluster" / "build.sh", what], timeout=3600).stdout.strip()
    return Path(out.splitlines()[-1])


@pytest.fixture(scope="session")
def helm() -> Path:
    return _bin_dir("helm") / f"helm-{VERSIONS['HELM_VERSION']}"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl_bin: Path
    helm_bin: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return run([self.kubectl_bin, *args], input=input, check=check, env=self.env, timeout=timeout)

    def helm(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run([self.helm_bin, *args], check=check, env=self.env, timeout=timeout)


@pytest.fixture(scope="session")
def cluster(kube: Any, helm: Path) -> Cluster:
    """The local control plane of tests/conftest.py's `kube` fixture (started by hack/cluster/up.sh
    when its kubeconfig does not answer, stopped at the end if this session started it), plus helm."""
    return Cluster(kubeconfig=Path(kube.kubeconfig), kubectl_bin=Path(kube.kubectl), helm_bin=helm)


@pytest.fixture
def unique_name() -> str:
    """A name no other test run uses: release and namespace names, cluster-scoped objects."""
    return f"isvc-operator-t{uuid.uuid4().hex[:8]}"
