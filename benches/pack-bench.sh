#!/usr/bin/env bash
# pack-bench.sh — benchmark `anemos pack` and `anemos inspect` against Debian's initramfs
# generators (dracut, initramfs-tools' mkinitramfs) and lsinitramfs.
#
# This is a benchmark, not a test: a missed target prints MISS and the script still exits 0.
# It exits non-zero only when it cannot run at all (anemos does not build, the kernel cannot
# be fetched, ...).
#
# Usage: benches/pack-bench.sh [--quick] [--install-deps] [--no-build]
#   --quick         fewer runs (anemos 3, slow tools 1): a smoke run, not for numbers
#   --install-deps  apt-get install the missing tools (hyperfine, dracut-core,
#                   initramfs-tools, busybox-static, zstd); needs root
#   --no-build      do not run `cargo build --release` (use the existing binary)
# Environment:
#   ANEMOS=PATH     anemos binary to benchmark (implies --no-build)
#   ANEMOS_CACHE    kernel cache dir, as for qemu-tests/fetch-kernel.sh
#   BENCH_NO_HYPERFINE=1  time with the built-in median-of-N loop even if hyperfine exists
#
# What it does, in order:
#   1. builds anemos (release, static musl) and fetches Debian 12's cloud kernel with
#      qemu-tests/fetch-kernel.sh (modules tree with depmod run);
#   2. packs the same content with every tool: busybox-static (anemos: a tools root with
#      bin/busybox + applet symlinks), /sbin/mke2fs with its shared libraries, and the
#      module closure of virtio_blk + ext4 + vfat (ext4 is built into this kernel);
#   3. times each tool (hyperfine if installed, else the median of N runs) and prints a
#      table with image size, uncompressed cpio size and anemos/dracut ratios;
#   4. builds a big Debian initrd (mkinitramfs, MODULES=most) once, cached, and times
#      `anemos inspect` against `lsinitramfs` and `lsinitramfs -l` on it.
#
# dracut and mkinitramfs read /lib/modules/<release>. If the host lacks that tree (or
# /boot/config-<release>, which mkinitramfs needs to pick its compressor), the script puts
# the fetched ones there for the duration of the run (a hard-linked copy of the tree, a
# symlink to the config; root only) and removes them on exit; existing files are never
# touched.
#
# Caches live in benches/.cache (gitignored): the busybox tools root and the big initrd.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
CACHE="$BENCH_DIR/.cache"
MARKER=".anemos-pack-bench"   # marks trees this script placed under /lib/modules

QUICK=0
INSTALL_DEPS=0
BUILD=1
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        --install-deps) INSTALL_DEPS=1 ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "pack-bench: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done
[[ -n "${ANEMOS:-}" ]] && BUILD=0

if (( QUICK )); then FAST_RUNS=3; SLOW_RUNS=1; else FAST_RUNS=10; SLOW_RUNS=3; fi

