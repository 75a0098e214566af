#!/usr/bin/env bash
# Runs every test: unit and CLI tests (no root, no VM), then the QEMU scenarios. Arguments go to
# qemu-tests/run.py: scenario names, -j N (scenarios at once; default 2 or $ANEMOS_QEMU_JOBS).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== unit and CLI tests" >&2
cargo test --release 2>&1
echo "== QEMU scenarios" >&2
python3 qemu-tests/run.py "$@"
