#!/usr/bin/env bash
# `make dev`: the main job on the embedded default. Uses $KUBECONFIG when it reaches a cluster,
# else starts the local control plane (with its real node where this machine can run one); installs
# the CRD, starts the operator in the background, applies manifests/samples/, waits for them, shows
# `kubectl get isvc -A` and, on the real node, a real prediction of the iris sample.
# `hack/dev.sh stop` (make dev-stop; make cluster-down runs it too) stops that operator and the
# iris sample's model store.
#
# The operator runs with leader election (Lease isvc-operator-dev in namespace default), so an
# operator started by another checkout or left behind never reconciles next to this one.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/cluster/versions.env
source hack/node/env.sh
state=${ISVC_CLUSTER_DIR:-$PWD/.cluster}
pidfile="$state/operator.pid"
store_pidfile="$state/model-store.pid"
store_port=18080   # manifests/samples/pytorch-iris-http.yaml names it
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
  if [ -f "$store_pidfile" ] && kill "$(cat "$store_pidfile")" 2>/dev/null; then echo "model store stopped"; fi
  rm -f "$pidfile" "$store_pidfile"; exit 0
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
real_node=0
if [ $local_cluster = 1 ] && [ "$("$kubectl" get node "$NODE_NAME" \
     -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; then
  real_node=1
fi
files=()
for sample in manifests/samples/*.yaml; do files+=(-f "$sample"); done
if [ $real_node = 1 ]; then
  echo "building/loading the images the iris sample runs on the real node (cached; the first build takes minutes)"
  bash hack/images/build.sh --load operator pytorch-server >/dev/null
  # The iris sample's model archive, served from the node's own address (the pods' gateway).
  if ! { [ -f "$store_pidfile" ] && kill -0 "$(cat "$store_pidfile")" 2>/dev/null; }; then
    setsid nohup python3 -m http.server "$store_port" --bind "$NODE_IP" --directory manifests/samples/models \
      >"$state/logs/model-store.log" 2>&1 </dev/null &
    echo $! >"$store_pidfile"
  fi
elif [ $local_cluster = 1 ]; then
  echo "no real node (make cluster-up said why): the iris sample is left out, the others run on kwok nodes"
  files=()
  for sample in manifests/samples/*.yaml; do
    [ "$sample" = manifests/samples/pytorch-iris-http.yaml ] || files+=(-f "$sample")
  done
fi
"$kubectl" apply "${files[@]}"
# Our samples only: other InferenceServices in the cluster are not ours to wait for.
mapfile -t samples < <("$kubectl" get "${files[@]}" -o name | grep '^inferenceservice')
"$kubectl" wait --for=condition=Ready "${samples[@]}" --timeout=300s || {
  echo "not all samples are Ready; their conditions say why:"; "$kubectl" get "${samples[@]}"; exit 1; }
"$kubectl" get isvc -A
if [ $real_node = 1 ]; then
  port=$("$kubectl" get svc iris -o jsonpath='{.spec.ports[?(@.name=="http")].nodePort}')
  body='{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
  echo
  echo "\$ curl -s -X POST http://127.0.0.1:$port/v1/models/iris:predict -d '$body'"
  # kube-proxy programs the node port on its own schedule after Ready: retry refusals for a while.
  curl -sS --max-time 10 --retry 20 --retry-delay 1 --retry-connrefused \
    -X POST "http://127.0.0.1:$port/v1/models/iris:predict" -d "$body"
  echo
fi
echo
echo "export KUBECONFIG=$KUBECONFIG   # then: kubectl get isvc -A; make dev-stop; make cluster-down"
