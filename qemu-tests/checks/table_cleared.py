#!/usr/bin/env python3
"""Host-side check: after a failure past the first write, the disk has no partition table left
(first and last MiB zeroed), so it cannot boot stale data. Usage: table_cleared.py DISK"""
import sys

path = sys.argv[1]
with open(path, "rb") as f:
    head = f.read(1 << 20)
    f.seek(-(1 << 20), 2)
    tail = f.read(1 << 20)
if any(head) or any(tail):
    where = "first" if any(head) else "last"
    raise SystemExit(f"FAIL: {path}: the {where} MiB is not zeroed (a partition table or signature remains)")
print(f"ok: {path}: first and last MiB are zero; no partition table remains")
