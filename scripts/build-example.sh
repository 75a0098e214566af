#!/usr/bin/env bash
# Builds the generated part of the busybox example payload: examples/busybox/rootfs.tar.zst,
# the system that `anemos` deploys from examples/busybox/anemos.toml.
#
# Usage: scripts/build-example.sh [--force]
#   --force   rebuild even when the archive is up to date
#
# Environment:
#   ANEMOS_BIN     the anemos binary to pack the initrd with (default: `cargo build --release`
#                  and target/x86_64-unknown-linux-musl/release/anemos)
#   ANEMOS_CACHE   cache directory (default qemu-tests/cache), shared with qemu-tests/; the
#                  kernel is fetched there and the staging tree lives in example-busybox/
#   ZSTD_LEVEL     zstd level of the archive (default 19)
#
# The archive holds, owned by root and with every mtime 0 (tar --sort=name, so the same inputs
# give the same bytes):
#   bin/busybox + applet links in bin/ and sbin/   (Debian's busybox-static)
#   sbin/init                                      prints ANEMOS-DEPLOYED-SYSTEM-OK, powers off
#   etc/hostname, etc/anemos-example-marker
#   proc sys dev run tmp var/log                   empty
#   usr/lib/systemd/boot/efi/systemd-bootx64.efi   the host's (systemd-boot-efi), for anemos
#   boot/vmlinuz-<release>                         Debian's cloud kernel (fetch-kernel.sh)
#   boot/initrd.img-<release>                      `anemos pack --init examples/busybox/initrd-init.sh`
#                                                  with busybox, virtio_pci and virtio_blk
# boot/ holds only regular files: the ESP (vfat, no symlinks) is mounted there in the target.
#
# Idempotent: the inputs' digests are kept in <cache>/example-busybox/stamp, and when they and
# the archive are unchanged nothing is rebuilt. Needs root only to apt-get install missing
# packages (busybox-static, systemd-boot-efi, zstd).
set -euo pipefail
umask 022
export LC_ALL=C

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
example="$repo/examples/busybox"
out="$example/rootfs.tar.zst"
cache="${ANEMOS_CACHE:-$repo/qemu-tests/cache}"
work="$cache/example-busybox"
level="${ZSTD_LEVEL:-19}"
force=0

log() { printf 'build-example: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for arg in "$@"; do
    case "$arg" in
        --force | -f) force=1 ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument: $arg (usage: scripts/build-example.sh [--force])" ;;
    esac
done
[[ "$level" =~ ^[0-9]+$ ]] || die "ZSTD_LEVEL must be a number, not '$level'"

BUSYBOX=/bin/busybox
SDBOOT=/usr/lib/systemd/boot/efi/systemd-bootx64.efi

