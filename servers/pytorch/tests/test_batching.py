"""Concurrent requests share forward passes and each gets its own rows back; SIGTERM drains."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from conftest import Server

SLOW_MODEL_PY = '''\
import time
import torch


class Slow(torch.nn.Module):
    """y = x * scale after a pause (0.3 s, or x[0] - 10 s when x[0] > 10): requests queue up behind it."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        first = float(x.flatten()[0])
        time.sleep(first - 10 if first > 10 else 0.3)
        return x * self.scale
'''


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("slow")
    os.makedirs(base / "1")
    (base / "1" / "model.py").write_text(SLOW_MODEL_PY)
    torch.save({"scale": torch.tensor(3.0)}, base / "1" / "model.pth")
    s = Server(str(base), name="slow", extra=["--max_batch_size=64"])
    try:
        s.wait_status(200)
        yield s
    finally:
        s.stop()


def _batch_counts(server):
    text = server.request("GET", "/metrics")[1].decode()
    values = {}
    for line in text.splitlines():
        for key in ("isvc_pytorch_batch_requests_count", "isvc_pytorch_batch_requests_sum"):
            if line.startswith(key + " "):
                values[key] = float(line.split()[1])
    return values.get("isvc_pytorch_batch_requests_count", 0.0), values.get("isvc_pytorch_batch_requests_sum", 0.0)


def test_concurrent_requests_are_batched_and_split_correctly(slow_server):
    n = 12
    results = [None] * n
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, size=(1 + i % 3, 5)).round(3).tolist() for i in range(n)]
    passes_before, requests_before = _batch_counts(slow_server)

    def call(i):
        results[i] = slow_server.predict({"instances": inputs[i]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, (status, doc) in enumerate(results):
        assert status == 200, doc
        np.testing.assert_allclose(doc["predictions"], np.array(inputs[i], dtype=np.float32) * 3, rtol=1e-6)
    passes, requests = _batch_counts(slow_server)
    assert requests - requests_before == n
    # Each pass takes 0.3 s and all requests are sent at once: they cannot each get their own pass.
    assert passes - passes_before < n


def test_rows_of_different_shapes_are_not_mixed(slow_server):
    results = {}

    def call(key, rows):
        results[key] = slow_server.predict({"instances": rows})

    jobs = {"four": [[1, 2, 3, 4]], "two": [[5, 6]], "four-b": [[7, 8, 9, 10], [1, 1, 1, 1]]}
    threads = [threading.Thread(target=call, args=kv) for kv in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for key, rows in jobs.items():
        status, doc = results[key]
        assert status == 200, doc
        assert doc["predictions"] == (np.array(rows, dtype=np.float32) * 3).tolist()


def test_sigterm_finishes_in_flight_requests(tmp_path):
    base = tmp_path / "m"
    os.makedirs(base / "1")
    (base / "1" / "model.py").write_text(SLOW_MODEL_PY)
    torch.save({"scale": torch.tensor(2.0)}, base / "1" / "model.pth")
    s = Server(str(base), name="slow")
    try:
        s.wait_status(200)
        result = {}
        # 11.5 as first value: this request's forward pass lasts 1.5 s; SIGTERM arrives during it.
        t = threading.Thread(target=lambda: result.update(r=s.predict({"instances": [[11.5, 1.0]]})))
        t.start()
        time.sleep(0.3)
        s.proc.send_signal(signal.SIGTERM)
        t.join(60)
        rc = s.proc.wait(60)
    finally:
        s.stop()
    assert result["r"][0] == 200, result
    assert result["r"][1]["predictions"] == [[23.0, 2.0]]
    assert rc == 0
