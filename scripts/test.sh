#!/usr/bin/env bash
# Runs every test: unit and CLI tests (no root, no VM), the Ansible module's unit tests and
# ansible-test sanity, then the QEMU scenarios and the QEMU fleet test (two VMs deployed by
# Ansible). Arguments go to qemu-tests/run.py: scenario names, -j N (scenarios at once; default
# 2 or $ANEMOS_QEMU_JOBS).
# The fleet test runs after the scenarios, on its own (it runs two VMs itself), then the fuzz
# smoke run (scripts/fuzz-smoke.sh: every fuzz target for 20 s, $ANEMOS_FUZZ_SECS to change).
# Naming scenarios runs only those; the name "fleet" selects the fleet test, "fuzz" the fuzz
# smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== unit and CLI tests" >&2
cargo test --release 2>&1
echo "== Ansible module unit tests" >&2
venv="$(scripts/ansible-venv.sh)"
"$venv/bin/python" -m pytest -q ansible/ansible_collections/anemos/fleet/tests/unit
echo "== ansible-test sanity (the collection)" >&2
scripts/ansible-sanity.sh
# Arguments: options for run.py, scenario names, "fleet" for the fleet test and "fuzz" for the
# fuzz smoke run. None: all of it.
opts=(); scenarios=(); fleet=0; fuzz=0; named=0
while (($#)); do
    case "$1" in
        -j|--jobs|--binary) opts+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
        -*) opts+=("$1"); shift ;;
        fleet) fleet=1; named=1; shift ;;
        fuzz) fuzz=1; named=1; shift ;;
        *) scenarios+=("$1"); named=1; shift ;;
    esac
done
((named)) || { fleet=1; fuzz=1; }
if ((!named || ${#scenarios[@]})); then
    echo "== QEMU scenarios" >&2
    python3 qemu-tests/run.py "${opts[@]}" "${scenarios[@]}"
fi
if ((fleet)); then
    echo "== QEMU fleet: Ansible deploys two VMs (qemu-tests/fleet/run_fleet.py)" >&2
    python3 qemu-tests/fleet/run_fleet.py
else
    echo "== QEMU fleet: not run (scenario names given, \"fleet\" not among them)" >&2
fi
if ((fuzz)); then
    echo "== fuzz smoke run: every fuzz target from its seed corpus (scripts/fuzz-smoke.sh)" >&2
    scripts/fuzz-smoke.sh "${ANEMOS_FUZZ_SECS:-20}"
else
    echo "== fuzz smoke run: not run (names given, \"fuzz\" not among them)" >&2
fi
