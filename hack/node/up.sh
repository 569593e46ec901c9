#!/usr/bin/env bash
# The local real node beside the kwok nodes: containerd + runc, a CNI bridge with no route out,
# kubelet and kube-proxy (iptables mode) of the control plane's own version. Called by
# hack/cluster/up.sh once the control plane answers; idempotent.
#   up.sh check   one line on stderr and exit 1 when this machine cannot run the node
#   up.sh start   start it (needs $ISVC_CLUSTER_DIR's kubeconfig and tokens from hack/cluster/up.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$root/hack/cluster/versions.env"
source "$here/env.sh"
state=${ISVC_CLUSTER_DIR:-$root/.cluster}
log_tag=node
source "$root/hack/cluster/lib.sh"
bin="$NODE_CACHE/bin"
kubectl="$bin/kubectl-$KUBE_VERSION"
node_dir="$state/node"
owner_file="$NODE_RUN/owner"

check() {  # why this machine cannot run the node, or nothing
  [ "$(uname -s)" = Linux ] || { echo "not Linux"; return; }
  [ "$(id -u)" = 0 ] || { echo "needs root (containers, bridge, iptables)"; return; }
  for cmd in containerd runc iptables; do
    command -v "$cmd" >/dev/null || { echo "$cmd is not installed (bash hack/node/install.sh)"; return; }
  done
  [ -x /usr/lib/cni/bridge ] || { echo "the CNI plugins are not installed (bash hack/node/install.sh)"; return; }
  [ -d /proc/sys/net/bridge ] || modprobe br_netfilter 2>/dev/null || true
  [ -d /proc/sys/net/bridge ] || { echo "the kernel has no bridge netfilter (br_netfilter)"; return; }
  [ -x "$bin/kubelet-$KUBE_VERSION" ] || { echo "kubelet $KUBE_VERSION is not built (bash hack/cluster/build.sh kube)"; return; }
  if [ -f "$owner_file" ] && [ "$(cat "$owner_file")" != "$state" ] && [ -d "$(cat "$owner_file")" ] \
     && pgrep -f "kubelet-$KUBE_VERSION .*--root-dir $(cat "$owner_file")/" >/dev/null; then
    echo "the real node already belongs to the cluster in $(cat "$owner_file")"; return
  fi
}

if [ "${1:-}" = check ]; then
  why=$(check)
  [ -z "$why" ] && exit 0
  echo "$why"; exit 1
fi

why=$(check)
[ -z "$why" ] || { log "cannot start: $why"; exit 1; }
mkdir -p "$node_dir" "$state/logs" "$NODE_RUN" "$NODE_CONTAINERD_ROOT"
echo "$state" > "$owner_file"

# -- sysctls (saved once, restored by down.sh)
if [ ! -f "$node_dir/sysctl.saved" ]; then
  for key in "${NODE_SYSCTLS[@]}"; do
    value=$(sysctl -n "$key" 2>/dev/null) && echo "$key=$value"
  done > "$node_dir/sysctl.saved.tmp"
  mv "$node_dir/sysctl.saved.tmp" "$node_dir/sysctl.saved"
fi
sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1

# -- network: the bridge carries the node IP; Service and kwok ranges are unreachable, never routed
# out; nothing from the pod network leaves through another interface (no masquerading either).
if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
  ip link add "$NODE_BRIDGE" type bridge
fi
ip addr replace "$NODE_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
ip link set "$NODE_BRIDGE" up
ip route replace unreachable "$SERVICE_CIDR"
ip route replace unreachable "$KWOK_POD_CIDR"
iptables -t mangle -N ISVC-GUARD 2>/dev/null || iptables -t mangle -F ISVC-GUARD
iptables -t mangle -A ISVC-GUARD -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j DROP \
  -m comment --comment "isvc-operator: the pod network never reaches another interface"
iptables -t mangle -C FORWARD -j ISVC-GUARD 2>/dev/null || iptables -t mangle -I FORWARD -j ISVC-GUARD

