#!/usr/bin/env bash
# Base images for docker/Dockerfile made from Debian's packages, for machines that reach no
# image registry: debootstrap into a directory, then `docker import`. An image that exists
# is kept (nothing is rebuilt), so this is cheap after its first run.
#
#   docker/bases.sh            # prints BUILDER_IMAGE=... and RUNTIME_IMAGE=... lines
#
# runtime: Debian bookworm (minbase) with ca-certificates, as debian:bookworm-slim is.
# builder: the same with gcc and libc6-dev, plus this machine's Rust toolchain (rustc and
#   cargo of `rustc --print sysroot`) under /usr/local/rust, on PATH, and this machine's
#   CA bundle (where registries are reached through a TLS-inspecting proxy, cargo in the
#   build must trust what the host trusts). Its tag names the toolchain's version, so a new
#   toolchain makes a new image.
# DEBIAN_MIRROR overrides the mirror (default: the first one apt is configured with).
# Everything but the two result lines goes to standard error.
set -euo pipefail

log() { echo "bases: $*" >&2; }

mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v security | head -n 1 | awk '{print $2}' || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi

# make NAME PACKAGES [PREPARE]: debootstrap PACKAGES, run PREPARE ROOT, import as NAME.
make() {
  local name="$1" packages="$2" prepare="${3:-}"
  if docker image inspect "$name" >/dev/null 2>&1; then
    log "$name exists"
    return
  fi
  local root
  root="$(mktemp -d "${TMPDIR:-/tmp}/cpm-nms-base.XXXXXX")"
  log "debootstrap bookworm ($packages) from $mirror for $name"
  debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >&2
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  if [ -n "$prepare" ]; then "$prepare" "$root"; fi
  local path=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  tar -C "$root" -c . | docker import --change "ENV PATH=$path" --change 'CMD ["/bin/bash"]' - "$name" >&2
  rm -rf "$root"
  log "$name imported"
}

# The host's toolchain (rustc, cargo and the standard library, without docs) and trust.
add_rust() {
  cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"
  local sysroot
  sysroot="$(rustc --print sysroot)"
  mkdir -p "$1/usr/local/rust/bin"
  cp -a "$sysroot/bin/rustc" "$sysroot/bin/cargo" "$1/usr/local/rust/bin/"
  cp -a "$sysroot/lib" "$1/usr/local/rust/"
}

rust_version="$(rustc --version | awk '{print $2}')"
runtime="cpm-nms-base/runtime:bookworm"
builder="cpm-nms-base/builder:bookworm-rust-$rust_version"
make "$runtime" ca-certificates
make "$builder" ca-certificates,gcc,libc6-dev add_rust
echo "RUNTIME_IMAGE=$runtime"
echo "BUILDER_IMAGE=$builder"
