"""The Gateway API path wired in: which split the cluster gets (a named Gateway wins over Istio),
the children each case asks for, the IngressReady condition and the status, a pass that prunes the
per-revision Services after a promotion, the plan memo, and the table of optional APIs."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
import yaml

from isvc_operator.api_errors import ApiInvalid
from isvc_operator.builders import build_children, traffic_split
from isvc_operator.kinds import DEPLOYMENT, HTTP_ROUTE, SERVICE, object_key
from isvc_operator.optional_apis import GATEWAY_API, ISTIO, ApiPresence, crd_established, optional_api
from isvc_operator.plan import Plans
from isvc_operator.reconcile import ChildrenRejected, reconcile
from isvc_operator.render import render_documents
from isvc_operator.resolved_runtime import resolve_runtime
from isvc_operator.status import HTTP_ROUTE_WEIGHTS, ISTIO_WEIGHTS, READY_REPLICAS
from tests.unit.test_reconcile import FakeApi
from tests.unit.test_revisions import BASE, CATALOG, isvc, revisions, running

GATEWAY = {"name": "web", "namespace": "gateways"}
NOW = "2026-01-01T00:00:00Z"


def kinds_and_names(spec, plan, **cluster) -> list[tuple[str, str]]:
    children = build_children(spec, resolve_runtime(spec, CATALOG), revisions=plan, **cluster)
    return [(c["kind"], c["metadata"]["name"]) for c in children]


def canary_of(**predictor):
    """A canary at 10% that is Ready beside the stable revision, and the plan for it."""
    _, live = running(isvc(**predictor))
    spec = isvc("2.18.0", canaryTrafficPercent=10, **predictor)
    _, live = running(spec, live)
    return spec, revisions(spec, live)


@pytest.mark.parametrize(
    ("gateway", "istio", "gateway_api", "split"),
    [
        (None, False, False, READY_REPLICAS),
        (None, True, False, ISTIO_WEIGHTS),
        (None, True, True, ISTIO_WEIGHTS),  # the Gateway API alone asks for nothing: no Gateway named
        (GATEWAY, False, False, READY_REPLICAS),  # named, but no HTTPRoute CRD to write
        (GATEWAY, True, False, ISTIO_WEIGHTS),
        (GATEWAY, False, True, HTTP_ROUTE_WEIGHTS),
        (GATEWAY, True, True, HTTP_ROUTE_WEIGHTS),  # a named Gateway wins over Istio
    ],
)
def test_the_split_is_chosen_by_what_the_cluster_has(gateway, istio, gateway_api, split):
    spec = isvc(gateway=gateway) if gateway else isvc()
    assert traffic_split(spec, istio_installed=istio, gateway_api_installed=gateway_api) == split


def test_with_the_gateway_api_a_named_gateway_gets_its_route_without_a_canary():
    spec = isvc(gateway=GATEWAY)
    assert kinds_and_names(spec, revisions(spec), gateway_api_installed=True) == [
        ("Deployment", "m-predictor"),
        ("Service", "m"),
        ("PodDisruptionBudget", "m-predictor"),
        ("HTTPRoute", "m"),
    ]
    assert ("HTTPRoute", "m") not in kinds_and_names(spec, revisions(spec), gateway_api_installed=False)


def test_during_a_canary_the_route_and_revision_services_replace_istios_weights():
    spec, plan = canary_of(gateway=GATEWAY)
    both = kinds_and_names(spec, plan, istio_installed=True, gateway_api_installed=True)
    assert [k for k in both if k[0] in ("Service", "HTTPRoute", "VirtualService", "DestinationRule")] == [
        ("Service", "m"),
        ("Service", "m-stable"),
        ("Service", "m-canary"),
        ("HTTPRoute", "m"),
    ]
    assert ("AuthorizationPolicy", "m") in both  # Istio still guards the pods
    # Without the Gateway API's CRD the named Gateway changes nothing: Istio splits as before.
    istio_only = kinds_and_names(spec, plan, istio_installed=True, gateway_api_installed=False)
    assert {"VirtualService", "DestinationRule"} <= {kind for kind, _ in istio_only}
    assert not {"HTTPRoute"} & {kind for kind, _ in istio_only}
    assert ("Service", "m-stable") not in istio_only


def body(**predictor: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["spec"]["predictor"].update(predictor)
    return doc


def run(doc: dict[str, Any], api: FakeApi, children: dict | None = None, **cluster: Any):
    return asyncio.run(reconcile(doc, children or {}, api, CATALOG, now=lambda: NOW, **cluster))  # type: ignore[arg-type]


def conditions(api: FakeApi) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in api.isvc["status"]["conditions"]}


def test_a_route_applied_is_ingress_ready_and_leaves_ready_alone():
    api = FakeApi(body(gateway=GATEWAY))
    outcome = run(body(gateway=GATEWAY), api, gateway_api_installed=True)
    assert HTTP_ROUTE.key("m") in outcome.applied
    ingress = conditions(api)["IngressReady"]
    assert (ingress["status"], ingress["reason"]) == ("True", "Applied")
    assert ingress["message"] == "HTTPRoute m attaches to Gateway gateways/web and routes to the model's REST port"
    plain = FakeApi(body())
    run(body(), plain)
    assert conditions(api)["Ready"] == conditions(plain)["Ready"]


def test_without_the_crd_no_route_is_made_ready_stays_and_ingress_ready_says_why():
    api = FakeApi(body(gateway={"name": "web"}))
    outcome = run(body(gateway={"name": "web"}), api, gateway_api_installed=False)
    assert [kind for _, kind, _ in outcome.applied if kind == "HTTPRoute"] == []
    ingress = conditions(api)["IngressReady"]
    assert (ingress["status"], ingress["reason"]) == ("False", "GatewayAPINotInstalled")
    assert ingress["message"].startswith(
        "spec.predictor.gateway names Gateway ns/web, but the Gateway API's HTTPRoute CRD "
        "(gateway.networking.k8s.io/v1) is not installed: no HTTPRoute is created"
    ), ingress["message"]
    plain = FakeApi(body())
    run(body(), plain)
    assert conditions(api)["Ready"] == conditions(plain)["Ready"], "IngressReady must not feed Ready"
    assert conditions(api)["Stalled"]["status"] == "False"
    assert "IngressReady" not in conditions(plain), "no Gateway named, no IngressReady"


def test_a_rejected_route_is_on_ingress_ready_and_the_pass_is_retried():
    api = FakeApi(body(gateway=GATEWAY))
    api.fail["HTTPRoute"] = ApiInvalid(422, "Unprocessable Entity", 'HTTPRoute "m" is invalid: denied by a policy')
    with pytest.raises(ChildrenRejected, match="denied by a policy"):
        run(body(gateway=GATEWAY), api, gateway_api_installed=True)
    ingress = conditions(api)["IngressReady"]
    assert (ingress["status"], ingress["reason"]) == ("False", "HTTPRouteRejected")
    assert conditions(api)["ServiceReady"]["status"] == "True"


def live_children(spec, plan, **cluster) -> dict:
    """The plan's children as the cluster would hold them, every Deployment fully available."""
    out = {}
    for child in build_children(spec, resolve_runtime(spec, CATALOG), revisions=plan, **cluster):
        child = copy.deepcopy(child)
        child["metadata"]["uid"] = f"uid-{child['kind']}-{child['metadata']['name']}"
        if child["kind"] == "Deployment":
            replicas = child["spec"]["replicas"]
            child["metadata"]["generation"] = 1
            child["status"] = {
                "observedGeneration": 1,
                **dict.fromkeys(("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"), replicas),
            }
        out[object_key(child)] = child
    return out


