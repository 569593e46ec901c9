#!/usr/bin/env bash
# `make dev`: the main job on the embedded default. Uses $KUBECONFIG when it reaches a cluster,
# else starts the local control plane; installs the CRD, starts the operator in the background,
# applies manifests/samples/, waits for them and shows `kubectl get isvc -A`.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/cluster/versions.env
state=${ISVC_CLUSTER_DIR:-$PWD/.cluster}
mkdir -p "$state/logs"
pidfile="$state/operator.pid"

if [ "${1:-}" = "stop" ]; then
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null && echo "operator stopped"
  rm -f "$pidfile"; exit 0
fi

bin=$(bash hack/cluster/build.sh all)
kubectl="$bin/kubectl-$KUBE_VERSION"
local_cluster=0
if [ -n "${KUBECONFIG:-}" ] && "$kubectl" get --raw /readyz >/dev/null 2>&1; then
  echo "using the cluster in KUBECONFIG=$KUBECONFIG"
else
  eval "$(bash hack/cluster/up.sh)"
  local_cluster=1
fi
export KUBECONFIG

"$kubectl" apply -f crds/
"$kubectl" wait --for=condition=Established crd/inferenceservices.serving.isvc.dev --timeout=60s

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "operator already running (pid $(cat "$pidfile")), logs: $state/logs/operator.log"
else
  setsid nohup .venv/bin/isvc-operator run >"$state/logs/operator.log" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  echo "operator started (pid $!), logs: $state/logs/operator.log"
fi

if [ $local_cluster = 1 ]; then
  # No storage provisioner on the local control plane: a hostPath volume for the samples' claims.
  "$kubectl" apply -f hack/cluster/local-volumes.yaml
fi
"$kubectl" apply -f manifests/samples/
"$kubectl" wait --for=condition=Ready isvc --all -A --timeout=120s || {
  echo "not all samples are Ready; their conditions say why:"; "$kubectl" get isvc -A; exit 1; }
"$kubectl" get isvc -A
echo
echo "export KUBECONFIG=$KUBECONFIG   # then: kubectl get isvc -A; make dev-stop; make cluster-down"
