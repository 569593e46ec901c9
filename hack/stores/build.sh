#!/usr/bin/env bash
# Builds/installs the object-store servers the storage program is tested against, once per version,
# into a cache outside the checkout (CI runs in a fresh clone and reuses them):
#   fake-gcs-server (GCS) from its Go module, Azurite (Azure Blob) from npm, moto's server (S3) from
#   PyPI into its own venv. MinIO is not used: its server is AGPL and not offered by the module list.
# Usage: build.sh [all|fake-gcs-server|azurite|moto]; prints the cache directory on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${ISVC_CACHE:-$HOME/.cache/isvc-operator}
mkdir -p "$cache/bin" "$cache/stores"
log() { echo "[stores] $*" >&2; }

build_fake_gcs() {
  local out="$cache/bin/fake-gcs-server-$FAKE_GCS_SERVER_VERSION"
  [ -x "$out" ] && return 0
  log "fake-gcs-server $FAKE_GCS_SERVER_VERSION (go install)"
  local gobin="$cache/stores/gobin-$FAKE_GCS_SERVER_VERSION"
  CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN="$gobin" \
    go install -trimpath -ldflags "-s -w" "github.com/fsouza/fake-gcs-server@$FAKE_GCS_SERVER_VERSION" >&2
  mv "$gobin/fake-gcs-server" "$out"
  rmdir "$gobin" 2>/dev/null || true
}

build_azurite() {
  local dir="$cache/stores/azurite-$AZURITE_VERSION"
  [ -x "$dir/node_modules/.bin/azurite-blob" ] && return 0
  log "azurite $AZURITE_VERSION (npm)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  npm install --prefix "$dir.tmp" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

build_moto() {
  local dir="$cache/stores/moto-$MOTO_VERSION"
  [ -f "$dir/.installed" ] && return 0
  log "moto[server] $MOTO_VERSION (pip, own venv)"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2
  touch "$dir/.installed"
}

case "${1:-all}" in
  all) build_fake_gcs; build_azurite; build_moto ;;
  fake-gcs-server) build_fake_gcs ;;
  azurite) build_azurite ;;
  moto) build_moto ;;
  *) echo "usage: $0 [all|fake-gcs-server|azurite|moto]" >&2; exit 2 ;;
esac
echo "$cache"
