#!/bin/sh
# mmdebstrap by hand, as a user would write it without anemos's builder: the same variant,
# options, packages and mirror as the built-in builder's bootstrap step for
# examples/debian-imgbuild.
set -e
t0=$(date +%s%N)
mmdebstrap --variant=minbase --skip=check/empty --dpkgopt=force-unsafe-io \
    --include=linux-image-cloud-amd64,systemd-sysv,udev,openssh-server,e2fsprogs \
    bookworm "$ANEMOS_ROOT" "deb [trusted=yes] http://10.0.2.100/ ./"
echo "BENCH by-hand mmdebstrap ms=$((($(date +%s%N) - t0) / 1000000))"
