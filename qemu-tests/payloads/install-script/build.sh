#!/bin/sh
# Test install script: unpacks the example rootfs with busybox tar into $ANEMOS_ROOT.
set -e
echo "script install: cwd=$(pwd) root=$ANEMOS_ROOT esp=$ANEMOS_ESP root-partuuid=$ANEMOS_PART_ROOT_PARTUUID"
tar -xf rootfs.tar -C "$ANEMOS_ROOT"
echo "script install: done"
