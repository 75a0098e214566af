#!/bin/sh
# TEST FIXTURE: runs chrooted in the freshly unpacked target (install.provision). Checks that the
# deploy image's resolver settings (search domain from anemos.toml) are visible in the chroot.
set -e
if grep -q '^search lab.example.org' /etc/resolv.conf && grep -q '^nameserver 10.0.2.3' /etc/resolv.conf; then
    echo "PROVISION-DNS-OK"
else
    echo "PROVISION-DNS-MISSING:"; cat /etc/resolv.conf
    exit 1
fi
