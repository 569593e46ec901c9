"""The Istio AuthorizationPolicy: scoped to the model's pods and paths; configurable sources."""

from __future__ import annotations

import copy

import pytest

from isvc_operator.builders import build_children
from isvc_operator.builders.authorization import authorization_wanted
from isvc_operator.resolved_runtime import resolve_runtime
from isvc_operator.runtimes import load_catalog
from isvc_operator.spec import InvalidSpec, parse_inferenceservice
from isvc_operator.status import authorization_condition

BASE = {
    "metadata": {"name": "dogs-vs-cats", "namespace": "team", "uid": "u", "generation": 1},
    "spec": {"predictor": {"tensorflow": {"storageUri": "pvc://models"}}},
}


def policy_of(authorization=None, predictor=None, istio=True):
    body = copy.deepcopy(BASE)
    if authorization is not None:
        body["spec"]["authorization"] = authorization
    if predictor is not None:
        body["spec"]["predictor"] = predictor
    isvc = parse_inferenceservice(body)
    children = build_children(isvc, resolve_runtime(isvc, load_catalog()), istio_installed=istio)
    return next((c for c in children if c["kind"] == "AuthorizationPolicy"), None)


def test_default_policy_is_the_hand_written_policy_scoped_to_the_model():
    policy = policy_of()
    assert policy["apiVersion"] == "security.istio.io/v1"
    assert policy["metadata"]["name"] == "dogs-vs-cats"
    assert policy["metadata"]["ownerReferences"][0]["name"] == "dogs-vs-cats"
    assert policy["spec"] == {
        "selector": {
            "matchLabels": {
                "serving.isvc.dev/inferenceservice": "dogs-vs-cats",
                "app.kubernetes.io/component": "predictor",
            }
        },
        "action": "ALLOW",
        "rules": [
            {
                "to": [
                    {
                        "operation": {
                            "methods": ["GET", "POST"],
                            "paths": [
                                "/v1/models/*",
                                "/tensorflow.serving.PredictionService/*",
                                "/tensorflow.serving.ModelService/*",
                            ],
                        }
                    }
                ]
            }
        ],
    }


def test_pytorch_paths_are_its_rest_paths_and_exactly_the_grpc_methods_it_serves():
    policy = policy_of(predictor={"pytorch": {"storageUri": "pvc://m"}})
    assert policy["spec"]["rules"][0]["to"][0]["operation"]["paths"] == [
        "/v1/models/*",
        "/v2",
        "/v2/models/*",
        "/v2/health/*",
        "/inference.GRPCInferenceService/ServerLive",
        "/inference.GRPCInferenceService/ServerReady",
        "/inference.GRPCInferenceService/ModelReady",
        "/inference.GRPCInferenceService/ServerMetadata",
        "/inference.GRPCInferenceService/ModelMetadata",
        "/inference.GRPCInferenceService/ModelInfer",
        "/tensorflow.serving.PredictionService/Predict",
        "/tensorflow.serving.PredictionService/GetModelMetadata",
        "/tensorflow.serving.ModelService/GetModelStatus",
        "/grpc.health.v1.Health/Check",
    ]


def test_sources_principals_extra_paths_and_methods():
    policy = policy_of(
        {
            "mode": "Enabled",
            "sourceNamespaces": ["apps"],
            "principals": ["cluster.local/ns/x/sa/y"],
            "serviceAccounts": ["apps/client"],
            "paths": ["/metrics"],
            "methods": ["GET", "PUT"],
        }
    )
    rule = policy["spec"]["rules"][0]
    assert rule["from"] == [
        {
            "source": {
                "namespaces": ["apps"],
                "principals": ["cluster.local/ns/x/sa/y", "cluster.local/ns/apps/sa/client"],
            }
        }
    ]
    assert rule["to"][0]["operation"]["methods"] == ["GET", "POST", "PUT"]
    assert rule["to"][0]["operation"]["paths"][-1] == "/metrics"


def test_service_account_must_be_namespace_slash_name():
    body = copy.deepcopy(BASE)
    body["spec"]["authorization"] = {"serviceAccounts": ["client"]}
    with pytest.raises(InvalidSpec, match="'client' is not NAMESPACE/NAME"):
        parse_inferenceservice(body)


@pytest.mark.parametrize(
    ("mode", "istio", "wanted", "status", "reason"),
    [
        ("Auto", True, True, "Unknown", "Creating"),
        ("Auto", False, False, "True", "IstioNotInstalled"),
        ("Enabled", True, True, "Unknown", "Creating"),
        ("Enabled", False, True, "False", "IstioNotInstalled"),
        ("Disabled", True, False, "True", "Disabled"),
        ("Disabled", False, False, "True", "Disabled"),
    ],
)
def test_modes(mode, istio, wanted, status, reason):
    body = copy.deepcopy(BASE)
    body["spec"]["authorization"] = {"mode": mode}
    isvc = parse_inferenceservice(body)
    assert authorization_wanted(isvc, istio) is wanted
    assert (policy_of({"mode": mode}, istio=istio) is not None) is (wanted and istio)
    cond = authorization_condition(mode, istio, None, "dogs-vs-cats")
    assert (cond["status"], cond["reason"]) == (status, reason)
    assert authorization_condition(mode, istio, {"kind": "AuthorizationPolicy"}, "x")["status"] == (
        "True" if status != "False" else "False"
    )
