#!/usr/bin/env bash
# `make dev`: the main job on the embedded default. Uses $KUBECONFIG when it reaches a cluster,
# else starts the local control plane; installs the CRD, starts the operator in the background,
# applies manifests/samples/, waits for them and shows `kubectl get isvc -A`.
# `hack/dev.sh stop` (make dev-stop; make cluster-down runs it too) stops that operator.
#
# The operator runs with leader election (Lease isvc-operator-dev in namespace default), so an
# operator started by another checkout or left behind never reconciles next to this one.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/cluster/versions.env
state=${ISVC_CLUSTER_DIR:-$PWD/.cluster}
pidfile="$state/operator.pid"
operator=${ISVC_DEV_OPERATOR:-$PWD/.venv/bin/isvc-operator}  # tests put a stand-in here

# The pid in the pidfile is our operator's only if that process still runs `isvc-operator run`:
# after a reboot or a purge the number may belong to anything.
running() {
  local pid
  [ -f "$pidfile" ] && pid=$(cat "$pidfile") && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "isvc-operator.* run" && echo "$pid"
}

if [ "${1:-}" = "stop" ]; then
  if pid=$(running); then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    echo "operator stopped"
  fi
  rm -f "$pidfile"; exit 0
fi

mkdir -p "$state/logs"
if [ -n "${ISVC_KUBECTL:-}" ]; then
  kubectl=$ISVC_KUBECTL
else
  bin=$(bash hack/cluster/build.sh all)
  kubectl="$bin/kubectl-$KUBE_VERSION"
fi
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

if pid=$(running); then
  echo "operator already running (pid $pid), logs: $state/logs/operator.log"
else
  setsid nohup "$operator" run --leader-elect --leader-election-namespace default \
    --leader-election-id isvc-operator-dev >"$state/logs/operator.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "operator started (pid $!), logs: $state/logs/operator.log"
fi

if [ $local_cluster = 1 ]; then
  # No storage provisioner on the local control plane: a hostPath volume for the samples' claims.
  "$kubectl" apply -f hack/cluster/local-volumes.yaml
fi
"$kubectl" apply -f manifests/samples/
# Our samples only: other InferenceServices in the cluster are not ours to wait for.
mapfile -t samples < <("$kubectl" get -f manifests/samples/ -o name | grep '^inferenceservice')
"$kubectl" wait --for=condition=Ready "${samples[@]}" --timeout=120s || {
  echo "not all samples are Ready; their conditions say why:"; "$kubectl" get "${samples[@]}"; exit 1; }
"$kubectl" get isvc -A
echo
echo "export KUBECONFIG=$KUBECONFIG   # then: kubectl get isvc -A; make dev-stop; make cluster-down"