say() { printf '%s\n' "$*"; }
note() { printf '  %s\n' "$*"; }
hr() { printf '%s\n' "------------------------------------------------------------------------------------------"; }
die() { printf 'pack-bench: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# Temp dir and cleanup of everything we placed outside it.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/anemos-pack-bench.XXXXXX")"
PLACED=()   # paths this run created outside $WORK (removed on exit)
cleanup() {
    local p
    for p in "${PLACED[@]+"${PLACED[@]}"}"; do
        # Only remove what still carries our marker or is still our symlink.
        if [[ -L "$p" ]] || [[ -e "$p/$MARKER" ]]; then
            rm -rf -- "$p"
        fi
    done
    rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat <<'EOF'
==========================================================================================
anemos pack / inspect benchmark
==========================================================================================
How to read these results
  * Times are wall-clock medians (ms) on a warm page cache; "runs" says how many. Each
    command also ran once before timing, untimed (its output is the image measured).
    "cpu ms" is mean user+sys CPU time including child processes (hyperfine only): it
    is what to compare when the machine was busy (see the load lines), and it exceeds
    wall time for multi-threaded compressors (dracut and mkinitramfs run zstd -T0).
  * "image" is the file's size in bytes; "cpio" is the uncompressed newc archive size
    (summed over segments, read with `anemos inspect`, else by decompressing).
  * The content is meant to be the same for every tool: busybox, /sbin/mke2fs with its
    shared libraries, modules virtio_blk + ext4 (builtin) + vfat. It is not identical:
    dracut's `base` module adds bash, udev rules, systemd's libraries and its shell init;
    mkinitramfs always runs the system hooks in /usr/share/initramfs-tools/hooks (klibc,
    udev, kmod, and lvm2/mdadm/btrfs/... with their dm/md modules when those packages are
    installed); anemos adds itself as /init (a ~2 MB static binary). The "content" lines
    break each image down so you can see what the bytes are.
  * Compressors: anemos uses zstd level 9 single-threaded (its default); dracut uses
    `zstd -15 -q -T0`, mkinitramfs `zstd -q -9 -T0` (-T0 = all cores).
  * Targets (PASS/MISS, never fatal): anemos pack <= 1 s for this content, >= 10x faster
    than dracut, image no larger than dracut's.
  * "skipped: <reason>" marks a measurement that could not be made on this host.
EOF

# ---------------------------------------------------------------------------------------
say ""
say "== setup"
if (( INSTALL_DEPS )); then
    [[ $EUID -eq 0 ]] || die "--install-deps needs root"
    want=()
    command -v hyperfine >/dev/null || want+=(hyperfine)
    command -v dracut >/dev/null || want+=(dracut-core)
    command -v mkinitramfs >/dev/null || want+=(initramfs-tools)
    [[ -x /bin/busybox ]] || want+=(busybox-static)
    command -v zstd >/dev/null || want+=(zstd)
    if (( ${#want[@]} )); then
        note "installing: ${want[*]}"
        apt-get install -y --no-install-recommends "${want[@]}" >"$WORK/apt.log" 2>&1 \
            || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y --no-install-recommends "${want[@]}" >"$WORK/apt.log" 2>&1; } \
            || { tail -n 5 "$WORK/apt.log" >&2; die "apt-get install ${want[*]} failed"; }
    fi
fi

if [[ -n "${ANEMOS:-}" ]]; then
    [[ -x "$ANEMOS" ]] || die "ANEMOS=$ANEMOS is not executable"
else
    ANEMOS="$REPO/target/x86_64-unknown-linux-musl/release/anemos"
    if (( BUILD )); then
        note "cargo build --release"
        (cd "$REPO" && cargo build --release --quiet 2>"$WORK/build.log") \
            || { tail -n 20 "$WORK/build.log" >&2; die "cargo build --release failed"; }
    fi
    [[ -x "$ANEMOS" ]] || die "$ANEMOS not found (build it, or set ANEMOS=PATH)"
fi
# Benchmark a private copy: a rebuild of target/ during the run must not change what is timed.
cp "$ANEMOS" "$WORK/anemos"
note "anemos: $("$WORK/anemos" --version 2>/dev/null | head -n 1) ($ANEMOS, $(stat -c %s "$ANEMOS") bytes; timed from a copy)"
ANEMOS="$WORK/anemos"

"$REPO/qemu-tests/fetch-kernel.sh" >"$WORK/fetch.out" 2>"$WORK/fetch.err" \
    || { cat "$WORK/fetch.err" >&2; die "qemu-tests/fetch-kernel.sh failed"; }
RELEASE="$(tail -n 1 "$WORK/fetch.out")"
KCACHE="${ANEMOS_CACHE:-$REPO/qemu-tests/cache}/kernel"
MODDIR="$(readlink -f "$KCACHE/modules")"
KCONFIG="$MODDIR/../../../boot/config-$RELEASE"
[[ -f "$MODDIR/modules.dep" ]] || die "no modules.dep in $MODDIR"
note "kernel: $RELEASE (modules: $MODDIR)"

HAVE_HYPERFINE=0
command -v hyperfine >/dev/null && [[ -z "${BENCH_NO_HYPERFINE:-}" ]] && HAVE_HYPERFINE=1
note "timing with: $( ((HAVE_HYPERFINE)) && hyperfine --version || echo "median of N runs (hyperfine not installed or BENCH_NO_HYPERFINE set)")"
note "host: $(nproc) cores, $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
load_report() {   # other work on the machine skews every number: say how much there was
    local top
    top="$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 >= 20 {printf "%s %s%%, ", $2, $1}' | sed 's/, $//')"
    note "load average $1: $(cut -d' ' -f1-3 /proc/loadavg)${top:+; busy now: $top}"
    if awk -v n="$(nproc)" '{exit !($1 > 0.5)}' /proc/loadavg; then
        note "WARNING: the machine was not idle; rerun on a quiet machine for stable numbers"
    fi
}
load_report "before"
note "runs: $FAST_RUNS for anemos and the inspect tools, $SLOW_RUNS for dracut and mkinitramfs"

# busybox tools root (cached): bin/busybox + one symlink per applet.
BUSYBOX=/bin/busybox
BBROOT="$CACHE/bbroot"
if [[ ! -x "$BUSYBOX" ]]; then
    BBROOT=""
    note "skipped: $BUSYBOX missing (apt-get install busybox-static); nothing to compare"
    exit 0
fi
if ! cmp -s "$BUSYBOX" "$BBROOT/bin/busybox" 2>/dev/null; then
    rm -rf "$BBROOT"
    mkdir -p "$BBROOT/bin"
    cp "$BUSYBOX" "$BBROOT/bin/busybox"
    for a in $("$BUSYBOX" --list); do
        [[ "$a" == busybox ]] || ln -s busybox "$BBROOT/bin/$a"
    done
fi
note "busybox tools root: $BBROOT ($(find "$BBROOT/bin" -type l | wc -l) applet links)"

# Make /lib/modules/$RELEASE and /boot/config-$RELEASE exist for dracut/mkinitramfs.
HOST_TREE_OK=1
place_tree() {
    local dst="/lib/modules/$RELEASE"
    if [[ -e "$dst/$MARKER" ]]; then rm -rf -- "$dst"; fi   # left by a killed run
    if [[ -d "$dst" ]]; then
        if cmp -s "$dst/modules.order" "$MODDIR/modules.order" && cmp -s "$dst/modules.builtin" "$MODDIR/modules.builtin"; then
            note "host already has $dst (same kernel build as the fetched tree); using it"
        else
            note "WARNING: host $dst differs from the fetched tree; mkinitramfs will read the host's"
        fi
        return 0
    fi
    if [[ $EUID -ne 0 ]]; then
        HOST_TREE_OK=0
        note "cannot place $dst (not root)"
        return 0
    fi
    mkdir -p /lib/modules
    PLACED+=("$dst")
    # Hard links when on the same filesystem (instant), else a real copy.
    cp -al "$MODDIR" "$dst" 2>/dev/null || { rm -rf -- "$dst"; cp -a "$MODDIR" "$dst"; }
    : >"$dst/$MARKER"
    note "placed $dst for this run (removed on exit)"
}
place_config() {
    local dst="/boot/config-$RELEASE"
    [[ -e "$dst" ]] && return 0
    if [[ $EUID -ne 0 || ! -f "$KCONFIG" ]]; then
        note "no $dst: mkinitramfs will refuse zstd"
        return 0
    fi
    PLACED+=("$dst")
    ln -s "$(readlink -f "$KCONFIG")" "$dst"
    note "placed $dst -> fetched package's config (removed on exit)"
}
place_tree
place_config

# ---------------------------------------------------------------------------------------
# Measurement helpers.

# bench LABEL RUNS CMD... : runs CMD once untimed (its stderr kept in $WORK/LABEL.err), then
# RUNS timed runs. Sets MS (median, ms) and prints one line. Returns 1 if the untimed run failed.
MS=""; CPU=""
bench() {
    local label="$1" runs="$2"; shift 2
    local cmd; cmd="$(printf '%q ' "$@")"
    local err="$WORK/$label.err"
    MS=""; CPU="-"
    if ! "$@" >/dev/null 2>"$err"; then
        printf '  %-28s FAILED: %s\n' "$label" "$(grep -v '^\s*$' "$err" | tail -n 1)"
        return 1
    fi
    if (( HAVE_HYPERFINE )); then
        if ! hyperfine --shell=bash --style none --runs "$runs" --warmup 0 --export-csv "$WORK/$label.csv" -- "$cmd" >/dev/null 2>"$WORK/$label.hf"; then
            printf '  %-28s FAILED under hyperfine: %s\n' "$label" "$(tail -n 1 "$WORK/$label.hf")"
            return 1
        fi
        # command,mean,stddev,median,user,system,min,max (seconds)
        local line; line="$(tail -n 1 "$WORK/$label.csv")"
        MS="$(awk -F, '{printf "%d", $(NF-4)*1000 + 0.5}' <<<"$line")"
        CPU="$(awk -F, '{printf "%d", ($(NF-3) + $(NF-2))*1000 + 0.5}' <<<"$line")"
        printf '  %-28s median %6d ms  (min %d, max %d, user %d, sys %d; %d runs)\n' "$label" "$MS" \
            "$(awk -F, '{printf "%d", $(NF-1)*1000+0.5}' <<<"$line")" "$(awk -F, '{printf "%d", $NF*1000+0.5}' <<<"$line")" \
            "$(awk -F, '{printf "%d", $(NF-3)*1000+0.5}' <<<"$line")" "$(awk -F, '{printf "%d", $(NF-2)*1000+0.5}' <<<"$line")" "$runs"
    else
        local i t0 t1 times=()
        for ((i = 0; i < runs; i++)); do
            t0=$(date +%s%N); "$@" >/dev/null 2>&1; t1=$(date +%s%N)
            times+=($(( (t1 - t0) / 1000000 )))
        done
        MS="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}')"
        printf '  %-28s median %6d ms  (runs: %s)\n' "$label" "$MS" "${times[*]}"
    fi
}

INSPECT_OK=0
# Uncompressed cpio bytes of IMG: summed over `anemos inspect` segments, else decompressed.
cpio_size() {
    local img="$1"
    if (( INSPECT_OK )); then
        "$ANEMOS" inspect "$img" 2>/dev/null | awk '/^segment /{for (i = 2; i < NF; i++) if ($i == "bytes" && $(i+1) == "uncompressed") s += $(i-1)} END {print s + 0}'
        return
    fi
    local magic; magic="$(head -c 4 "$img" | od -An -tx1 | tr -d ' \n')"
    case "$magic" in
        28b52ffd) zstd -dcq "$img" | wc -c ;;
        1f8b*) gzip -dc "$img" | wc -c ;;
        fd377a58) xz -dc "$img" | wc -c ;;
        3037303*) stat -c %s "$img" ;;
        *) echo "?" ;;
    esac
}

