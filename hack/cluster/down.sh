#!/usr/bin/env bash
# Stops the local control plane started by up.sh; --purge also deletes its state (etcd data, keys).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${ISVC_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/.cluster}
for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  if [ -f "$state/$name.pid" ]; then
    pid=$(cat "$state/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$state/$name.pid"
  fi
done
if [ "${1:-}" = "--purge" ]; then rm -rf "$state"; fi
echo "[cluster] down" >&2
