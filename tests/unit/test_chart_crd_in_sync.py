"""The Helm chart ships a copy of the CRD (Helm installs only what is under charts/*/crds/)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
CHART_CRDS = ROOT / "charts" / "isvc-operator" / "crds"


def test_chart_crds_are_byte_copies_of_crds_dir() -> None:
    source = sorted(p.name for p in CRDS.glob("*.yaml"))
    copies = sorted(p.name for p in CHART_CRDS.glob("*.yaml"))
    assert source, f"no CRDs in {CRDS}"
    assert copies == source, (
        f"charts/isvc-operator/crds/ holds {copies}, crds/ holds {source}: cp crds/*.yaml charts/isvc-operator/crds/"
    )
    for name in source:
        assert (CHART_CRDS / name).read_bytes() == (CRDS / name).read_bytes(), (
            f"charts/isvc-operator/crds/{name} differs from crds/{name}: "
            f"cp crds/{name} charts/isvc-operator/crds/ && bash hack/render-manifests.sh"
        )
