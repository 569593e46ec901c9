#!/usr/bin/env bash
# The Python base image for the Dockerfiles' PYTHON_IMAGE, made from Debian packages: debootstrap
# of bookworm with python3.11 (what python:3.11-slim-bookworm offers: `python`, `pip`, venv, CA
# certificates, system-wide pip installs). The rootfs is cached as a tarball; the image lives in
# buildah's storage. Called by build.sh with its cache key (a hash of this file).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/images.env"
source "$here/../node/env.sh"
cache="$NODE_CACHE/images"
key=$1
log() { echo "[images] $*" >&2; }
if [ -f "$cache/base-$key.id" ] && buildah inspect "$(cat "$cache/base-$key.id")" >/dev/null 2>&1; then exit 0; fi
rootfs_tar="$cache/base-$key.rootfs.tar"
if [ ! -f "$rootfs_tar" ]; then
  mirror=$(sed -n 's/^URIs: *//p; s/^deb \(http[^ ]*\) bookworm .*/\1/p' /etc/apt/sources.list.d/*.sources \
           /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  tmp=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  log "base: debootstrap bookworm + python3.11 from $mirror (a few minutes, once)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$tmp/rootfs" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; exit 1; }
  ln -sf /usr/bin/python3 "$tmp/rootfs/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$tmp/rootfs/usr/local/bin/pip"
  rm -f "$tmp/rootfs/usr/lib/python3.11/EXTERNALLY-MANAGED"
  rm -rf "$tmp/rootfs/usr/share/doc/"* "$tmp/rootfs/usr/share/man/"* "$tmp/rootfs/usr/share/info/"*
  rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"* "$tmp/rootfs/var/log/"*
  tar -C "$tmp/rootfs" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  find "$cache" -maxdepth 1 -name 'base-*.rootfs.tar' ! -name "$(basename "$rootfs_tar")" -delete
fi
ctr=$(buildah from scratch)
mnt=$(buildah mount "$ctr")
tar -C "$mnt" --numeric-owner -xf "$rootfs_tar"
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
  --cmd python3 "$ctr"
buildah commit -q --rm "$ctr" "$BASE_PYTHON_IMAGE" > "$cache/base-$key.id"
log "base: $BASE_PYTHON_IMAGE ($(du -sh "$rootfs_tar" | cut -f1) rootfs)"
