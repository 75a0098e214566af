#!/usr/bin/env bash
# Runs `ansible-test sanity` (all 24 tests of ansible-core's pinned version) on the anemos.fleet
# collection. ansible-test installs each test's requirements from PyPI into virtualenvs of its
# own, kept in qemu-tests/cache/ansible-test-home. It bootstraps pip in them with get-pip.py
# downloaded from ci-files.testing.ansible.com; where only PyPI is reachable, the stand-in
# written below takes its place (pip from Python's own ensurepip, the requested pip from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv="$(scripts/ansible-venv.sh)"
home="$repo/qemu-tests/cache/ansible-test-home"
# The pip version ansible-core 2.18 bootstraps in its test virtualenvs.
getpip="$home/.ansible/test/cache/get_pip_24_2.py"
mkdir -p "$(dirname "$getpip")"
cat > "$getpip" <<'PY'
# Stand-in for get-pip.py: pip from the interpreter's ensurepip, then what was asked from PyPI.
import subprocess
import sys
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--default-pip'])
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args)
PY
cd ansible/ansible_collections/anemos/fleet
HOME="$home" "$venv/bin/ansible-test" sanity --requirements --python "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" "$@"
