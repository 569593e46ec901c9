"""Write only when needed: hash of the desired object plus a subset check against the live one."""

from __future__ import annotations

import copy

from isvc_operator.apply import desired_hash, is_subset, needs_apply, with_hash

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
