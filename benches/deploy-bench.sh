#!/usr/bin/env bash
# Benchmark (prints figures; never fails on a slow result):
#  1. rootfs unpack throughput: anemos's native unpack vs GNU tar (+zstd) unpacking the same
#     archive onto the same ext4 filesystem in the same QEMU VM (TCG), as a ratio;
#  2. total deploy time of the built-in example, split by stage.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
python3 qemu-tests/run.py qemu-tests/bench/unpack.toml demo | tee /tmp/anemos-deploy-bench.log | grep -E "PASS|FAIL"
log=qemu-tests/out/unpack.console.log
a=$(grep -aoE 'unpacked [0-9]+ entries .* in [0-9.]+ s' "$log" | grep -oE '[0-9.]+ s$' | cut -d' ' -f1)
g=$(grep -aoE 'GNUTAR-SECONDS [0-9.]+' "$log" | awk '{print $2}')
echo "== rootfs unpack, same archive ($(du -h examples/busybox/rootfs.tar.zst | cut -f1) tar.zst), same VM, same ext4:"
echo "   anemos: ${a} s (includes its full safety pre-scan of the archive)"
echo "   GNU tar --zstd: ${g} s"
awk -v a="$a" -v g="$g" 'BEGIN { r = g / a; printf "   ratio (GNU tar time / anemos time): %.2f  target >= 1.0: %s\n", r, (r >= 1.0 ? "PASS" : "MISS") }'
python3 qemu-tests/run.py qemu-tests/bench/download.toml | grep -E "PASS|FAIL"
dl=qemu-tests/out/download.console.log
f=$(grep -aoE 'STAGE fetch ok \([0-9]+ ms\)' "$dl" | grep -oE '[0-9]+')
u=$(grep -aoE 'unpacked [0-9]+ entries .* in [0-9.]+ s' "$dl" | grep -oE '[0-9.]+ s$' | cut -d' ' -f1)
c=$(grep -aoE 'CURLTAR-SECONDS [0-9.]+' "$dl" | awk '{print $2}')
echo "== download + unpack by URL (same HTTP server via guestfwd, same VM, same ext4):"
echo "   anemos: fetch ${f} ms (to RAM, sha256) + unpack ${u} s"
echo "   curl | tar --zstd -x: ${c} s"
awk -v f="$f" -v u="$u" -v c="$c" 'BEGIN { a = f / 1000 + u; r = c / a; printf "   ratio (curl|tar time / anemos time): %.2f\n", r }'
python3 qemu-tests/run.py qemu-tests/bench/download-stream.toml | grep -E "PASS|FAIL"
ds=qemu-tests/out/download-stream.console.log
st=$(grep -aoE 'unpacked [0-9]+ entries from .* in [0-9.]+ s \(streamed\)' "$ds" | grep -oE 'in [0-9.]+ s' | grep -oE '[0-9.]+')
c2=$(grep -aoE 'CURLTAR-SECONDS [0-9.]+' "$ds" | awk '{print $2}')
echo "== streamed download + unpack (install.download = \"stream\"; same server, same VM, same ext4):"
echo "   anemos: ${st} s (download, unpack and sha256 in one pass)"
echo "   curl | tar --zstd -x: ${c2} s"
awk -v a="$st" -v c="$c2" 'BEGIN { r = c / a; printf "   ratio (curl|tar time / anemos time): %.2f\n", r }'
echo "== deploy of examples/busybox, split by stage (ms, from the init's own figures line):"
grep -aoE 'figures: stage timings \(ms\): .*' qemu-tests/out/demo.console.log | sed 's/^/   /'
grep -aoE 'deploy finished in [0-9]+ ms' qemu-tests/out/demo.console.log | sed 's/^/   /'