# content IMG: one-line breakdown of what the bytes are (needs anemos inspect).
content() {
    local img="$1"
    (( INSPECT_OK )) || { echo "(no breakdown: anemos inspect unavailable)"; return; }
    "$ANEMOS" inspect "$img" 2>/dev/null | awk '
        /^segment / {next}
        {n++}
        $1 ~ /^-/ {
            size = $4; path = $5; files++
            if (path ~ /\.ko(\.(xz|zst|gz))?$/) {ko++; kob += size}
            else if (path ~ /\.so(\.[0-9.]+)?$/ || path ~ /\/ld-linux/) {so++; sob += size}
            else if (path ~ /(^|\/)init$/) {initb += size}
            else {ob += size}
        }
        END {
            printf "%d entries, %d files: %d modules %d KiB, %d shared libs %d KiB, /init %d KiB, other files %d KiB\n",
                n, files, ko, kob/1024, so, sob/1024, initb/1024, ob/1024
        }'
}

# Result table rows: label|ms|image|cpio|cpu ms (CPU of the last bench unless given)
ROWS=()
add_row() { ROWS+=("$1|$2|$3|$4|${5:-$CPU}"); }

# ---------------------------------------------------------------------------------------
say ""
hr
say "== 1. pack: busybox + /sbin/mke2fs (+ shared libs) + virtio_blk ext4 vfat, kernel $RELEASE"
hr
MODS=(virtio_blk ext4 vfat)

