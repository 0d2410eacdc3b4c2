#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine (as
# root). Fast when everything is already there.
set -euo pipefail

packages=(runc busybox-static mmdebstrap debian-archive-keyring jq hyperfine pkg-config iproute2 python3
          qemu-system-x86 cpio binutils e2fsprogs btrfs-progs xfsprogs docker-registry nftables)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
if command -v rustup >/dev/null; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi
