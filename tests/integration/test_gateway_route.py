"""The Gateway API path against the real control plane, with the Gateway API's own HTTPRoute CRD
(tests/fixtures, upstream v1.3.0): the route the API server accepts, its weights at the start of a
canary, for a canary that is not Ready, after a rollback and after a promotion (no per-revision
Service left behind), the route winning over Istio's weights, and a cluster without the CRD.

No Gateway controller runs here, so nothing carries a request: what is checked is what the operator
writes and the API server stores (its CRD's schema and CEL rules included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Kube, condition, wait_established, wait_until
from tests.integration.test_canary import by_role, deployments, istio, predictor_status, start_canary
from tests.integration.test_lifecycle import isvc, wait_ready
from tests.integration.test_rollout_and_disruption import patch_predictor

pytestmark = pytest.mark.cluster
__all__ = ["istio"]  # the fixture, imported for the test that runs with both

HTTP_ROUTE_CRD_FILE = Path(__file__).resolve().parents[1] / "fixtures/gateway-api-httproute-crd.yaml"
HTTP_ROUTE_CRD = "httproutes.gateway.networking.k8s.io"
HTTP_ROUTES = HTTP_ROUTE_CRD
GATEWAY = {"name": "web", "namespace": "gateways", "sectionName": "http"}


def operator_sees(operator, since: int, installed: bool) -> None:
    """The operator restarted its watches with (or without) the Gateway API: its start line says so."""
    line = "Gateway API installed" if installed else "Gateway API not installed"
    wait_until(lambda: line in operator.log()[since:], 60, f"the operator to restart its watches: {line!r}")


def remove_crd(kube: Kube, operator) -> None:
    """Delete the CRD; if it was there, wait until the operator has restarted its watches without it
    (a SIGTERM in the middle of that restart, as the session ends, would kill it)."""
    if kube.get("crd", HTTP_ROUTE_CRD) is None:
        return
    seen = len(operator.log())
    kube.run("delete", "crd", HTTP_ROUTE_CRD, "--wait=true")
    operator_sees(operator, seen, installed=False)


def install_crd(kube: Kube, operator) -> None:
    seen = len(operator.log())
    kube.run("apply", "--server-side", "-f", "-", input=HTTP_ROUTE_CRD_FILE.read_text())
    wait_established(kube, HTTP_ROUTE_CRD)
    operator_sees(operator, seen, installed=True)


@pytest.fixture
def gateway_api(kube, operator):
    """The Gateway API's HTTPRoute CRD, seen by the operator; removed again afterwards."""
    if kube.get("crd", HTTP_ROUTE_CRD) is None:
        install_crd(kube, operator)
    yield
    remove_crd(kube, operator)


@pytest.fixture
def no_gateway_api(kube, operator):
    remove_crd(kube, operator)
    yield
    remove_crd(kube, operator)


def backends(kube: Kube, name: str, namespace: str) -> list[tuple[str, int]]:
    route = kube.get(HTTP_ROUTES, name, namespace) or {}
    rules = (route.get("spec") or {}).get("rules") or [{}]
    return [(b["name"], b["weight"]) for b in rules[0].get("backendRefs") or []]


def revision_services(kube: Kube, name: str, namespace: str) -> dict[str, str]:
    """NAME-stable / NAME-canary that exist, with the revision each selects."""
    found = {}
    for role in ("stable", "canary"):
        service = kube.get("service", f"{name}-{role}", namespace)
        if service is not None and not service["metadata"].get("deletionTimestamp"):
            found[role] = service["spec"]["selector"].get("serving.isvc.dev/revision", "")
    return found


def revisions_by_role(kube: Kube, name: str, namespace: str) -> dict[str, str]:
    return {
        role: d["metadata"]["labels"]["serving.isvc.dev/revision"] for role, d in by_role(kube, name, namespace).items()
    }


def routed(name: str, namespace: str, **predictor: object) -> dict:
    return isvc(name, namespace, replicas=2, gateway=GATEWAY, **predictor)


