#!/usr/bin/env bash
# Builds, once, a real Debian 12 (bookworm) root filesystem archive for the distro-sized deploy
# benchmark (benches/debian-deploy-bench.sh), and caches it:
#
#   <cache>/debian-root/rootfs.tar.zst   the archive (zstd; numeric owners, mtimes kept)
#   <cache>/debian-root/stamp            what it was built from; when it matches, reruns are instant
#   <cache>/debian-root/packages.txt     the installed packages and versions
#   <cache>/debian-root/build.log        mmdebstrap's output
#
# Usage: scripts/build-debian-root.sh [--force]
#   --force   rebuild even when the archive is up to date
#
# Environment:
#   ANEMOS_CACHE    cache directory (default qemu-tests/cache)
#   DEBIAN_MIRROR   the mirror (default http://deb.debian.org/debian)
#   ZSTD_LEVEL      zstd level of the archive (default 9: fast to build, ~10% larger than -19)
#
# The system: mmdebstrap's minbase variant of bookworm (main, with bookworm-updates and the
# security archive), without Recommends, plus systemd-sysv, udev, Debian's cloud kernel
# (linux-image-cloud-amd64) with an initramfs-tools initrd, systemd-boot-efi (the EFI binary
# a systemd-boot deploy copies to the ESP), grub-pc and grub-efi-amd64-bin (what a
# `kind = "grub"` deploy runs chrooted: grub-install for BIOS and UEFI, update-grub; their
# postinst runs non-interactively, installs nothing to a disk and leaves only
# boot/grub/unicode.pf2), login tools and iproute2, and mdadm and
# cryptsetup-initramfs: a deploy onto RAID1 and LUKS2 regenerates the initrd in the target
# (`update-initramfs -u` in its provision script) once anemos has written mdadm.conf and
# crypttab, and the initrd then assembles the arrays and asks for the passphrase. It boots to a serial
# login prompt (systemd starts a getty on the console= device); root has an empty password,
# as this is a test image. The kernel, initrd, config and System.map in boot/ are regular
# files, so the archive can be deployed with the ESP (vfat) mounted at /boot. Falls back to
# debootstrap when mmdebstrap is not installable. qemu-tests/bench/debian-boot.toml deploys it
# with anemos and boots it through OVMF and systemd-boot to that prompt; the boot-grub scenario
# installs grub from it and boots it through SeaBIOS and OVMF.
#
# Building needs root (mmdebstrap's root mode mounts /proc, /sys and /dev in the chroot) and
# network access to the mirror. It takes minutes: about 3 for the root tree and, on two busy
# cores, about 1 for the default zstd -9 (ZSTD_LEVEL=19 takes ~12 for a ~10% smaller archive).
set -euo pipefail
umask 022
export LC_ALL=C

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ANEMOS_CACHE:-$repo/qemu-tests/cache}"
work="$cache/debian-root"
out="$work/rootfs.tar.zst"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
level="${ZSTD_LEVEL:-9}"
suite=bookworm
force=0
# Bump when the steps below change in a way that changes the archive.
RECIPE=4
INCLUDE=(systemd-sysv systemd udev login passwd iproute2 linux-image-cloud-amd64 initramfs-tools
         systemd-boot-efi grub-pc grub-efi-amd64-bin mdadm cryptsetup-initramfs zstd)

NAME=build-debian-root
# shellcheck source=scripts/lib/cache.sh
. "$repo/scripts/lib/cache.sh"

for arg in "$@"; do
    case "$arg" in
        --force | -f) force=1 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $arg (usage: scripts/build-debian-root.sh [--force])" ;;
    esac
done
[[ "$level" =~ ^[0-9]+$ ]] || die "ZSTD_LEVEL must be a number, not '$level'"

cache_lock "$work"

# --- up to date? -----------------------------------------------------------------------------
# The stamp's first line names the recipe and the settings. The mirror's contents
# move on (security updates), so an unchanged stamp means "built by this recipe", not "same
# bytes as today's mirror would give"; --force rebuilds.
recipe="recipe $RECIPE suite $suite mirror $mirror level $level packages ${INCLUDE[*]}"
if cache_fresh "$out" "$work/stamp" "$recipe"; then
    log "up to date: $out ($(du -h "$out" | cut -f1)); built $(sed -n 2p "$work/stamp")"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "must run as root to build (mmdebstrap's root mode, apt-get install)"

