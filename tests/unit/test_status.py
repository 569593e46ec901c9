"""Status from Deployment states: Ready only when the current template is fully available."""

from __future__ import annotations

import pytest

from isvc_operator.status import (
    Observed,
    aggregate_ready,
    compute_status,
    invalid_spec_status,
    pod_failure,
    predictor_condition,
    stamp_conditions,
    status_changed,
)


def deployment(*, generation=2, observed=2, replicas=1, total=1, updated=1, available=1, ready=None, progressing=None):
    status = {
        "observedGeneration": observed,
        "replicas": total,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "readyReplicas": available if ready is None else ready,
    }
    if progressing:
        status["conditions"] = [{"type": "Progressing", **progressing}]
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas}, "status": status}


SERVICE = {"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8500, "nodePort": 31000}]}}


@pytest.mark.parametrize(
    ("live", "status", "reason", "message"),
    [
        (None, "Unknown", "Creating", "Deployment m-predictor is being created"),
        (deployment(), "True", "Available", "1 of 1 replicas available"),
        (deployment(observed=1), "Unknown", "RolloutInProgress", "Deployment m-predictor is rolling out generation 2"),
        (
            deployment(replicas=3, total=3, updated=1, available=3),
            "Unknown",
            "RolloutInProgress",
            "rolling out generation 2",
        ),
        (
            deployment(replicas=2, total=3, updated=2, available=2),
            "Unknown",
            "RolloutInProgress",
            "rolling out generation 2",
        ),
        (
            deployment(replicas=2, total=2, updated=2, available=1),
            "Unknown",
            "ReplicasNotReady",
            "waiting for 2 replicas to load the model",
        ),
        (
            deployment(
                replicas=1,
                total=1,
                updated=1,
                available=0,
                progressing={
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "m-predictor-abc" has timed out progressing.',
                },
            ),
            "False",
            "ProgressDeadlineExceeded",
            'made no progress: ReplicaSet "m-predictor-abc" has timed out progressing.',
        ),
        (deployment(replicas=0, total=0, updated=0, available=0), "True", "ScaledToZero", "scaled to 0 replicas"),
        (
            deployment(replicas=0, total=1, updated=0, available=1),
            "Unknown",
            "RolloutInProgress",
            "rolling out generation 2",
        ),
    ],
)
def test_predictor_condition(live, status, reason, message):
    cond = predictor_condition(live, "m-predictor")
    assert (cond["status"], cond["reason"]) == (status, reason)
    assert message in cond["message"]


def test_ready_carries_the_first_failure_before_any_wait():
    parts = [
        {"type": "A", "status": "Unknown", "reason": "Waiting", "message": "w"},
        {"type": "B", "status": "False", "reason": "Broken", "message": "b"},
    ]
    assert aggregate_ready(parts, "http://u") == {
        "type": "Ready",
        "status": "False",
        "reason": "Broken",
        "message": "b",
    }
    assert (
        aggregate_ready([{**p, "status": "True"} for p in parts], "http://u")["message"] == "model served at http://u"
    )


def test_compute_status_reports_generation_url_and_replicas():
    status = compute_status(
        generation=7,
        observed=Observed(deployment=deployment(replicas=2, total=2, updated=2, available=2), service=SERVICE),
        deployment_name="m-predictor",
        service_name="m",
        url="http://m",
        previous=None,
        now="T1",
    )
    assert status["observedGeneration"] == 7
    assert (status["replicas"], status["readyReplicas"], status["replicasSummary"]) == (2, 2, "2/2")
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        ("Ready", "True"),
        ("PredictorReady", "True"),
        ("ServiceReady", "True"),
        ("AuthorizationReady", "True"),
        ("Reconciling", "False"),
        ("Stalled", "False"),
    ]
    assert all(c["observedGeneration"] == 7 and c["lastTransitionTime"] == "T1" for c in status["conditions"])


def test_first_visit_is_not_ready():
    status = compute_status(
        generation=1,
        observed=Observed(),
        deployment_name="m-predictor",
        service_name="m",
        url="http://m",
        previous=None,
        now="T0",
    )
    assert status["conditions"][0]["status"] == "Unknown"
    assert status["conditions"][0]["reason"] == "Creating"


def test_last_transition_time_moves_only_when_status_flips():
    first = stamp_conditions([{"type": "Ready", "status": "Unknown", "reason": "A", "message": ""}], [], 1, "T1")
    same = stamp_conditions([{"type": "Ready", "status": "Unknown", "reason": "B", "message": "x"}], first, 1, "T2")
    flipped = stamp_conditions([{"type": "Ready", "status": "True", "reason": "Ready", "message": ""}], same, 1, "T3")
    assert [first[0]["lastTransitionTime"], same[0]["lastTransitionTime"], flipped[0]["lastTransitionTime"]] == [
        "T1",
        "T1",
        "T3",
    ]


