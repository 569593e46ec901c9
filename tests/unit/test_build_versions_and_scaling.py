"""TF model versions (config file ConfigMap), autoscaling (HPA) and pod options."""

from __future__ import annotations

import copy

import pytest

from isvc_operator.builders import build_children
from isvc_operator.resolved_runtime import resolve_runtime
from isvc_operator.runtimes import load_catalog
from isvc_operator.spec import InvalidSpec, parse_inferenceservice

BASE = {
    "metadata": {"name": "mnist", "namespace": "ml", "uid": "u", "generation": 1},
    "spec": {"predictor": {"tensorflow": {"storageUri": "pvc://models/mnist"}}},
}


def children(tensorflow=None, **predictor):
    body = copy.deepcopy(BASE)
    body["spec"]["predictor"]["tensorflow"].update(tensorflow or {})
    body["spec"]["predictor"].update(predictor)
    isvc = parse_inferenceservice(body)
    return {c["kind"]: c for c in build_children(isvc, resolve_runtime(isvc, load_catalog()))}


@pytest.mark.parametrize(
    ("tensorflow", "policy_line"),
    [
        ({"modelVersionPolicy": {"latest": {"numVersions": 2}}}, "model_version_policy { latest { num_versions: 2 } }"),
        (
            {"modelVersionPolicy": {"specific": {"versions": [3, 1, 3]}}},
            "model_version_policy { specific { versions: 1 versions: 3 } }",
        ),
        ({"modelVersionPolicy": {"all": {}}}, "model_version_policy { all {} }"),
    ],
)
def test_version_policy_becomes_a_model_config_file(tensorflow, policy_line):
    built = children(tensorflow)
    config = built["ConfigMap"]
    assert config["metadata"]["name"] == "mnist-model-config"
    text = config["data"]["models.config"]
    assert 'name: "mnist"' in text and 'base_path: "/mnt/models"' in text and 'model_platform: "tensorflow"' in text
    assert policy_line in text
    container = built["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "--port=9000",
        "--rest_api_port=8500",
        "--model_config_file=/etc/tfserving/models.config",
        "--model_config_file_poll_wait_seconds=30",
    ]
    assert {"name": "model-config", "mountPath": "/etc/tfserving", "readOnly": True} in container["volumeMounts"]
    assert {"name": "model-config", "configMap": {"name": "mnist-model-config"}} in built["Deployment"]["spec"][
        "template"
    ]["spec"]["volumes"]


def test_version_labels():
    text = children(
        {"modelVersionPolicy": {"specific": {"versions": [1, 2]}}, "versionLabels": {"stable": 1, "canary": 2}}
    )["ConfigMap"]["data"]["models.config"]
    assert 'version_labels { key: "canary" value: 2 }' in text and 'version_labels { key: "stable" value: 1 }' in text


def test_no_policy_no_config_map_and_plain_args():
    built = children()
    assert "ConfigMap" not in built
    assert "--model_name=mnist" in built["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize(
    ("tensorflow", "message"),
    [
        (
            {"modelVersionPolicy": {"specific": {"versions": [1]}}, "versionLabels": {"canary": 2}},
            r"canary=2 point at versions that modelVersionPolicy.specific does not load \(1\)",
        ),
        ({"modelVersionPolicy": {"latest": {}, "all": {}}}, "set exactly one of latest, specific, all"),
    ],
)
def test_inconsistent_versions_are_invalid(tensorflow, message):
    with pytest.raises(InvalidSpec, match=message):
        children(tensorflow)


def test_autoscaling_creates_an_hpa_and_leaves_replicas_to_it():
    built = children(minReplicas=2, maxReplicas=5, scaleTarget=60)
    hpa = built["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2" and hpa["metadata"]["name"] == "mnist-predictor"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mnist-predictor"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert "replicas" not in built["Deployment"]["spec"]


def test_no_autoscaling_no_hpa():
    assert "HorizontalPodAutoscaler" not in children(replicas=2)


def test_pod_options_pass_through():
    pod = children(
        nodeSelector={"gpu": "a100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        affinity={"nodeAffinity": {}},
        serviceAccountName="reader",
        imagePullSecrets=[{"name": "regcred"}],
    )["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod["serviceAccountName"] == "reader"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["automountServiceAccountToken"] is False