# --- host packages ---------------------------------------------------------------------------
need=()
command -v zstd >/dev/null || need+=(zstd)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if ((${#need[@]})); then
    if ! apt_install "${need[@]}"; then
        log "warning: installing ${need[*]} failed; trying debootstrap instead of mmdebstrap"
        apt_install zstd debootstrap || die "apt-get install zstd debootstrap failed"
    fi
fi
command -v zstd >/dev/null || die "zstd missing"
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is required (for --sort=name)"

# --- the root tree ---------------------------------------------------------------------------
root="$work/root"
start=$(date +%s)
log "building a bookworm root in $root from $mirror (log: $work/build.log)"
# A failed earlier run must not have left /proc or /dev mounted in the tree (rm -rf would
# descend into them).
if awk -v r="$root" '$2 == r || index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    die "something is still mounted under $root; unmount it first"
fi
rm -rf "$root" "$work/stamp" "$work/packages.txt"
include="$(IFS=,; echo "${INCLUDE[*]}")"
sources=(
    "deb $mirror $suite main"
    "deb $mirror $suite-updates main"
    "deb ${mirror%/debian}/debian-security $suite-security main"
)
if command -v mmdebstrap >/dev/null; then
    log "mmdebstrap --variant=minbase --include=$include $suite (no Recommends)"
    if ! mmdebstrap --mode=root --variant=minbase --include="$include" \
        --aptopt='Apt::Install-Recommends "false"' \
        "$suite" "$root" "${sources[@]}" >"$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log" >&2
        die "mmdebstrap failed (full log: $work/build.log)"
    fi
else
    command -v debootstrap >/dev/null || die "neither mmdebstrap nor debootstrap is installed"
    log "debootstrap --variant=minbase --include=$include $suite"
    if ! debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" \
        >"$work/build.log" 2>&1; then
        tail -n 40 "$work/build.log" >&2
        die "debootstrap failed (full log: $work/build.log)"
    fi
    printf '%s\n' "${sources[@]}" >"$root/etc/apt/sources.list"
fi
# Hostname, an empty root password (test image), and no downloaded apt lists or packages
# (they are not part of a deployed system).
echo debian-bench >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 debian-bench\n' >"$root/etc/hosts"
chroot "$root" passwd -d root >/dev/null || die "passwd -d root failed in the chroot"
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$work/packages.txt" \
    || die "dpkg-query failed in the chroot"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
log "root tree done in $(($(date +%s) - start)) s: $(du -sh "$root" | cut -f1), $(wc -l <"$work/packages.txt") packages"

# --- checks ----------------------------------------------------------------------------------
ls "$root"/boot/vmlinuz-* >/dev/null 2>&1 || die "no kernel in $root/boot"
ls "$root"/boot/initrd.img-* >/dev/null 2>&1 || die "no initrd in $root/boot (did update-initramfs run?)"
[[ -f "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ]] || die "no systemd-bootx64.efi in the root"
[[ -x "$root/sbin/init" || -L "$root/sbin/init" ]] || die "no /sbin/init (systemd-sysv) in the root"
# Directories are fine (grub-pc leaves boot/grub/unicode.pf2); links and device nodes are not.
bad="$(find "$root/boot" -mindepth 1 ! -type f ! -type d)"
[[ -z "$bad" ]] || die "boot/ must hold only regular files and directories (the ESP is vfat): $bad"
# No file capabilities are expected in this package set; the archive carries no xattrs.
if command -v getcap >/dev/null; then
    caps="$(getcap -r "$root" 2>/dev/null || true)"
    [[ -z "$caps" ]] || log "warning: file capabilities are not archived: $caps"
fi

# --- the archive -----------------------------------------------------------------------------
# Entries are named usr/..., not ./usr/...: the top-level names are listed (in C order) instead
# of ".", so the archive has no entry for the target's root directory itself.
t=$(date +%s)
top=("$root"/*)
tmp="$(mktemp "$work/.rootfs.tar.zst.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
log "writing $out (zstd -$level, all cores)"
tar -C "$root" --sort=name --numeric-owner --format=gnu -cf - "${top[@]#"$root"/}" \
    | zstd -q -f -T0 "-$level" -o "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
tar_bytes="$(zstd -dc "$out" | wc -c)"
entries="$(zstd -dc "$out" | tar -tf - | wc -l)"
log "archive done in $(($(date +%s) - t)) s"
printf '%s\n%s\n' "$recipe" "$(date -u +%Y-%m-%dT%H:%M:%SZ), kernel $(basename "$root"/boot/vmlinuz-*)" >"$work/stamp"
rm -rf "$root"
log "wrote $out: $(du -h "$out" | cut -f1) ($(stat -c %s "$out") bytes), tar $tar_bytes bytes, $entries entries; total $(($(date +%s) - start)) s"