# --binary: the ELF closure. Until it lands, emulate it with --add of ldd's closure so the
# content stays comparable (and say so).
MKE2FS_ARGS=(--binary /sbin/mke2fs)
ANEMOS_BINARY_MODE="--binary"
if ! "$ANEMOS" pack -o "$WORK/probe.img" --binary /sbin/mke2fs >/dev/null 2>"$WORK/probe.err"; then
    note "anemos pack --binary /sbin/mke2fs failed: $(tail -n 1 "$WORK/probe.err")"
    note "falling back to --add of mke2fs and its ldd closure (rows marked '(ldd)')"
    MKE2FS_ARGS=(--add /sbin/mke2fs:/sbin/mke2fs)
    while read -r path; do
        MKE2FS_ARGS+=(--add "$(readlink -f "$path"):$path")
    done < <(ldd /sbin/mke2fs | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
    ANEMOS_BINARY_MODE="(ldd)"
fi
rm -f "$WORK/probe.img"

if "$ANEMOS" inspect "$BBROOT/bin/busybox" >/dev/null 2>"$WORK/inspect-probe.err" || ! grep -q "not implemented" "$WORK/inspect-probe.err"; then
    INSPECT_OK=1
fi

ANEMOS_BASE=(pack --rootfs "$BBROOT" "${MKE2FS_ARGS[@]}" --kernel-modules "$MODDIR" --module "${MODS[@]}")
sfx=""; [[ "$ANEMOS_BINARY_MODE" == "(ldd)" ]] && sfx=" (ldd)"

say ""
say "anemos pack -o OUT --rootfs BBROOT ${MKE2FS_ARGS[*]:0:2}$( ((${#MKE2FS_ARGS[@]} > 2)) && echo " ...") --kernel-modules MODDIR --module ${MODS[*]} [variant flags]"
declare -A VARIANT_ARGS=(
    [zstd-9]=""
    [zstd-3]="--level 3"
    [zstd-15]="--level 15"
    [zstd-19]="--level 19"
    [gzip-9]="--compress gzip"
    [none]="--compress none"
)
ANEMOS_MS=""; ANEMOS_SIZE=""; ANEMOS_CPIO=""
for v in zstd-9 zstd-3 zstd-15 zstd-19 gzip-9 none; do
    out="$WORK/anemos-$v.img"
    read -r -a extra <<<"${VARIANT_ARGS[$v]}"
    runs=$FAST_RUNS
    [[ $v == zstd-19 || $v == zstd-15 ]] && runs=$(( FAST_RUNS < 5 ? FAST_RUNS : 5 ))
    if bench "anemos-$v" "$runs" "$ANEMOS" "${ANEMOS_BASE[@]}" -o "$out" "${extra[@]+"${extra[@]}"}"; then
        size=$(stat -c %s "$out"); cpio=$(cpio_size "$out")
        label="anemos $v"; [[ $v == zstd-9 ]] && label="anemos zstd-9 (default)"
        add_row "$label$sfx" "$MS" "$size" "$cpio"
        if [[ $v == zstd-9 ]]; then
            ANEMOS_MS=$MS; ANEMOS_SIZE=$size; ANEMOS_CPIO=$cpio
            note "content: $(content "$out")"
            note "anemos says: $(grep '^anemos: wrote' "$WORK/anemos-$v.err" | sed 's/^anemos: //')"
        fi
    else
        add_row "anemos $v$sfx" "-" "-" "-" "-"
    fi
done

# dracut --------------------------------------------------------------------------------
say ""
say "dracut --no-hostonly --no-early-microcode -m base --install '/sbin/mke2fs /bin/busybox' --drivers 'virtio_blk vfat' --compress zstd --kmoddir MODDIR"
DRACUT_MS=""; DRACUT_SIZE=""; DRACUT_CPIO=""
if ! command -v dracut >/dev/null; then
    say "  skipped: dracut not installed (apt-get install -y dracut-core, or --install-deps)"
    add_row "dracut" "skipped" "-" "-" "-"
else
    note "dracut $(dracut --version 2>/dev/null | awk '{print $NF; exit}'); its zstd command: $(sed -n 's/^ *compress="\$DRACUT_COMPRESS_ZSTD \(.*\)"$/zstd \1/p' "$(command -v dracut)" | head -n 1)"
    mkdir -p "$WORK/dracut-tmp"
    DRACUT=(dracut --force --quiet --no-hostonly --no-early-microcode --kver "$RELEASE" -m base
        --install "/sbin/mke2fs /bin/busybox" --drivers "virtio_blk vfat" --kmoddir "$MODDIR"
        --tmpdir "$WORK/dracut-tmp")
    if bench dracut-zstd "$SLOW_RUNS" "${DRACUT[@]}" --compress zstd "$WORK/dracut.img"; then
        DRACUT_MS=$MS; DRACUT_SIZE=$(stat -c %s "$WORK/dracut.img"); DRACUT_CPIO=$(cpio_size "$WORK/dracut.img")
        add_row "dracut zstd -15 -T0" "$DRACUT_MS" "$DRACUT_SIZE" "$DRACUT_CPIO"
        note "content: $(content "$WORK/dracut.img")"
        if (( INSPECT_OK )); then
            note "largest files: $("$ANEMOS" inspect "$WORK/dracut.img" | awk '$1 ~ /^-/ {print $4, $5}' | sort -rn | head -n 6 | awk '{printf "%s %d KiB, ", $2, $1/1024}' | sed 's/, $//')"
            note "dracut extras: $("$ANEMOS" inspect "$WORK/dracut.img" | awk '$1 ~ /^-/ && ($5 ~ /bin\/(bash|udevadm|kmod|dracut-util)$/ || $5 ~ /libsystemd-shared|libcrypto/) {n = split($5, p, "/"); printf "%s %d KiB, ", p[n], $4/1024} $5 ~ /\.rules$/ {r++} $5 ~ /\.sh$/ {sh++} END {printf "%d udev rules, %d shell scripts", r, sh}')"
        fi
        if bench dracut-no-compress "$SLOW_RUNS" "${DRACUT[@]}" --no-compress "$WORK/dracut-raw.img"; then
            add_row "dracut --no-compress" "$MS" "$(stat -c %s "$WORK/dracut-raw.img")" "$(stat -c %s "$WORK/dracut-raw.img")"
            if bench "zstd-15-T0-on-dracut-cpio" "$SLOW_RUNS" zstd -q -15 -T0 -f "$WORK/dracut-raw.img" -o "$WORK/dracut-raw.zst"; then
                add_row "  zstd -15 -T0 alone on that cpio" "$MS" "$(stat -c %s "$WORK/dracut-raw.zst")" "-"
            fi
            note "(dracut's time without compression, and its compressor alone on its cpio)"
        fi
    else
        add_row "dracut" "failed" "-" "-" "-"
    fi
fi

# mkinitramfs ---------------------------------------------------------------------------
say ""
say "mkinitramfs -d CONFDIR -o OUT $RELEASE  (MODULES=list: ${MODS[*]}; COMPRESS=zstd; BUSYBOX=y; hook: copy_exec /sbin/mke2fs)"
MKI_MS=""
mk_confdir() {   # mk_confdir DIR MODULES-POLICY
    local d="$1" policy="$2"
    mkdir -p "$d/conf.d" "$d/scripts" "$d/hooks"
    cat >"$d/initramfs.conf" <<EOF
MODULES=$policy
BUSYBOX=y
KEYMAP=n
COMPRESS=zstd
DEVICE=
NFSROOT=auto
RUNSIZE=10%
FSTYPE=auto
RESUME=none
EOF
    : >"$d/modules"
}
if ! command -v mkinitramfs >/dev/null; then
    say "  skipped: mkinitramfs not installed (apt-get install -y initramfs-tools-core, or --install-deps)"
    add_row "mkinitramfs" "skipped" "-" "-" "-"
elif (( ! HOST_TREE_OK )); then
    say "  skipped: /lib/modules/$RELEASE missing and cannot be placed without root"
    add_row "mkinitramfs" "skipped" "-" "-" "-"
else
    CONF="$WORK/mki-conf"
    mk_confdir "$CONF" list
    printf '%s\n' "${MODS[@]}" >"$CONF/modules"
    # The system hooks (zz-busybox among them) run before CONFDIR/hooks, and zz-busybox
    # links every busybox applet name, sbin/mke2fs included, so copy_exec would skip the
    # real mke2fs: remove the applet link first.
    cat >"$CONF/hooks/mke2fs" <<'EOF'
#!/bin/sh
case "$1" in prereqs) echo ""; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
rm -f "${DESTDIR}/usr/sbin/mke2fs" "${DESTDIR}/sbin/mke2fs"
copy_exec /sbin/mke2fs /sbin
EOF
    chmod +x "$CONF/hooks/mke2fs"
    mki_level="$(sed -n 's/^zstd)[[:space:]]*compresslevel="-\${compresslevel:-\([0-9]*\)}".*/\1/p' "$(command -v mkinitramfs)" | head -n 1)"
    note "its zstd command: zstd -q -${mki_level:-?} -T0 (-T0 unless SOURCE_DATE_EPOCH is set)"
    if bench mkinitramfs-zstd "$SLOW_RUNS" mkinitramfs -d "$CONF" -o "$WORK/mki.img" "$RELEASE"; then
        MKI_MS=$MS
        add_row "mkinitramfs zstd -9 -T0" "$MS" "$(stat -c %s "$WORK/mki.img")" "$(cpio_size "$WORK/mki.img")"
        note "content: $(content "$WORK/mki.img")"
        if (( INSPECT_OK )); then
            note "mke2fs in image: $("$ANEMOS" inspect "$WORK/mki.img" | awk '$5 ~ /sbin\/mke2fs$/ {print $4 " bytes"}') (host's: $(stat -c %s /sbin/mke2fs) bytes)"
            note "modules in image (the system hooks add dm/md/raid ones): $("$ANEMOS" inspect "$WORK/mki.img" | awk '$5 ~ /\.ko$/ {n = split($5, p, "/"); printf "%s ", p[n]}' | sed 's/\.ko//g')"
        fi
        grep -h '^W:\|^E:' "$WORK/mkinitramfs-zstd.err" | sort -u | sed 's/^/  mkinitramfs said: /' || true
    else
        add_row "mkinitramfs" "failed" "-" "-" "-"
    fi
