#!/usr/bin/env bash
# Stops the local control plane started by up.sh, and its real node first (hack/node/down.sh);
# --purge also deletes its state (etcd data, keys). Safe to run twice or after a crash.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${ISVC_CLUSTER_DIR:-$root/.cluster}
source "$here/lib.sh"
bash "$root/hack/dev.sh" stop >/dev/null 2>&1 || true  # the operator and model store of make dev
bash "$root/hack/node/down.sh"
stop kwok kube-scheduler kube-controller-manager
stop kube-apiserver
stop etcd
sweep
if [ "${1:-}" = "--purge" ]; then rm -rf "$state"; fi
log "down"
