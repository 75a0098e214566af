#!/usr/bin/env bash
# Benchmark (prints figures; never fails on a slow result, fails when a VM run fails): the
# built-in makeimg's bootstrap of examples/debian-imgbuild's package set inside the deploy image
# against the same backend run by hand there.
#   builtin: qemu-tests/bench/makeimg-builtin.toml, the example deployed with
#            install.kind = "makeimg"; figure: the `makeimg: step bootstrap ok (N ms)` line;
#   by hand: qemu-tests/bench/makeimg-script.toml, an install script running mmdebstrap with the
#            same command line (variant, options, packages, mirror); figure: its own timing.
# Same tools root (scripts/build-builder-root.sh), same local mirror over guestfwd
# (scripts/build-debian-mirror.sh), same VM size (1536M, 1 vCPU, TCG). The two VMs run at the
# same time, one per core. Then, for reference, the same two on this host: `anemos makeimg
# --format dir` and mmdebstrap by hand into a directory, from the mirror via copy://.
#
# Usage: benches/makeimg-bench.sh
# Environment: ANEMOS_BIN   the anemos binary to test (default: `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
scripts/build-builder-root.sh
scripts/build-debian-mirror.sh
cache="$(realpath "${ANEMOS_CACHE:-qemu-tests/cache}")"
bin=()
[[ -n "${ANEMOS_BIN:-}" ]] && bin=(--binary "$ANEMOS_BIN")
log=/tmp/anemos-makeimg-bench.log
python3 qemu-tests/run.py -j 2 "${bin[@]}" qemu-tests/bench/makeimg-builtin.toml \
    qemu-tests/bench/makeimg-script.toml | tee "$log" | grep -E "PASS|FAIL"
vm_builtin=$(sed -n 's/.*makeimg-builtin: PASS .*.bootstrap_ms.: .\([0-9]*\).*/\1/p' "$log")
vm_hand=$(sed -n 's/.*makeimg-script: PASS .*.bootstrap_ms.: .\([0-9]*\).*/\1/p' "$log")

anemos="${ANEMOS_BIN:-$(ls target/x86_64-unknown-linux-musl/release/anemos)}"
anemos="$(realpath "$anemos")"
mirror="deb [trusted=yes] copy://$cache/debian-mirror ./"
tmp=$(mktemp -d /var/tmp/anemos-makeimg-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
t=$(date +%s%N)
(cd examples/debian-imgbuild && ANEMOS_HOSTNAME=imgserver "$anemos" makeimg --format dir \
    -o "$tmp/builtin" --mirror "$mirror") >"$tmp/builtin.log" 2>&1
host_builtin=$(sed -n 's/.*step bootstrap ok (\([0-9]*\) ms).*/\1/p' "$tmp/builtin.log")
host_builtin_total=$((($(date +%s%N) - t) / 1000000))
t=$(date +%s%N)
mmdebstrap --variant=minbase --skip=check/empty --dpkgopt=force-unsafe-io \
    --include=linux-image-cloud-amd64,systemd-sysv,udev,openssh-server,e2fsprogs \
    bookworm "$tmp/hand" "$mirror" >"$tmp/hand.log" 2>&1
host_hand=$((($(date +%s%N) - t) / 1000000))

python3 - "$vm_builtin" "$vm_hand" "$host_builtin" "$host_hand" "$host_builtin_total" <<'PY'
import sys
vb, vh, hb, hh, ht = (int(x) for x in sys.argv[1:6])
print("makeimg bootstrap benchmark (examples/debian-imgbuild package set, local mirror)")
print(f"  deploy image (TCG, 1536M): built-in {vb / 1000:.1f} s, by hand {vh / 1000:.1f} s, ratio {vb / vh:.3f} (target <= 1.05: {'PASS' if vb / vh <= 1.05 else 'MISS'})")
print(f"  host (reference):          built-in {hb / 1000:.1f} s (whole build {ht / 1000:.1f} s), by hand {hh / 1000:.1f} s, ratio {hb / hh:.3f}")
PY
