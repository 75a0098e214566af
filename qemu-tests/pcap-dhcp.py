#!/usr/bin/env python3
"""Extracts the BOOTP/DHCP payloads (UDP 67/68) from a classic pcap file written by QEMU's
filter-dump and writes them as <outdir>/slirp-dhcp-<n>-<type>.bin (type from option 53)."""
import struct
import sys
from pathlib import Path

TYPES = {1: "discover", 2: "offer", 3: "request", 5: "ack", 6: "nak"}


def packets(data):
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic != 0xA1B2C3D4:
        sys.exit(f"not a little-endian classic pcap (magic {magic:#x})")
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, off)
        off += 16
        yield data[off:off + incl]
        off += incl


def main():
    pcap, outdir = Path(sys.argv[1]), Path(sys.argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    n = 0
    for frame in packets(pcap.read_bytes()):
        if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
            continue
        ihl = (frame[14] & 0xF) * 4
        udp = 14 + ihl
        sport, dport = struct.unpack_from(">HH", frame, udp)
        if {sport, dport} != {67, 68}:
            continue
        payload = frame[udp + 8:]
        kind = "unknown"
        i = 240
        while i < len(payload) and payload[i] != 255:
            if payload[i] == 0:
                i += 1
                continue
            code, ln = payload[i], payload[i + 1]
            if code == 53:
                kind = TYPES.get(payload[i + 2], str(payload[i + 2]))
            i += 2 + ln
        n += 1
        out = outdir / f"slirp-dhcp-{n}-{kind}.bin"
        out.write_bytes(payload)
        print(f"{out}: {len(payload)} bytes, {sport}->{dport}")
    if n == 0:
        sys.exit("no DHCP packets in the capture")


main()
