"""The release workflow is linted with actionlint (built from its Go module by hack/cluster/build.sh,
cached outside the checkout), so a syntax or expression error is found here, not on a tag push."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import built_tool

ROOT = Path(__file__).resolve().parents[2]


def test_workflows_pass_actionlint() -> None:
    workflows = sorted(str(p) for p in (ROOT / ".github/workflows").glob("*.y*ml"))
    assert workflows, "no workflow under .github/workflows"
    proc = subprocess.run([str(built_tool("actionlint")), *workflows], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}{proc.stderr}"
