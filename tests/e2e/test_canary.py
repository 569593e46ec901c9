"""Canary rollouts on the real node: real PyTorch servers behind the NodePort, without a mesh, so
the split is the ready replicas' (`trafficSplit: ReadyReplicas`). Every request of a test goes
through one closed-loop client; the answers tell which revision served it (iris v1 and v2 answer
differently) and every failed request is counted.

kube-proxy picks an endpoint at random for each connection, so the canary's share of N requests
is binomial around its share of the ready replicas: with 2,000 requests at 1 of 3 replicas the
standard deviation is 1.05 points, and the 5-point bound the test holds the observed share to is
4.7 of them (a false failure about once in 400,000 runs). That holds once the split has settled:
the sample starts when the Service's EndpointSlices hold exactly the 2 + 1 ready pods (the stable
revision's third pod, scaled away for the canary, has left them) and kube-proxy has had two of its
1 s minimum sync periods to program that. Before, for a few seconds, a third stable pod can still be
chosen and the canary's share is nearer 1 in 4.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.conftest import Kube, condition, wait_reason, wait_until

from .conftest import float32, isvc, node_port, wait_condition
from .test_real_node import ClosedLoopClient, predict_url, rollout_timeline

pytestmark = [pytest.mark.node, pytest.mark.usefixtures("e2e_operator")]

REPLICAS = 3
PERCENT = 34  # of 3 replicas: 1 canary, 2 stable once the canary is Ready
SAMPLE = 2000  # answers during the canary whose share is held to the effective split


def iris(store: str, archive: str = "iris-v1.tar.gz", **predictor: Any) -> dict[str, Any]:
    """iris on the PyTorch server with predictor-level fields (replicas, canaryTrafficPercent)."""
    return isvc("iris", {"pytorch": {"storageUri": f"{store}/{archive}"}, **predictor})


def predictor_status(kube: Kube, namespace: str) -> dict[str, Any]:
    obj = kube.get("isvc", "iris", namespace) or {}
    return ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}


def ready_split(kube: Kube, namespace: str) -> list[int]:
    """Ready replicas per revision, stable first, as the status reports them."""
    return [t.get("readyReplicas", 0) for t in predictor_status(kube, namespace).get("traffic", [])]


def endpoints(kube: Kube, namespace: str, service: str) -> tuple[int, int]:
    """(ready endpoints, all endpoints, terminating ones included) in the Service's EndpointSlices."""
    out = kube.run(
        "get", "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}", "-o", "json"
    )
    found = [e for s in json.loads(out.stdout)["items"] for e in s.get("endpoints") or []]
    return sum(bool(e.get("conditions", {}).get("ready")) for e in found), len(found)


def revision_pods(kube: Kube, namespace: str, revision: str) -> list[dict[str, Any]]:
    out = kube.run("get", "pods", "-n", namespace, "-l", f"serving.isvc.dev/revision={revision}", "-o", "json")
    pods: list[dict[str, Any]] = json.loads(out.stdout)["items"]
    return pods


def canary_revision(kube: Kube, namespace: str) -> str:
    deployments = json.loads(
        kube.run("get", "deployments", "-n", namespace, "-l", "serving.isvc.dev/role=canary", "-o", "json").stdout
    )["items"]
    assert len(deployments) == 1, [d["metadata"]["name"] for d in deployments]
    return str(deployments[0]["metadata"]["labels"]["serving.isvc.dev/revision"])


def answers_from(client: ClosedLoopClient, mark: int, count: int, what: str) -> list[Any]:
    """The next `count` answers after the first `mark` (waits for them)."""
    wait_until(lambda: len(client.answers) >= mark + count, 120, what)
    return client.answers[mark : mark + count]


def shares(answers: list[Any], v1: Any, v2: Any) -> str:
    return f"v1 {sum(a == v1 for a in answers)}, v2 {sum(a == v2 for a in answers)} of {len(answers)}"