# -- containerd: its own socket and state under $NODE_RUN, images under the cache (kept between clusters)
mkdir -p "$node_dir/cni" "$NODE_RUN/containerd"
cat > "$node_dir/cni/10-isvc.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "isvc",
  "plugins": [
    {
      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$NODE_RUN/cni-ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
mkdir -p "$node_dir/registries/_default"
cat > "$node_dir/registries/_default/hosts.toml" <<HOSTS
server = "http://127.0.0.1:1"
[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
HOSTS
cat > "$node_dir/containerd.toml" <<TOML
version = 2
root = "$NODE_CONTAINERD_ROOT/root"
state = "$NODE_RUN/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$NODE_CONTAINERD_SOCK"
[ttrpc]
  address = "$NODE_RUN/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root here lacks CAP_SYS_RESOURCE: lowering a score is all a container may ask for.
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  # Every registry is this machine's port 1: images are imported (hack/images/build.sh), and a pull
  # of anything else fails at once without a packet leaving the machine.
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$node_dir/registries"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_CONTAINERD_ROOT/opt"
TOML
start containerd containerd --config "$node_dir/containerd.toml"
ctr_ok() { ctr --address "$NODE_CONTAINERD_SOCK" version >/dev/null 2>&1; }
wait_for containerd 30 ctr_ok || { tail -n 20 "$state/logs/containerd.log" >&2; exit 1; }

# -- the sandbox image, built here (no registry is reachable)
bash "$root/hack/images/build.sh" --load pause >&2

# -- kubelet and kube-proxy, each with a token of its own identity (hack/cluster/up.sh wrote them)
node_kubeconfig() {  # user, token
  cat <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: isvc-local
  cluster: {server: "https://127.0.0.1:${ISVC_API_PORT:-16443}", certificate-authority: "$state/pki/apiserver.crt"}
users:
- name: $1
  user: {token: "$2"}
contexts:
- name: isvc-local
  context: {cluster: isvc-local, user: $1}
current-context: isvc-local
KCFG
}
token_of() { awk -F, -v user="$1" '$2 == user {print $1}' "$state/pki/tokens.csv"; }
node_kubeconfig "system:node:$NODE_NAME" "$(token_of "system:node:$NODE_NAME")" > "$node_dir/kubelet.kubeconfig"
node_kubeconfig system:kube-proxy "$(token_of system:kube-proxy)" > "$node_dir/kube-proxy.kubeconfig"

cat > "$node_dir/kubelet.yaml" <<KUBELET
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$NODE_CONTAINERD_SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Reached only from this machine: the API server (logs, exec) on the node IP.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
registerWithTaints:
- {key: "$NODE_LABEL_KEY", value: "$NODE_LABEL_VALUE", effect: NoSchedule}
clusterDomain: cluster.local
maxPods: 60
serializeImagePulls: false
rotateCertificates: false
# Images are imported, not pulled: never collect them, never evict for a busy disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
shutdownGracePeriod: 0s
KUBELET
mkdir -p "$node_dir/kubelet"
start kubelet "$bin/kubelet-$KUBE_VERSION" --config "$node_dir/kubelet.yaml" \
  --kubeconfig "$node_dir/kubelet.kubeconfig" --root-dir "$node_dir/kubelet/" --cert-dir "$node_dir/kubelet-pki" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
  --node-labels "$NODE_LABEL_KEY=$NODE_LABEL_VALUE,type=real" --v=1
start kube-proxy "$bin/kube-proxy-$KUBE_VERSION" --kubeconfig "$node_dir/kube-proxy.kubeconfig" \
  --hostname-override "$NODE_NAME" --proxy-mode iptables --cluster-cidr "$NODE_POD_CIDR" \
  --nodeport-addresses "127.0.0.0/8,$NODE_IP/32" \
  --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256 \
  --conntrack-max-per-core 0 --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0

node_ready() {
  [ "$("$kubectl" --kubeconfig "$state/kubeconfig" get node "$NODE_NAME" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
if ! wait_for "the real node $NODE_NAME to be Ready" 90 node_ready; then
  tail -n 15 "$state/logs/kubelet.log" >&2
  exit 1
fi
log "up: $NODE_NAME ($NODE_IP, pods $NODE_POD_CIDR), containerd $(containerd --version | awk '{print $3}'), label/taint $NODE_LABEL_KEY=$NODE_LABEL_VALUE"
