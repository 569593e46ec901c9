"""Reconciling and Stalled, the kstatus conventions (Flux) beside Ready: one case per reason the
operator writes, then the same through compute_status and invalid_spec_status."""

from __future__ import annotations

import pytest

from isvc_operator.status import (
    MAY_CLEAR_BY_ITSELF,
    STUCK_WAITING,
    Observed,
    compute_status,
    condition,
    invalid_spec_status,
    kstatus_conditions,
)

# Every Ready=False reason the operator writes: each leaves the isvc as it is until someone acts.
STALLED_REASONS = sorted(
    {
        *STUCK_WAITING,  # ImagePullBackOff, ErrImagePull, CrashLoopBackOff, CreateContainerConfigError, ...
        "ProgressDeadlineExceeded",
        "StorageInitializerFailed",
        "PersistentVolumeClaimNotFound",
        "FailedCreate",
        "InvalidSpec",
        "IstioNotInstalled",
        "DeploymentRejected",
        "ServiceRejected",
        "ConfigMapRejected",
        "HorizontalPodAutoscalerRejected",
        "PodDisruptionBudgetRejected",
        "AuthorizationPolicyRejected",
    }
)
CONVERGING_REASONS = ["Creating", "RolloutInProgress", "ReplicasNotReady"]


def by_type(conditions):
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in conditions}


@pytest.mark.parametrize("reason", ["Ready", "ScaledToZero"])
def test_ready_is_neither_reconciling_nor_stalled(reason):
    got = by_type(kstatus_conditions(condition("Ready", "True", reason, "model served at http://m")))
    assert got["Reconciling"][0] == "False" and got["Stalled"][0] == "False", got


@pytest.mark.parametrize("reason", CONVERGING_REASONS)
def test_converging_is_reconciling_with_readys_reason_and_message(reason):
    ready = condition("Ready", "Unknown", reason, f"what {reason} waits for")
    got = by_type(kstatus_conditions(ready))
    assert got["Reconciling"] == ("True", reason, f"what {reason} waits for")
    assert got["Stalled"][0] == "False"


@pytest.mark.parametrize("reason", STALLED_REASONS)
def test_a_failure_nobody_fixes_is_stalled_with_readys_reason_and_message(reason):
    ready = condition("Ready", "False", reason, f"what {reason} says")
    got = by_type(kstatus_conditions(ready))
    assert got["Stalled"] == ("True", reason, f"what {reason} says")
    assert got["Reconciling"][0] == "False"


def test_unschedulable_is_reconciling_until_the_progress_deadline_then_stalled():
    ready = condition("Ready", "False", "Unschedulable", "pod m-1 cannot be scheduled: 0/3 nodes are available")
    waiting = by_type(kstatus_conditions(ready))
    assert waiting["Reconciling"] == ("True", "Unschedulable", ready["message"])
    assert waiting["Stalled"][0] == "False"
    stuck = by_type(kstatus_conditions(ready, deadline_exceeded=True))
    assert stuck["Stalled"] == ("True", "Unschedulable", ready["message"])
    assert stuck["Reconciling"][0] == "False"
    assert MAY_CLEAR_BY_ITSELF == {"Unschedulable"}, "a new reason that clears by itself needs a case here"


@pytest.mark.parametrize(
    "ready",
    [condition("Ready", status, reason, "m") for status in ("True", "False", "Unknown") for reason in STALLED_REASONS]
    + [condition("Ready", "False", "Unschedulable", "m")],
)
@pytest.mark.parametrize("deadline_exceeded", [False, True])
def test_never_both_true_and_always_both_present(ready, deadline_exceeded):
    """kstatus takes whichever of the two it meets first as True: both True would be read by list order."""
    got = by_type(kstatus_conditions(ready, deadline_exceeded=deadline_exceeded))
    assert set(got) == {"Reconciling", "Stalled"}
    assert [status for status, _, _ in got.values()].count("True") <= 1, got
    assert all(reason and message for _, reason, message in got.values()), got


def deployment(*, updated=1, available=1, deadline_exceeded=False):
    status = {"observedGeneration": 1, "replicas": updated, "updatedReplicas": updated, "availableReplicas": available}
    if deadline_exceeded:
        status["conditions"] = [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
        ]
    return {"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": status}


SERVICE = {"spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8500, "nodePort": 31000}]}}
UNSCHEDULABLE_POD = {
    "metadata": {"name": "m-predictor-1"},
    "status": {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 node(s) were unschedulable.",
            }
        ]
    },
}


def status_of(observed, previous=None, now="T1"):
    return compute_status(
        generation=1,
        observed=observed,
        deployment_name="m-predictor",
        service_name="m",
        url="http://m",
        previous=previous,
        now=now,
    )


@pytest.mark.parametrize(
    ("observed", "reconciling", "stalled", "reason"),
    [
        (Observed(), "True", "False", "Creating"),
        (Observed(deployment=deployment(), service=SERVICE), "False", "False", "Ready"),
        (Observed(deployment=deployment(available=0), service=SERVICE), "True", "False", "ReplicasNotReady"),
        (
            Observed(deployment=deployment(available=0), service=SERVICE, pods=[UNSCHEDULABLE_POD]),
            "True",
            "False",
            "Unschedulable",
        ),
        (
            Observed(
                deployment=deployment(available=0, deadline_exceeded=True), service=SERVICE, pods=[UNSCHEDULABLE_POD]
            ),
            "False",
            "True",
            "Unschedulable",
        ),
        (
            Observed(deployment=deployment(available=0, deadline_exceeded=True), service=SERVICE),
            "False",
            "True",
            "ProgressDeadlineExceeded",
        ),
    ],
)
def test_compute_status_writes_reconciling_and_stalled(observed, reconciling, stalled, reason):
    got = by_type(status_of(observed)["conditions"])
    assert (got["Reconciling"][0], got["Stalled"][0]) == (reconciling, stalled), got
    true_one = got["Reconciling"] if reconciling == "True" else got["Stalled"] if stalled == "True" else got["Ready"]
    assert true_one[1] == reason and true_one[2] == got["Ready"][2], got


def test_reconciling_transition_time_moves_only_when_it_flips():
    rolling = status_of(Observed(deployment=deployment(available=0), service=SERVICE), now="T1")
    still = status_of(Observed(deployment=deployment(available=0), service=SERVICE), previous=rolling, now="T2")
    done = status_of(Observed(deployment=deployment(), service=SERVICE), previous=still, now="T3")
    times = [
        next(c for c in s["conditions"] if c["type"] == "Reconciling")["lastTransitionTime"]
        for s in (rolling, still, done)
    ]
    assert times == ["T1", "T1", "T3"]


def test_invalid_spec_is_stalled_and_replaces_earlier_reconciling():
    rolling = status_of(Observed(deployment=deployment(available=0), service=SERVICE))
    status = invalid_spec_status(generation=2, message="spec.predictor: bad", previous=rolling, now="T2")
    got = by_type(status["conditions"])
    assert got["Stalled"] == ("True", "InvalidSpec", "spec.predictor: bad")
    assert got["Reconciling"][0] == "False"
    assert [c["type"] for c in status["conditions"]].count("Reconciling") == 1
