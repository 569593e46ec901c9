"""The README's API reference names every field of the CRD's spec, so the docs cannot drift from the schema."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# Kubernetes types passed through as they are; their own docs apply.
PASSTHROUGH = {"env", "resources", "ports", "command", "args"}


def spec_fields(schema: dict, prefix: str = "") -> set[str]:
    fields = set()
    for name, sub in (schema.get("properties") or {}).items():
        fields.add(name)
        if name in PASSTHROUGH:
            continue
        target = sub.get("items", sub) if sub.get("type") == "array" else sub
        fields |= spec_fields(target, f"{prefix}{name}.")
    return fields


def test_every_spec_field_is_in_the_readme_api_reference():
    crd = yaml.safe_load((ROOT / "crds/serving.isvc.dev_inferenceservices.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    readme = (ROOT / "README.md").read_text()
    reference = readme[readme.index("## API reference") : readme.index("## Status and troubleshooting")]
    # Field names as path components inside backticks: `spec.predictor.replicas`, `…storageUri`, `…/maxReplicas`.
    documented = {
        part for span in re.findall(r"`([^`]+)`", reference) for part in re.split(r"[./…\[\]0-9 ,:{}]+", span)
    }
    missing = sorted(f for f in spec_fields(schema) if f not in documented)
    assert not missing, f"README.md's API reference does not mention these spec fields: {missing}"
