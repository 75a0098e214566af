#!/usr/bin/env python3
"""Host-side report (not a check) of what a disk image holds, for the record after a power cut:
the GPT's disk GUID and partitions when there is a valid one (else what is at LBA 1), and what
blkid finds at each partition's start. Prints one line; exits non-zero only when the image
cannot be read.

Usage: disk_state.py DISK
"""
import subprocess
import sys


def main():
    disk = sys.argv[1]
    with open(disk, "rb") as f:
        f.seek(512)
        sig = f.read(8)
    if sig != b"EFI PART":
        print(f"{disk}: no GPT header at LBA 1 ({sig!r})")
        return
    r = subprocess.run(["sgdisk", "-p", disk], capture_output=True, text=True)
    rows = [l.split() for l in r.stdout.splitlines() if l.strip()[:1].isdigit()]
    guid = next((l.split(": ", 1)[1] for l in r.stdout.splitlines() if l.startswith("Disk identifier")), "?")
    parts = []
    for row in rows:
        num, first, last = int(row[0]), int(row[1]), int(row[2])
        b = subprocess.run(["blkid", "-p", "-o", "export", "-O", str(first * 512), "-S", str((last - first + 1) * 512), disk],
                           capture_output=True, text=True)
        kv = dict(l.split("=", 1) for l in b.stdout.splitlines() if "=" in l)
        fs = f"{kv['TYPE']} {kv.get('UUID', '')}".strip() if "TYPE" in kv else ("ambivalent" if b.returncode == 8 else "no filesystem")
        parts.append(f"{num}:{row[-1]}={fs}")
    print(f"{disk}: GPT (disk GUID {guid}), {len(rows)} partitions: {', '.join(parts) or '-'}")


if __name__ == "__main__":
    main()
