"""Operator restarts converge without writing anything that is already right."""

from __future__ import annotations

import pytest

from tests.conftest import condition
from tests.integration.test_lifecycle import isvc, wait_ready

pytestmark = pytest.mark.cluster


def versions(kube, namespace):
    return {
        kind: kube.get(kind, name, namespace)["metadata"]["resourceVersion"]
        for kind, name in (("isvc", "steady"), ("deployment", "steady-predictor"), ("service", "steady"))
    }


def test_restart_makes_no_writes_for_an_unchanged_isvc(kube, operator, namespace, model_claim):
    kube.apply(isvc("steady", namespace))
    wait_ready(kube, "steady", namespace)
    before = versions(kube, namespace)
    assert operator.stop() == 0, "SIGTERM must end the operator with exit code 0, not leave it to be killed"
    operator.start()
    # A marker created after the restart is reconciled after the initial listing of "steady".
    kube.apply(isvc("marker", namespace))
    wait_ready(kube, "marker", namespace)
    assert versions(kube, namespace) == before


def test_changes_made_while_the_operator_is_down_converge_on_start(kube, operator, namespace, model_claim):
    kube.apply(isvc("offline", namespace))
    wait_ready(kube, "offline", namespace)
    operator.stop()
    try:
        kube.run(
            "patch", "isvc", "offline", "-n", namespace, "--type=merge", "-p", '{"spec":{"predictor":{"replicas":2}}}'
        )
        kube.run("delete", "service", "offline", "-n", namespace)
    finally:
        operator.start()
    obj = wait_ready(kube, "offline", namespace, generation=2)
    assert obj["status"]["replicas"] == 2
    assert kube.get("service", "offline", namespace) is not None
    assert condition(obj, "ServiceReady")["status"] == "True"
