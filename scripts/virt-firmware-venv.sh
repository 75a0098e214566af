#!/usr/bin/env bash
# Makes (once) the Python virtualenv with virt-firmware (PyPI; not packaged in Debian 12), whose
# virt-fw-vars reads and edits OVMF variable stores for the UEFI scenarios' host checks
# (qemu-tests/checks/efivars.py), in $ANEMOS_CACHE/virt-firmware-venv (default
# qemu-tests/cache). Prints its directory. Rebuilt when the pins below change.
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=(virt-firmware==26.10 pefile==2024.8.26)
venv="${ANEMOS_CACHE:-$PWD/qemu-tests/cache}/virt-firmware-venv"
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
pinned_venv "$venv" virt-fw-vars "${PINS[@]}"
