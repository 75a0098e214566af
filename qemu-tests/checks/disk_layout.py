#!/usr/bin/env python3
"""Host-side check after a deploy: the disk image holds exactly the planned GPT and filesystems,
and every filesystem is clean.

Usage: disk_layout.py ANEMOS CONFIG DISK0[:serial=S][:sector=4096] [DISK1[:serial=S] ...]

Runs `anemos plan CONFIG --json --disk ...` for the prediction, then checks the first
repartitioned disk: its GPT, read here at the plan's logical sector size (512 or 4096; start,
end, PARTUUID, name of each partition), blkid (type, UUID, label of each filesystem, probed at the
partition's offset), a read-only check of each filesystem on a copy of its byte range
(fsck.vfat -n, e2fsck -fn, xfs_repair -n, btrfs check --readonly; each must exit 0) and debugfs
(the target's /etc/fstab). Prints one line per filesystem check, then a summary.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import uuid

GPT_SIGNATURE = b"EFI PART"


def run(*a, **kw):
    r = subprocess.run(a, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(a)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout


def read_gpt(disk_file, sector):
    """{number: (first_lba, last_lba, partuuid, name)} of the primary GPT at SECTOR-byte LBAs."""
    with open(disk_file, "rb") as f:
        f.seek(sector)
        hdr = f.read(92)
        if hdr[:8] != GPT_SIGNATURE:
            raise SystemExit(f"FAIL: {disk_file}: no GPT header at LBA 1 with {sector}-byte sectors")
        entries_lba, count, size = struct.unpack_from("<QII", hdr, 72)
        f.seek(entries_lba * sector)
        table = f.read(count * size)
    parts = {}
    for i in range(count):
        e = table[i * size:(i + 1) * size]
        if e[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", e, 32)
        name = e[56:128].decode("utf-16-le").rstrip("\0")
        parts[i + 1] = (first, last, str(uuid.UUID(bytes_le=e[16:32])), name)
    return parts


def copy_range(disk_file, off, size, dst):
    """Copies SIZE bytes of DISK_FILE from OFF into DST (a sparse copy: holes stay holes)."""
    subprocess.run(["dd", f"if={disk_file}", f"of={dst}", "bs=64K", "iflag=skip_bytes,count_bytes",
                    f"skip={off}", f"count={size}", "conv=sparse", "status=none"], check=True)


# Read-only checkers by filesystem type; each must exit 0 on a clean filesystem.
FSCK = {
    "vfat": ["fsck.vfat", "-n"],
    "ext4": ["e2fsck", "-fn"],
    "xfs": ["xfs_repair", "-n", "-f"],
    "btrfs": ["btrfs", "check", "--readonly"],
}


def fsck(fs, image):
    """Runs the read-only checker of FS on IMAGE; returns the last line of its standard output
    (of its error output when the checker prints only there)."""
    argv = FSCK[fs] + [image]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(argv)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    out = r.stdout.strip() or r.stderr.strip()
    return out.splitlines()[-1] if out else "(no output)"


def main():
    anemos, config, *disks = sys.argv[1:]
    plan = json.loads(run(anemos, "plan", config, "--json", *[x for d in disks for x in ("--disk", d)]))
    disk = next((d for d in plan["disks"] if d["action"] == "repartition"), None)
    if disk is None or not disk["partitions"]:
        raise SystemExit(f"FAIL: no partitions in the plan:\n{json.dumps(plan, indent=2)}")
    disk_file = disk["path"]
    ss = disk["logical_sector_size"]
    rows = [dict(num=p["number"], start=p["first_lba"], end=p["last_lba"], label=p["label"], fs=p["filesystem"],
                 fs_label=p["fs_label"], mount=p["mount"], partuuid=p["partuuid"], fsuuid=p["fs_uuid"])
            for p in disk["partitions"]]
    table = read_gpt(disk_file, ss)
    if sorted(table) != [r["num"] for r in rows]:
        raise SystemExit(f"FAIL: {disk_file}: partitions {sorted(table)}, planned {[r['num'] for r in rows]}")
    checked, fscked = 0, []
    for r in rows:
        got = table[r["num"]]
        want = (r["start"], r["end"], r["partuuid"].lower(), r["label"])
        if got != want:
            raise SystemExit(f"FAIL: partition {r['num']}: GPT has (first, last, partuuid, name) {got}, planned {want}")
        if r["fs"] is None:
            continue
        off = r["start"] * ss
        size = (r["end"] - r["start"] + 1) * ss
        b = run("blkid", "-p", "-o", "export", "-O", str(off), "-S", str(size), disk_file)
        kv = dict(l.split("=", 1) for l in b.splitlines() if "=" in l)
        if kv.get("TYPE") != r["fs"] or kv.get("UUID") != r["fsuuid"] or kv.get("LABEL") != r["fs_label"]:
            raise SystemExit(f"FAIL: partition {r['num']} ({r['label']}): blkid says {kv}, planned {r['fs']} {r['fsuuid']} label {r['fs_label']}")
        checked += 1
        if r["fs"] == "vfat" and r["mount"] in ("/boot", "/boot/efi", "/efi") and kv.get("VERSION") != "FAT32":
            raise SystemExit(f"FAIL: ESP is {kv.get('VERSION')}, not FAT32")
        if r["fs"] not in FSCK:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            part = os.path.join(tmp, "part.img")
            copy_range(disk_file, off, size, part)
            last = fsck(r["fs"], part)
            fscked.append(r["fs"])
            print(f"partition {r['num']} ({r['label']}, {r['fs']}, {kv.get('VERSION', '-')}): clean: {' '.join(FSCK[r['fs']])}: {last}")
            if r["mount"] == "/" and r["fs"] == "ext4":
                fstab = run("debugfs", "-R", "cat /etc/fstab", part)
                for row in rows:
                    if row["mount"] is not None and row["fsuuid"] not in fstab:
                        raise SystemExit(f"FAIL: /etc/fstab lacks UUID {row['fsuuid']} ({row['mount']}):\n{fstab}")
    print(f"ok: {len(rows)} partitions match the plan ({ss}-byte sectors), {checked} filesystems match "
          f"type/UUID/label (blkid), clean: {', '.join(fscked)}, fstab has the UUIDs")


if __name__ == "__main__":
    main()
