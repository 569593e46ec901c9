"""The release workflow is linted with actionlint (built from its Go module by hack/cluster/build.sh,
cached outside the checkout), so a syntax or expression error is found here, not on a tag push."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_workflows_pass_actionlint() -> None:
    versions = dict(
        line.split("=", 1)
        for line in (ROOT / "hack/cluster/versions.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    bin_dir = (
        subprocess.run(
            ["bash", str(ROOT / "hack/cluster/build.sh"), "actionlint"],
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    workflows = sorted(str(p) for p in (ROOT / ".github/workflows").glob("*.y*ml"))
    assert workflows, "no workflow under .github/workflows"
    proc = subprocess.run(
        [f"{bin_dir}/actionlint-{versions['ACTIONLINT_VERSION']}", *workflows], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, f"actionlint:\n{proc.stdout}{proc.stderr}"