def test_a_canary_shares_traffic_rolls_back_resumes_and_is_promoted_without_a_failed_request(
    kube: Kube, namespace: str, model_store: str, expected: dict[str, Any]
) -> None:
    v1, v2 = float32(expected["iris-v1"]), float32(expected["iris-v2"])
    kube.apply(iris(model_store, replicas=REPLICAS), namespace)
    wait_condition(kube, namespace, "iris", "True", timeout=300)
    url = predict_url(node_port(kube, namespace, "iris"))
    with ClosedLoopClient(url, expected["body"], limit=1500) as client:
        before = answers_from(client, 0, 20, "traffic to flow before the canary")
        assert set(map(repr, before)) == {repr(v1)}

        # v2 as a canary with 34%: once Ready it runs 1 replica beside 2 of v1.
        kube.apply(iris(model_store, "iris-v2.tar.gz", replicas=REPLICAS, canaryTrafficPercent=PERCENT), namespace)
        wait_until(lambda: ready_split(kube, namespace) == [2, 1], 300, "the canary Ready, the split 2 + 1")
        canary = canary_revision(kube, namespace)
        wait_until(lambda: endpoints(kube, namespace, "iris") == (3, 3), 120, "exactly the 2 + 1 pods as endpoints")
        time.sleep(2)  # two of kube-proxy's 1 s minimum sync periods
        mark = len(client.answers)
        wait_until(
            lambda: v1 in client.answers[mark:] and v2 in client.answers[mark:], 60, "answers from both revisions"
        )
        split = answers_from(client, mark, SAMPLE, f"{SAMPLE} answers during the canary")
        print(f"\ncanary at {PERCENT}% (2 + 1 replicas): {shares(split, v1, v2)}")
        assert all(a in (v1, v2) for a in split)
        effective = predictor_status(kube, namespace)["canaryPercent"]
        observed = 100 * sum(a == v2 for a in split) / SAMPLE
        assert abs(observed - effective) <= 5, (
            f"the canary answered {observed:.1f}% of {SAMPLE} requests, its effective split is {effective}%"
        )
        obj = kube.get("isvc", "iris", namespace)
        assert condition(obj, "Ready")["status"] == "True" and condition(obj, "CanaryReady")["status"] == "True"
        assert predictor_status(kube, namespace)["trafficSplit"] == "ReadyReplicas"

        # Rollback: the canary scaled to 0; once its pod is gone only v1 answers.
        kube.apply(iris(model_store, "iris-v2.tar.gz", replicas=REPLICAS, canaryTrafficPercent=0), namespace)
        wait_until(lambda: not revision_pods(kube, namespace, canary), 120, "the rolled-back canary's pod to go")
        after_rollback = answers_from(client, len(client.answers), 30, "30 answers after the rollback")
        assert all(a == v1 for a in after_rollback), shares(after_rollback, v1, v2)

        # Raising the share again resumes the same canary revision.
        kube.apply(iris(model_store, "iris-v2.tar.gz", replicas=REPLICAS, canaryTrafficPercent=PERCENT), namespace)
        wait_until(lambda: ready_split(kube, namespace) == [2, 1], 300, "the resumed canary Ready, 2 + 1")
        assert canary_revision(kube, namespace) == canary
        mark = len(client.answers)
        wait_until(lambda: v2 in client.answers[mark:], 60, "the resumed canary to answer")

        # Promotion: v2 takes every replica, v1's Deployment is deleted, then only v2 answers.
        stable = predictor_status(kube, namespace)["stableRevision"]
        kube.apply(iris(model_store, "iris-v2.tar.gz", replicas=REPLICAS, canaryTrafficPercent=100), namespace)
        wait_until(
            lambda: predictor_status(kube, namespace).get("stableRevision") == f"iris-predictor-{canary}"
            and "canaryPercent" not in predictor_status(kube, namespace),
            300,
            "the canary promoted",
        )
        wait_until(
            lambda: not revision_pods(kube, namespace, stable.removeprefix("iris-predictor-")),
            120,
            "the old revision's pods to go",
        )
        wait_condition(kube, namespace, "iris", "True", timeout=120)
        after_promotion = answers_from(client, len(client.answers), 30, "30 answers after the promotion")
        assert all(a == v2 for a in after_promotion), shares(after_promotion, v1, v2)
    print(f"canary under traffic: {len(client.answers)} answered, {len(client.failures)} failed")
    assert not client.failures, f"{len(client.failures)} requests failed: {client.failures[:5]}\n" + rollout_timeline(
        kube, namespace, client.failed_at
    )
    assert all(a in (v1, v2) for a in client.answers)


def test_a_canary_the_server_cannot_load_gets_no_traffic(
    kube: Kube, namespace: str, model_store: str, expected: dict[str, Any]
) -> None:
    v1 = float32(expected["iris-v1"])
    kube.apply(iris(model_store, replicas=2), namespace)
    wait_condition(kube, namespace, "iris", "True", timeout=300)
    url = predict_url(node_port(kube, namespace, "iris"))
    with ClosedLoopClient(url, expected["body"], limit=600) as client:
        answers_from(client, 0, 20, "traffic to flow before the canary")
        kube.apply(iris(model_store, "unloadable.tar.gz", replicas=2, canaryTrafficPercent=50), namespace)
        obj = wait_reason(kube, "iris", namespace, "CanaryReady", "CrashLoopBackOff", 240)
        message = condition(obj, "CanaryReady")["message"]
        assert "gets 0% of traffic until it is Ready (50% asked)" in message and "model.pt" in message, message
        assert condition(obj, "Ready")["status"] == "True"
        assert ready_split(kube, namespace) == [2, 0]  # the stable revision keeps both replicas
        during = answers_from(client, len(client.answers), 60, "60 answers while the canary crashes")
    print(f"\ncrashing canary: {len(client.answers)} answered, {len(client.failures)} failed")
    assert not client.failures, f"{len(client.failures)} requests failed: {client.failures[:5]}\n" + rollout_timeline(
        kube, namespace, client.failed_at
    )
    assert all(a == v1 for a in during) and all(a == v1 for a in client.answers)