def test_a_canary_behind_a_gateway_is_weighed_by_the_httproute_then_promoted(
    kube, operator, namespace, model_claim, gateway_api
):
    kube.apply(routed("routed", namespace))
    obj = wait_ready(kube, "routed", namespace)
    wait_until(lambda: backends(kube, "routed", namespace) == [("routed", 100)], 30, "the route to Service routed")
    route = kube.get(HTTP_ROUTES, "routed", namespace)
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", **GATEWAY}]
    assert route["spec"]["rules"][0]["backendRefs"][0]["port"] == 8500
    assert route["metadata"]["ownerReferences"][0]["name"] == "routed"
    obj = wait_until(
        lambda: (o := kube.get("isvc", "routed", namespace))
        and condition(o, "IngressReady").get("reason") == "Applied"
        and o,
        30,
        "IngressReady=True Applied",
    )
    assert condition(obj, "IngressReady")["status"] == "True"
    assert revision_services(kube, "routed", namespace) == {}

    # A canary that cannot be scheduled: the route gives it nothing, its Service is there already.
    start_canary(kube, "routed", namespace, 30, nodeSelector={"example.com/no-such-node": "x"})
    wait_until(
        lambda: backends(kube, "routed", namespace) == [("routed-stable", 100), ("routed-canary", 0)],
        60,
        "the route to weigh the canary that is not Ready 0",
    )
    assert revision_services(kube, "routed", namespace) == revisions_by_role(kube, "routed", namespace)
    obj = kube.get("isvc", "routed", namespace)
    assert condition(obj, "Ready")["status"] == "True"
    predictor = obj["status"]["components"]["predictor"]
    assert (predictor["trafficSplit"], predictor["canaryPercent"]) == ("HTTPRouteWeights", 0), predictor

    # Schedulable again: a new canary revision replaces it and gets its 30 once Ready.
    unready = revisions_by_role(kube, "routed", namespace)["canary"]
    patch_predictor(kube, "routed", namespace, {"nodeSelector": None})
    wait_until(
        lambda: backends(kube, "routed", namespace) == [("routed-stable", 70), ("routed-canary", 30)],
        90,
        "the route to weigh the Ready canary 30",
    )
    roles = revisions_by_role(kube, "routed", namespace)
    assert roles["canary"] != unready
    assert revision_services(kube, "routed", namespace) == roles, "each revision's Service selects its own pods"
    predictor = predictor_status(kube, "routed", namespace)
    assert (predictor["trafficSplit"], predictor["canaryPercent"]) == ("HTTPRouteWeights", 30), predictor
    assert [(t["role"], t["percent"]) for t in predictor["traffic"]] == [("stable", 70), ("canary", 30)]

    patch_predictor(kube, "routed", namespace, {"canaryTrafficPercent": 100})
    wait_until(
        lambda: backends(kube, "routed", namespace) == [("routed", 100)]
        and revision_services(kube, "routed", namespace) == {}
        and list(deployments(kube, "routed", namespace)) == [f"routed-predictor-{roles['canary']}"],
        90,
        "after the promotion: the route back to Service routed, no per-revision Service, one Deployment",
    )
    assert condition(kube.get("isvc", "routed", namespace), "IngressReady")["status"] == "True"


def test_a_rolled_back_canary_behind_a_gateway_gets_nothing_and_leaves_nothing_when_removed(
    kube, operator, namespace, model_claim, gateway_api
):
    kube.apply(routed("back", namespace))
    wait_ready(kube, "back", namespace)
    start_canary(kube, "back", namespace, 50)
    wait_until(
        lambda: backends(kube, "back", namespace) == [("back-stable", 50), ("back-canary", 50)],
        90,
        "the route to weigh the Ready canary 50",
    )
    patch_predictor(kube, "back", namespace, {"canaryTrafficPercent": 0})
    wait_until(
        lambda: backends(kube, "back", namespace) == [("back-stable", 100), ("back-canary", 0)]
        and by_role(kube, "back", namespace)["canary"]["spec"]["replicas"] == 0,
        60,
        "the rolled-back canary weighed 0 and scaled to 0",
    )
    assert condition(kube.get("isvc", "back", namespace), "CanaryReady")["reason"] == "RolledBack"

    # The predictor back as the stable revision has it: the canary, its Service and the split go.
    patch_predictor(kube, "back", namespace, {"tensorflow": {"runtimeVersion": None}})
    wait_until(
        lambda: backends(kube, "back", namespace) == [("back", 100)]
        and revision_services(kube, "back", namespace) == {}
        and list(deployments(kube, "back", namespace)) == ["back-predictor"],
        60,
        "the route back to Service back, no per-revision Service, only back-predictor",
    )


def test_with_istio_too_the_httproute_weighs_the_canary_and_no_virtualservice_is_made(
    kube, operator, namespace, model_claim, istio, gateway_api
):
    kube.apply(routed("both", namespace))
    wait_until(
        lambda: kube.get("authorizationpolicies.security.istio.io", "both", namespace), 60, "the policy of 'both'"
    )
    wait_ready(kube, "both", namespace)
    start_canary(kube, "both", namespace, 50)
    wait_until(
        lambda: backends(kube, "both", namespace) == [("both-stable", 50), ("both-canary", 50)],
        90,
        "the route to weigh the Ready canary 50",
    )
    assert predictor_status(kube, "both", namespace)["trafficSplit"] == "HTTPRouteWeights"
    assert kube.get("virtualservices.networking.istio.io", "both", namespace) is None
    assert kube.get("destinationrules.networking.istio.io", "both", namespace) is None


def test_without_the_crd_the_isvc_is_ready_and_says_why_there_is_no_route_until_it_comes(
    kube, operator, namespace, model_claim, no_gateway_api
):
    kube.apply(routed("unrouted", namespace))
    obj = wait_until(
        lambda: (o := kube.get("isvc", "unrouted", namespace))
        and condition(o, "IngressReady").get("reason") == "GatewayAPINotInstalled"
        and condition(o, "Ready").get("status") == "True"
        and o,
        60,
        "Ready=True beside IngressReady=False GatewayAPINotInstalled",
    )
    ingress = condition(obj, "IngressReady")
    assert ingress["status"] == "False"
    assert "spec.predictor.gateway names Gateway gateways/web (listener http)" in ingress["message"], ingress
    assert "no HTTPRoute is created" in ingress["message"], ingress
    assert condition(obj, "Stalled")["status"] == "False"  # kstatus: Current; Argo CD: Healthy

    # The CRD installed while the operator runs: the route follows without a restart.
    install_crd(kube, operator)
    wait_until(lambda: backends(kube, "unrouted", namespace) == [("unrouted", 100)], 60, "the route of 'unrouted'")
    wait_until(
        lambda: condition(kube.get("isvc", "unrouted", namespace), "IngressReady").get("status") == "True",
        30,
        "IngressReady=True once the route exists",
    )
