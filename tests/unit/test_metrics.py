"""Prometheus metrics read in the HTTP server's thread while the event loop updates them."""

from __future__ import annotations

import sys
import threading

from isvc_operator import metrics


def ready_counts() -> dict[str, float]:
    (family,) = list(metrics.READY_STATES.collect())
    return {sample.labels["ready"]: sample.value for sample in family.samples}


def test_a_scrape_during_a_burst_of_isvcs_never_fails():
    """The event loop adds and forgets isvcs while Prometheus' thread collects."""
    stop = threading.Event()

    def burst() -> None:
        i = 0
        while not stop.is_set():
            metrics.record_pass(("burst", f"isvc-{i}"), "applied", 0.001, {"status": "Unknown"})
            if i >= 200:
                metrics.forget(("burst", f"isvc-{i - 200}"))
            i += 1

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    thread = threading.Thread(target=burst)
    thread.start()
    try:
        for _ in range(3000):
            ready_counts()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)


def test_ready_states_count_each_isvc_once_by_its_latest_state():
    keys = [("counts", name) for name in ("a", "b", "c")]
    before = ready_counts()
    for key in keys:
        metrics.record_pass(key, "applied", 0.01, {"status": "Unknown"})
    metrics.record_pass(keys[0], "applied", 0.01, {"status": "True"})
    metrics.record_pass(keys[0], "unchanged", 0.01, {"status": "True"})
    metrics.record_pass(keys[1], "applied", 0.01, {"status": "False"})
    metrics.forget(keys[2])
    metrics.forget(keys[2])
    after = ready_counts()
    assert {state: after[state] - before.get(state, 0) for state in after} == {"True": 1, "False": 1, "Unknown": 0}
    for key in keys:
        metrics.forget(key)
