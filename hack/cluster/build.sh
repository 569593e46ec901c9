#!/usr/bin/env bash
# Builds the local control plane's binaries from Go modules, once per version,
# into a cache outside the checkout (CI runs in a fresh clone and reuses them).
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${ISVC_CACHE:-$HOME/.cache/isvc-operator}
bin="$cache/bin"
mkdir -p "$bin" "$cache/src"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
log() { echo "[build] $*" >&2; }

build_kube() {
  local v=$KUBE_VERSION minor
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)
  local missing=()
  for b in "${want[@]}"; do [ -x "$bin/$b-$v" ] || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  minor=$(echo "$v" | cut -d. -f2)
  local src="$cache/src/kubernetes-$v"
  mkdir -p "$src"
  log "kubernetes $v: ${missing[*]} (cold build takes tens of minutes on 2 cores)"
  local kmod
  kmod=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module isvc-operator/cluster-build"
    echo
    grep -E '^go ' "$kmod"
    grep -E '^godebug ' "$kmod" || true
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    sed -n 's|^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*|\t\1 => \1 v0.'"$minor"'.'"$(echo "$v" | cut -d. -f3)"'|p' "$kmod"
    echo ")"
  } > "$src/go.mod"
  cat > "$src/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubectl/pkg/cmd"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  (cd "$src" && go mod tidy >&2)
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version ld=""
  for p in $pkg $cpkg; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  local out="$src/out"
  mkdir -p "$out"
  local pkgs=()
  for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$src" && go build -trimpath -tags selinux,notest -ldflags "-s -w $ld" -o "$out/" "${pkgs[@]}")
  for b in "${missing[@]}"; do mv "$out/$b" "$bin/$b-$v"; done
}

build_etcd() {
  local v=$ETCD_VERSION
  [ -x "$bin/etcd-$v" ] && return 0
  log "etcd $v"
  local src="$cache/src/etcd-$v"
  mkdir -p "$src"
  cat > "$src/go.mod" <<GOMOD
module isvc-operator/etcd-build

go 1.26.0

require go.etcd.io/etcd/server/v3 $v
GOMOD
  cat > "$src/main.go" <<'GO'
// Command etcd runs etcd's own main; a wrapper because etcd's root module has replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$src" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$bin/etcd-$v" .)
}

build_kwok() {
  local v=$KWOK_VERSION
  [ -x "$bin/kwok-$v" ] && [ -d "$cache/kwok-stages-$v" ] && return 0
  log "kwok $v"
  local tmp
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$v"
  mv "$tmp/kwok" "$bin/kwok-$v"
  local dir
  dir=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$v
  rm -rf "$cache/kwok-stages-$v"
  mkdir -p "$cache/kwok-stages-$v"
  cp -r "$dir/kustomize/stage/." "$cache/kwok-stages-$v/"
  chmod -R u+w "$cache/kwok-stages-$v"
}

go_install() {  # name, version, module path of its command, extra ldflags: into $bin/NAME-VERSION
  local name=$1 v=$2 module=$3 ldflags=${4:-} tmp
  [ -x "$bin/$name-$v" ] && return 0
  log "$name $v"
  tmp=$(mktemp -d)
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w $ldflags" "$module@$v"
  mv "$tmp/$name" "$bin/$name-$v"
  rm -rf "$tmp"
}

build_helm() {
  go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}

build_actionlint() {
  go_install actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint
}

build_ghz() {
  go_install ghz "$GHZ_VERSION" github.com/bojand/ghz/cmd/ghz
}

what=${1:-all}
case "$what" in
  all) build_etcd; build_kwok; build_kube; build_helm ;;
  kube) build_kube ;;
  etcd) build_etcd ;;
  kwok) build_kwok ;;
  helm) build_helm ;;
  actionlint) build_actionlint ;;
  ghz) build_ghz ;;
  *) echo "usage: $0 [all|kube|etcd|kwok|helm|actionlint|ghz]" >&2; exit 2 ;;
esac
echo "$bin"
