#!/usr/bin/env bash
# The main job on the built-in example: build anemos, pack a deploy image (busybox tools root,
# virtio/ext4/vfat modules, the example payload), boot it in QEMU and report the result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python3 qemu-tests/run.py demo