def test_unchanged_status_is_not_written_again():
    kwargs = dict(
        generation=1,
        observed=Observed(deployment=deployment(generation=1, observed=1), service=SERVICE),
        deployment_name="m-predictor",
        service_name="m",
        url="http://m",
    )
    first = compute_status(previous=None, now="T1", **kwargs)
    second = compute_status(previous=first, now="T2", **kwargs)
    assert not status_changed(first, second)
    assert status_changed(first, compute_status(previous=first, now="T3", **{**kwargs, "generation": 2}))


def test_invalid_spec_keeps_other_fields_and_says_why():
    previous = {
        "url": "http://m",
        "conditions": [{"type": "ServiceReady", "status": "True", "reason": "Exposed", "message": ""}],
    }
    status = invalid_spec_status(generation=4, message="spec.predictor: bad", previous=previous, now="T")
    ready = status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"], ready["message"]) == (
        "Ready",
        "False",
        "InvalidSpec",
        "spec.predictor: bad",
    )
    assert status["url"] == "http://m" and status["observedGeneration"] == 4
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "PredictorReady",
        "ServiceReady",
        "Reconciling",
        "Stalled",
    }


def pod(**status):
    return {"metadata": {"name": "m-predictor-abc"}, "status": status}


@pytest.mark.parametrize(
    ("pods", "reason", "message"),
    [
        (
            [
                pod(
                    conditions=[
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": '0/3 nodes are available: persistentvolumeclaim "models" not found.',
                        }
                    ]
                )
            ],
            "PersistentVolumeClaimNotFound",
            'persistentvolumeclaim "models" not found',
        ),
        (
            [
                pod(
                    conditions=[
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
                        }
                    ]
                )
            ],
            "Unschedulable",
            "didn't match Pod's node affinity/selector",
        ),
        (
            [
                pod(
                    containerStatuses=[
                        {
                            "name": "model-server",
                            "image": "tensorflow/serving:9.9",
                            "state": {
                                "waiting": {
                                    "reason": "ImagePullBackOff",
                                    "message": 'Back-off pulling image "tensorflow/serving:9.9"',
                                }
                            },
                        }
                    ]
                )
            ],
            "ImagePullBackOff",
            "image tensorflow/serving:9.9 cannot be pulled: Back-off pulling image",
        ),
        (
            [
                pod(
                    containerStatuses=[
                        {
                            "name": "model-server",
                            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                            "lastState": {"terminated": {"exitCode": 1, "message": "No versions of servable m found"}},
                        }
                    ]
                )
            ],
            "CrashLoopBackOff",
            "last termination: No versions of servable m found",
        ),
        (
            [
                pod(
                    initContainerStatuses=[
                        {
                            "name": "storage-initializer",
                            "state": {
                                "terminated": {
                                    "exitCode": 1,
                                    "message": "download failed: GET https://h/m.tgz returned 404 Not Found",
                                }
                            },
                        }
                    ]
                )
            ],
            "StorageInitializerFailed",
            "returned 404 Not Found",
        ),
    ],
)
def test_pod_failures_name_the_cause(pods, reason, message):
    cond = predictor_condition(deployment(replicas=1, total=1, updated=1, available=0), "m-predictor", pods)
    assert (cond["status"], cond["reason"]) == ("False", reason)
    assert message in cond["message"]


def test_pod_failures_do_not_override_an_available_deployment():
    failing = [pod(containerStatuses=[{"name": "x", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}])]
    assert predictor_condition(deployment(), "m-predictor", failing)["status"] == "True"
    assert pod_failure([{**failing[0], "metadata": {"name": "old", "deletionTimestamp": "T"}}]) is None


def test_a_replicaset_that_cannot_create_pods_is_a_failure_with_the_api_servers_words():
    """Quota, admission or a pod the API refuses: the Deployment says so in ReplicaFailure."""
    live = deployment(replicas=1, total=0, updated=0, available=0)
    live["status"]["conditions"] = [
        {
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": 'pods "m-predictor-abc-" is forbidden: exceeded quota: q',
        }
    ]
    cond = predictor_condition(live, "m-predictor")
    assert (cond["status"], cond["reason"]) == ("False", "FailedCreate")
    assert (
        cond["message"]
        == 'Deployment m-predictor cannot create pods: pods "m-predictor-abc-" is forbidden: exceeded quota: q'
    )


def test_events_mark_outcomes_not_rollout_steps():
    from isvc_operator.reconcile import Outcome

    def ready(status, reason="R"):
        return {"type": "Ready", "status": status, "reason": reason, "message": "m"}

    assert not Outcome(result="applied", ready_before=None, ready_after=ready("Unknown")).ready_changed
    assert not Outcome(result="applied", ready_before=ready("True"), ready_after=ready("Unknown")).ready_changed
    assert Outcome(result="applied", ready_before=ready("Unknown"), ready_after=ready("True")).ready_changed
    assert Outcome(result="applied", ready_before=ready("True"), ready_after=ready("False")).ready_changed
    assert Outcome(result="applied", ready_before=ready("False", "A"), ready_after=ready("False", "B")).ready_changed
    assert not Outcome(
        result="applied", ready_before=ready("False", "A"), ready_after=ready("False", "A")
    ).ready_changed
