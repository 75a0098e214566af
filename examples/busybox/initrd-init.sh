#!/bin/sh
# /init of the initramfs that boots the system deployed from examples/busybox.
#
# scripts/build-example.sh packs it with `anemos pack --init` next to busybox and the
# virtio_pci/virtio_blk modules. It loads the modules listed in /etc/anemos/modules, finds the
# root filesystem named by root= on the kernel command line, mounts it read-only on /newroot
# and switch_roots into it. On any failure it says why and starts a rescue shell.
#
# Kernel command line read here:
#   root=PARTUUID=<guid>   GPT partition GUID (read from the partition table, see below), or
#                          an MBR id <disk signature>-<partition number in hex>
#   root=PARTLABEL=<name>  GPT partition name (the kernel's PARTNAME)
#   root=LABEL=<label>     filesystem label (busybox findfs)
#   root=UUID=<uuid>       filesystem UUID (busybox findfs)
#   root=/dev/<name>       a device node
#   rootfstype=<type>      default ext4
#   rootflags=<options>    extra mount options
#   rw                     mount the root read-write (default read-only)
#   init=<path>            the program to run in the new root (default /sbin/init)
#   rootwait=<seconds>     how long to wait for the root device (default 10)
#
# POSIX sh, run by busybox ash.

PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH

mkdir -p /dev /proc /sys /newroot
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# The image may have no /dev/console node, in which case the kernel could not open one for us.
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

say() { echo "initrd: $*"; }

rescue() {
    say "ERROR: $*"
    say "starting a rescue shell; the root filesystem is not mounted (exit the shell to reboot)"
    sh
    say "rescue shell exited; rebooting"
    sync
    reboot -f
    # reboot -f only returns on failure; PID 1 must never exit.
    while :; do sleep 3600; done
}

# --- kernel modules ------------------------------------------------------------------------
# Manifest lines: "<name> <absolute path> [parameters...]", in load order; "#" starts a comment.
if [ -f /etc/anemos/modules ]; then
    while read -r name path params; do
        case "$name" in '' | '#'*) continue ;; esac
        [ -d "/sys/module/$name" ] && continue   # built in, or already loaded
        # $params is split on purpose: each word is one module parameter.
        # shellcheck disable=SC2086
        if insmod "$path" $params; then
            say "loaded module $name"
        else
            say "warning: could not load module $name ($path)"
        fi
    done </etc/anemos/modules
else
    say "no module manifest (/etc/anemos/modules); relying on built-in drivers"
fi

# --- kernel command line -------------------------------------------------------------------
root="" rootfstype=ext4 rootflags="" mode=ro init=/sbin/init rootwait=10
read -r cmdline </proc/cmdline
for arg in $cmdline; do
    case "$arg" in
        root=*) root=${arg#root=} ;;
        rootfstype=*) rootfstype=${arg#rootfstype=} ;;
        rootflags=*) rootflags=${arg#rootflags=} ;;
        rootwait=*) rootwait=${arg#rootwait=} ;;
        init=*) init=${arg#init=} ;;
        rw) mode=rw ;;
        ro) mode=ro ;;
    esac
done
[ -n "$root" ] || rescue "no root= on the kernel command line ($cmdline)"
case "$rootwait" in '' | *[!0-9]*) rootwait=10 ;; esac

# --- finding the root device ---------------------------------------------------------------

lower() { echo "$1" | tr 'ABCDEF' 'abcdef'; }

# bytes DEV SECTOR_SIZE OFFSET COUNT: COUNT bytes at byte OFFSET of DEV as lowercase hex pairs
# separated by spaces. The read is whole sectors, as block devices want; COUNT bytes must not
# cross a sector boundary (every field read here is aligned).
bytes() {
    dd if="$1" bs="$2" skip=$(($3 / $2)) count=1 2>/dev/null \
        | od -A n -t x1 -v -j $(($3 % $2)) -N "$4" | tr -s ' \n' '  '
}

# le HEX_PAIRS...: the little-endian integer made of the given bytes.
le() {
    _v=""
    for _b in "$@"; do _v="$_b$_v"; done
    echo $((0x${_v:-0}))
}

# guid HEX_PAIRS (16 of them): the GUID in its text form. GPT stores the first three fields
# little-endian and the last two as they are.
guid() {
    echo "$4$3$2$1-$6$5-$8$7-$9${10}-${11}${12}${13}${14}${15}${16}"
}

