"""The Gateway API HTTPRoute and the per-revision Services as pure builders: where the route
attaches, its backendRefs without and with a canary (weights as for Istio), and bad gateway refs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from isvc_operator.builders.http_route import build_http_route, build_revision_services
from isvc_operator.resolved_runtime import resolve_runtime
from isvc_operator.spec import InvalidSpec
from tests.unit.test_revisions import CATALOG, isvc, revisions, running

GATEWAY = {"name": "web", "namespace": "gateways", "sectionName": "http"}
HTTP_ROUTE_CRD = Path(__file__).resolve().parents[1] / "fixtures/gateway-api-httproute-crd.yaml"


def route_and_services(spec, plan):
    server = resolve_runtime(spec, CATALOG)
    return build_http_route(spec, server, plan), build_revision_services(spec, server, plan)


def weights(route):
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def test_without_a_gateway_there_is_no_route_and_no_revision_service():
    _, live = running(isvc())
    spec = isvc("2.18.0", canaryTrafficPercent=10)
    assert route_and_services(spec, revisions(spec, live)) == (None, [])


def test_without_a_canary_the_route_points_at_the_main_service_with_weight_100():
    spec = isvc(gateway=GATEWAY)
    route, services = route_and_services(spec, revisions(spec))
    assert services == []
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "m" and route["metadata"]["namespace"] == "ns"
    assert route["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "web",
            "namespace": "gateways",
            "sectionName": "http",
        }
    ]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "m", "port": 8500, "weight": 100}
    ]


def test_a_gateway_in_the_isvcs_namespace_names_only_the_gateway():
    spec = isvc(gateway={"name": "web"})
    route, _ = route_and_services(spec, revisions(spec))
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "web"}]


def test_a_canary_gets_a_service_per_revision_and_weights_as_for_istio():
    _, live = running(isvc(gateway=GATEWAY))
    spec = isvc("2.18.0", canaryTrafficPercent=10, gateway=GATEWAY)
    _, not_ready = running(spec, live, **{f"m-predictor-{revisions(spec, live).canary.revision}": 0})
    route, _ = route_and_services(spec, revisions(spec, not_ready))
    assert weights(route) == [("m-stable", 100), ("m-canary", 0)]  # 0 until the canary is Ready
    _, ready = running(spec, live)
    plan = revisions(spec, ready)
    route, services = route_and_services(spec, plan)
    assert weights(route) == [("m-stable", 90), ("m-canary", 10)]
    assert [(s["metadata"]["name"], s["spec"]["selector"]["serving.isvc.dev/revision"]) for s in services] == [
        ("m-stable", plan.stable.revision),
        ("m-canary", plan.canary.revision),
    ]
    for service in services:
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["ports"] == [{"name": "http", "port": 8500, "targetPort": "http", "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        ("web", r"spec.predictor.gateway: expected \{name, namespace\?, sectionName\?\}"),
        ({}, "spec.predictor.gateway.name: None is not a Gateway name"),
        ({"name": "Web_1"}, "spec.predictor.gateway.name: 'Web_1' is not a Gateway name"),
        ({"name": "web", "namespace": "a.b"}, "spec.predictor.gateway.namespace: 'a.b' is not a namespace name"),
        ({"name": "web", "sectionName": "HTTP"}, "spec.predictor.gateway.sectionName: 'HTTP' is not a listener name"),
    ],
)
def test_a_bad_gateway_reference_is_an_invalid_spec_naming_the_field(gateway, message):
    with pytest.raises(InvalidSpec, match=message):
        isvc(gateway=gateway)


def test_a_gateway_namespace_may_start_with_a_digit_as_any_namespace_may():
    spec = isvc(gateway={"name": "web", "namespace": "1-edge"})
    route, _ = route_and_services(spec, revisions(spec))
    assert route["spec"]["parentRefs"][0]["namespace"] == "1-edge"
    assert spec.predictor.gateway.describe("ns") == "1-edge/web"
    assert isvc(gateway=GATEWAY).predictor.gateway.describe("ns") == "gateways/web (listener http)"


def test_the_httproute_crd_fixture_is_upstreams_file_below_its_header():
    """The header names the upstream file and its sha256: an edit of the copy shows here."""
    text = HTTP_ROUTE_CRD.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    digest = re.search(r"sha256 ([0-9a-f]{64})", " ".join(header))
    assert digest, f"{HTTP_ROUTE_CRD.name}: its header should name the upstream file's sha256"
    body = text.split("\n", len(header))[-1]
    assert hashlib.sha256(body.encode()).hexdigest() == digest.group(1), (
        f"{HTTP_ROUTE_CRD.name} differs from the upstream file its header names: copy it again from "
        "sigs.k8s.io/gateway-api@v1.3.0 config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
    )