fi

# Table ---------------------------------------------------------------------------------
say ""
hr
say "== pack results (time = median wall clock; vs dracut = dracut's time / this time; size/drac = this image / dracut's)"
hr
printf '%-34s %9s %9s %12s %12s %10s %10s\n' "tool" "time ms" "cpu ms" "image B" "cpio B" "vs dracut" "size/drac"
for r in "${ROWS[@]}"; do
    IFS='|' read -r label ms size cpio cpu <<<"$r"
    sp="-"; sr="-"
    if [[ -n "$DRACUT_MS" && "$ms" =~ ^[0-9]+$ && "$ms" -gt 0 ]]; then sp="$(awk -v d="$DRACUT_MS" -v a="$ms" 'BEGIN {printf "%.1fx", d / a}')"; fi
    if [[ -n "$DRACUT_SIZE" && "$size" =~ ^[0-9]+$ ]]; then sr="$(awk -v d="$DRACUT_SIZE" -v a="$size" 'BEGIN {printf "%.2f", a / d}')"; fi
    printf '%-34s %9s %9s %12s %12s %10s %10s\n' "$label" "$ms" "$cpu" "$size" "$cpio" "$sp" "$sr"
done

say ""
say "targets (anemos zstd-9 default$sfx):"
verdict() { if [[ "$1" == 1 ]]; then echo PASS; else echo MISS; fi; }
if [[ -n "$ANEMOS_MS" ]]; then
    printf '  %-44s %s  (%d ms)\n' "pack <= 1 s" "$(verdict "$(( ANEMOS_MS <= 1000 ))")" "$ANEMOS_MS"
