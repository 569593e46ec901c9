"""The recent-writes overlay: our write wins over an older cache until the watch catches up, and is
never kept once the cache holds it (whichever of the event and the write's response came first)."""

from isvc_operator.recent import RecentWrites, object_key

KEY = ("ns", "m")


def obj(rv, kind="Deployment", name="m-predictor", managed=False):
    metadata = {"name": name, "namespace": "ns", "resourceVersion": str(rv)}
    if managed:
        metadata["managedFields"] = [{"manager": "isvc-operator", "fieldsV1": {"f:spec": {}}}]
    return {"apiVersion": "apps/v1" if kind == "Deployment" else "v1", "kind": kind, "metadata": metadata}


def test_write_wins_over_older_cache_until_its_event_arrives():
    recent = RecentWrites()
    mine = obj(10)
    recent.record(KEY, {object_key(mine): mine})
    assert recent.overlay(KEY, object_key(mine), obj(9)) == mine
    assert recent.pending(KEY) == (object_key(mine),)
    recent.observed(KEY, obj(10))
    assert recent.pending(KEY) == ()
    assert len(recent) == 0


def test_write_not_yet_in_cache_is_served_from_the_overlay():
    recent = RecentWrites()
    mine = obj(10)
    recent.record(KEY, {object_key(mine): mine})
    assert recent.overlay(KEY, object_key(mine), None) == mine
    assert len(recent) == 1


def test_event_before_response_is_dropped_by_the_next_read():
    # The watch delivered the write (and the pass that follows reads it) before the response was
    # recorded: `observed` found nothing then, so the read through `overlay` must drop it.
    recent = RecentWrites()
    recent.observed(KEY, obj(10))
    mine = obj(10)
    recent.record(KEY, {object_key(mine): mine})
    cached = obj(11)
    assert recent.overlay(KEY, object_key(mine), cached) is cached
    assert len(recent) == 0 and recent.pending(KEY) == ()


def test_pending_is_a_copy_so_overlay_can_drop_while_iterating():
    recent = RecentWrites()
    deployment, service = obj(10), obj(11, kind="Service", name="m")
    recent.record(KEY, {object_key(deployment): deployment, object_key(service): service})
    cache = {object_key(deployment): obj(12), object_key(service): obj(13, kind="Service", name="m")}
    for key in recent.pending(KEY):
        assert recent.overlay(KEY, key, cache[key]) is cache[key]
    assert len(recent) == 0


def test_responses_are_kept_without_managed_fields():
    recent = RecentWrites()
    mine = obj(10, managed=True)
    recent.record(KEY, {object_key(mine): mine})
    kept = recent.overlay(KEY, object_key(mine), None)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["resourceVersion"] == "10"
    assert "managedFields" in mine["metadata"]  # the caller's object is left alone


def test_unparseable_resource_versions_are_never_kept_or_compared():
    recent = RecentWrites()
    mine = {**obj(1), "metadata": {"name": "m-predictor", "resourceVersion": "abc"}}
    recent.record(KEY, {object_key(mine): mine})
    assert len(recent) == 0
    ours = obj(10)
    recent.record(KEY, {object_key(ours): ours})
    odd = {**obj(1), "metadata": {"name": "m-predictor", "resourceVersion": "xyz"}}
    assert recent.overlay(KEY, object_key(ours), odd) is odd  # trust the watch
    assert len(recent) == 0


def test_forget_drops_everything_of_an_isvc():
    recent = RecentWrites()
    mine = obj(10)
    recent.record(KEY, {object_key(mine): mine})
    recent.forget(KEY)
    assert recent.pending(KEY) == () and len(recent) == 0
