#!/usr/bin/env bash
# Installs what building and testing anemos needs on a fresh Debian 12 machine (idempotent):
# apt packages, the Rust musl target, and Debian's cloud kernel for the QEMU tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(musl-tools qemu-system-x86 ovmf cpio busybox-static e2fsprogs dosfstools mtools gdisk fdisk
      kmod file zstd xz-utils initramfs-tools dracut-core systemd-boot-efi python3 xfsprogs btrfs-progs dropbear-bin openssh-client socat
      mmdebstrap)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl
qemu-tests/fetch-kernel.sh >/dev/null
