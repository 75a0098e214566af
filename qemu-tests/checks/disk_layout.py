#!/usr/bin/env python3
"""Host-side check after a deploy: the disk image holds exactly the planned GPT and filesystems.

Usage: disk_layout.py ANEMOS CONFIG DISK0[:serial=S] [DISK1[:serial=S] ...]

Runs `anemos plan CONFIG --json --disk ...` for the prediction, then checks the first
repartitioned disk with sgdisk (start, end, PARTUUID, name), blkid (type, UUID, label of each
filesystem, probed at the partition's offset), fsck.vfat -n (ESP) and debugfs (the target's
/etc/fstab).
"""
import json
import re
import subprocess
import sys
import tempfile


def run(*a, **kw):
    r = subprocess.run(a, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(a)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout


def main():
    anemos, config, *disks = sys.argv[1:]
    plan = json.loads(run(anemos, "plan", config, "--json", *[x for d in disks for x in ("--disk", d)]))
    disk = next((d for d in plan["disks"] if d["action"] == "repartition"), None)
    if disk is None or not disk["partitions"]:
        raise SystemExit(f"FAIL: no partitions in the plan:\n{json.dumps(plan, indent=2)}")
    disk_file = disk["path"]
    if disk["logical_sector_size"] != 512:
        raise SystemExit(f"FAIL: {disk_file}: sgdisk reads image files with 512-byte sectors only")
    rows = [dict(num=p["number"], start=p["first_lba"], end=p["last_lba"], label=p["label"], fs=p["filesystem"],
                 fs_label=p["fs_label"], mount=p["mount"], partuuid=p["partuuid"], fsuuid=p["fs_uuid"])
            for p in disk["partitions"]]
    checked = 0
    for r in rows:
        info = run("sgdisk", "-i", str(r["num"]), disk_file)
        want = {
            "Partition unique GUID": r["partuuid"].upper(),
            "First sector": str(r["start"]),
            "Last sector": str(r["end"]),
            "Partition name": f"'{r['label']}'",
        }
        for k, v in want.items():
            m = re.search(rf"{k}: (\S+)", info)
            if not m or m.group(1) != v:
                raise SystemExit(f"FAIL: partition {r['num']}: {k} is {m.group(1) if m else None}, planned {v}\n{info}")
        if r["fs"] is not None:
            off = r["start"] * 512
            size = (r["end"] - r["start"] + 1) * 512
            b = run("blkid", "-p", "-o", "export", "-O", str(off), "-S", str(size), disk_file)
            kv = dict(l.split("=", 1) for l in b.splitlines() if "=" in l)
            if kv.get("TYPE") != r["fs"] or kv.get("UUID") != r["fsuuid"] or kv.get("LABEL") != r["fs_label"]:
                raise SystemExit(f"FAIL: partition {r['num']} ({r['label']}): blkid says {kv}, planned {r['fs']} {r['fsuuid']} label {r['fs_label']}")
            checked += 1
            if r["fs"] == "vfat":
                with tempfile.NamedTemporaryFile() as t:
                    subprocess.run(["dd", f"if={disk_file}", f"of={t.name}", "bs=512", f"skip={r['start']}",
                                    f"count={r['end'] - r['start'] + 1}", "status=none"], check=True)
                    f = subprocess.run(["fsck.vfat", "-n", t.name], capture_output=True, text=True)
                    if f.returncode != 0:
                        raise SystemExit(f"FAIL: fsck.vfat -n on the ESP:\n{f.stdout}{f.stderr}")
                    if kv.get("VERSION") != "FAT32":
                        raise SystemExit(f"FAIL: ESP is {kv.get('VERSION')}, not FAT32")
            if r["mount"] == "/" and r["fs"] == "ext4":
                with tempfile.NamedTemporaryFile() as t:
                    subprocess.run(["dd", f"if={disk_file}", f"of={t.name}", "bs=1M", f"skip={r['start'] * 512 // 1048576}",
                                    f"count={size // 1048576}", "status=none"], check=True)
                    fstab = run("debugfs", "-R", "cat /etc/fstab", t.name)
                    for row in rows:
                        if row["mount"] is not None and row["fsuuid"] not in fstab:
                            raise SystemExit(f"FAIL: /etc/fstab lacks UUID {row['fsuuid']} ({row['mount']}):\n{fstab}")
    print(f"ok: {len(rows)} partitions match the plan (sgdisk), {checked} filesystems match type/UUID/label (blkid), ESP passes fsck.vfat -n, fstab has the UUIDs")


if __name__ == "__main__":
    main()
