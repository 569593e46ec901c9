"""Command line in tensorflow_model_server's style: ``isvc-pytorch-server --model_name=... ...``.

Flags use TF Serving's names where one exists (``--model_name``, ``--model_base_path``,
``--rest_api_port``, ``--file_system_poll_wait_seconds``, ``--enable_batching``,
``--max_batch_size``, ``--batch_timeout_micros``, ``--num_batch_threads``), so a pod spec
written for TF Serving reads the same. Booleans accept ``--flag``, ``--flag=true|false``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys

from . import __version__

log = logging.getLogger("isvc_pytorch_server")


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _default_port() -> int:
    port = os.environ.get("PORT", "").strip()
    if port:
        if not port.isdigit():
            raise SystemExit(f"$PORT must be a port number, got {port!r}")
        return int(port)
    return 8080


def cpu_limit() -> int:
    """CPUs this container may use: the cgroup quota (cpu.max / cfs_quota_us) and the affinity mask.

    torch's default thread count is the host's core count, which oversubscribes a container
    limited to fewer CPUs and makes latency spiky.
    """
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = None
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, period = f.read().split()[:2]
            if q != "max":
                quota = int(q) / int(period)
    except (OSError, ValueError):
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
                q = int(f.read())
            with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                period = int(f.read())
            if q > 0:
                quota = q / period
        except (OSError, ValueError):
            pass
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _server_class(app):
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn re-raises SIGTERM after a graceful shutdown; a drained SIGTERM should exit 0."""

        async def _serve(self, sockets=None):
            await super()._serve(sockets)
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

        async def shutdown(self, sockets=None):
            # gRPC stops taking calls when HTTP does, and both drain at once.
            if app.grpc is not None:
                app.grpc.begin_shutdown(app.graceful_shutdown_seconds)
            await super().shutdown(sockets)

    return _Server


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="isvc-pytorch-server",
        description="Serve a PyTorch model over TF Serving's REST v1 and the Open Inference Protocol v2.",
    )
    p.add_argument("--model_name", default="default", help="name in the URLs (/v1/models/NAME)")
    p.add_argument(
        "--model_base_path", required=True, help="directory of numeric version subdirectories; the highest is served"
    )
    p.add_argument("--rest_api_port", type=int, default=None, help="HTTP port (default: $PORT when set, else 8080)")
    p.add_argument("--rest_api_host", default="0.0.0.0", help="address to listen on")
    p.add_argument(
        "--grpc_port",
        type=int,
        default=0,
        help="gRPC port (Open Inference Protocol, TF Serving Predict/GetModelMetadata/GetModelStatus, grpc.health.v1); 0 (default) = off",
    )
    p.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="how often to look for new versions; <= 0 loads once",
    )
    p.add_argument(
        "--enable_batching",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        help="stack concurrent requests into one forward pass (default true)",
    )
    p.add_argument("--max_batch_size", type=int, default=64, help="rows per forward pass at most")
    p.add_argument(
        "--batch_timeout_micros",
        type=int,
        default=0,
        help="how long an idle worker waits for more rows before running (default 0)",
    )
    p.add_argument(
        "--batch_merge_fraction",
        type=float,
        default=0.3,
        help="after a pass, wait up to this fraction of it (max 10 ms) for more rows when requests are queued; 0 = off",
    )
    p.add_argument(
        "--event_loop_pass_micros",
        type=int,
        default=500,
        help="passes averaging less than this run on the event loop, without a hand-off to a batch thread; 0 = never",
    )
    p.add_argument("--num_batch_threads", type=int, default=1, help="forward passes that may run at once")
    p.add_argument(
        "--intra_op_parallelism",
        type=int,
        default=0,
        help="torch threads per forward pass; 0 = the CPU limit / --num_batch_threads",
    )
    p.add_argument("--inter_op_parallelism", type=int, default=0, help="torch inter-op threads; 0 = 1")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N, or auto (CUDA when available)")
    p.add_argument(
        "--model_class_name", default=None, help="nn.Module class in model.py, when it defines more than one"
    )
    p.add_argument("--max_request_bytes", type=int, default=64 << 20, help="larger bodies get 413")
    p.add_argument(
        "--graceful_shutdown_seconds",
        type=float,
        default=30.0,
        help="on SIGTERM, how long in-flight requests may take to finish",
    )
    p.add_argument(
        "--warmup",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        help="run a forward pass on zeros before reporting AVAILABLE, when the input shape is known",
    )
    p.add_argument(
        "--exit_on_load_failure",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        help="exit 1 when the model fails to load and no version was ever served, with the error as the "
        "termination message (Kubernetes: CrashLoopBackOff); false: keep answering 503",
    )
    p.add_argument(
        "--termination_message_path",
        default="/dev/termination-log",
        help="where that error is written when the file exists (Kubernetes' terminationMessagePath)",
    )
    p.add_argument("--log_level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.dont_write_bytecode = True  # read-only root filesystem: write nothing but $TMPDIR
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    port = args.rest_api_port if args.rest_api_port is not None else _default_port()

    import torch  # imported here so --help is instant
    import uvicorn

    from .app import App
    from .batcher import Batcher
    from .errors import ModelLoadError
    from .loader import resolve_device
    from .metrics import Metrics
    from .versions import ModelVersions

    limit = cpu_limit()
    # One pass over all CPUs by default. One single-threaded pass per CPU was measured too: on
    # the 1024-4096-4096-1000 MLP its batches split into ~22 rows (64 clients) and ~6 rows (16
    # clients) and it served 9-20% fewer requests per second.
    workers = max(1, args.num_batch_threads)
    intra = args.intra_op_parallelism or max(1, limit // workers)
    torch.set_num_threads(intra)
    torch.set_num_interop_threads(args.inter_op_parallelism or 1)
    try:
        device = resolve_device(args.device)
    except ModelLoadError as e:
        log.error("%s", e)
        return 2
    max_batch = args.max_batch_size if args.enable_batching else 1
    metrics = Metrics(args.model_name)
    batcher = Batcher(
        max_batch,
        args.batch_timeout_micros / 1e6 if args.enable_batching else 0.0,
        workers,
        metrics,
        merge_fraction=args.batch_merge_fraction,
        loop_pass_s=args.event_loop_pass_micros / 1e6,
        threads_per_pass=intra,
    )
    warm = (1, max_batch) if args.warmup and max_batch > 1 else ((1,) if args.warmup else ())
    unservable: list[str] = []
    server_holder: list = []

    def stop_unservable(message: str) -> None:
        unservable.append(message)
        if server_holder:
            server_holder[0].should_exit = True

    versions = ModelVersions(
        args.model_name,
        args.model_base_path,
        device,
        poll_wait_seconds=args.file_system_poll_wait_seconds,
        model_class_name=args.model_class_name,
        warmup_batch_sizes=warm,
        metrics=metrics,
        on_unservable=stop_unservable if args.exit_on_load_failure else None,
    )
    app = App(versions, batcher, metrics, max_request_bytes=args.max_request_bytes)
    app.graceful_shutdown_seconds = args.graceful_shutdown_seconds
    if args.grpc_port:
        from .grpc_api import GrpcApi

        app.grpc = GrpcApi(app, args.grpc_port, args.rest_api_host)
    log.info(
        "isvc-pytorch-server %s (torch %s) serving %s from %s on %s:%d; device %s, %d intra-op threads "
        "(CPU limit %d), %d batch threads, batching %s (max %d rows, timeout %d us)",
        __version__,
        torch.__version__,
        args.model_name,
        args.model_base_path,
        args.rest_api_host,
        port,
        device,
        intra,
        limit,
        workers,
        "on" if args.enable_batching else "off",
        max_batch,
        args.batch_timeout_micros,
    )
    config = uvicorn.Config(
        app,
        host=args.rest_api_host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        backlog=2048,
        # No X-Forwarded-* rewriting (nothing here uses the client address) and no "server:
        # uvicorn" header: two fewer steps on every request.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=args.graceful_shutdown_seconds,
        timeout_keep_alive=75,
    )
    server = _server_class(app)(config)
    server_holder.append(server)
    if unservable:  # failed before the server existed
        server.should_exit = True
    server.run()
    if unservable:
        log.error("exiting: nothing to serve: %s", unservable[0])
        _write_termination_message(args.termination_message_path, unservable[0])
        return 1
    return 0 if server.started else 1


def _write_termination_message(path: str, message: str) -> None:
    """Kubernetes shows this file's content as the container's last termination message."""
    if os.path.exists(path):
        try:
            with open(path, "w") as f:
                f.write(message[:4000])
        except OSError:
            pass
