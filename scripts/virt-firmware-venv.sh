#!/usr/bin/env bash
# Makes (once) the Python virtualenv with virt-firmware (PyPI; not packaged in Debian 12), whose
# virt-fw-vars reads and edits OVMF variable stores for the UEFI scenarios' host checks
# (qemu-tests/checks/efivars.py), in $ANEMOS_CACHE/virt-firmware-venv (default
# qemu-tests/cache). Prints its directory. Rebuilt when the pins below change.
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=(virt-firmware==26.10 pefile==2024.8.26)
venv="${ANEMOS_CACHE:-$PWD/qemu-tests/cache}/virt-firmware-venv"
stamp="$venv/.pins"
if [[ -x "$venv/bin/virt-fw-vars" && -f "$stamp" && "$(cat "$stamp")" == "${PINS[*]}" ]]; then
    echo "$venv"; exit 0
fi
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
echo "${PINS[*]}" > "$stamp"
echo "$venv"
