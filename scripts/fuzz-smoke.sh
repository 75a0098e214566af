#!/usr/bin/env bash
# Fuzz smoke run: builds every cargo-fuzz target (fuzz/, nightly Rust, optimised) and runs each
# for a short time from its seed corpus, printing executions and executions/s per target.
# Fails on any crash, hang (-timeout), runaway allocation (-rss_limit_mb) or leak.
#
# Usage: scripts/fuzz-smoke.sh [SECONDS per target, default 20] [TARGET...]
# Needs the nightly toolchain and cargo-fuzz (scripts/setup.sh installs both). The corpora
# grown by the run are kept in a temporary directory; the committed seeds are not changed.
# A crashing input is saved under fuzz/artifacts/TARGET/; reproduce it with
#   fuzz/target/x86_64-unknown-linux-gnu/release/TARGET fuzz/artifacts/TARGET/crash-...
# then fix the parser and commit the input under fuzz/regressions/TARGET/ (cargo test runs it).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
shift || true
[[ $secs =~ ^[0-9]+$ ]] || { echo "fuzz-smoke: seconds must be a number, got $secs" >&2; exit 2; }

command -v cargo-fuzz >/dev/null || { echo "fuzz-smoke: cargo-fuzz missing (scripts/setup.sh installs it)" >&2; exit 1; }
start=$(date +%s)
echo "fuzz-smoke: building the targets (cargo +nightly fuzz build -O)" >&2
(cd fuzz && cargo +nightly fuzz build -O)
built=$(date +%s)
bin=fuzz/target/x86_64-unknown-linux-gnu/release
if (($#)); then targets=("$@"); else
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^anemos-fuzz$')
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
total=0
printf '%-16s %12s %10s %8s\n' target executions exec/s corpus
for t in "${targets[@]}"; do
    [[ -x $bin/$t ]] || { echo "fuzz-smoke: no target $t" >&2; exit 2; }
    mkdir -p "$work/$t" "fuzz/artifacts/$t"
    # Seeds first (read-only), new inputs go to the scratch corpus.
    if "$bin/$t" "$work/$t" "fuzz/corpus/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
        >"$work/$t.log" 2>&1; then :; else
        failed+=("$t")
        echo "fuzz-smoke: $t FAILED:" >&2
        grep -E "ERROR|panicked|SUMMARY|Test unit written" "$work/$t.log" | head -20 >&2 || true
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log" | tail -1)
    printf '%-16s %12s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "$(find "$work/$t" -type f | wc -l)"
    total=$((total + ${runs:-0}))
done
end=$(date +%s)
echo "fuzz-smoke: ${#targets[@]} targets, $total executions, build $((built - start)) s, runs $((end - built)) s, total $((end - start)) s" >&2
if ((${#failed[@]})); then
    echo "fuzz-smoke: crashes in: ${failed[*]} (inputs under fuzz/artifacts/)" >&2
    exit 1
fi
