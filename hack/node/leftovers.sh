#!/usr/bin/env bash
# Prints whatever of the real node is still on this machine (processes, mounts, network devices,
# routes, iptables chains, cgroups, run state) and exits 1 if anything is; used after
# `make cluster-down` by hack/test.sh, which first kills the node as a crash would.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/env.sh"
state=${ISVC_CLUSTER_DIR:-$root/.cluster}
left=()
procs=$(pgrep -af "kubelet-v|kube-proxy-v|containerd --config $state/|containerd-shim-runc-v2 .*$NODE_CONTAINERD_SOCK" || true)
[ -z "$procs" ] || left+=("processes: $procs")
mounts=$(findmnt -rn -o TARGET | grep -E "^($state/node/|$NODE_RUN/|$NODE_CONTAINERD_ROOT/)" || true)
[ -z "$mounts" ] || left+=("mounts: $(head -3 <<<"$mounts")")
ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && left+=("bridge $NODE_BRIDGE")
veths=$(ip -o link show type veth 2>/dev/null | grep -c "master $NODE_BRIDGE" || true)
[ "${veths:-0}" = 0 ] || left+=("$veths veths on $NODE_BRIDGE")
routes=$(ip route show | grep -E "$SERVICE_CIDR|$KWOK_POD_CIDR|$NODE_POD_CIDR" || true)
[ -z "$routes" ] || left+=("routes: $routes")
for save in iptables-save ip6tables-save; do
  command -v "$save" >/dev/null || continue
  chains=$("$save" 2>/dev/null | grep -cE '^:(KUBE-|CNI-|ISVC-)' || true)
  [ "${chains:-0}" = 0 ] || left+=("$save: $chains chains KUBE-/CNI-/ISVC-")
done
cgroups=$(ls -d /sys/fs/cgroup/*/kubepods* 2>/dev/null || true)
[ -z "$cgroups" ] || left+=("cgroups: $(head -2 <<<"$cgroups")")
[ -e "$NODE_RUN" ] && left+=("$NODE_RUN")
[ -f "$state/node/sysctl.saved" ] && left+=("sysctls not restored ($state/node/sysctl.saved)")
[ ${#left[@]} -eq 0 ] && exit 0
printf 'left behind by the real node: %s\n' "${left[@]}" >&2
exit 1
