#!/usr/bin/env bash
# Builds the kstatus checker (main.go, sigs.k8s.io/cli-utils pinned in go.mod) once per content of
# this directory, into the same cache as the control plane's binaries. Prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${ISVC_CACHE:-$HOME/.cache/isvc-operator}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)
out="$cache/bin/kstatus-$key"
if [ ! -x "$out" ]; then
  echo "[build] kstatus ($key)" >&2
  mkdir -p "$cache/bin"
  (cd "$here" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$out.tmp" . >&2)
  mv "$out.tmp" "$out"
fi
echo "$out"
