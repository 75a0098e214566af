#!/usr/bin/env bash
# Makes (once) the Python virtualenv the Ansible collection is tested with: ansible-core and
# pytest at pinned versions from PyPI, in qemu-tests/cache/ansible-venv. Prints its directory.
# Rebuilt when the pins below change.
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=(ansible-core==2.18.12 pytest==8.3.5)
venv="$PWD/qemu-tests/cache/ansible-venv"
# shellcheck source=scripts/lib/venv.sh
. scripts/lib/venv.sh
pinned_venv "$venv" ansible-playbook "${PINS[@]}"
