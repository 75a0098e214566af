#!/usr/bin/env bash
# Fetch Debian 12's cloud kernel (vmlinuz + /lib/modules tree) for the QEMU tests.
#
# Uses `apt-get download` + `dpkg -x`, so no root is needed unless the apt
# package lists are missing (then `apt-get update` is run, which needs root).
# The .deb ships no modules.dep (its postinst runs depmod), so `depmod -b`
# from kmod generates modules.dep/alias/softdep in the extracted tree.
#
# Layout (cache dir is $ANEMOS_CACHE or <repo>/qemu-tests/cache):
#   cache/kernel/<pkgname>/   extracted package tree
#   cache/kernel/vmlinuz      -> <pkgname>/boot/vmlinuz-<release>
#   cache/kernel/modules      -> <pkgname>/lib/modules/<release>
#
# Idempotent: when the package is already extracted (and depmod has run) it
# only prints the paths.
# The last line printed is the kernel release.
set -euo pipefail

META=linux-image-cloud-amd64

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${ANEMOS_CACHE:-$script_dir/cache}"
kdir="$cache/kernel"

log() { printf 'fetch-kernel: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v apt-cache >/dev/null || die "apt-cache not found (a Debian-based host is required)"
command -v dpkg >/dev/null || die "dpkg not found"

# Return 0 when apt knows a candidate version for $1.
has_candidate() {
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
    [[ -n "$cand" && "$cand" != "(none)" ]]
}

if ! has_candidate "$META"; then
    log "no candidate for $META; running apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed (needs root and network access to Debian mirrors)"
    has_candidate "$META" || die "no candidate for $META after apt-get update (is this Debian 12 with main enabled?)"
fi

# Resolve the metapackage to its concrete image package, e.g. linux-image-6.1.0-28-cloud-amd64.
pkg="$(apt-cache depends "$META" \
    | sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' \
    | sort -V | tail -n 1)"
[[ -n "$pkg" ]] || die "could not resolve $META to a linux-image-*-cloud-amd64 package"

dest="$kdir/$pkg"

# Find the one /lib/modules/<release> dir of an extracted tree.
find_release() {
    local d
    for d in "$1"/lib/modules/*/ "$1"/usr/lib/modules/*/; do
        [[ -d "$d" ]] || continue
        basename "$d"
        return 0
    done
    return 1
}

if [[ -f "$dest/.extracted" ]]; then
    log "already extracted: $dest"
else
    log "downloading $pkg"
    mkdir -p "$kdir"
    tmp="$(mktemp -d "$kdir/.tmp.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    sandbox=()
    # As root, apt drops to _apt, which cannot write into our mktemp dir.
    [[ $EUID -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
    (cd "$tmp" && apt-get download -q "${sandbox[@]}" "$pkg" >&2) || die "apt-get download $pkg failed"
    deb=("$tmp"/*.deb)
    [[ -f "${deb[0]}" ]] || die "apt-get download produced no .deb for $pkg"
    log "extracting ${deb[0]##*/}"
    rm -rf "$dest"
    dpkg -x "${deb[0]}" "$tmp/tree" || die "dpkg -x ${deb[0]} failed"
    mv "$tmp/tree" "$dest"
    touch "$dest/.extracted"
    rm -rf "$tmp"
    trap - EXIT
fi

release="$(find_release "$dest")" || die "no lib/modules/<release> directory in $dest"
if [[ -d "$dest/lib/modules/$release" ]]; then
    moddir="lib/modules/$release"
else
    moddir="usr/lib/modules/$release"
fi
[[ -f "$dest/boot/vmlinuz-$release" ]] || die "missing $dest/boot/vmlinuz-$release"
# Debian's package does not ship modules.dep/alias/softdep: its postinst runs
# depmod. Generate them here (depmod -b needs no root).
if [[ ! -f "$dest/$moddir/modules.dep" ]]; then
    depmod_bin="$(command -v depmod || true)"
    [[ -n "$depmod_bin" ]] || for c in /usr/sbin/depmod /sbin/depmod; do
        [[ -x "$c" ]] && depmod_bin="$c" && break
    done
    [[ -n "$depmod_bin" ]] || die "depmod not found; install kmod (apt-get install kmod)"
    log "running depmod for $release"
    "$depmod_bin" -b "$dest" "$release" || die "depmod -b $dest $release failed"
fi
[[ -f "$dest/$moddir/modules.dep" ]] || die "missing $dest/$moddir/modules.dep after depmod"

# Relative symlinks so the cache dir can be moved.
ln -sfn "$pkg/boot/vmlinuz-$release" "$kdir/vmlinuz"
ln -sfn "$pkg/$moddir" "$kdir/modules"

echo "vmlinuz: $kdir/vmlinuz -> $(readlink "$kdir/vmlinuz")"
echo "modules: $kdir/modules -> $(readlink "$kdir/modules")"
echo "$release"
