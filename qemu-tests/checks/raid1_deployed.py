#!/usr/bin/env python3
"""Host-side check after a RAID1 deploy: every planned md array is on its member partitions of
the disk images, with the planned UUID and name, and holds a clean filesystem that carries the
planned /etc/fstab and /etc/mdadm/mdadm.conf.

Usage: raid1_deployed.py [--members-only] ANEMOS CONFIG DISK0[:serial=S] [DISK1[:serial=S] ...]

--members-only: after a failed deploy whose tables were cleared, check only that every member
partition's range still carries its array's md superblock (what a re-run must wipe).

Runs `anemos plan CONFIG --json --disk ...` for the prediction. Each member partition is
attached read-only with `losetup -r -o OFFSET --sizelimit SIZE` and checked with
`mdadm --examine` (metadata 1.2, RAID1, the planned array UUID, name any:NAME, one slot per
member, "Data Offset"). Then each member's data area (from the data offset on) is attached
and checked: blkid finds the planned filesystem type, UUID and label, `e2fsck -fn` passes
or xfs_repair -n passes (every member on its own: RAID1 writes reached both). The array mounted at "/" must hold
exactly the planned /etc/fstab and /etc/mdadm/mdadm.conf (debugfs). Each ESP outside the
arrays passes fsck.vfat -n. Loop devices are detached at the end, also on failure.
"""
import json
import re
import subprocess
import sys

LOOPS = []


def run(*a, ok=(0,)):
    r = subprocess.run(a, capture_output=True, text=True)
    if r.returncode not in ok:
        raise SystemExit(f"FAIL: {' '.join(a)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout


def attach(image, offset, size):
    dev = run("losetup", "-f", "--show", "-r", "-o", str(offset), "--sizelimit", str(size), image).strip()
    LOOPS.append(dev)
    return dev


def check(plan, members_only):
    disks = {d["name"]: d for d in plan["disks"]}
    arrays = plan["arrays"]
    if not arrays:
        raise SystemExit("FAIL: the plan has no arrays")
    root_fs = None
    for a in arrays:
        data_ranges = []
        for m in a["members"]:
            d = disks[m["disk"]]
            p = next(p for p in d["partitions"] if p["number"] == m["number"])
            if p["label"] != m["label"] or p["size_bytes"] != a["member_size_bytes"]:
                raise SystemExit(f"FAIL: array {a['name']}: member {m} does not match partition {p}")
            dev = attach(m["path"], p["start_bytes"], p["size_bytes"])
            ex = run("mdadm", "--examine", dev)
            want = {
                "Version": "1.2",
                "Array UUID": a["uuid"],
                "Name": f"any:{a['name']}",
                "Raid Level": f"raid{a['level']}",
                "Raid Devices": str(len(a["members"])),
            }
            for k, v in want.items():
                got = re.search(rf"^\s*{k} : (\S+)", ex, re.M)
                if not got or got.group(1) != v:
                    raise SystemExit(f"FAIL: array {a['name']}, member {m['label']} ({m['path']} #{m['number']}): "
                                     f"{k} is {got.group(1) if got else None}, planned {v}\n{ex}")
            off = re.search(r"Data Offset : (\d+) sectors", ex)
            size = re.search(r"Used Dev Size : (\d+)", ex) or re.search(r"Avail Dev Size : (\d+)", ex)
            if not off or not size:
                raise SystemExit(f"FAIL: no Data Offset/Dev Size in mdadm --examine:\n{ex}")
            data_ranges.append((m, p["start_bytes"] + int(off.group(1)) * 512, int(size.group(1)) * 512))
        if members_only:
            print(f"ok: array {a['name']}: the old md superblock (uuid {a['uuid']}) is still on all {len(a['members'])} members")
            continue
        for m, start, size in data_ranges:
            dev = attach(m["path"], start, size)
            b = run("blkid", "-p", "-o", "export", dev)
            kv = dict(l.split("=", 1) for l in b.splitlines() if "=" in l)
            if kv.get("TYPE") != a["filesystem"] or kv.get("UUID") != a["fs_uuid"] or kv.get("LABEL") != a["fs_label"]:
                raise SystemExit(f"FAIL: array {a['name']} member {m['label']}: blkid says {kv}, planned "
                                 f"{a['filesystem']} {a['fs_uuid']} label {a['fs_label']}")
            if a["filesystem"] == "ext4":
                r = subprocess.run(["e2fsck", "-fn", dev], capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"FAIL: e2fsck -fn on array {a['name']} (member {m['label']}) exited {r.returncode}:\n{r.stdout}{r.stderr}")
            elif a["filesystem"] == "xfs":
                r = subprocess.run(["xfs_repair", "-n", dev], capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"FAIL: xfs_repair -n on array {a['name']} (member {m['label']}) exited {r.returncode}:\n{r.stdout}{r.stderr}")
            else:
                raise SystemExit(f"FAIL: array {a['name']}: no clean check for {a['filesystem']}")
            if a["mount"] == "/" and root_fs is None:
                root_fs = dev
        print(f"ok: array {a['name']}: {len(a['members'])} members carry uuid {a['uuid']} name any:{a['name']} "
              f"(mdadm --examine); {a['filesystem']} {a['fs_uuid']} clean on every member's data")
    if members_only:
        return
    if root_fs is None:
        raise SystemExit("FAIL: no array is mounted at /")
    for path, want in [("/etc/fstab", plan["fstab"]), ("/etc/mdadm/mdadm.conf", plan["mdadm_conf"])]:
        got = run("debugfs", "-R", f"cat {path}", root_fs)
        if got != want:
            raise SystemExit(f"FAIL: the target's {path} differs from the plan:\n--- target\n{got}--- plan\n{want}")
    print("ok: the target's /etc/fstab and /etc/mdadm/mdadm.conf are exactly the planned ones")
    esps = 0
    for d in plan["disks"]:
        for p in d["partitions"]:
            if p["type"] == "esp" and p["filesystem"] == "vfat":
                dev = attach(d["path"], p["start_bytes"], p["size_bytes"])
                r = subprocess.run(["fsck.vfat", "-n", dev], capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"FAIL: fsck.vfat -n on {p['label']}:\n{r.stdout}{r.stderr}")
                esps += 1
    print(f"ok: {esps} ESPs (one per disk, not on md) pass fsck.vfat -n")


def main():
    args = sys.argv[1:]
    members_only = args[0] == "--members-only"
    if members_only:
        args = args[1:]
    anemos, config, *disks = args
    plan = json.loads(run(anemos, "plan", config, "--json", *[x for d in disks for x in ("--disk", d)]))
    try:
        check(plan, members_only)
    finally:
        for dev in LOOPS:
            subprocess.run(["losetup", "-d", dev])


if __name__ == "__main__":
    main()