else
    say "  pack <= 1 s                                  skipped: anemos pack failed"
fi
if [[ -n "$ANEMOS_MS" && -n "$DRACUT_MS" ]]; then
    printf '  %-44s %s  (%s)\n' ">= 10x faster than dracut" "$(verdict "$(( DRACUT_MS >= 10 * ANEMOS_MS ))")" \
        "$(awk -v d="$DRACUT_MS" -v a="$ANEMOS_MS" 'BEGIN {printf "%.1fx: %d ms vs %d ms", d / a, a, d}')"
    printf '  %-44s %s  (%s)\n' "image no larger than dracut's" "$(verdict "$(( ANEMOS_SIZE <= DRACUT_SIZE ))")" \
        "$(awk -v d="$DRACUT_SIZE" -v a="$ANEMOS_SIZE" 'BEGIN {printf "%d vs %d bytes, ratio %.2f", a, d, a / d}')"
else
    say "  >= 10x faster than dracut                    skipped: no dracut measurement"
    say "  image no larger than dracut's                skipped: no dracut measurement"
fi
row_ms() {   # row_ms LABEL-PREFIX: the time column of the first matching row
    local r l m
    for r in "${ROWS[@]}"; do
        IFS='|' read -r l m _ <<<"$r"
        if [[ "$l" == "$1"* ]]; then echo "$m"; return 0; fi
    done
    return 0
}
NONE_MS="$(row_ms "anemos none")"
DRAW_MS="$(row_ms "dracut --no-compress")"
if [[ "$NONE_MS" =~ ^[0-9]+$ && "$DRAW_MS" =~ ^[0-9]+$ && "$NONE_MS" -gt 0 ]]; then
    say "  info: without compression: anemos $NONE_MS ms vs dracut $DRAW_MS ms ($(awk -v d="$DRAW_MS" -v a="$NONE_MS" 'BEGIN {printf "%.0fx", d / a}')); compression is the rest of each tool's time"
