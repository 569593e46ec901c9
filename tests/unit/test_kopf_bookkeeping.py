"""kopf's change-detection bookkeeping is off (NoDiffBase): safe only while no handler needs it."""

import kopf

from isvc_operator import handlers


def test_no_diffbase_builds_nothing_from_a_body():
    pod = kopf.Body(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}] * 50},
            "status": {"phase": "Running"},
        }
    )
    storage = handlers.NoDiffBase()
    assert storage.build(body=pod) == {}
    assert storage.fetch(body=pod) is None


def test_no_handler_relies_on_kopf_change_detection():
    """create/update/delete/field handlers (kopf's "changing" handlers) and daemons/timers use the
    diff base; adding one means removing NoDiffBase from `configure`."""
    registry = kopf.get_default_registry()
    import isvc_operator.handlers  # noqa: F401  (registers the handlers)

    assert registry._watching.get_all_handlers(), "the on.event handlers should be registered"
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()
