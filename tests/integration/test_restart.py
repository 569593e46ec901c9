"""Operator restarts converge without writing anything that is already right."""

from __future__ import annotations

import pytest

from tests.conftest import condition
from tests.integration.test_lifecycle import isvc, wait_ready

pytestmark = pytest.mark.cluster


def test_restart_makes_no_writes_for_an_unchanged_isvc(kube, operator, operator_audit, namespace, model_claim):
    """README: an operator restart over unchanged isvcs makes zero writes, counted as the operator's
    write requests in the audit log (a no-op apply would leave every resourceVersion as it was)."""
    kube.apply(isvc("steady", namespace))
    wait_ready(kube, "steady", namespace)
    assert operator.stop() == 0, "SIGTERM must end the operator with exit code 0, not leave it to be killed"
    mark = operator_audit.mark()
    operator.start()
    # A marker created after the restart is reconciled after the initial listing of "steady".
    kube.apply(isvc("marker", namespace))
    wait_ready(kube, "marker", namespace)
    writes = operator_audit.writes_besides(kube, mark, namespace, marker="marker")
    assert writes == [], f"the restarted operator wrote to the unchanged isvc 'steady' or its children: {writes}"


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
