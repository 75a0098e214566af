#!/usr/bin/env bash
# Makes (once) the Python virtualenv the Ansible collection is tested with: ansible-core and
# pytest at pinned versions from PyPI, in qemu-tests/cache/ansible-venv. Prints its directory.
# Rebuilt when the pins below change.
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=(ansible-core==2.18.12 pytest==8.3.5)
venv="$PWD/qemu-tests/cache/ansible-venv"
stamp="$venv/.pins"
if [[ -x "$venv/bin/ansible-playbook" && -f "$stamp" && "$(cat "$stamp")" == "${PINS[*]}" ]]; then
    echo "$venv"; exit 0
fi
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2
echo "${PINS[*]}" > "$stamp"
echo "$venv"
