"""hack/images/images.env names every image and tag; the chart, the runtime catalog and the release
workflow must follow it, so that a release never points at an image that was not built and pushed."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support import shell_vars

ROOT = Path(__file__).resolve().parents[2]


def images_env() -> dict[str, str]:
    return shell_vars(ROOT / "hack/images/images.env")


def test_the_chart_runs_the_operator_image_and_tag_of_images_env() -> None:
    env = images_env()
    values = yaml.safe_load((ROOT / "charts/isvc-operator/values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "charts/isvc-operator/Chart.yaml").read_text())
    assert values["image"]["repository"] == env["OPERATOR_IMAGE"]
    assert chart["appVersion"] == env["IMAGE_VERSION"], "the image tag the chart uses when image.tag is empty"


def test_both_runtime_catalogs_name_the_images_of_images_env() -> None:
    env = images_env()
    chart_catalog = yaml.safe_load((ROOT / "charts/isvc-operator/values.yaml").read_text())["runtimes"]
    builtin = yaml.safe_load((ROOT / "operator/isvc_operator/runtimes/catalog.yaml").read_text())
    for catalog in (chart_catalog, builtin):
        pytorch = catalog["runtimes"]["pytorch-server"]
        assert (pytorch["image"], pytorch["defaultVersion"]) == (env["PYTORCH_SERVER_IMAGE"], env["IMAGE_VERSION"])
        assert catalog["storageInitializer"]["image"] == f"{env['OPERATOR_IMAGE']}:{env['IMAGE_VERSION']}"


def test_the_release_workflow_takes_image_names_from_images_env() -> None:
    workflow = (ROOT / ".github/workflows/release.yaml").read_text()
    assert "hack/images/images.env" in workflow
    for name in ("ghcr.io/", "isvc-operator:", "pytorch-server:"):
        assert name not in workflow, f"the workflow spells an image name ({name!r}) instead of reading images.env"
