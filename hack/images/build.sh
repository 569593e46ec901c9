#!/usr/bin/env bash
# Builds the project's images without Docker (buildah, Debian's package) and loads them into the
# real node's containerd. Docker Hub is not reachable here, so the Python base image is made from
# Debian packages (debootstrap bookworm + python3.11) and passed to the unchanged Dockerfiles as
# PYTHON_IMAGE. Python wheels come from the package index as pip on this host reaches it.
#
#   build.sh [--load] IMAGE...     IMAGE: pause | operator | pytorch-server | test-server | all
#
# Every image archive is cached by the hash of what it is built from (Dockerfile, the files it
# copies, the base), outside the checkout: a second run with no change takes seconds. --load
# imports the archive into the node's containerd unless that exact archive is there already.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
source "$here/images.env"
source "$root/hack/node/env.sh"
cache="$NODE_CACHE/images"
mkdir -p "$cache"
log() { echo "[images] $*" >&2; }
load=0
[ "${1:-}" = --load ] && { load=1; shift; }
[ $# -gt 0 ] || set -- all

# The files git would commit (tracked, or new and not ignored): a fresh clone and a working copy with
# generated files (the server's compiled protos, venvs, caches) give the same key, so neither
# rebuilds the other's image. Outside a git checkout: every file but the usual caches.
list_files() {
  if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$root" ls-files -z --cached --others --exclude-standard -- "$@"
  else
    (cd "$root" && find "$@" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' ! -path '*.egg-info/*' \
       ! -path '*/.venv/*' -print0)
  fi
}
hash_files() {  # paths relative to the repo root -> one sha256 over names and contents
  (cd "$root" && list_files "$@" | LC_ALL=C sort -z | xargs -0 -r sha256sum) | sha256sum | cut -c1-16
}

# -- the Python base image (debootstrap rootfs, cached as a tarball; then a buildah image)
base_key() { hash_files hack/images/base.sh; }
ensure_base() { bash "$here/base.sh" "$(base_key)"; }

# pip inside a build reaches the index as pip on this host does: with the host's CA bundle (an
# index behind a TLS proxy) and, for the server, a wheel directory filled on the host from pip's own
# cache, so that torch (about 3.5 GB with its CUDA libraries) is downloaded once per machine.
# These mounts exist during RUN steps only; nothing of them is in the image.
volumes=()
build_volumes() {  # image id -> $volumes
  local wheels="$NODE_CACHE/wheels"
  mkdir -p "$wheels"
  if [ "$1" = pytorch-server ]; then
    python3 -c "import tomllib; print('\\n'.join(tomllib.load(open('$root/servers/pytorch/pyproject.toml', 'rb'))['project']['dependencies']))" \
      > "$cache/pytorch-server.requirements.txt"
    log "pytorch-server: wheels for $(paste -sd' ' "$cache/pytorch-server.requirements.txt") into $wheels"
    python3 -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$wheels" \
      -r "$cache/pytorch-server.requirements.txt" >&2
  fi
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nfind-links = /var/cache/isvc-wheels\n' > "$cache/pip.conf"
  volumes=(-v "$cache/pip.conf:/etc/pip.conf:ro" -v "$wheels:/var/cache/isvc-wheels:ro")
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    volumes+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  fi
}

# -- one image: name, tag, context dir, then the paths its Dockerfile copies (relative to the repo).
# The cache is keyed by the hash of those paths (and of the base): the node's containerd, once the
# image is loaded there (labelled with its key; containerd's store outlives the cluster), else the
# archive in $cache until it is loaded. buildah's own storage is emptied after each build: a torch
# image and its build layers take over 20 GB there, more than this machine's disk can spare.
ctr_images() { ctr --address "$NODE_CONTAINERD_SOCK" -n k8s.io images "$@"; }
node_has() {  # ref, key: the node's containerd holds this very build
  [ -S "$NODE_CONTAINERD_SOCK" ] && ctr_images ls "name==$1" 2>/dev/null | grep -q "isvc.dev/key=$2"
}
build_image() {
  local id=$1 ref=$2 context=$3; shift 3
  local key archive started
  key=$(hash_files "$@")
  [ "$id" = pause ] || key="$key-$(base_key)"
  archive="$cache/$id-$key.tar"
  if node_has "$ref" "$key"; then echo "$ref"; return 0; fi
  if [ ! -f "$archive" ]; then
    started=$SECONDS
    if [ "$id" = pause ]; then
      local out ctr
      out=$(mktemp -d)
      (cd "$root/hack/node/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/pause" .)
      ctr=$(buildah from scratch)
      buildah copy -q "$ctr" "$out/pause" /pause >/dev/null
      buildah config --entrypoint '["/pause"]' --user 65535:65535 "$ctr"
      buildah commit -q --rm "$ctr" "$ref" >/dev/null
      rm -rf "$out"
    else
      ensure_base
      log "$id: buildah build $context (log: $cache/$id.log)"
      build_volumes "$id"
      buildah build --isolation chroot --network host -q "${volumes[@]}" \
        --build-arg "PYTHON_IMAGE=$BASE_PYTHON_IMAGE" -t "$ref" -f "$root/$context/Dockerfile" "$root/$context" \
        > "$cache/$id.log" 2>&1 || { tail -n 30 "$cache/$id.log" >&2; buildah rmi --prune >/dev/null 2>&1; exit 1; }
    fi
    find "$cache" -maxdepth 1 -name "$id-*.tar" -delete  # an older build of this image
    buildah push -q "$ref" "docker-archive:$archive.tmp:$ref" >/dev/null
    mv "$archive.tmp" "$archive"
    buildah rmi -f "$ref" >/dev/null
    buildah rmi --prune >/dev/null 2>&1 || true
    log "$id: $ref built in $((SECONDS - started)) s, $(du -h "$archive" | cut -f1)"
  fi
  if [ $load = 1 ]; then load_image "$ref" "$archive" "$key"; fi
  echo "$ref"
}

load_image() {  # ref, archive, key: import into the node's containerd, then drop the archive
  local ref=$1 archive=$2 key=$3 started=$SECONDS
  [ -S "$NODE_CONTAINERD_SOCK" ] || { log "$ref: built, not loaded (no real node running: make cluster-up)"; return 0; }
  ctr_images import "$archive" >/dev/null
  ctr_images label "$ref" "isvc.dev/key=$key" >/dev/null
  rm -f "$archive"
  log "loaded $ref into the node in $((SECONDS - started)) s"
}

[ "$*" = all ] && set -- pause operator pytorch-server test-server
for what in "$@"; do
  case "$what" in
    pause) build_image pause "$PAUSE_IMAGE" hack/node/pause hack/node/pause ;;
    operator) build_image operator "$OPERATOR_IMAGE:$IMAGE_VERSION" . \
                Dockerfile pyproject.toml README.md operator/isvc_operator ;;
    pytorch-server) build_image pytorch-server "$PYTORCH_SERVER_IMAGE:$IMAGE_VERSION" servers/pytorch \
                servers/pytorch/Dockerfile servers/pytorch/pyproject.toml servers/pytorch/README.md servers/pytorch/compile-protos.sh \
                servers/pytorch/isvc_pytorch_server ;;
    test-server) build_image test-server "localhost/isvc-test-server:1" tests/e2e/test-server tests/e2e/test-server ;;
    *) echo "usage: $0 [--load] pause|operator|pytorch-server|test-server ... | all" >&2; exit 2 ;;
  esac
done
