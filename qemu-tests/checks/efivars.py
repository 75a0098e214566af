#!/usr/bin/env python3
"""Host-side look at an OVMF variable store (the firmware's NVRAM of a QEMU scenario): its boot
entries, and a stale entry put in for a test.

Usage:
  efivars.py show STORE.fd
  efivars.py add-stale STORE.fd
      Adds Boot0009 "debian" -> HD(1,GPT,<an old disk's partition>)/\\EFI\\debian\\shimx64.efi
      and puts it FIRST in BootOrder (an old system that boots before anything else).
  efivars.py check STORE.fd --first "DESC" [--first "DESC" ...] [--disk IMAGE ...] [--kept "DESC" ...]
      BootOrder must start with entries of exactly these descriptions, in this order; each of
      them must point at a partition (number, start, size, PARTUUID) of one of the --disk
      images' GPTs (read with sfdisk); every --kept description must still exist, after them.

Reads and writes the store with virt-fw-vars (PyPI virt-firmware, in the virtualenv that
scripts/virt-firmware-venv.sh makes under $ANEMOS_CACHE, else from PATH) through its JSON export
(--output-json / --set-json), so the store's own format (edk2 authenticated variable store,
FTW journal) is handled by that tool; the EFI_LOAD_OPTION parsing here is independent of
anemos' encoder (UEFI 2.10, 3.1.3 and 10.3.5).
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid

GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("ANEMOS_CACHE", os.path.join(HERE, "..", "cache"))
VENV_TOOL = os.path.join(CACHE, "virt-firmware-venv", "bin", "virt-fw-vars")
TOOL = VENV_TOOL if os.access(VENV_TOOL, os.X_OK) else shutil.which("virt-fw-vars")


def fail(msg):
    raise SystemExit(f"FAIL: {msg}")


def tool():
    if not TOOL:
        fail(f"virt-fw-vars not found ({VENV_TOOL} nor on PATH): run scripts/virt-firmware-venv.sh")
    return TOOL


def export(store):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "vars.json")
        r = subprocess.run([tool(), "-i", store, "--output-json", out], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"virt-fw-vars -i {store}: {r.stderr}")
        with open(out) as f:
            return json.load(f)


def ucs2z(b):
    end = next(i for i in range(0, len(b), 2) if b[i:i + 2] == b"\0\0")
    return b[:end].decode("utf-16-le"), end + 2


def parse_option(data):
    """(description, [device path nodes as text]) of an EFI_LOAD_OPTION."""
    attr, fplen = struct.unpack_from("<IH", data)
    desc, n = ucs2z(data[6:])
    dp = data[6 + n:6 + n + fplen]
    nodes = []
    i = 0
    while i + 4 <= len(dp):
        t, st, ln = struct.unpack_from("<BBH", dp, i)
        body = dp[i + 4:i + ln]
        if (t, st) == (0x7F, 0xFF):
            break
        if (t, st) == (4, 1):
            num, start, size = struct.unpack_from("<IQQ", body)
            sig = str(uuid.UUID(bytes_le=bytes(body[20:36])))
            nodes.append(("HD", num, start, size, sig, body[36], body[37]))
        elif (t, st) == (4, 4):
            nodes.append(("File", ucs2z(body)[0]))
        else:
            nodes.append((f"{t:#x}/{st:#x}",))
        if ln < 4:
            break
        i += ln
    return attr, desc, nodes


def show_node(n):
    if n[0] == "HD":
        return f"HD({n[1]},GPT,{n[4]},{n[2]:#x},{n[3]:#x})"
    if n[0] == "File":
        return f"File({n[1]})"
    return n[0]


def entries(store):
    vs = export(store)["variables"]
    boots = {}
    order = []
    for v in vs:
        if v["guid"] != GLOBAL:
            continue
        data = bytes.fromhex(v["data"])
        if v["name"] == "BootOrder":
            order = list(struct.unpack(f"<{len(data) // 2}H", data))
        elif v["name"].startswith("Boot") and len(v["name"]) == 8:
            try:
                boots[int(v["name"][4:], 16)] = parse_option(data)
            except ValueError:
                pass
    return boots, order


def print_entries(boots, order):
    print("BootOrder " + ",".join(f"{n:04X}" for n in order))
    for n in sorted(boots):
        attr, desc, nodes = boots[n]
        print(f"Boot{n:04X} attr={attr:#x} {desc!r} " + "/".join(show_node(x) for x in nodes))


def gpt_parts(image):
    r = subprocess.run(["sfdisk", "-J", image], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"sfdisk -J {image}: {r.stderr}")
    pt = json.loads(r.stdout)["partitiontable"]
    out = []
    for p in pt["partitions"]:
        num = int(p["node"].rsplit(image, 1)[-1])
        out.append((num, p["start"], p["size"], p["uuid"].lower(), image))
    return out


def cmd_check(a):
    boots, order = entries(a.store)
    print_entries(boots, order)
    parts = [p for img in a.disk for p in gpt_parts(img)]
    if len(order) < len(a.first):
        fail(f"BootOrder has {len(order)} entries, expected at least {len(a.first)} first")
    for i, want in enumerate(a.first):
        n = order[i]
        if n not in boots:
            fail(f"BootOrder[{i}] = {n:04X} names no Boot{n:04X}")
        _, desc, nodes = boots[n]
        if desc != want:
            fail(f"BootOrder[{i}] is Boot{n:04X} {desc!r}, expected {want!r}")
        if a.disk:
            hd = next((x for x in nodes if x[0] == "HD"), None)
            hit = hd and [p for p in parts if (p[0], p[1], p[2], p[3]) == (hd[1], hd[2], hd[3], hd[4])]
            if not hit:
                fail(f"Boot{n:04X} {desc!r}: {hd and show_node(hd)} is no partition of {a.disk}: {parts}")
            print(f"ok: BootOrder[{i}] = Boot{n:04X} {desc!r} -> partition {hd[1]} of {hit[0][4]}")
    descs = [boots[n][1] for n in order[len(a.first):] if n in boots]
    for k in a.kept:
        if k not in descs:
            fail(f"entry {k!r} is not kept after ours in BootOrder (after them: {descs})")
        print(f"ok: {k!r} kept after ours")


def cmd_add_stale(a):
    desc = "debian"
    path = "\\EFI\\debian\\shimx64.efi"
    part = uuid.UUID("0b5c6a7e-2d1f-4c3b-9a8e-5f4d3c2b1a09")
    hd = struct.pack("<BBHIQQ", 4, 1, 42, 1, 2048, 1048576) + part.bytes_le + bytes([2, 2])
    fp = path.encode("utf-16-le") + b"\0\0"
    dp = hd + struct.pack("<BBH", 4, 4, 4 + len(fp)) + fp + bytes([0x7F, 0xFF, 4, 0])
    data = struct.pack("<IH", 1, len(dp)) + desc.encode("utf-16-le") + b"\0\0" + dp
    boots, order = entries(a.store)
    num = 9
    if num in boots:
        fail(f"Boot{num:04X} exists already")
    order = [num] + [n for n in order if n != num]
    doc = {"version": 2, "variables": [
        {"name": f"Boot{num:04X}", "guid": GLOBAL, "attr": 7, "data": data.hex()},
        {"name": "BootOrder", "guid": GLOBAL, "attr": 7, "data": struct.pack(f"<{len(order)}H", *order).hex()},
    ]}
    with tempfile.TemporaryDirectory() as d:
        j = os.path.join(d, "set.json")
        with open(j, "w") as f:
            json.dump(doc, f)
        r = subprocess.run([tool(), "--inplace", a.store, "--set-json", j], capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"virt-fw-vars --set-json: {r.stderr}")
    boots, order = entries(a.store)
    if order[0] != num or boots[num][1] != desc:
        fail("the stale entry did not land first")
    print_entries(boots, order)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("show")
    s.add_argument("store")
    s = sub.add_parser("add-stale")
    s.add_argument("store")
    s = sub.add_parser("check")
    s.add_argument("store")
    s.add_argument("--first", action="append", default=[])
    s.add_argument("--disk", action="append", default=[])
    s.add_argument("--kept", action="append", default=[])
    a = ap.parse_args()
    if a.cmd == "show":
        print_entries(*entries(a.store))
    elif a.cmd == "add-stale":
        cmd_add_stale(a)
    else:
        cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
