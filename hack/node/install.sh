#!/usr/bin/env bash
# Installs what the local real node needs from Debian's packages, once: containerd and runc (the
# container runtime), the CNI plugins, iptables and conntrack (kube-proxy), buildah and debootstrap
# (images built without Docker). Does nothing when everything is there.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }
have containerd /usr/bin/containerd || need+=(containerd)
have runc /usr/sbin/runc || need+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
have iptables /usr/sbin/iptables || need+=(iptables)
have conntrack /usr/sbin/conntrack || need+=(conntrack)
have buildah /usr/bin/buildah || need+=(buildah)
have debootstrap /usr/sbin/debootstrap || need+=(debootstrap)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "[node] missing Debian packages: ${need[*]} (install them as root: apt-get install ${need[*]})" >&2
  exit 1
fi
echo "[node] installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
