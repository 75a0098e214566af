#!/bin/sh
# The commands typed at the recovery shell by qemu-tests/bench/debian-deploy.toml, packed into
# the deploy image as /bench.sh and run with busybox sh. Each round prints one result line
# (BENCH-... <seconds>), timed with /proc/uptime (10 ms resolution), or BENCH-FAIL.
#
#   sh /bench.sh sha    sha256sum of the payload's archive (busybox sha256sum)
#   sh /bench.sh bare   the bare deploy: mke2fs on the root partition that anemos created,
#                       mount it, `zstd -dc | tar -x` the payload's archive onto it. The timed
#                       window ends when tar exits, as anemos's install stage does (neither
#                       syncs); the umount that writes the data back is timed separately.
# Before the bare round, the filesystems anemos left mounted (its finish stage did not run)
# are unmounted, which writes their data back outside every timed window.
ARCHIVE=/payload/rootfs.tar.zst
MNT=/run/bench-bare

now() { cut -d' ' -f1 /proc/uptime; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.2f", e - s }'; }
fail() { echo "BENCH-FAIL $*"; exit 1; }
mounted() { grep -q " $1 " /proc/mounts; }

case "$1" in
sha)
    s=$(now)
    sha256sum "$ARCHIVE" >/tmp/bench.sha || fail "sha256sum $ARCHIVE"
    e=$(now)
    echo "BENCH-SHA256SUM-SECONDS $(secs "$s" "$e") $(cut -c1-16 /tmp/bench.sha)"
    ;;
bare)
    s=$(now)
    for m in /run/anemos/target/boot /run/anemos/target "$MNT"; do
        if mounted "$m"; then umount "$m" || fail "umount $m"; fi
    done
    e=$(now)
    echo "BENCH-UNMOUNT-SECONDS $(secs "$s" "$e")"
    dev=$(readlink -f /dev/disk/by-partlabel/root)
    [ -b "$dev" ] || fail "no root partition (/dev/disk/by-partlabel/root)"
    mkdir -p "$MNT"
    set -o pipefail
    t0=$(now)
    /sbin/mke2fs -t ext4 -F -q "$dev" || fail "mke2fs $dev"
    t1=$(now)
    mount -t ext4 "$dev" "$MNT" || fail "mount $dev"
    /usr/bin/zstd -dc "$ARCHIVE" | /usr/bin/tar -x --numeric-owner -f - -C "$MNT" || fail "zstd -dc | tar -x"
    t2=$(now)
    umount "$MNT" || fail "umount $MNT"
    t3=$(now)
    echo "BENCH-BARE-SECONDS $(secs "$t0" "$t2") mke2fs $(secs "$t0" "$t1") unpack $(secs "$t1" "$t2") umount $(secs "$t2" "$t3") dev $dev"
    ;;
*)
    fail "usage: sh /bench.sh sha|bare"
    ;;
esac