def test_a_canary_pass_weighs_the_route_and_a_promotion_prunes_the_revision_services():
    spec, plan = canary_of(gateway=GATEWAY)
    canary_body = body(gateway=GATEWAY, canaryTrafficPercent=10)
    canary_body["spec"]["predictor"]["tensorflow"]["runtimeVersion"] = "2.18.0"
    api = FakeApi(canary_body)
    cluster = {"gateway_api_installed": True, "istio_installed": True}
    live = live_children(spec, plan, **cluster)
    outcome = run(canary_body, api, live, **cluster)
    route = outcome.responses[HTTP_ROUTE.key("m")]
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        ("m-stable", 90),
        ("m-canary", 10),
    ]
    predictor = api.isvc["status"]["components"]["predictor"]
    assert (predictor["trafficSplit"], predictor["canaryPercent"]) == (HTTP_ROUTE_WEIGHTS, 10)
    assert predictor["message"].startswith("exact through the Gateway: HTTPRoute m sends each revision's Service")
    assert [(t["role"], t["percent"]) for t in predictor["traffic"]] == [("stable", 90), ("canary", 10)]

    promoted = copy.deepcopy(api.isvc)
    promoted["spec"]["predictor"]["canaryTrafficPercent"] = 100
    outcome = run(promoted, api, live, **cluster)
    assert sorted(outcome.deleted) == sorted(
        [DEPLOYMENT.key("m-predictor"), SERVICE.key("m-stable"), SERVICE.key("m-canary")]
    )
    route = outcome.responses[HTTP_ROUTE.key("m")]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"group": "", "kind": "Service", "name": "m", "port": 8500, "weight": 100}
    ]


def test_the_gateway_api_appearing_adds_the_route_to_the_memoised_plan():
    plans = Plans()
    doc = body(gateway=GATEWAY)
    without = plans.get(doc, CATALOG, istio_installed=False, gateway_api_installed=False)
    with_route = plans.get(doc, CATALOG, istio_installed=False, gateway_api_installed=True)
    assert HTTP_ROUTE.key("m") not in {c.key for c in without.children}
    assert HTTP_ROUTE.key("m") in {c.key for c in with_route.children}
    assert (without.traffic_split, with_route.traffic_split) == (READY_REPLICAS, HTTP_ROUTE_WEIGHTS)


def test_render_shows_the_route_of_a_named_gateway():
    docs = list(yaml.safe_load_all(render_documents([body(gateway=GATEWAY)])))
    assert [d["kind"] for d in docs if d["kind"] == "HTTPRoute"] == ["HTTPRoute"]
    assert "HTTPRoute" not in [d["kind"] for d in yaml.safe_load_all(render_documents([body()]))]


def crd(version: str = "v1", established: str = "True") -> dict[str, Any]:
    return {
        "spec": {"versions": [{"name": version, "served": True}]},
        "status": {"conditions": [{"type": "Established", "status": established}]},
    }


def test_each_optional_api_is_found_by_its_crd_and_read_from_its_events():
    assert optional_api("httproutes.gateway.networking.k8s.io") is GATEWAY_API
    assert optional_api("authorizationpolicies.security.istio.io") is ISTIO
    assert optional_api("gateways.gateway.networking.k8s.io") is None
    assert crd_established(GATEWAY_API, "ADDED", crd())
    assert not crd_established(GATEWAY_API, "ADDED", crd(version="v1beta1"))  # we write v1
    assert not crd_established(GATEWAY_API, "MODIFIED", crd(established="False"))
    assert not crd_established(GATEWAY_API, "DELETED", crd())
    presence = ApiPresence({ISTIO: False, GATEWAY_API: True})
    assert (presence[ISTIO], presence[GATEWAY_API]) == (False, True)
    assert presence.summary() == "Istio not installed; Gateway API installed"
