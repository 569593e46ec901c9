#!/usr/bin/env bash
# `make dev`: the main job on the embedded default. Uses $KUBECONFIG when it reaches a cluster,
# else starts the local control plane (with its real node where this machine can run one); installs
# the CRD, starts the operator in the background, applies manifests/samples/, waits for them, shows
# `kubectl get isvc -A` and, on the real node, a real prediction of the iris sample.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/cluster/versions.env
source hack/node/env.sh
state=${ISVC_CLUSTER_DIR:-$PWD/.cluster}
mkdir -p "$state/logs"
pidfile="$state/operator.pid"
store_pidfile="$state/model-store.pid"
store_port=18080   # manifests/samples/pytorch-iris-http.yaml names it

stop_pid() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null && echo "$2 stopped"; rm -f "$1"; }
if [ "${1:-}" = "stop" ]; then
  stop_pid "$pidfile" "operator"
  stop_pid "$store_pidfile" "model store"
  exit 0
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

real_node=0
if [ $local_cluster = 1 ] && [ "$("$kubectl" get node "$NODE_NAME" \
     -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; then
  real_node=1
fi
samples=(manifests/samples/*.yaml)
if [ $local_cluster = 1 ]; then
  # No storage provisioner on the local control plane: a hostPath volume for the samples' claims.
  "$kubectl" apply -f hack/cluster/local-volumes.yaml
fi
if [ $real_node = 1 ]; then
  echo "building/loading the images the iris sample runs on the real node (cached; the first build takes minutes)"
  bash hack/images/build.sh --load operator pytorch-server >/dev/null
  # The iris sample's model archive, served from the node's own address (the pods' gateway).
  if ! { [ -f "$store_pidfile" ] && kill -0 "$(cat "$store_pidfile")" 2>/dev/null; }; then
    setsid nohup python3 -m http.server "$store_port" --bind "$NODE_IP" --directory manifests/samples/models \
      >"$state/logs/model-store.log" 2>&1 < /dev/null &
    echo $! >"$store_pidfile"
  fi
else
  echo "no real node (see make cluster-up's output): the iris sample is left out, the others run on kwok nodes"
  samples=("${samples[@]/manifests\/samples\/pytorch-iris-http.yaml}")
fi
isvcs=()
for sample in "${samples[@]}"; do
  [ -n "$sample" ] || continue
  applied=$("$kubectl" apply -f "$sample" -o name)
  echo "$applied"
  isvcs+=($(grep '^inferenceservice' <<<"$applied"))
done
# Only the samples: another isvc in the cluster that is not Ready is not make dev's business.
"$kubectl" wait --for=condition=Ready "${isvcs[@]}" --timeout=300s || {
  echo "not all samples are Ready; their conditions say why:"; "$kubectl" get isvc -A; exit 1; }
"$kubectl" get isvc -A
if [ $real_node = 1 ]; then
  port=$("$kubectl" get svc iris -o jsonpath='{.spec.ports[?(@.name=="http")].nodePort}')
  body='{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
  echo
  echo "\$ curl -s -X POST http://127.0.0.1:$port/v1/models/iris:predict -d '$body'"
  curl -sS --max-time 10 -X POST "http://127.0.0.1:$port/v1/models/iris:predict" -d "$body"
  echo
fi
echo
echo "export KUBECONFIG=$KUBECONFIG   # then: kubectl get isvc -A; make dev-stop; make cluster-down"
