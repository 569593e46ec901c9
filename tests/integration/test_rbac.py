"""The operator's ServiceAccount may do exactly what the README documents, and nothing with a wildcard."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
# What every authenticated user may do in any cluster (system:basic-user); not granted by us.
KUBERNETES_DEFAULTS = {
    "selfsubjectreviews.authentication.k8s.io": {"create"},
    "selfsubjectaccessreviews.authorization.k8s.io": {"create"},
    "selfsubjectrulesreviews.authorization.k8s.io": {"create"},
}


def documented_permissions() -> dict[str, set[str]]:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Permissions") :]
    allowed: dict[str, set[str]] = {}
    for group_cell, resources_cell, verbs_cell in re.findall(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", table, re.M)[1:]:
        groups = ["" if g.strip() == "(core)" else g.strip() for g in group_cell.split(",")]
        verbs = {v.strip().split(" ")[0] for v in verbs_cell.split(",")}
        for resource in (r.strip() for r in resources_cell.split(",")):
            base, _, sub = resource.partition("/")
            for group in groups:
                name = f"{base}.{group}" if group else base
                allowed[f"{name}/{sub}" if sub else name] = verbs
    return allowed


def test_the_operator_may_do_only_what_is_documented(kube, operator_identity):
    user, _ = operator_identity
    listing = kube.run("auth", "can-i", "--list", f"--as={user}").stdout.splitlines()[1:]
    documented = documented_permissions()
    seen = set()
    for line in listing:
        match = re.match(r"^(\S+)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]$", line.strip())
        if not match:
            continue  # non-resource URLs (discovery), granted to every authenticated user
        resource, _, names, verbs = match.groups()
        verbs_set = set(verbs.split())
        assert "*" not in resource and "*" not in verbs_set, f"wildcard in the operator's permissions: {line}"
        allowed = documented.get(resource) or KUBERNETES_DEFAULTS.get(resource)
        assert allowed is not None, f"{user} may use {resource}, which README.md's Permissions table does not list"
        assert verbs_set <= allowed, (
            f"{user} may {sorted(verbs_set - allowed)} {resource}, beyond the documented {sorted(allowed)}"
        )
        seen.add(resource)
    missing = set(documented) - seen
    assert not missing, f"documented but not granted (README and chart disagree): {sorted(missing)}"
