#!/usr/bin/env bash
# Removes everything the real node started or changed: kubelet, kube-proxy, containers and their
# shims, containerd, mounts, network namespaces, veths and the bridge, iptables chains, routes,
# cgroups and sysctls. Safe to run twice, with nothing running, or after a crash.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/env.sh"
state=${ISVC_CLUSTER_DIR:-$root/.cluster}
log_tag=node
source "$root/hack/cluster/lib.sh"
node_dir="$state/node"

# Only the cluster that owns the node takes it down (another cluster's down.sh leaves it alone).
if [ -f "$NODE_RUN/owner" ] && [ "$(cat "$NODE_RUN/owner")" != "$state" ] && [ "${1:-}" != --force ]; then
  exit 0
fi

stop kubelet kube-proxy
ctr() { command ctr --address "$NODE_CONTAINERD_SOCK" -n k8s.io "$@"; }
if [ -S "$NODE_CONTAINERD_SOCK" ] && ctr version >/dev/null 2>&1; then
  for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$task" >/dev/null 2>&1; done
  for _ in $(seq 30); do [ -z "$(ctr tasks ls -q 2>/dev/null | head -1)" ] && break
    for task in $(ctr tasks ls -q 2>/dev/null); do ctr tasks delete -f "$task" >/dev/null 2>&1; done; sleep 0.2; done
  for c in $(ctr containers ls -q 2>/dev/null); do ctr containers delete "$c" >/dev/null 2>&1; done
fi
stop containerd
# After a crash: shims of our containerd, and any process left in the pods' cgroups.
pkill -9 -f "containerd-shim-runc-v2 .*-address $NODE_CONTAINERD_SOCK" 2>/dev/null
for cg in /sys/fs/cgroup/*/kubepods*; do
  [ -d "$cg" ] || continue
  find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u | xargs -r kill -9 2>/dev/null
done
pkill -9 -f "containerd-shim-runc-v2 .*-address $NODE_CONTAINERD_SOCK" 2>/dev/null
sleep 0.2

# Mounts: pod volumes under the kubelet's root, container rootfs, shm and netns under $NODE_RUN.
findmnt -rn -o TARGET | grep -E "^($node_dir/|$NODE_RUN/|$NODE_CONTAINERD_ROOT/)" | sort -r \
  | while read -r target; do umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null; done
for cg in /sys/fs/cgroup/*/kubepods*; do
  [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
done

# Network: veths go with their namespaces; then the bridge, the routes and our iptables chains.
ip link del "$NODE_BRIDGE" 2>/dev/null
ip route del unreachable "$SERVICE_CIDR" 2>/dev/null
ip route del unreachable "$KWOK_POD_CIDR" 2>/dev/null
drop_chains() {  # iptables-save/restore: every rule and chain named KUBE-*, CNI-* or ISVC-*
  local save=$1 restore=$2 rules
  command -v "$save" >/dev/null || return 0
  rules=$("$save" 2>/dev/null) || return 0
  grep -qE '(KUBE-|CNI-|ISVC-)' <<<"$rules" || return 0
  grep -vE '^:(KUBE-|CNI-|ISVC-)|^-A (KUBE-|CNI-|ISVC-)|-j (KUBE-|CNI-|ISVC-)' <<<"$rules" | "$restore"
}
drop_chains iptables-save iptables-restore
drop_chains ip6tables-save ip6tables-restore

if [ -f "$node_dir/sysctl.saved" ]; then
  while IFS= read -r line; do sysctl -qw "$line" 2>/dev/null; done < "$node_dir/sysctl.saved"
  rm -f "$node_dir/sysctl.saved"
fi
rm -rf "$NODE_RUN" "$node_dir/kubelet" "$node_dir/kubelet-pki"
log "down"
