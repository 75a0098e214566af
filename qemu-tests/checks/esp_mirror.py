#!/usr/bin/env python3
"""Host-side check after a deploy with mirrored ESPs: the ESP (GPT type "EFI System") of every
disk image holds the same tree, file for file and byte for byte, and it is not empty (it has
the loader at the fallback path and systemd-boot's own path).

Usage: esp_mirror.py DISK0.img DISK1.img [...]

Each ESP is found with `sfdisk -J` and copied out with mtools (`mcopy -s -i IMAGE@@OFFSET`),
so nothing is mounted; fsck.vfat -n must pass on each (read through a read-only loop device).
Prints, per ESP, the number of files, their bytes and one sha256 over the sorted (path, file
sha256) list, the figure to compare.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
MUST_HAVE = ["EFI/BOOT/BOOTX64.EFI", "EFI/systemd/systemd-bootx64.efi", "loader/loader.conf"]


def fail(msg):
    raise SystemExit(f"FAIL: {msg}")


def run(*a):
    r = subprocess.run(a, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(a)} exited {r.returncode}: {r.stdout}{r.stderr}")
    return r.stdout


def esp_of(image):
    pt = json.loads(run("sfdisk", "-J", image))["partitiontable"]
    esps = [p for p in pt["partitions"] if p["type"].upper() == ESP_TYPE]
    if len(esps) != 1:
        fail(f"{image}: expected one ESP, found {len(esps)}")
    return esps[0]["start"] * pt.get("sectorsize", 512), esps[0]["size"] * pt.get("sectorsize", 512)


def tree(image, offset, size):
    loop = run("losetup", "-f", "--show", "-r", "-o", str(offset), "--sizelimit", str(size), image).strip()
    try:
        run("fsck.vfat", "-n", loop)
    finally:
        subprocess.run(["losetup", "-d", loop])
    with tempfile.TemporaryDirectory() as d:
        run("mcopy", "-s", "-p", "-n", "-i", f"{image}@@{offset}", "::*", d)
        files = {}
        for root, _, names in os.walk(d):
            for n in names:
                p = os.path.join(root, n)
                with open(p, "rb") as f:
                    files[os.path.relpath(p, d)] = hashlib.sha256(f.read()).hexdigest(), os.path.getsize(p)
        return files


def main():
    images = sys.argv[1:]
    if len(images) < 2:
        fail("give at least two disk images")
    compare(images)


def compare(images):
    trees = []
    for img in images:
        off, size = esp_of(img)
        t = tree(img, off, size)
        total = sum(s for _, s in t.values())
        h = hashlib.sha256("".join(f"{p}\0{d}\n" for p, (d, _) in sorted(t.items())).encode()).hexdigest()
        print(f"{img}: ESP at {off} ({size} bytes): {len(t)} files, {total} bytes, tree sha256 {h}")
        for m in MUST_HAVE:
            if m not in t:
                fail(f"{img}: the ESP has no {m} (files: {sorted(t)})")
        trees.append(t)
    for img, t in zip(images[1:], trees[1:]):
        if t != trees[0]:
            only0 = sorted(set(trees[0]) - set(t))
            only1 = sorted(set(t) - set(trees[0]))
            diff = sorted(p for p in set(t) & set(trees[0]) if t[p] != trees[0][p])
            fail(f"{img}'s ESP differs from {images[0]}'s: only in the first {only0}, only in it {only1}, different {diff}")
    print(f"ok: the ESPs of {len(images)} disks are identical")
    return trees


if __name__ == "__main__":
    sys.exit(main())
