# The local real node's names, addresses and paths: sourced by up.sh, down.sh and the image scripts.
# Everything it makes lives on this machine: the pod network is a bridge with no route out.
NODE_NAME=isvc-node
NODE_BRIDGE=isvc0
NODE_IP=10.245.0.1                      # on the bridge: the node's InternalIP, the pods' gateway
NODE_POD_CIDR=10.245.0.0/24
SERVICE_CIDR=10.96.0.0/16               # kube-apiserver --service-cluster-ip-range
SERVICE_API_IP=10.96.0.1                # the `kubernetes` Service
KWOK_POD_CIDR=10.244.0.0/16             # kwok's fake pod IPs: Endpoints that must never route out
NODE_LABEL_KEY=isvc.dev/node            # label and taint: only pods that ask land on the real node
NODE_LABEL_VALUE=real
NODE_RUN=/run/isvc-operator             # sockets, netns and container state (gone at reboot)
NODE_CACHE=${ISVC_CACHE:-$HOME/.cache/isvc-operator}
NODE_CONTAINERD_ROOT=$NODE_CACHE/containerd   # imported images survive cluster-down and fresh clones
NODE_CONTAINERD_SOCK=$NODE_RUN/containerd/containerd.sock
source "$(dirname "${BASH_SOURCE[0]}")/../images/images.env"   # PAUSE_IMAGE
# Sysctls the node changes (kubelet and kube-proxy set some of them): saved before, restored by down.sh.
NODE_SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes)
