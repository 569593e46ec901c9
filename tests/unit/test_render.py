"""`isvc-operator render`: children of an isvc YAML, offline, through the same builders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_render_prints_deployment_and_service_for_each_isvc(tmp_path):
    source = tmp_path / "isvc.yaml"
    source.write_text(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: models}\n---\n"
        "apiVersion: serving.isvc.dev/v1alpha1\nkind: InferenceService\nmetadata: {name: dogs-vs-cats, namespace: team}\n"
        "spec:\n  predictor:\n    tensorflow: {storageUri: pvc://models}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "isvc_operator", "render", "-f", str(source)], capture_output=True, text=True, check=True
    )
    docs = list(yaml.safe_load_all(result.stdout))
    assert [(d["kind"], d["metadata"]["name"], d["metadata"]["namespace"]) for d in docs] == [
        ("Deployment", "dogs-vs-cats-predictor", "team"),
        ("Service", "dogs-vs-cats", "team"),
    ]
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["args"][2] == "--model_name=dogs-vs-cats"


def test_render_rejects_an_invalid_spec_with_its_reason(tmp_path):
    source = tmp_path / "isvc.yaml"
    source.write_text(
        "apiVersion: serving.isvc.dev/v1alpha1\nkind: InferenceService\nmetadata: {name: m}\n"
        "spec:\n  predictor:\n    tensorflow: {storageUri: 'ftp://host/m'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "isvc_operator", "render", "-f", str(source)], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "default/m: storageUri 'ftp://host/m': unsupported scheme ftp://" in result.stderr


def test_samples_render():
    samples = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
    assert samples, "manifests/samples/ has no samples"
    for sample in samples:
        result = subprocess.run(
            [sys.executable, "-m", "isvc_operator", "render", "-f", str(sample)], capture_output=True, text=True
        )
        assert result.returncode == 0, f"{sample.name}: {result.stderr}"


def _render(tmp_path, authorization: str, *flags: str) -> list[str]:
    source = tmp_path / "isvc.yaml"
    source.write_text(
        "apiVersion: serving.isvc.dev/v1alpha1\nkind: InferenceService\nmetadata: {name: m}\n"
        f"spec:\n  predictor:\n    tensorflow: {{storageUri: pvc://models}}\n  authorization: {{mode: {authorization}}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "isvc_operator", "render", "-f", str(source), *flags],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d["kind"] for d in yaml.safe_load_all(result.stdout)]


def test_render_shows_the_policy_an_enabled_authorization_requires_without_istio_flag(tmp_path):
    assert _render(tmp_path, "Enabled") == ["Deployment", "Service", "AuthorizationPolicy"]


def test_render_shows_the_auto_policy_only_for_a_cluster_with_istio(tmp_path):
    assert _render(tmp_path, "Auto") == ["Deployment", "Service"]
    assert _render(tmp_path, "Auto", "--istio") == ["Deployment", "Service", "AuthorizationPolicy"]
    assert _render(tmp_path, "Disabled", "--istio") == ["Deployment", "Service"]