# partuuid_of PART_SYSFS_DIR DISK_NAME: the PARTUUID of a partition, as the kernel computes it
# for root=PARTUUID=: the GPT unique partition GUID, or for an MBR disk
# <disk signature, 8 hex digits>-<partition number, 2 hex digits>. Prints nothing if unknown.
# The kernel does not export this in sysfs (a partition's uevent has only PARTN and PARTNAME),
# and busybox has no blkid, so the partition table is read directly.
partuuid_of() {
    _dev=/dev/$2
    _ss=$(cat "/sys/class/block/$2/queue/logical_block_size" 2>/dev/null) || _ss=512
    _n=$(cat "$1/partition")
    # GPT header at LBA 1: "EFI PART", partition entries' first LBA at byte 72 (8 bytes), size
    # of one entry at byte 84 (4 bytes). The unique partition GUID is at byte 16 of an entry.
    # shellcheck disable=SC2046
    set -- $(bytes "$_dev" "$_ss" "$_ss" 92)
    if [ $# -eq 92 ] && [ "$1$2$3$4$5$6$7$8" = "4546492050415254" ]; then
        shift 72
        _lba=$(le "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8")
        shift 12
        _esize=$(le "$1" "$2" "$3" "$4")
        # shellcheck disable=SC2046
        set -- $(bytes "$_dev" "$_ss" $((_lba * _ss + (_n - 1) * _esize + 16)) 16)
        [ $# -eq 16 ] && guid "$@"
        return 0
    fi
    # MBR: boot signature 55 aa at byte 510, disk signature at byte 440.
    # shellcheck disable=SC2046
    set -- $(bytes "$_dev" 512 440 72)
    if [ $# -eq 72 ] && [ "${71}${72}" = "55aa" ]; then
        printf '%s-%02x\n' "$4$3$2$1" "$_n"
    fi
}

# find_partition KEY VALUE: the /dev node of the partition whose PARTUUID (KEY=partuuid) or
# GPT name (KEY=partlabel) is VALUE.
find_partition() {
    for _disk in /sys/class/block/*; do
        [ -f "$_disk/partition" ] && continue          # a partition, not a disk
        _dname=${_disk##*/}
        for _part in "$_disk/$_dname"*; do
            [ -f "$_part/partition" ] || continue
            case "$1" in
                partuuid) _have=$(partuuid_of "$_part" "$_dname") ;;
                partlabel) _have=$(sed -n 's/^PARTNAME=//p' "$_part/uevent") ;;
            esac
            if [ -n "$_have" ] && [ "$(lower "$_have")" = "$(lower "$2")" ]; then
                echo "/dev/${_part##*/}"
                return 0
            fi
        done
    done
    return 1
}

resolve_root() {
    case "$root" in
        PARTUUID=*) find_partition partuuid "${root#PARTUUID=}" ;;
        PARTLABEL=*) find_partition partlabel "${root#PARTLABEL=}" ;;
        LABEL=* | UUID=*) findfs "$root" 2>/dev/null ;;
        /dev/*) [ -b "$root" ] && echo "$root" ;;
        *) return 1 ;;
    esac
}

case "$root" in
    PARTUUID=* | PARTLABEL=* | LABEL=* | UUID=* | /dev/*) ;;
    *) rescue "unsupported root=$root (use PARTUUID=, PARTLABEL=, LABEL=, UUID= or /dev/...)" ;;
esac

say "waiting up to ${rootwait}s for root=$root"
dev=""
deadline=$(($(date +%s) + rootwait))
while :; do
    dev=$(resolve_root) && [ -n "$dev" ] && [ -b "$dev" ] && break
    dev=""
    [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 0.2
done
if [ -z "$dev" ]; then
    echo "initrd: block devices present:"
    cat /proc/partitions
    rescue "root device root=$root not found after ${rootwait}s"
fi
say "root=$root is $dev"

# --- mounting it and switching to it -------------------------------------------------------
opts=$mode
[ -n "$rootflags" ] && opts="$opts,$rootflags"
mount -t "$rootfstype" -o "$opts" "$dev" /newroot \
    || rescue "could not mount $dev (-t $rootfstype -o $opts) on /newroot"
say "mounted $dev on /newroot ($rootfstype, $opts)"

if [ ! -e "/newroot$init" ] && [ ! -L "/newroot$init" ]; then
    umount /newroot
    rescue "$init does not exist on $dev"
fi

# Hand /dev, /proc and /sys over to the new root when it has mount points for them.
for fs in dev proc sys; do
    if [ -d "/newroot/$fs" ]; then
        mount --move "/$fs" "/newroot/$fs" 2>/dev/null || umount -l "/$fs" 2>/dev/null
    else
        umount -l "/$fs" 2>/dev/null
    fi
done

say "switching to $dev, running $init"
# switch_root must run as PID 1, so it replaces this shell; should it fail after all the checks
# above, PID 1 exits and the kernel panics with its message.
exec switch_root /newroot "$init"
