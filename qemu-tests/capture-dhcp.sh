#!/bin/sh
# Captures the DHCP exchange between our init and QEMU's built-in (slirp) DHCP server in a
# live run of the net-dhcp-url scenario, and stores the server's OFFER and ACK (and our
# DISCOVER and REQUEST) as unit-test fixtures in src/net/testdata/. Run once by hand; the
# files are committed. Needs python3 and a built tree (scripts/setup.sh).
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/anemos-dhcp.XXXXXX)
# The deploy run (not the firmware boot of the result) is "net-dhcp-url".
ANEMOS_QEMU_EXTRA="-object filter-dump,id=dump0,netdev=n0,file=$dir/{run}.pcap" \
    python3 "$repo/qemu-tests/run.py" net-dhcp-url
python3 "$repo/qemu-tests/pcap-dhcp.py" "$dir/net-dhcp-url.pcap" "$repo/src/net/testdata"
rm -rf "$dir"
