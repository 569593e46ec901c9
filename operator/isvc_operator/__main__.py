"""`isvc-operator run` (the controller) and `isvc-operator render` (children of an isvc, offline)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence

import yaml

from .render import render_documents


def _run(args: argparse.Namespace) -> int:
    import kopf

    from . import (
        handlers,  # noqa: F401 - importing registers the handlers
        metrics,
    )
    from .runner import OperatorRunner, exit_wedged

    kopf.configure(verbose=args.verbose, debug=args.debug, log_format=kopf.LogFormat[args.log_format.upper()])
    if not (args.verbose or args.debug):
        # kopf logs every handler call at INFO; our own line per reconcile outcome says what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        metrics.serve(args.metrics_port)

    runner = OperatorRunner()
    # `kill -USR1 <pid>` logs where every thread and asyncio task waits (to diagnose a hang). The
    # dump runs in a thread of its own: it waits for the loop, which may run in this (the main) one.
    signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=runner.dump_stacks, daemon=True).start())

    def run_operator(on_wedged: Callable[[str], None] = exit_wedged) -> None:
        runner.run(
            on_wedged=on_wedged,
            memo=kopf.Memo(metrics_port=args.metrics_port, runner=runner),
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            liveness_endpoint=args.liveness,
            # kopf would ask getpass for a user name, which fails for a uid without a passwd entry
            # (the image runs as 65532): the pod name says who this operator is.
            identity=os.environ.get("POD_NAME") or socket.gethostname(),
        )

    if not args.leader_elect:
        run_operator()
        return 0
    from .leader import run_as_leader

    run_as_leader(
        run_operator,
        runner.stop,
        namespace=args.leader_election_namespace,
        name=args.leader_election_id,
        liveness=args.liveness,
    )
    return 0


def _render(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.filename == "-" else open(args.filename, encoding="utf-8").read()
    try:
        output = render_documents(list(yaml.safe_load_all(text)), catalog_path=args.catalog, istio=args.istio)
    except ValueError as exc:
        print(f"isvc-operator render: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="isvc-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig or in-cluster config")
    run.add_argument("-n", "--namespace", action="append", help="watch only this namespace (repeatable); default: all")
    run.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="plain")
    run.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="hold a coordination.k8s.io Lease before reconciling (run 2+ replicas safely)",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE or default)",
    )
    run.add_argument("--leader-election-id", default="isvc-operator-leader", help="name of the Lease")
    run.add_argument("--verbose", action="store_true")
    run.add_argument("--debug", action="store_true")
    run.set_defaults(func=_run)

    render = commands.add_parser("render", help="print the children of InferenceService YAML, without a cluster")
    render.add_argument(
        "-f", "--filename", required=True, help="YAML file with one or more InferenceServices ('-': stdin)"
    )
    render.add_argument("--catalog", default=None, help="runtime catalog YAML (default: built-in)")
    render.add_argument(
        "--istio",
        action="store_true",
        help="render as for a cluster with Istio (the AuthorizationPolicy of mode Auto; Enabled always has one)",
    )
    render.set_defaults(func=_render)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
