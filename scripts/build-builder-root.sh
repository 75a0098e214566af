#!/usr/bin/env bash
# Builds, once, the builder tools root: a Debian 12 (bookworm) root filesystem holding the tools
# to bootstrap Debian from inside the deploy image (mmdebstrap, debootstrap, apt, gpgv and
# Debian's archive keyring, bash, patch, mkfs.ext4, mkfs.vfat, CA certificates and the
# systemd-boot EFI binary), and caches it:
#
#   <cache>/builder-root/rootfs.tar.zst   the archive (zstd; numeric owners, mtimes kept)
#   <cache>/builder-root/stamp            what it was built from; when it matches, reruns are instant
#   <cache>/builder-root/packages.txt     the installed packages and versions
#   <cache>/builder-root/build.log        mmdebstrap's output
#
# Usage: scripts/build-builder-root.sh [--force]
#   --force   rebuild even when the archive is up to date
#
# Environment:
#   ANEMOS_CACHE    cache directory (default qemu-tests/cache)
#   DEBIAN_MIRROR   the mirror (default http://deb.debian.org/debian)
#   ZSTD_LEVEL      zstd level of the archive (default 9)
#
# The system: mmdebstrap's minbase variant of bookworm (main, with bookworm-updates and the
# security archive), without Recommends, plus the packages in INCLUDE below. No kernel, no init:
# it is unpacked and chrooted into, not booted. Its apt sources name the upstream mirror; a
# bootstrap inside the image passes its own (e.g. the flat mirror of
# scripts/build-debian-mirror.sh: "deb [trusted=yes] http://10.0.2.100/ ./").
#
# Building needs root (mmdebstrap's root mode) and network access to the mirror; about a
# minute or two.
set -euo pipefail
umask 022
export LC_ALL=C

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${ANEMOS_CACHE:-$repo/qemu-tests/cache}"
work="$cache/builder-root"
out="$work/rootfs.tar.zst"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
level="${ZSTD_LEVEL:-9}"
suite=bookworm
force=0
# Bump when the steps below change in a way that changes the archive.
RECIPE=1
INCLUDE=(mmdebstrap debootstrap apt gpgv debian-archive-keyring bash patch e2fsprogs dosfstools
         ca-certificates systemd-boot-efi)

NAME=build-builder-root
# shellcheck source=scripts/lib/cache.sh
. "$repo/scripts/lib/cache.sh"

for arg in "$@"; do
    case "$arg" in
        --force | -f) force=1 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $arg (usage: scripts/build-builder-root.sh [--force])" ;;
    esac
done
[[ "$level" =~ ^[0-9]+$ ]] || die "ZSTD_LEVEL must be a number, not '$level'"

cache_lock "$work"

# --- up to date? -----------------------------------------------------------------------------
# The mirror's contents move on (security updates), so an unchanged stamp means "built by this
# recipe", not "same bytes as today's mirror would give"; --force rebuilds.
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
    apt_install "${need[@]}" || die "apt-get install ${need[*]} failed"
fi
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
log "mmdebstrap --variant=minbase --include=$include $suite (no Recommends)"
if ! mmdebstrap --mode=root --variant=minbase --include="$include" \
    --aptopt='Apt::Install-Recommends "false"' \
    "$suite" "$root" "${sources[@]}" >"$work/build.log" 2>&1; then
    tail -n 40 "$work/build.log" >&2
    die "mmdebstrap failed (full log: $work/build.log)"
fi
# shellcheck disable=SC2016 # dpkg-query format, not shell
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' >"$work/packages.txt" \
    || die "dpkg-query failed in the chroot"
# No downloaded apt lists or packages: a bootstrap inside the image fetches its own.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
log "root tree done in $(($(date +%s) - start)) s: $(du -sh "$root" | cut -f1), $(wc -l <"$work/packages.txt") packages"

# --- checks ----------------------------------------------------------------------------------
for tool in mmdebstrap debootstrap apt-get gpgv bash patch mke2fs mkfs.vfat; do
    chroot "$root" sh -c "command -v $tool" >/dev/null || die "no $tool in the root"
done
chroot "$root" mmdebstrap --version >/dev/null || die "mmdebstrap does not run in the root"
[[ -f "$root/usr/share/keyrings/debian-archive-keyring.gpg" ]] || die "no Debian archive keyring in the root"
[[ -f "$root/etc/ssl/certs/ca-certificates.crt" ]] || die "no CA bundle in the root"
[[ -f "$root/usr/share/debootstrap/scripts/bookworm" ]] || die "no debootstrap script for bookworm in the root"
[[ -f "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ]] || die "no systemd-bootx64.efi in the root"
if command -v getcap >/dev/null; then
    caps="$(getcap -r "$root" 2>/dev/null || true)"
    [[ -z "$caps" ]] || log "warning: file capabilities are not archived: $caps"
fi
unpacked_bytes="$(du -sb "$root" | cut -f1)"

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
printf '%s\n%s\n' "$recipe" "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(wc -l <"$work/packages.txt") packages" >"$work/stamp"
rm -rf "$root"
log "wrote $out: $(du -h "$out" | cut -f1) ($(stat -c %s "$out") bytes), unpacked $unpacked_bytes bytes, tar $tar_bytes bytes, $entries entries; total $(($(date +%s) - start)) s"
