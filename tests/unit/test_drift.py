"""Write only when needed: hash of the desired object plus a subset check against the live one."""

from __future__ import annotations

import copy

from isvc_operator.drift import desired_hash, is_subset, needs_apply, with_hash

DESIRED = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "m", "namespace": "ns", "labels": {"a": "1"}},
    "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 8500}]},
}


def live_copy():
    live = with_hash(DESIRED)
    live = copy.deepcopy(live)
    live["metadata"]["uid"] = "server-set"
    live["spec"]["clusterIP"] = "10.0.0.1"
    live["spec"]["ports"][0]["nodePort"] = 31000
    return live


def test_unchanged_child_with_server_defaults_needs_no_write():
    assert not needs_apply(DESIRED, live_copy())


def test_missing_child_is_written():
    assert needs_apply(DESIRED, None)


def test_changed_desired_object_is_written():
    changed = copy.deepcopy(DESIRED)
    changed["spec"]["type"] = "ClusterIP"
    assert needs_apply(changed, live_copy())


def test_hand_edit_of_our_field_is_undone():
    live = live_copy()
    live["spec"]["ports"][0]["port"] = 9999
    assert needs_apply(DESIRED, live)
    live = live_copy()
    del live["metadata"]["labels"]["a"]
    assert needs_apply(DESIRED, live)


def test_hash_is_stable_and_content_sensitive():
    assert desired_hash(DESIRED) == desired_hash(copy.deepcopy(DESIRED))
    other = copy.deepcopy(DESIRED)
    other["metadata"]["labels"]["a"] = "2"
    assert desired_hash(DESIRED) != desired_hash(other)


def test_subset_semantics():
    assert is_subset({"a": [{"b": 1}]}, {"a": [{"b": 1, "c": 2}], "d": 3})
    assert not is_subset({"a": [{"b": 1}]}, {"a": [{"b": 1}, {"b": 2}]})
    assert not is_subset({"a": 1}, {})


def test_quantities_compare_by_value_where_the_api_server_canonicalises_them():
    """`memory: 1073741824` is stored as `1Gi`: without this every child event would re-apply."""
    desired = {"resources": {"limits": {"memory": 1073741824, "cpu": "0.5"}}, "emptyDir": {"sizeLimit": "1024Mi"}}
    live = {"resources": {"limits": {"memory": "1Gi", "cpu": "500m"}}, "emptyDir": {"sizeLimit": "1Gi"}}
    assert is_subset(desired, live)
    assert not is_subset({"resources": {"limits": {"memory": "2Gi"}}}, live)
    # Elsewhere a different spelling is a different value (the server never rewrites args).
    assert not is_subset({"args": ["1000"]}, {"args": ["1k"]})
    assert not is_subset({"resources": {"limits": {"memory": "lots"}}}, {"resources": {"limits": {"memory": "1Gi"}}})


def test_a_replacement_keeps_others_metadata_and_autoscaled_replicas():
    from isvc_operator.kube_api import _replacement

    desired = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "n", "labels": {"app": "ours"}, "annotations": {"h": "1"}},
        "spec": {"template": {}},
    }
    live = {
        "metadata": {
            "name": "d",
            "resourceVersion": "42",
            "labels": {"app": "theirs", "team": "x"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
        },
        "spec": {"replicas": 4, "template": {"old": True}},
    }
    out = _replacement(desired, live)
    assert out["metadata"]["resourceVersion"] == "42"
    assert out["metadata"]["labels"] == {"app": "ours", "team": "x"}
    assert out["metadata"]["annotations"] == {"deployment.kubernetes.io/revision": "3", "h": "1"}
    assert out["spec"] == {"template": {}, "replicas": 4}, "replicas left to the autoscaler are kept"
    pinned = {**desired, "spec": {"replicas": 1, "template": {}}}
    assert _replacement(pinned, live)["spec"]["replicas"] == 1
