#!/usr/bin/env bash
# Starts the local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
# kwok (fake nodes and kubelets), all on 127.0.0.1. Idempotent: a running one is reused.
# Writes $ISVC_CLUSTER_DIR/kubeconfig (default .cluster/ in the checkout) and prints the export line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/versions.env"
state=${ISVC_CLUSTER_DIR:-$root/.cluster}
api_port=${ISVC_API_PORT:-16443}
etcd_port=${ISVC_ETCD_PORT:-12379}
nodes=${ISVC_NODES:-3}
kubeconfig="$state/kubeconfig"
log() { echo "[cluster] $*" >&2; }

bin=$("$here/build.sh" all)
cache=${ISVC_CACHE:-$HOME/.cache/isvc-operator}
kubectl="$bin/kubectl-$KUBE_VERSION"

running() { [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }
api_ready() { "$kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1; }

start() {  # name, then the command; detached so it outlives make
  local name=$1; shift
  if running "$name"; then return 0; fi
  setsid nohup "$@" >"$state/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$state/$name.pid"
}

wait_for() {  # what, seconds, command...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then
      log "timed out waiting for $what; logs in $state/logs/"; tail -n 20 "$state/logs/"*.log >&2 || true; exit 1
    fi
    sleep 0.2
  done
}

mkdir -p "$state/pki" "$state/logs" "$state/etcd"
if [ ! -f "$state/pki/sa.key" ]; then
  openssl genrsa -out "$state/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$state/pki/sa.key" -pubout -out "$state/pki/sa.pub" 2>/dev/null
  echo "$(openssl rand -hex 16),admin,admin,system:masters" > "$state/pki/tokens.csv"
fi
token=$(cut -d, -f1 "$state/pki/tokens.csv")

write_kubeconfig() {  # the apiserver's self-signed serving certificate is the CA once it exists
  local trust="insecure-skip-tls-verify: true"
  [ -f "$state/pki/apiserver.crt" ] && trust="certificate-authority: $state/pki/apiserver.crt"
  cat > "$kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: isvc-local
  cluster:
    server: https://127.0.0.1:$api_port
    $trust
users:
- name: admin
  user:
    token: $token
contexts:
- name: isvc-local
  context: {cluster: isvc-local, user: admin}
current-context: isvc-local
KCFG
}
write_kubeconfig

start etcd "$bin/etcd-$ETCD_VERSION" --data-dir "$state/etcd" --name isvc-local \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
  --initial-cluster "isvc-local=http://127.0.0.1:$((etcd_port + 1))" \
  --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn

audit_flags=()
if [ -n "${ISVC_AUDIT_POLICY:-}" ]; then
  audit_flags=(--audit-policy-file "$ISVC_AUDIT_POLICY" --audit-log-path "$state/logs/audit.log" --audit-log-format json)
fi
start kube-apiserver "$bin/kube-apiserver-$KUBE_VERSION" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --secure-port "$api_port" \
  --cert-dir "$state/pki" --token-auth-file "$state/pki/tokens.csv" \
  --authorization-mode RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$state/pki/sa.pub" --service-account-signing-key-file "$state/pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --service-node-port-range 30000-32767 \
  --allow-privileged=true --profiling=false \
  --max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
  "${audit_flags[@]}"
log "waiting for kube-apiserver on https://127.0.0.1:$api_port"
wait_for kube-apiserver 120 api_ready
write_kubeconfig

cat > "$state/scheduler.yaml" <<SCHED
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: "$kubeconfig", qps: 500, burst: 1000}
leaderElection: {leaderElect: false}
SCHED
start kube-controller-manager "$bin/kube-controller-manager-$KUBE_VERSION" \
  --kubeconfig "$kubeconfig" --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
  --service-account-private-key-file "$state/pki/sa.key" --root-ca-file "$state/pki/apiserver.crt" \
  --use-service-account-credentials=false --kube-api-qps 500 --kube-api-burst 1000 \
  --concurrent-deployment-syncs 20 --concurrent-replicaset-syncs 20 --concurrent-gc-syncs 40
start kube-scheduler "$bin/kube-scheduler-$KUBE_VERSION" --config "$state/scheduler.yaml" \
  --bind-address 127.0.0.1 --secure-port 0

stages="$cache/kwok-stages-$KWOK_VERSION"
{
  cat <<KWOK
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: 10.244.0.0/16
  nodeIP: 127.0.0.1
  nodeLeaseDurationSeconds: 40
  nodeLeaseParallelism: 4
  podPlayStageParallelism: 8
  nodePlayStageParallelism: 4
  podsOnNodeSyncParallelism: 4
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: true
KWOK
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"; cat "$stages/$f"
  done
} > "$state/kwok.yaml"
start kwok "$bin/kwok-$KWOK_VERSION" --kubeconfig "$kubeconfig" --config "$state/kwok.yaml" \
  --manage-all-nodes=false --manage-nodes-with-label-selector type=kwok

for i in $(seq 0 $((nodes - 1))); do
  cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "1000"}
  capacity: {cpu: "64", memory: 256Gi, pods: "1000"}
---
NODE
done | "$kubectl" --kubeconfig "$kubeconfig" apply -f - >/dev/null
nodes_ready() {
  [ "$("$kubectl" --kubeconfig "$kubeconfig" get nodes -l type=kwok \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c True)" -ge "$nodes" ]
}
wait_for "kwok nodes" 60 nodes_ready
sa_ready() { "$kubectl" --kubeconfig "$kubeconfig" get serviceaccount default -n default >/dev/null 2>&1; }
wait_for "the default ServiceAccount (kube-controller-manager)" 60 sa_ready
log "up: $nodes kwok nodes, Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION"
echo "export KUBECONFIG=$kubeconfig"
