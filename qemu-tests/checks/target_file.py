#!/usr/bin/env python3
"""Host check of a file inside an ext4 partition of a disk image.
Usage: target_file.py DISK PARTNUM PATH (--contains TEXT | --absent)"""
import re, subprocess, sys, tempfile

disk, num, path, mode = sys.argv[1:5]
info = subprocess.run(["sgdisk", "-i", num, disk], capture_output=True, text=True).stdout
m1, m2 = re.search(r"First sector: (\d+)", info), re.search(r"Last sector: (\d+)", info)
if not m1 or not m2:
    raise SystemExit(f"FAIL: {disk} has no partition {num}:\n{info}")
first, last = int(m1.group(1)), int(m2.group(1))
with tempfile.NamedTemporaryFile() as t:
    subprocess.run(["dd", f"if={disk}", f"of={t.name}", "bs=512", f"skip={first}", f"count={last - first + 1}", "status=none"], check=True)
    r = subprocess.run(["debugfs", "-R", f"cat {path}", t.name], capture_output=True, text=True)
    present = r.returncode == 0 and "File not found" not in r.stderr
    if mode == "--absent":
        if present:
            raise SystemExit(f"FAIL: {path} exists in partition {num}: {r.stdout!r}")
        print(f"ok: {path} is absent from partition {num}")
    else:
        text = sys.argv[5]
        if not present or text not in r.stdout:
            raise SystemExit(f"FAIL: {path} in partition {num} lacks {text!r}: {r.stdout!r} {r.stderr!r}")
        print(f"ok: {path} in partition {num} contains {text!r}")
