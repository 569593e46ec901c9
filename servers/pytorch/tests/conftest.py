"""Real models built in the test session, and a real server process per scenario.

An iris-sized MLP (4 -> 16 -> 3) is trained for a few steps on iris-like data,
then saved in each accepted format: TorchScript, torch.export (.pt2), model.py + state dict.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import orjson
import pytest
import torch

IRIS_BODY = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}

IRIS_MODEL_PY = '''\
import torch
import torch.nn as nn


class Net(nn.Module):
    """An iris classifier: 4 features in, 3 class probabilities out."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return torch.softmax(self.fc2(torch.relu(self.fc1(x))), dim=1)
'''


def import_model_py(path: str):
    spec = importlib.util.spec_from_file_location(f"test_model_{abs(hash(path))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def iris_data(n_per_class: int = 50, seed: int = 0):
    g = np.random.default_rng(seed)
    centers = np.array([[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.6, 3.0, 5.6, 2.0]], dtype=np.float32)
    x = np.concatenate([c + 0.3 * g.standard_normal((n_per_class, 4)).astype(np.float32) for c in centers])
    y = np.repeat(np.arange(3), n_per_class)
    return torch.from_numpy(x), torch.from_numpy(y)


def train_iris(seed: int = 0, steps: int = 40) -> torch.nn.Module:
    """A few Adam steps: enough for non-trivial weights that differ between seeds."""
    src_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"iris-src-{os.getpid()}")
    os.makedirs(src_dir, exist_ok=True)
    src = os.path.join(src_dir, "model.py")
    with open(src, "w") as f:
        f.write(IRIS_MODEL_PY)
    torch.manual_seed(seed)
    net = import_model_py(src).Net()
    x, y = iris_data(seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.nll_loss(torch.log(net(x) + 1e-9), y)
        loss.backward()
        opt.step()
    return net.eval()


def save_model(net: torch.nn.Module, directory: str, fmt: str) -> str:
    """Write ``net`` into ``directory`` in one of the accepted layouts."""
    os.makedirs(directory, exist_ok=True)
    if fmt == "torchscript":
        torch.jit.save(torch.jit.script(net), os.path.join(directory, "model.pt"))
    elif fmt == "export":
        batch = torch.export.Dim("batch", min=1, max=4096)
        ep = torch.export.export(net, (torch.randn(8, 4),), dynamic_shapes=({0: batch},))
        torch.export.save(ep, os.path.join(directory, "model.pt2"))
    elif fmt == "eager":
        with open(os.path.join(directory, "model.py"), "w") as f:
            f.write(IRIS_MODEL_PY)
        torch.save(net.state_dict(), os.path.join(directory, "model.pth"))
    else:
        raise ValueError(fmt)
    return directory


def expected(net: torch.nn.Module, rows) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.tensor(rows, dtype=torch.float32)).numpy()


@pytest.fixture(scope="session")
def iris_net():
    return train_iris(seed=0)


@pytest.fixture(scope="session")
def iris_net_b():
    return train_iris(seed=1)


# ---- a real server process --------------------------------------------------------------------
# Ports for the servers these tests start: below Linux's ephemeral range (32768-60999 by default), so
# the kernel never hands one out for bind(0) or an outgoing connection between our check and the
# server's bind; each process starts at its own offset (the operator's tests use 28000-29999).
TEST_PORTS = range(26000, 28000)
_next_port = TEST_PORTS.start + (os.getpid() % 100) * 20


def free_port() -> int:
    """The next port of TEST_PORTS that nothing listens on, each once per process."""
    global _next_port
    for _ in range(len(TEST_PORTS)):
        port, _next_port = _next_port, TEST_PORTS.start + (_next_port + 1 - TEST_PORTS.start) % len(TEST_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError(f"every port of {TEST_PORTS} is in use")


class Server:
    def __init__(
        self, base_path: str, name: str = "iris", extra=(), env=None, port=None, use_env_port=False, grpc=False
    ):
        self.name = name
        self.port = port or free_port()
        self.grpc_port = free_port() if grpc else None
        if grpc:
            extra = (*extra, f"--grpc_port={self.grpc_port}")
        args = [
            sys.executable,
            "-m",
            "isvc_pytorch_server",
            f"--model_name={name}",
            f"--model_base_path={base_path}",
            "--rest_api_host=127.0.0.1",
            "--file_system_poll_wait_seconds=0.2",
            "--intra_op_parallelism=1",
            *extra,
        ]
        e = dict(os.environ)
        e.update(env or {})
        if use_env_port:
            e["PORT"] = str(self.port)
        else:
            args.append(f"--rest_api_port={self.port}")
        self.log = open(os.path.join(e.get("TMPDIR", "/tmp"), f"isvc-server-{self.port}.log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=e)

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, (bytes, str)):
                body = orjson.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = data
        return resp.status, doc

    def predict(self, body, version=None):
        v = f"/versions/{version}" if version is not None else ""
        return self.request("POST", f"/v1/models/{self.name}{v}:predict", body)

    def wait_listening(self, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not listen within {timeout}s:\n{self.output()}")

    def wait_status(self, want_status: int, path=None, timeout: float = 90, check=None):
        path = path or f"/v1/models/{self.name}"
        self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.request("GET", path, timeout=5)
                if last[0] == want_status and (check is None or check(last[1])):
                    return last[1]
            except OSError as e:
                last = e
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {want_status}; last {last}\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-5000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def start_server():
    started = []

    def _start(*args, **kwargs) -> Server:
        s = Server(*args, **kwargs)
        started.append(s)
        return s

    yield _start
    for s in started:
        s.stop()


@contextlib.contextmanager
def serving_iris(net: torch.nn.Module, base, fmt: str, **server_options):
    """A server on one saved version of `net`, answering (HTTP 200) before the body runs; stopped after."""
    save_model(net, str(base / "1"), fmt)
    server = Server(str(base), **server_options)
    try:
        server.wait_status(200)
        yield server
    finally:
        server.stop()
