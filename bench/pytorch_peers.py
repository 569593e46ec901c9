"""The dynamic-batching peers of our PyTorch server, for bench/pytorch_server.py: MLServer and Ray Serve.

Each peer runs from its own venv under ``~/.cache/isvc-operator/bench-venvs`` (pinned exact
versions, never in the operator's or the server's dependencies), torch shared with the server's
venv through a ``.pth`` file, and serves the same TorchScript file through its own documented
dynamic batching. A peer is described by a ``Launch``: the command, its environment, the URL that
answers 200 once it serves, and the URL and body its load goes to. What starts, loads, times and
stops it is the bench's own (``Server``, ``run_wrk``, ``run_ghz``).

TorchServe (archived upstream; its frontend is Java, here Debian's OpenJDK 17) runs the same file
from a model archive made by ``torch-model-archiver``, with its server-side batching (batchSize,
maxBatchDelay) and one or more Python backend workers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field

PEER_VENVS = os.path.join(os.path.expanduser("~"), ".cache", "isvc-operator", "bench-venvs")
MLSERVER_VERSION = "1.7.1"
# With uvloop 0.22 and later, MLServer 1.7.1's inference workers (parallel_workers >= 1) die at
# start ("RuntimeError: There is no current event loop in thread 'MainThread'") and are restarted
# for ever; 0.21.0 is the last uvloop they start with.
MLSERVER_REQUIREMENTS = [f"mlserver=={MLSERVER_VERSION}", "uvloop==0.21.0"]
RAY_VERSION = "2.60.0"


@dataclass(frozen=True)
class Launch:
    """How to start one peer and where to send its load."""

    cmd: list[str]
    ready_url: str
    predict_url: str
    body: str  # the file wrk posts
    env: dict[str, str] = field(default_factory=dict)
    grpc_port: int | None = None  # the Open Inference Protocol's gRPC service, when the peer has one
    # A directory named on the command line of every process the peer starts (Ray's session dir):
    # what stop_leftovers looks for, and removes, once the peer has been stopped.
    marker: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_leftovers(launch: Launch) -> None:
    """Kill, by pid, any process still naming the peer's marker directory (Ray's raylet, GCS and
    workers run in sessions of their own), then remove the directory. A no-op for other peers."""
    if not launch.marker:
        return
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if launch.marker.encode() in cmdline and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
                print(f"bench: killed {pid} left behind by the peer", flush=True)
            except ProcessLookupError:
                pass
    shutil.rmtree(launch.marker, ignore_errors=True)


def ensure_peer_venv(name: str, requirement: str | list[str], module: str) -> str:
    """A peer's venv, created on first use; the .pth that lends it torch is rewritten every time, so
    that it always names the venv this bench runs from (a venv it named may have been removed)."""
    venv = os.path.join(PEER_VENVS, name)
    py = os.path.join(venv, "bin", "python")
    installed = (
        os.path.exists(py) and subprocess.run([py, "-c", f"import {module}"], capture_output=True).returncode == 0
    )
    if not installed:
        print(f"bench: creating {venv} with {requirement} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        requirements = [requirement] if isinstance(requirement, str) else requirement
        subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements], check=True)
    site, ours = (
        subprocess.run(
            [p, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for p in (py, sys.executable)
    )
    # Appended after the peer's own packages (the name sorts last): only torch comes from ours.
    with open(os.path.join(site, "zz_isvc_torch.pth"), "w") as f:
        f.write(ours + "\n")
    subprocess.run([py, "-c", f"import {module}, torch"], check=True)
    return py


# ---- MLServer -------------------------------------------------------------------------------------
MLSERVER_RUNTIME = r'''
"""An MLServer runtime for a TorchScript file: the adaptive batcher concatenates the V2 requests'
first input along the first axis, this runs one forward pass and MLServer splits the answer."""
import os

import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class TorchScriptRuntime(MLModel):
    async def load(self) -> bool:
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        self._model = torch.jit.load(self.settings.parameters.uri).eval()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = torch.from_numpy(NumpyCodec.decode_input(payload.inputs[0]))
        with torch.inference_mode():
            y = self._model(x).numpy()
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("output-0", y)])
'''


@dataclass(frozen=True)
class MLServerSetting:
    """MLServer's documented knobs: inference worker processes (0: the model runs in the server's
    own process) and its adaptive batching (max_batch_size, max_batch_time in seconds)."""

    parallel_workers: int
    max_batch_size: int
    max_batch_time_ms: float

    @property
    def label(self) -> str:
        return (
            f"mlserver (parallel_workers {self.parallel_workers}, max_batch_size {self.max_batch_size}, "
            f"max_batch_time {self.max_batch_time_ms:g} ms)"
        )


def mlserver_launch(
    py: str, work: str, name: str, model_file: str, v2_body: str, threads: int, s: MLServerSetting
) -> Launch:
    """A model repository with settings.json, model-settings.json and the runtime, started with
    ``mlserver start``. debug off: no access log, as every server runs in this bench."""
    root = os.path.join(work, f"mlserver-{name}-{s.parallel_workers}-{s.max_batch_size}-{s.max_batch_time_ms:g}")
    os.makedirs(root, exist_ok=True)
    http, grpc, metrics = free_port(), free_port(), free_port()
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": s.parallel_workers,
        "metrics_dir": os.path.join(root, "metrics"),
        "environments_dir": os.path.join(root, "envs"),
    }
    model_settings = {
        "name": name,
        "implementation": "runtime.TorchScriptRuntime",
        "max_batch_size": s.max_batch_size,
        "max_batch_time": s.max_batch_time_ms / 1000,
        "parameters": {"uri": model_file},
    }
    for file, content in (("settings.json", settings), ("model-settings.json", model_settings)):
        with open(os.path.join(root, file), "w") as f:
            json.dump(content, f)
    with open(os.path.join(root, "runtime.py"), "w") as f:
        f.write(MLSERVER_RUNTIME)
    mlserver = os.path.join(os.path.dirname(py), "mlserver")
    return Launch(
        cmd=[mlserver, "start", root],
        ready_url=f"http://127.0.0.1:{http}/v2/models/{name}/ready",
        predict_url=f"http://127.0.0.1:{http}/v2/models/{name}/infer",
        body=v2_body,
        # Each inference worker process gets its share of the cores (all of them when the model
        # runs in the server's own process), as the floor's parallel passes do.
        env={"BENCH_THREADS": str(max(1, threads // max(1, s.parallel_workers))), "PYTHONPATH": root},
        grpc_port=grpc,
    )


# ---- Ray Serve ------------------------------------------------------------------------------------
RAY_SERVE_APP = r'''
"""Ray Serve serving a TorchScript file with @serve.batch, the TF Serving row body in and out.
Starts a local Ray (no dashboard), deploys one replica, serves until SIGTERM, then shuts Ray down
so that no raylet, GCS or worker process outlives it."""
import argparse
import os
import signal
import threading

import numpy as np
import ray
import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--model", required=True)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--max_batch_size", type=int, default=64)
parser.add_argument("--batch_wait_timeout_s", type=float, default=0.01)
parser.add_argument("--max_ongoing_requests", type=int, default=128)
parser.add_argument("--temp_dir", required=True)
args = parser.parse_args()
# WARNING and no access log, as every server runs in this bench (Ray Serve logs each request at INFO).
QUIET = {"log_level": "WARNING", "enable_access_log": False}


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=args.max_ongoing_requests,
    ray_actor_options={"num_cpus": 0},
    logging_config=QUIET,
)
class TorchScript:
    def __init__(self, path: str, threads: int):
        torch.set_num_threads(threads)
        self.model = torch.jit.load(path).eval()

    @serve.batch(max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_wait_timeout_s)
    async def forward(self, inputs: list) -> list:
        sizes = [len(x) for x in inputs]
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.concatenate(inputs))).numpy()
        return np.split(out, np.cumsum(sizes)[:-1])

    async def __call__(self, request: Request):
        if request.method == "GET":  # the bench's readiness check: the app is deployed and routed
            return PlainTextResponse("ok")
        body = await request.json()
        out = await self.forward(np.asarray(body["instances"], dtype=np.float32))
        return JSONResponse({"predictions": out.tolist()})


ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=args.temp_dir, logging_level="WARNING")
stop = threading.Event()  # after ray.init, which installs handlers of its own
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
try:
    serve.start(http_options={"host": "127.0.0.1", "port": args.port}, logging_config=QUIET)
    serve.run(TorchScript.bind(args.model, args.threads), route_prefix="/predict")
    stop.wait()
finally:
    serve.shutdown()
    ray.shutdown()
'''


@dataclass(frozen=True)
class RaySetting:
    """Ray Serve's documented knobs for one replica: @serve.batch's max_batch_size and
    batch_wait_timeout_s, and max_ongoing_requests (default 5: it must be at least the batch)."""

    max_batch_size: int
    batch_wait_ms: float
    max_ongoing_requests: int = 128

    @property
    def label(self) -> str:
        return (
            f"ray serve (max_batch_size {self.max_batch_size}, batch_wait_timeout {self.batch_wait_ms:g} ms, "
            f"max_ongoing_requests {self.max_ongoing_requests})"
        )


def ray_launch(py: str, work: str, name: str, model_file: str, rows_body: str, threads: int, s: RaySetting) -> Launch:
    app = os.path.join(work, "ray_serve_app.py")
    with open(app, "w") as f:
        f.write(RAY_SERVE_APP)
    port = free_port()
    # Ray's sockets and session files live here (a short path: unix socket names are limited).
    temp_dir = os.path.join("/tmp", f"isvc-bench-ray-{os.getpid()}-{port}")
    return Launch(
        cmd=[
            py,
            app,
            f"--port={port}",
            f"--model={model_file}",
            f"--threads={threads}",
            f"--max_batch_size={s.max_batch_size}",
            f"--batch_wait_timeout_s={s.batch_wait_ms / 1000}",
            f"--max_ongoing_requests={s.max_ongoing_requests}",
            f"--temp_dir={temp_dir}",
        ],
        ready_url=f"http://127.0.0.1:{port}/predict",
        predict_url=f"http://127.0.0.1:{port}/predict",
        body=rows_body,
        # No usage-stats report (there is no network) and no metrics export agent work.
        env={"RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"},
        marker=temp_dir,
    )


# ---- TorchServe -----------------------------------------------------------------------------------
TORCHSERVE_VERSION = "0.12.0"
# torchserve 0.12.0's backend worker imports yaml without declaring it (ModuleNotFoundError: yaml).
TORCHSERVE_REQUIREMENTS = [
    f"torchserve=={TORCHSERVE_VERSION}",
    f"torch-model-archiver=={TORCHSERVE_VERSION}",
    "pyyaml==6.0.3",
]
TORCHSERVE_HANDLER = r'''
"""A TorchServe handler for a TorchScript file: the frontend hands it up to batchSize requests,
each with the TF Serving row body; one forward pass; one answer per request, in order."""
import json
import os

import torch
from ts.torch_handler.base_handler import BaseHandler


class TorchScriptHandler(BaseHandler):
    def initialize(self, context):
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
        model_dir = context.system_properties["model_dir"]
        self.model = torch.jit.load(os.path.join(model_dir, "model.pt")).eval()
        self.initialized = True

    def handle(self, data, context):
        bodies = [r.get("body") or r.get("data") for r in data]
        if not all(bodies):  # the bench's readiness check: a GET with no body
            return [{"ready": True} for _ in bodies]
        xs = [
            torch.tensor((json.loads(b) if isinstance(b, (bytes, bytearray)) else b)["instances"], dtype=torch.float32)
            for b in bodies
        ]
        with torch.inference_mode():
            out = self.model(torch.cat(xs))
        # A string goes out as it is (a dict would be pretty-printed by TorchServe).
        return [json.dumps({"predictions": o.tolist()}) for o in torch.split(out, [len(x) for x in xs])]
'''


@dataclass(frozen=True)
class TorchServeSetting:
    """TorchServe's documented knobs: backend workers per model and its batching (batchSize,
    maxBatchDelay in ms)."""

    workers: int
    batch_size: int
    max_batch_delay_ms: int

    @property
    def label(self) -> str:
        return (
            f"torchserve (workers {self.workers}, batchSize {self.batch_size}, "
            f"maxBatchDelay {self.max_batch_delay_ms} ms)"
        )


def torchserve_launch(
    py: str, work: str, name: str, model_file: str, rows_body: str, threads: int, s: TorchServeSetting
) -> Launch:
    """A model store with the archive and a config.properties (loopback addresses, no token
    auth, the model's batching and workers), started with ``torchserve --start --foreground``."""
    root = os.path.join(work, f"torchserve-{name}-{s.workers}-{s.batch_size}-{s.max_batch_delay_ms}")
    store, tmp = os.path.join(root, "store"), os.path.join(root, "tmp")
    os.makedirs(store, exist_ok=True)
    os.makedirs(tmp, exist_ok=True)
    handler = os.path.join(root, "handler.py")
    with open(handler, "w") as f:
        f.write(TORCHSERVE_HANDLER)
    bin_dir = os.path.dirname(py)
    subprocess.run(
        [
            os.path.join(bin_dir, "torch-model-archiver"),
            f"--model-name={name}",
            "--version=1.0",
            f"--serialized-file={model_file}",
            f"--handler={handler}",
            f"--export-path={store}",
            "--force",
        ],
        check=True,
    )
    http, management, metrics = free_port(), free_port(), free_port()
    model = {
        name: {
            "1.0": {
                "defaultVersion": True,
                "marName": f"{name}.mar",
                "minWorkers": s.workers,
                "maxWorkers": s.workers,
                "batchSize": s.batch_size,
                "maxBatchDelay": s.max_batch_delay_ms,
                "responseTimeout": 120,
            }
        }
    }
    config = os.path.join(root, "config.properties")
    with open(config, "w") as f:
        f.write(
            f"inference_address=http://127.0.0.1:{http}\n"
            f"management_address=http://127.0.0.1:{management}\n"
            f"metrics_address=http://127.0.0.1:{metrics}\n"
            "disable_token_authorization=true\n"
            "install_py_dep_per_model=false\n"
            f"model_store={store}\n"
            f"load_models={name}.mar\n"
            f"models={json.dumps(model)}\n"
        )
    return Launch(
        cmd=[os.path.join(bin_dir, "torchserve"), "--start", "--foreground", "--ncs", f"--ts-config={config}"],
        ready_url=f"http://127.0.0.1:{http}/predictions/{name}",
        predict_url=f"http://127.0.0.1:{http}/predictions/{name}",
        body=rows_body,
        env={
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),  # its frontend starts `python` workers
            "LOG_LOCATION": os.path.join(root, "logs"),
            "METRICS_LOCATION": os.path.join(root, "logs"),
            "BENCH_THREADS": str(max(1, threads // s.workers)),
            # It unpacks each archive under java.io.tmpdir/models and leaves it there: in the bench's dir.
            "JAVA_TOOL_OPTIONS": f"-Djava.io.tmpdir={tmp}",
        },
    )
