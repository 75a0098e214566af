#!/usr/bin/env bash
# Installs what building and testing anemos needs on a fresh Debian 12 machine (idempotent):
# apt packages, the Rust musl target, and Debian's cloud kernel for the QEMU tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every host tool a test calls is listed here: under ANEMOS_REQUIRE_TOOLS=1 (CI) a missing one
# fails its test instead of skipping it. Unit/CLI tests: cpio, file + readelf (binutils),
# sgdisk (gdisk), sfdisk/fdisk (fdisk), blkid/partx/mkswap (util-linux), mkfs.vfat/fsck.vfat
# (dosfstools), mcopy (mtools), mkfs.ext4 (e2fsprogs), ip (iproute2), gcc, mkinitramfs
# (initramfs-tools), patch and busybox (busybox-static) for makeimg. QEMU scenarios: the rest
# (mdadm: packed into RAID images and used by the host checks of the md arrays; cryptsetup-bin:
# the same for LUKS2; python3-cryptography: the LUKS2 check decrypts in userspace on a host
# without device-mapper; virt-fw-vars from PyPI's virt-firmware, in the venv
# scripts/virt-firmware-venv.sh makes: the UEFI scenarios read and edit OVMF variable stores).
# The fleet test (Ansible): python3-venv for the virtualenv scripts/ansible-venv.sh makes with
# ansible-core and pytest from PyPI (pinned there), ssh-keygen (openssh-client).
# The cached Debian artifacts (scripts/build-*.sh): mmdebstrap; the flat mirror also
# dpkg-scanpackages (dpkg-dev) and apt-ftparchive (apt-utils).
PKGS=(musl-tools qemu-system-x86 ovmf cpio busybox-static e2fsprogs dosfstools mtools gdisk fdisk
      util-linux binutils gcc iproute2 mdadm cryptsetup-bin python3-cryptography
      kmod file zstd xz-utils initramfs-tools dracut-core systemd-boot-efi python3 xfsprogs btrfs-progs dropbear-bin openssh-client socat
      mmdebstrap dpkg-dev apt-utils patch python3-venv)
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
# .ci/run checks formatting and lints before the tests.
for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
# The fuzz smoke run (scripts/fuzz-smoke.sh) builds the cargo-fuzz targets with nightly Rust
# (libFuzzer needs -Zsanitizer); cargo-fuzz is pinned so CI builds the same way every time.
rustup toolchain list 2>/dev/null | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version 2>/dev/null | grep -q '0\.13\.' || cargo install cargo-fuzz --version 0.13.2 --locked
qemu-tests/fetch-kernel.sh >/dev/null
scripts/ansible-venv.sh >/dev/null
scripts/virt-firmware-venv.sh >/dev/null
