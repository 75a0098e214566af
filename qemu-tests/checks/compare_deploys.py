#!/usr/bin/env python3
"""Host-side check that two deploys of the same payload converged: the two system disk images
(e.g. one deployed over zeros, one deployed again over what an earlier deploy left) hold the
same partition table and identifiers.

Usage: compare_deploys.py ANEMOS CONFIG FIRST SECOND [--disk PATH:serial=S ...]

FIRST and SECOND are the system disk images (their by-id name virtio-sys0); --disk adds the
other disks `anemos plan` needs to match the config (e.g. a preserved data disk). Compares, and
fails on the first difference:
  - `anemos plan CONFIG --json` against FIRST and against SECOND (the disk's path left out);
  - the GPT: the protective MBR, the primary header and entry array, the backup entry array
    and header, byte for byte (which covers the disk GUID, every PARTUUID, type, name and
    position and the CRCs);
  - blkid of every partition (TYPE, UUID, LABEL, PARTUUID, PARTLABEL), probed in the images;
  - the systemd-boot entries and loader.conf on the ESP (the first vfat partition), and the
    root filesystem's /etc/fstab.
Prints the compared identifiers, then a summary line.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from disk_layout import read_gpt, run  # noqa: E402
from diskimg import partition_range  # noqa: E402

SECTOR = 512


def plan(anemos, config, disk, extra):
    out = json.loads(run(anemos, "plan", config, "--json", "--disk", f"{disk}:serial=sys0",
                         *[x for d in extra for x in ("--disk", d)]))
    for d in out["disks"]:
        if d["path"] == disk:
            d["path"] = "(system disk)"
    return out


def gpt_bytes(disk):
    """The protective MBR, primary GPT header and entries (LBA 0-33), and the backup entries
    and header (the last 33 sectors)."""
    size = os.path.getsize(disk)
    with open(disk, "rb") as f:
        head = f.read(34 * SECTOR)
        f.seek(size - 33 * SECTOR)
        tail = f.read(33 * SECTOR)
    return head, tail


def blkid(disk, num):
    off, size = partition_range(disk, num)
    out = run("blkid", "-p", "-o", "export", "-O", str(off), "-S", str(size), disk)
    kv = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
    return {k: kv.get(k) for k in ("TYPE", "UUID", "LABEL")}


def esp_files(disk, num):
    """{relative path: text} of loader.conf and the entries on the ESP, read with mtools (no
    mount, nothing written)."""
    off, _ = partition_range(disk, num)
    img = f"{disk}@@{off}"
    listing = run("mdir", "-i", img, "-b", "::/loader/entries")
    names = sorted(l.strip().rsplit("/", 1)[-1] for l in listing.splitlines() if l.strip().endswith(".conf"))
    if not names:
        raise SystemExit(f"FAIL: {disk}: no boot entry on the ESP (partition {num}):\n{listing}")
    files = {}
    for rel in ["loader/loader.conf"] + [f"loader/entries/{n}" for n in names]:
        files[rel] = run("mtype", "-i", img, f"::/{rel}")
    return files


def fstab(disk, num):
    off, size = partition_range(disk, num)
    with tempfile.TemporaryDirectory() as tmp:
        part = os.path.join(tmp, "root.img")
        subprocess.run(["dd", f"if={disk}", f"of={part}", "bs=64K", "iflag=skip_bytes,count_bytes",
                        f"skip={off}", f"count={size}", "conv=sparse", "status=none"], check=True)
        return run("debugfs", "-R", "cat /etc/fstab", part)


def same(what, a, b):
    if a != b:
        raise SystemExit(f"FAIL: {what} differs:\n  first:  {a!r}\n  second: {b!r}")


def main():
    args = sys.argv[1:]
    extra = []
    while "--disk" in args:
        i = args.index("--disk")
        extra.append(args[i + 1])
        del args[i:i + 2]
    anemos, config, first, second = args
    p1, p2 = plan(anemos, config, first, extra), plan(anemos, config, second, extra)
    same("anemos plan --json", p1, p2)
    h1, t1 = gpt_bytes(first)
    h2, t2 = gpt_bytes(second)
    if h1[SECTOR:SECTOR + 8] != b"EFI PART":
        raise SystemExit(f"FAIL: {first}: no GPT")
    for what, a, b in (("LBA 0-33 (protective MBR, primary GPT)", h1, h2), ("the backup GPT", t1, t2)):
        if a != b:
            at = next(i for i in range(len(a)) if a[i] != b[i])
            raise SystemExit(f"FAIL: {what} differs, first at byte {at} (sector {at // SECTOR}): "
                             f"{a[at:at + 16].hex()} vs {b[at:at + 16].hex()}")
    g1, g2 = read_gpt(first, SECTOR), read_gpt(second, SECTOR)
    same("GPT partitions", g1, g2)
    disk_guid = re.search(r"Disk identifier \(GUID\): (\S+)", run("sgdisk", "-p", first)).group(1)
    print(f"GPT byte-identical (LBA 0-33 and the backup, sha256 {hashlib.sha256(h1 + t1).hexdigest()}): "
          f"disk GUID {disk_guid}")
    esp = root = None
    for num, (start, end, partuuid, name) in sorted(g1.items()):
        b1, b2 = blkid(first, num), blkid(second, num)
        same(f"blkid of partition {num}", b1, b2)
        print(f"partition {num} {name}: sectors {start}-{end}, PARTUUID {partuuid}, "
              f"{b1['TYPE']} UUID {b1['UUID']} LABEL {b1['LABEL']}: same in both")
        if b1["TYPE"] == "vfat" and esp is None:
            esp = num
        if b1["TYPE"] == "ext4" and name == "root":
            root = num
    if esp is None or root is None:
        raise SystemExit(f"FAIL: no ESP or no ext4 root in {first}: {g1}")
    e1, e2 = esp_files(first, esp), esp_files(second, esp)
    same("ESP loader files", e1, e2)
    for rel, text in e1.items():
        if rel.startswith("loader/entries/"):
            opts = next((l for l in text.splitlines() if l.startswith("options")), "")
            print(f"boot entry {rel}: same in both: {opts}")
    same("/etc/fstab of the root", fstab(first, root), fstab(second, root))
    print(f"ok: the two deploys converged: plan, GPT (bytes), {len(g1)} partitions' blkid, "
          f"{len(e1)} loader files and fstab are identical")


if __name__ == "__main__":
    main()
