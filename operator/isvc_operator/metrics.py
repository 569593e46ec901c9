"""Prometheus metrics: reconcile outcomes and durations, API errors, InferenceServices by Ready state."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "isvc_reconcile_total",
    "Reconcile passes by result (applied, unchanged, invalid, skipped, error).",
    ["result"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "isvc_reconcile_duration_seconds",
    "Wall time of one reconcile pass.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
API_ERRORS = Counter(
    "isvc_api_errors_total",
    "Kubernetes API errors met while reconciling, by HTTP status (0: no answer).",
    ["status"],
    registry=REGISTRY,
)


class ReadyStates(Collector):
    """InferenceServices by the status of their Ready condition, as last reconciled.

    The event loop sets and forgets states while Prometheus' HTTP thread collects: both hold the
    lock, and a scrape reads a per-state tally (three numbers), never the per-isvc map.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], str] = {}
        self._tally: Tally[str] = Tally()

    def set(self, key: tuple[str, str], state: str) -> None:
        with self._lock:
            old = self._states.get(key)
            if old == state:
                return
            if old is not None:
                self._tally[old] -= 1
            self._states[key] = state
            self._tally[state] += 1

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            old = self._states.pop(key, None)
            if old is not None:
                self._tally[old] -= 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"True": 0, "False": 0, "Unknown": 0, **{k: v for k, v in self._tally.items() if v}}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("isvc_inferenceservices", "InferenceServices by Ready status.", labels=["ready"])
        for state, count in sorted(self.counts().items()):
            family.add_metric([state], count)
        yield family


READY_STATES = ReadyStates()
REGISTRY.register(READY_STATES)


def record_pass(
    key: tuple[str, str], result: str, seconds: float, ready: Mapping[str, Any] | None, error_status: int | None = None
) -> None:
    RECONCILES.labels(result=result).inc()
    RECONCILE_SECONDS.observe(seconds)
    if error_status is not None:
        API_ERRORS.labels(status=str(error_status)).inc()
    if ready is not None:
        READY_STATES.set(key, ready.get("status", "Unknown"))


def forget(key: tuple[str, str]) -> None:
    READY_STATES.forget(key)


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address, registry=REGISTRY)
