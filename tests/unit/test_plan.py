"""The plan memo: a reused plan is exactly the plan a fresh computation gives, for every input."""

from __future__ import annotations

import copy

import pytest

from isvc_operator.builders.storage_credentials import AccountSecrets
from isvc_operator.drift import desired_hash, with_hash
from isvc_operator.plan import Plans, make_plan
from isvc_operator.runtimes import load_catalog
from isvc_operator.spec import InvalidSpec

CATALOG = load_catalog()
BODY = {
    "apiVersion": "serving.isvc.dev/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "iris", "namespace": "ns", "uid": "uid-1", "generation": 1, "resourceVersion": "10"},
    "spec": {"predictor": {"tensorflow": {"storageUri": "pvc://models"}}},
}


def _children(plan):
    return [(c.key, c.desired, c.digest) for c in plan.children]


def test_equal_inputs_reuse_the_plan_and_a_status_change_is_not_an_input():
    plans = Plans()
    first = plans.get(BODY, CATALOG, istio_installed=False)
    later = copy.deepcopy(BODY)
    later["metadata"]["resourceVersion"] = "11"
    later["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert plans.get(later, CATALOG, istio_installed=False) is first
    assert (plans.hits, plans.misses) == (1, 1)
    assert _children(first) == _children(make_plan(BODY, CATALOG, istio_installed=False))


@pytest.mark.parametrize(
    "change",
    [
        # A spec edit even without a generation bump (the memo does not trust generation).
        lambda b: b["spec"]["predictor"]["tensorflow"].update(runtimeVersion="2.18.0"),
        lambda b: b["metadata"].update(labels={"team": "a"}),
        lambda b: b["metadata"].update(annotations={"note": "x"}),
        lambda b: b["metadata"].update(uid="uid-2"),
        lambda b: b["metadata"].update(generation=2),
    ],
)
def test_any_input_change_gives_a_fresh_plan(change):
    plans = Plans()
    plans.get(BODY, CATALOG, istio_installed=False)
    changed = copy.deepcopy(BODY)
    change(changed)
    plan = plans.get(changed, CATALOG, istio_installed=False)
    assert plans.misses == 2
    assert _children(plan) == _children(make_plan(changed, CATALOG, istio_installed=False))


def test_istio_appearing_adds_the_policy():
    plans = Plans()
    without = plans.get(BODY, CATALOG, istio_installed=False)
    with_istio = plans.get(BODY, CATALOG, istio_installed=True)
    assert [c.key[1] for c in without.children] == ["Deployment", "Service"]
    assert [c.key[1] for c in with_istio.children] == ["Deployment", "Service", "AuthorizationPolicy"]


def test_a_mutated_body_is_not_mistaken_for_the_one_planned():
    plans = Plans()
    body = copy.deepcopy(BODY)
    plans.get(body, CATALOG, istio_installed=False)
    body["spec"]["predictor"]["tensorflow"]["runtimeVersion"] = "2.18.0"  # same dict, edited in place
    plan = plans.get(body, CATALOG, istio_installed=False)
    assert plans.misses == 2
    assert plan.children[0].desired["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.18.0")


def test_invalid_spec_is_remembered_and_raised_each_time():
    plans = Plans()
    bad = copy.deepcopy(BODY)
    bad["spec"]["predictor"]["tensorflow"]["storageUri"] = "ftp://nowhere"
    messages = []
    for _ in range(2):
        with pytest.raises(InvalidSpec) as exc:
            plans.get(bad, CATALOG, istio_installed=False)
        messages.append(str(exc.value))
    assert messages[0] == messages[1] and "ftp://nowhere" in messages[0]
    assert (plans.hits, plans.misses) == (1, 1)


def test_digest_is_the_hash_written_on_the_child():
    plan = make_plan(BODY, CATALOG, istio_installed=False)
    for child in plan.children:
        assert child.digest == desired_hash(child.desired)
        assert child.to_apply == with_hash(child.desired)


def test_entries_are_bounded_and_forgotten():
    plans = Plans(max_entries=2)
    for name in ("a", "b", "c"):
        body = copy.deepcopy(BODY)
        body["metadata"]["name"] = name
        plans.get(body, CATALOG, istio_installed=False)
    assert len(plans) == 2
    plans.forget(("ns", "c"))
    assert len(plans) == 1


def test_a_changed_secret_of_the_account_gives_a_fresh_plan():
    """The account's Secrets are an input: a key added to one (e.g. a session token) reaches the Deployment."""
    body = copy.deepcopy(BODY)
    body["spec"]["predictor"] = {"serviceAccountName": "sa", "tensorflow": {"storageUri": "s3://models/dogs"}}
    account = {"metadata": {"name": "sa", "annotations": {}}}
    before = AccountSecrets(account, ({"metadata": {"name": "s3"}, "data": {"AWS_ACCESS_KEY_ID": ""}},))
    after = AccountSecrets(
        account, ({"metadata": {"name": "s3"}, "data": {"AWS_ACCESS_KEY_ID": "", "AWS_SESSION_TOKEN": ""}},)
    )
    plans = Plans()
    plans.get(body, CATALOG, istio_installed=False, account_secrets=before)
    assert plans.get(body, CATALOG, istio_installed=False, account_secrets=copy.deepcopy(before)) is not None
    plan = plans.get(body, CATALOG, istio_installed=False, account_secrets=after)
    assert (plans.hits, plans.misses) == (1, 2)
    init = plan.children[0].desired["spec"]["template"]["spec"]["initContainers"][0]
    assert "AWS_SESSION_TOKEN" in [e["name"] for e in init["env"]]