# --- host packages ---------------------------------------------------------------------------
need=()
[[ -x "$BUSYBOX" ]] || need+=(busybox-static)
[[ -f "$SDBOOT" ]] || need+=(systemd-boot-efi)
command -v zstd >/dev/null || need+=(zstd)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    SUDO=""; [[ $EUID -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 \
        || die "apt-get install ${need[*]} failed"
fi
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX missing after installing busybox-static"
[[ -f "$SDBOOT" ]] || die "$SDBOOT missing after installing systemd-boot-efi"
tar --version 2>/dev/null | grep -q 'GNU tar' || die "GNU tar is required (for --sort=name)"

# --- kernel ----------------------------------------------------------------------------------
mkdir -p "$work"
# One build at a time: a second run waits, then finds the archive up to date.
exec 9>"$work/lock"
flock 9 || die "could not lock $work/lock"
if ! kout="$(ANEMOS_CACHE="$cache" "$repo/qemu-tests/fetch-kernel.sh" 2>"$work/fetch-kernel.log")"; then
    cat "$work/fetch-kernel.log" >&2
    die "qemu-tests/fetch-kernel.sh failed"
fi
release="$(tail -n 1 <<<"$kout")"
vmlinuz="$(readlink -f "$cache/kernel/vmlinuz")"
moddir="$(readlink -f "$cache/kernel/modules")"
[[ -n "$release" && -f "$vmlinuz" && -d "$moddir" ]] || die "no kernel in $cache/kernel after fetch-kernel.sh"

# --- anemos ----------------------------------------------------------------------------------
if [[ -n "${ANEMOS_BIN:-}" ]]; then
    anemos="$ANEMOS_BIN"
else
    anemos="$repo/target/x86_64-unknown-linux-musl/release/anemos"
    if ! (cd "$repo" && cargo build --release --quiet) >"$work/cargo.log" 2>&1; then
        cat "$work/cargo.log" >&2
        [[ -x "$anemos" ]] || die "cargo build --release failed (or set ANEMOS_BIN)"
        log "warning: cargo build --release failed; packing with the last built $anemos"
    fi
fi
[[ -x "$anemos" ]] || die "anemos binary not found: $anemos"

initrd_init="$example/initrd-init.sh"
[[ -f "$initrd_init" ]] || die "missing $initrd_init"

# --- up to date? -----------------------------------------------------------------------------
# $work/stamp holds two digests: of every input (this script, the initrd's init, busybox,
# systemd-boot, the kernel, its modules.dep, the anemos binary, the zstd level), and of the
# uncompressed tar stream last written. Unchanged inputs: nothing to do. Changed inputs (say,
# a rebuilt anemos) that give the same tar bytes: the slow zstd step is skipped.
inputs="$(
    {
        echo "release $release level $level"
        sha256sum "${BASH_SOURCE[0]}" "$initrd_init" "$BUSYBOX" "$SDBOOT" "$vmlinuz" "$anemos" \
            "$moddir/modules.dep" | awk '{print $1}'
    } | sha256sum | awk '{print $1}'
)"
old_inputs="" old_content=""
if [[ -f "$work/stamp" ]]; then
    { read -r old_inputs || true; read -r old_content || true; } <"$work/stamp"
fi
if ((!force)) && [[ -f "$out" && "$old_inputs" == "$inputs" ]]; then
    log "up to date: ${out#"$repo"/} ($(du -h "$out" | cut -f1), kernel $release)"
    exit 0
fi

log "building ${out#"$repo"/} (kernel $release)"
rm -rf "$work/root" "$work/initrd-tools" "$work/stamp"
root="$work/root"
tools="$work/initrd-tools"

# applets DIR: bin/busybox plus relative applet links in DIR/bin and DIR/sbin, following
# busybox's own /bin vs /sbin split (its usr/ applets go to bin/ and sbin/ too). init and
# linuxrc are left out: /sbin/init (and the initrd's /init) are our scripts.
applets() {
    local d="$1" a dir name
    mkdir -p "$d/bin" "$d/sbin"
    install -m 0755 "$BUSYBOX" "$d/bin/busybox"
    while read -r a; do
        name="${a##*/}"
        case "$a" in
            bin/busybox | linuxrc | sbin/init) continue ;;
            bin/* | usr/bin/*) dir=bin ;;
            sbin/* | usr/sbin/*) dir=sbin ;;
            *) continue ;;
        esac
        [[ -e "$d/bin/$name" || -e "$d/sbin/$name" ]] && continue
        if [[ $dir == bin ]]; then ln -s busybox "$d/bin/$name"; else ln -s ../bin/busybox "$d/sbin/$name"; fi
    done < <("$BUSYBOX" --list-full)
    local must
    for must in sh mount umount poweroff reboot cat echo ls sleep mkdir switch_root insmod hostname uname; do
        [[ -L "$d/bin/$must" || -L "$d/sbin/$must" ]] || die "busybox has no '$must' applet"
    done
}

# --- the deployed system ---------------------------------------------------------------------
applets "$root"
mkdir -p "$root"/{proc,sys,dev,run,tmp,etc,var/log,boot,usr/lib/systemd/boot/efi}
chmod 1777 "$root/tmp"

cat >"$root/sbin/init" <<'EOF'
#!/bin/sh
# /sbin/init of the system deployed from anemos' examples/busybox: says that it booted, then
# powers off. The initrd (examples/busybox/initrd-init.sh) mounted / read-only.
PATH=/sbin:/bin
export PATH
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
hostname -F /etc/hostname 2>/dev/null
root=""
while read -r src dst rest; do
    [ "$dst" = / ] && root=$src     # the last / entry is the one on top
done </proc/mounts
{
    echo "ANEMOS-DEPLOYED-SYSTEM-OK hostname=$(cat /etc/hostname) root=$root"
    cat /etc/anemos-example-marker
} >/dev/console 2>&1
sync
poweroff -f
EOF
chmod 0755 "$root/sbin/init"
echo "anemos-example" >"$root/etc/hostname"
echo "deployed by anemos from examples/busybox" >"$root/etc/anemos-example-marker"
install -m 0644 "$SDBOOT" "$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
install -m 0644 "$vmlinuz" "$root/boot/vmlinuz-$release"

# --- its initrd ------------------------------------------------------------------------------
applets "$tools"
SOURCE_DATE_EPOCH=0 "$anemos" pack -o "$root/boot/initrd.img-$release" --compress zstd \
    --rootfs "$tools" --kernel-modules "$moddir" --module virtio_pci virtio_blk \
    --init "$initrd_init" >"$work/pack.log" 2>&1 \
    || { cat "$work/pack.log" >&2; die "anemos pack failed"; }
chmod 0644 "$root/boot/initrd.img-$release"

bad="$(find "$root/boot" ! -type f ! -type d)"
[[ -z "$bad" ]] || die "boot/ must hold only regular files (the ESP is vfat): $bad"

# --- the archive -----------------------------------------------------------------------------
# Entries are named bin/busybox, not ./bin/busybox: the top-level names are listed (in C order)
# instead of ".", so the archive has no entry for the target's root directory itself.
mktar() {
    local top=("$root"/*)
    tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=gnu \
        -cf - "${top[@]#"$root"/}"
}
content="$(mktar | sha256sum | awk '{print $1}')"
if ((!force)) && [[ -f "$out" && "$old_content" == "$content" ]]; then
    log "inputs changed but the archive's contents did not: kept ${out#"$repo"/}"
else
    tmp="$(mktemp "$example/.rootfs.tar.zst.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    mktar | zstd -q -f "-$level" -o "$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$out"
    trap - EXIT
    log "wrote ${out#"$repo"/} ($(du -h "$out" | cut -f1))"
fi
printf '%s\n%s\n' "$inputs" "$content" >"$work/stamp"
log "contents: boot/vmlinuz-$release ($(du -h "$vmlinuz" | cut -f1)), boot/initrd.img-$release ($(du -h "$root/boot/initrd.img-$release" | cut -f1)), tar $(mktar | wc -c) bytes"
