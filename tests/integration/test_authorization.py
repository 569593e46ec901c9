"""Istio AuthorizationPolicy per isvc, with Istio's CRD absent, installed at run time, and removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import condition, wait_established, wait_until
from tests.integration.test_lifecycle import isvc, wait_ready

pytestmark = pytest.mark.cluster
# A copy of Istio's CRD (Apache-2.0) kept in the repo: CI runs in a fresh clone anywhere.
ISTIO_CRD = Path(__file__).resolve().parents[1] / "fixtures/istio-authorizationpolicies-crd.yaml"


def with_auth(name, namespace, **authorization):
    body = isvc(name, namespace)
    body["spec"]["authorization"] = authorization
    return body


@pytest.fixture
def no_istio(kube):
    kube.run("delete", "crd", "authorizationpolicies.security.istio.io", "--ignore-not-found", "--wait=true")
    yield
    kube.run("delete", "crd", "authorizationpolicies.security.istio.io", "--ignore-not-found", "--wait=true")


def test_policies_follow_istio_and_the_spec(kube, operator, namespace, model_claim, no_istio):
    assert ISTIO_CRD.exists(), f"Istio's CRD copy is missing: {ISTIO_CRD}"
    kube.apply(with_auth("auto", namespace, mode="Auto"))
    kube.apply(with_auth("required", namespace, mode="Enabled"))

    # Without Istio: Auto is fine without a policy, Enabled is not Ready and says why.
    obj = wait_ready(kube, "auto", namespace)
    assert (condition(obj, "AuthorizationReady")["status"], condition(obj, "AuthorizationReady")["reason"]) == (
        "True",
        "IstioNotInstalled",
    )
    required = wait_until(
        lambda: condition(kube.get("isvc", "required", namespace), "Ready").get("reason") == "IstioNotInstalled"
        and condition(kube.get("isvc", "required", namespace), "Ready"),
        30,
        "Ready=False IstioNotInstalled",
    )
    assert required["status"] == "False" and "install Istio, or set mode Auto or Disabled" in required["message"]

    # Istio installed while the operator runs: both get a policy, no restart needed.
    kube.apply(ISTIO_CRD.read_text())
    wait_established(kube, "authorizationpolicies.security.istio.io")
    policy = wait_until(
        lambda: kube.get("authorizationpolicies.security.istio.io", "auto", namespace), 60, "the policy of 'auto'"
    )
    wait_ready(kube, "required", namespace)
    assert policy["spec"]["selector"] == {
        "matchLabels": {"serving.isvc.dev/inferenceservice": "auto", "app.kubernetes.io/component": "predictor"}
    }
    assert policy["spec"]["action"] == "ALLOW"
    assert policy["spec"]["rules"][0]["to"][0]["operation"]["methods"] == ["GET", "POST"]
    assert "/v1/models/*" in policy["spec"]["rules"][0]["to"][0]["operation"]["paths"]
    assert condition(wait_ready(kube, "auto", namespace), "AuthorizationReady")["reason"] == "Applied"

    # Spec change updates it.
    kube.apply(with_auth("auto", namespace, mode="Auto", sourceNamespaces=["apps"]))
    wait_until(
        lambda: kube.get("authorizationpolicies.security.istio.io", "auto", namespace)["spec"]["rules"][0].get("from")
        == [{"source": {"namespaces": ["apps"]}}],
        30,
        "the policy to allow only namespace apps",
    )

    # Deleted by hand: recreated.
    uid = kube.get("authorizationpolicies.security.istio.io", "auto", namespace)["metadata"]["uid"]
    kube.run("delete", "authorizationpolicies.security.istio.io", "auto", "-n", namespace)
    wait_until(
        lambda: (p := kube.get("authorizationpolicies.security.istio.io", "auto", namespace))
        and p["metadata"]["uid"] != uid,
        30,
        "the policy to be recreated",
    )

    # Disabled: removed, and the condition says so.
    kube.apply(with_auth("auto", namespace, mode="Disabled"))
    wait_until(
        lambda: kube.get("authorizationpolicies.security.istio.io", "auto", namespace) is None,
        30,
        "the policy to be removed",
    )
    obj = wait_ready(kube, "auto", namespace, generation=3)
    assert condition(obj, "AuthorizationReady")["reason"] == "Disabled"


def test_istio_removed_at_run_time_restarts_the_watches_without_a_traceback(
    kube, operator, namespace, model_claim, no_istio
):
    """README: the watches restart when Istio's CRD is deleted. Without that restart kopf's watch on
    authorizationpolicies reconnects after the API server dropped the resource, gets 404 and kopf
    logs "Watcher for authorizationpolicies ... failed" with a traceback (and stops)."""
    kube.apply(ISTIO_CRD.read_text())
    wait_established(kube, "authorizationpolicies.security.istio.io")
    kube.apply(with_auth("guarded", namespace, mode="Enabled"))
    wait_until(
        lambda: kube.get("authorizationpolicies.security.istio.io", "guarded", namespace), 60, "the policy of 'guarded'"
    )
    wait_ready(kube, "guarded", namespace)
    mark = len(operator.log())

    kube.run("delete", "crd", "authorizationpolicies.security.istio.io", "--wait=true")
    wait_until(
        lambda: "Istio not installed" in operator.log()[mark:], 60, "the operator to restart its watches without Istio"
    )
    ready = wait_until(
        lambda: (c := condition(kube.get("isvc", "guarded", namespace), "Ready")).get("reason") == "IstioNotInstalled"
        and c,
        30,
        "guarded: Ready=False IstioNotInstalled once Istio's CRD is gone",
    )
    assert ready["status"] == "False"
    # The restarted watches serve: a deleted child comes back.
    kube.run("delete", "service", "guarded", "-n", namespace)
    wait_until(lambda: kube.get("service", "guarded", namespace), 30, "the Service 'guarded' to be restored")
    assert operator.proc.poll() is None, f"the operator exited: see {operator.log_path}"
    tracebacks = [line[:300] for line in operator.log()[mark:].splitlines() if "Traceback" in line]
    assert not tracebacks, f"the operator logged a traceback when Istio's CRD was deleted: {tracebacks}"
