#!/usr/bin/env bash
# Compile isvc_pytorch_server/wire/*.proto into *_pb2.py / *_pb2_grpc.py beside them, with the
# grpcio-tools of the Python given as $1 (default: python3). Run by run-tests.sh and the Dockerfile;
# the generated files are not committed. With --descriptor_set_out=FILE, also write a descriptor
# set of every proto and its imports (what ghz and grpcurl read as --protoset).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${1:-python3}"
shift || true
cd "$here"
"$python" -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. "$@" isvc_pytorch_server/wire/*.proto