fi
[[ "$ANEMOS_BINARY_MODE" == "(ldd)" ]] && say "  note: anemos --binary was unavailable; mke2fs's closure was added with --add from ldd"

# ---------------------------------------------------------------------------------------
say ""
hr
say "== 2. inspect: anemos inspect vs lsinitramfs on a big Debian initrd (mkinitramfs MODULES=most)"
hr
BIG="$CACHE/initrd-most-$RELEASE.img"
if (( ! INSPECT_OK )); then
    say "  skipped: anemos inspect is not implemented in this build ($(tail -n 1 "$WORK/inspect-probe.err"))"
elif ! command -v lsinitramfs >/dev/null; then
    say "  skipped: lsinitramfs not installed (apt-get install -y initramfs-tools-core)"
else
    if [[ ! -s "$BIG" ]]; then
        if ! command -v mkinitramfs >/dev/null || (( ! HOST_TREE_OK )); then
            say "  skipped: cannot build the big initrd (mkinitramfs or /lib/modules/$RELEASE missing)"
            BIG=""
        else
            mk_confdir "$WORK/most-conf" most
            t0=$(date +%s%N)
            if mkinitramfs -d "$WORK/most-conf" -o "$BIG.tmp" "$RELEASE" >/dev/null 2>"$WORK/most.err"; then
                mv "$BIG.tmp" "$BIG"
                note "built $BIG in $(( ($(date +%s%N) - t0) / 1000000 )) ms (cached for later runs)"
            else
                rm -f "$BIG.tmp"
                say "  skipped: mkinitramfs MODULES=most failed: $(tail -n 1 "$WORK/most.err")"
                BIG=""
            fi
        fi
    else
        note "using cached $BIG"
    fi
    if [[ -n "$BIG" ]]; then
        big_size=$(stat -c %s "$BIG"); big_cpio=$(cpio_size "$BIG")
        note "image: $big_size bytes ($(( big_size / 1048576 )) MiB), $big_cpio bytes uncompressed ($(( big_cpio / 1048576 )) MiB); $("$ANEMOS" inspect "$BIG" | grep '^segment' | sed 's/^segment [0-9]*: //' | paste -sd';')"
        n_an=$("$ANEMOS" inspect "$BIG" | grep -vc '^segment')
        n_ls=$(lsinitramfs "$BIG" | grep -vc '^$')
        note "entries listed: anemos inspect $n_an, lsinitramfs $n_ls"
        IN_MS=""; LS_MS=""; LSL_MS=""; IN_CPU="-"; LS_CPU="-"; LSL_CPU="-"
        if bench "anemos-inspect" "$FAST_RUNS" "$ANEMOS" inspect "$BIG"; then IN_MS=$MS; IN_CPU=$CPU; fi
        if bench "lsinitramfs" "$FAST_RUNS" lsinitramfs "$BIG"; then LS_MS=$MS; LS_CPU=$CPU; fi
        if bench "lsinitramfs-l" "$FAST_RUNS" lsinitramfs -l "$BIG"; then LSL_MS=$MS; LSL_CPU=$CPU; fi
        say ""
        printf '%-34s %9s %9s %10s\n' "tool" "time ms" "cpu ms" "vs anemos"
        for pair in "anemos inspect|${IN_MS}|$IN_CPU" "lsinitramfs|${LS_MS}|$LS_CPU" "lsinitramfs -l|${LSL_MS}|$LSL_CPU"; do
            IFS='|' read -r label ms cpu <<<"$pair"
            rel="-"
            if [[ -n "$ms" && -n "${IN_MS:-}" && "${IN_MS:-0}" -gt 0 ]]; then rel="$(awk -v a="$IN_MS" -v b="$ms" 'BEGIN {printf "%.1fx", b / a}')"; fi
            printf '%-34s %9s %9s %10s\n' "$label" "${ms:-failed}" "$cpu" "$rel"
        done
    fi
fi

say ""
load_report "after"
say "done."
