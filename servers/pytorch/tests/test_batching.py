"""Concurrent requests share forward passes and each gets its own rows back; SIGTERM drains."""

import os
import signal
import socket
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
    """y = x * scale after a 0.3 s pause: requests queue up behind it."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        time.sleep(0.3)
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


GATED_MODEL_PY = """\
import os
import time
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


class Gated(torch.nn.Module):
    \"\"\"y = x * scale, once the test says so: the forward pass marks itself in flight (file
    `in-flight`) and finishes when the file `release` appears.\"\"\"

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        open(os.path.join(HERE, "in-flight"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(HERE, "release")) and time.monotonic() < deadline:
            time.sleep(0.01)
        return x * self.scale
"""


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def test_sigterm_finishes_in_flight_requests(tmp_path):
    """In order, each step awaited: a request is in its forward pass; SIGTERM; the server stops
    listening (draining); only then does the forward pass finish: its answer still arrives, exit 0."""
    base = tmp_path / "m"
    os.makedirs(base / "1")
    (base / "1" / "model.py").write_text(GATED_MODEL_PY)
    torch.save({"scale": torch.tensor(2.0)}, base / "1" / "model.pth")
    s = Server(str(base), name="gated")
    try:
        s.wait_status(200)
        result = {}
        t = threading.Thread(target=lambda: result.update(r=s.predict({"instances": [[11.5, 1.0]]})))
        t.start()
        _wait((base / "1" / "in-flight").exists, 60, "the request to reach the forward pass")
        s.proc.send_signal(signal.SIGTERM)
        _wait(lambda: _refuses_connections(s.port), 30, "the server to stop listening after SIGTERM")
        assert s.proc.poll() is None, "the server exited with a request in flight"
        (base / "1" / "release").touch()
        t.join(60)
        rc = s.proc.wait(60)
    finally:
        s.stop()
    assert result["r"][0] == 200, result
    assert result["r"][1]["predictions"] == [[23.0, 2.0]]
    assert rc == 0
