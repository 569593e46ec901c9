"""What an SRE sees: Prometheus metrics that move, Events on Ready transitions, JSON log lines."""

from __future__ import annotations

import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_until
from tests.integration.test_lifecycle import isvc, wait_ready

pytestmark = pytest.mark.cluster


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(requests.get(url, timeout=5).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_reconciles_and_ready_states(kube, operator, namespace, model_claim):
    before = scrape(operator.metrics_url)
    applied_before = before.get(("isvc_reconcile_total", (("result", "applied"),)), 0.0)
    kube.apply(isvc("metered", namespace))
    wait_ready(kube, "metered", namespace)
    after = wait_until(
        lambda: (s := scrape(operator.metrics_url))
        and s.get(("isvc_inferenceservices", (("ready", "True"),)), 0) >= 1
        and s,
        30,
        "isvc_inferenceservices{ready=True} >= 1",
    )
    assert after[("isvc_reconcile_total", (("result", "applied"),))] > applied_before
    assert after[("isvc_reconcile_duration_seconds_count", ())] > before.get(
        ("isvc_reconcile_duration_seconds_count", ()), 0
    )


def test_events_are_posted_on_ready_transitions(kube, operator, namespace, model_claim):
    kube.apply(isvc("eventful", namespace))
    wait_ready(kube, "eventful", namespace)

    def ready_event():
        events = json.loads(
            kube.run(
                "get", "events", "-n", namespace, "-o", "json", "--field-selector", "involvedObject.name=eventful"
            ).stdout
        )["items"]
        return [e for e in events if e["involvedObject"]["kind"] == "InferenceService" and e["reason"] == "Ready"]

    events = wait_until(ready_event, 30, "a Ready Event on the isvc")
    assert events[0]["type"] == "Normal"
    assert events[0]["message"].startswith("Ready=True: model served at http://eventful.")

    kube.run(
        "patch",
        "isvc",
        "eventful",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"predictor":{"tensorflow":{"storageUri":"pvc://models","runtime":"nope"}}}}',
    )

    def warning_event():
        events = json.loads(
            kube.run(
                "get", "events", "-n", namespace, "-o", "json", "--field-selector", "involvedObject.name=eventful"
            ).stdout
        )["items"]
        return [e for e in events if e["reason"] == "InvalidSpec"]

    warning = wait_until(warning_event, 30, "an InvalidSpec Warning Event")
    assert warning[0]["type"] == "Warning" and "'nope' is not in the runtime catalog" in warning[0]["message"]


def test_one_json_log_line_per_reconcile_outcome(kube, operator, namespace, model_claim):
    kube.apply(isvc("logged", namespace))
    wait_ready(kube, "logged", namespace)
    lines = [line for line in operator.log().splitlines() if f"reconcile {namespace}/logged" in line]
    assert lines, "no reconcile log line for the isvc"
    for line in lines:
        record = json.loads(line)
        assert f"reconcile {namespace}/logged: applied" in record["message"]
