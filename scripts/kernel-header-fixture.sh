#!/usr/bin/env bash
# Cuts the real-mode setup part out of an x86 kernel image (a bzImage) for the unit tests of
# src/kver/: the boot sector and setup code, (setup_sects + 1) * 512 bytes, which hold the setup
# header ("HdrS" at 0x202) and the kernel version string that header points at. A whole kernel
# is 8-15 MB; the setup part is ~20 KiB and is all the version parsing reads.
#
# Usage: scripts/kernel-header-fixture.sh VMLINUZ|PACKAGE.deb OUTPUT
#   A .deb (e.g. from `apt-get download linux-image-6.1.0-47-rt-amd64-unsigned`) is unpacked
#   with dpkg-deb into a temp dir and its one boot/vmlinuz-* is used.
#
# Fixtures made with it (src/kver/testdata/):
#   cloud-6.1.0-57.setup  qemu-tests' kernel (fetch-kernel.sh: linux-image-6.1.0-57-cloud-amd64)
#   rt-6.1.0-47.setup     linux-image-6.1.0-47-rt-amd64-unsigned_6.1.170-3_amd64.deb (bookworm)
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: $0 VMLINUZ|PACKAGE.deb OUTPUT" >&2; exit 2; }
src="$1" out="$2"
if [[ "$src" == *.deb ]]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    dpkg-deb -x "$src" "$tmp"
    set -- "$tmp"/boot/vmlinuz-*
    [[ $# -eq 1 && -f "$1" ]] || { echo "$src: expected one boot/vmlinuz-* in it" >&2; exit 1; }
    src="$1"
fi
python3 - "$src" "$out" <<'PY'
import struct, sys
src, out = sys.argv[1], sys.argv[2]
b = open(src, "rb").read()
if b[0x202:0x206] != b"HdrS":
    sys.exit(f"{src}: no bzImage setup header (HdrS at 0x202)")
setup_sects = b[0x1F1] or 4
n = (setup_sects + 1) * 512
ptr = struct.unpack_from("<H", b, 0x20E)[0]
end = b.index(b"\0", ptr + 0x200) if ptr else 0
if end >= n:
    sys.exit(f"{src}: version string at {ptr + 0x200:#x} lies beyond the setup part ({n} bytes)")
open(out, "wb").write(b[:n])
print(f"{out}: {n} bytes, version {b[ptr + 0x200:end].decode(errors='replace')!r}")
PY
