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

bin=$("$here/build.sh" all)
cache=${ISVC_CACHE:-$HOME/.cache/isvc-operator}
kubectl="$bin/kubectl-$KUBE_VERSION"

source "$here/lib.sh"
api_ready() { "$kubectl" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1; }
die() { tail -n 20 "$state/logs/"*.log >&2 || true; exit 1; }

# The real node (hack/node/): ISVC_REAL_NODE=auto (default: on where this machine can run it, else
# one line saying why), 1 (required: fail without it) or 0 (kwok nodes only, as the benchmarks run).
real_node=${ISVC_REAL_NODE:-auto}
if [ "$real_node" != 0 ]; then
  if why=$(bash "$root/hack/node/up.sh" check); then
    real_node=1
  elif [ "$real_node" = 1 ]; then
    log "the real node cannot run here: $why"; exit 1
  else
    log "real node: off ($why); kwok nodes only"; real_node=0
  fi
fi
source "$root/hack/node/env.sh"

mkdir -p "$state/pki" "$state/logs" "$state/etcd"
if [ ! -f "$state/pki/sa.key" ]; then
  openssl genrsa -out "$state/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$state/pki/sa.key" -pubout -out "$state/pki/sa.pub" 2>/dev/null
  echo "$(openssl rand -hex 16),admin,admin,system:masters" > "$state/pki/tokens.csv"
fi
# The real node's kubelet and kube-proxy authenticate as themselves (Node authorizer, built-in RBAC).
grep -q ",system:node:$NODE_NAME," "$state/pki/tokens.csv" \
  || echo "$(openssl rand -hex 16),system:node:$NODE_NAME,system:node:$NODE_NAME,system:nodes" >> "$state/pki/tokens.csv"
grep -q ",system:kube-proxy," "$state/pki/tokens.csv" \
  || echo "$(openssl rand -hex 16),system:kube-proxy,system:kube-proxy" >> "$state/pki/tokens.csv"
# The serving certificate (its own CA): valid for the host (127.0.0.1), for pods (the node IP and the
# `kubernetes` Service) and for the in-cluster names.
sans="IP:127.0.0.1,IP:$NODE_IP,IP:$SERVICE_API_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default"
sans+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
if ! openssl x509 -in "$state/pki/apiserver.crt" -noout -ext subjectAltName 2>/dev/null | grep -q "$SERVICE_API_IP"; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=isvc-local-apiserver" \
    -keyout "$state/pki/apiserver.key" -out "$state/pki/apiserver.crt" \
    -addext "subjectAltName=$sans" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
    -addext "extendedKeyUsage=serverAuth" 2>/dev/null
fi
token=$(awk -F, '$2 == "admin" {print $1}' "$state/pki/tokens.csv")

write_kubeconfig() {
  cat > "$kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: isvc-local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $state/pki/apiserver.crt
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

# The audit log ($state/logs/audit.log): the tests count the operator's writes from it. The default
# policy logs only ServiceAccounts' writes (hack/cluster/audit-policy.yaml); the benchmarks pass their
# own in ISVC_AUDIT_POLICY.
audit_policy=${ISVC_AUDIT_POLICY:-$here/audit-policy.yaml}
audit_flags=(--audit-policy-file "$audit_policy" --audit-log-path "$state/logs/audit.log" --audit-log-format json
  --audit-log-maxsize 200 --audit-log-maxbackup 1)
# With the real node, pods reach the API server through the `kubernetes` Service on the node IP.
bind_flags=(--bind-address 127.0.0.1)
[ "$real_node" = 1 ] && bind_flags=(--bind-address 0.0.0.0 --advertise-address "$NODE_IP")
start kube-apiserver "$bin/kube-apiserver-$KUBE_VERSION" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  "${bind_flags[@]}" --secure-port "$api_port" \
  --tls-cert-file "$state/pki/apiserver.crt" --tls-private-key-file "$state/pki/apiserver.key" \
  --token-auth-file "$state/pki/tokens.csv" \
  --authorization-mode Node,RBAC --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$state/pki/sa.pub" --service-account-signing-key-file "$state/pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 --service-node-port-range 30000-32767 \
  --allow-privileged=true --profiling=false \
  --max-requests-inflight 2000 --max-mutating-requests-inflight 1000 \
  "${audit_flags[@]}"
log "waiting for kube-apiserver on https://127.0.0.1:$api_port"
wait_for kube-apiserver 120 api_ready || die

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
wait_for "kwok nodes" 60 nodes_ready || die
sa_ready() { "$kubectl" --kubeconfig "$kubeconfig" get serviceaccount default -n default >/dev/null 2>&1; }
wait_for "the default ServiceAccount (kube-controller-manager)" 60 sa_ready || die
if [ "$real_node" = 1 ]; then
  if ! bash "$root/hack/node/up.sh" start; then
    if [ "${ISVC_REAL_NODE:-auto}" = 1 ]; then exit 1; fi
    log "real node: failed to start (logs in $state/logs/); kwok nodes only"
    bash "$root/hack/node/down.sh" >/dev/null 2>&1 || true
  fi
fi
log "up: $nodes kwok nodes, Kubernetes $KUBE_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION"
echo "export KUBECONFIG=$kubeconfig"
