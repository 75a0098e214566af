#!/bin/sh
# Runs chrooted in the freshly unpacked target, after anemos wrote /etc/fstab,
# /etc/mdadm/mdadm.conf and /etc/crypttab. The initrd that came with the archive was built
# without them; rebuild it so that it assembles the array and unlocks the root container.
set -eu
grep -q '^ARRAY' /etc/mdadm/mdadm.conf
grep -q '^cryptroot ' /etc/crypttab
# MODULES=dep: only the modules this machine needs (found from the running kernel's view of
# the disks and the target's mounts; the deploy image runs on the machine itself), which makes
# the initramfs several times smaller and faster to build than Debian's default "most".
mkdir -p /etc/initramfs-tools/conf.d
echo MODULES=dep >/etc/initramfs-tools/conf.d/anemos-modules
update-initramfs -u -k all
# The rebuilt initrd must carry both: refuse to finish a deploy that could not boot.
for i in /boot/initrd.img-*; do
    files="$(lsinitramfs "$i")"
    for f in cryptroot/crypttab etc/mdadm/mdadm.conf; do
        printf '%s\n' "$files" | grep -qx "$f" || { echo "no $f in $i" >&2; exit 1; }
    done
done
echo "provision: initramfs rebuilt with the array and the encrypted root"
