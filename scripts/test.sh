#!/usr/bin/env bash
# Runs every test: unit and CLI tests (no root, no VM), then the QEMU scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== unit and CLI tests" >&2
cargo test --release 2>&1
echo "== QEMU scenarios" >&2
python3 qemu-tests/run.py "$@"
