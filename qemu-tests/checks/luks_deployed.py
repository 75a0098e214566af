#!/usr/bin/env python3
"""Host-side check after a LUKS2 deploy: the container on the disk image opens with the payload's
passphrase and holds the installed system with the planned crypttab and fstab; the passphrase
appears nowhere on the console log, in the deploy report or anywhere in the filesystem.

Usage: luks_deployed.py ANEMOS PAYLOAD_DIR DISK0 DISK1 CONSOLE_LOG

Runs `anemos plan PAYLOAD_DIR/anemos.toml --json --disk DISK0:serial=sys0 --disk DISK1:serial=data0`
for the prediction (the single [[luks]] entry, on a partition of disk 0). The partition is attached read-only with
`losetup -r -o OFFSET --sizelimit SIZE`; `cryptsetup luksDump` must show LUKS2, the planned
UUID and argon2id with the planned memory; `cryptsetup open --readonly --key-file` with the
passphrase file (its trailing newline is not part of the passphrase, as at the boot prompt)
must open it (on a host without device-mapper the passphrase unlocks the volume key instead,
`luksDump --dump-volume-key`, and the data segment is decrypted in userspace, AES-XTS plain64,
into a temporary file); the filesystem inside has the planned type and UUID, passes `e2fsck -fn`, and
holds /bin/busybox, exactly the planned /etc/crypttab, an fstab line for "/"
by the planned UUID and the deploy report (read with debugfs), and no byte of it holds the
passphrase. Mapping, temporary file and loop device are removed at the end, also on failure.
"""
import json
import os
import subprocess
import sys
import tempfile

CLEANUP = []


def run(*a, ok=(0,), stdin=None):
    r = subprocess.run(a, capture_output=True, text=True, input=stdin)
    if r.returncode not in ok:
        raise SystemExit(f"FAIL: {' '.join(a)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r.stdout


def fail(msg):
    raise SystemExit(f"FAIL: {msg}")


def check(anemos, payload, disk0, disk1, console):
    plan = json.loads(run(anemos, "plan", os.path.join(payload, "anemos.toml"), "--json",
                          "--disk", f"{disk0}:serial=sys0", "--disk", f"{disk1}:serial=data0"))
    (luks,) = plan["luks"]
    name, on = luks["name"], luks["on"]
    disk = plan["disks"][0]
    (part,) = [p for p in disk["partitions"] if p["label"] == on]
    key_path = os.path.join(payload, "secrets", "luks.pass")
    secret = open(key_path, "rb").read()
    passphrase = secret[:-1] if secret.endswith(b"\n") else secret

    secrets = [passphrase]
    recovery = None
    if luks["recovery_keyslot"]:
        r = open(os.path.join(payload, "secrets", "recovery.pass"), "rb").read()
        recovery = r[:-1] if r.endswith(b"\n") else r
        secrets.append(recovery)

    log = open(console, "rb").read()
    if any(s in log for s in secrets):
        fail(f"a passphrase appears on the console ({console})")
    print(f"ok: no passphrase is on the console ({len(log)} bytes)")

    loop = run("losetup", "-f", "--show", "-r", "-o", str(part["start_bytes"]),
               "--sizelimit", str(part["size_bytes"]), disk0).strip()
    CLEANUP.append(["losetup", "-d", loop])
    dump = run("cryptsetup", "luksDump", loop)
    for want in ["Version:       \t2", f"UUID:          \t{luks['uuid']}", "PBKDF:      argon2id",
                 f"Memory:     {luks['pbkdf_memory_kib']}"]:
        if want not in dump:
            fail(f"luksDump of {on} lacks {want!r}:\n{dump}")
    print(f"ok: {on} is LUKS2, uuid {luks['uuid']}, argon2id {luks['pbkdf_memory_kib']} KiB")
    slots = [ln.split(":")[0].strip() for ln in dump.split("Keyslots:", 1)[1].split("Tokens:", 1)[0].splitlines()
             if ln.rstrip().endswith(": luks2")]
    if slots != (["0", "1"] if recovery else ["0"]):
        fail(f"keyslots {slots}, planned {'0 and 1 (recovery)' if recovery else '0 only'}:\n{dump}")
    if recovery:
        run("cryptsetup", "open", "--test-passphrase", "--type", "luks2", "--key-slot", "1", "--key-file", "-",
            loop, stdin=recovery.decode())
        print("ok: keyslot 1 opens with the recovery passphrase")

    fsdev = open_container(loop, passphrase, dump)
    print(f"ok: the container opens with the passphrase of {key_path}")
    typ = run("blkid", "-p", "-o", "value", "-s", "TYPE", fsdev).strip()
    uuid = run("blkid", "-p", "-o", "value", "-s", "UUID", fsdev).strip()
    if (typ, uuid) != (luks["filesystem"], luks["fs_uuid"]):
        fail(f"inside {name}: {typ} {uuid}, planned {luks['filesystem']} {luks['fs_uuid']}")
    run("e2fsck", "-fn", fsdev)
    print(f"ok: {typ} {uuid} inside, e2fsck -fn clean")

    def cat(path):
        return run("debugfs", "-R", f"cat {path}", fsdev)

    if "Type: regular" not in run("debugfs", "-R", "stat /bin/busybox", fsdev):
        fail("the installed system (bin/busybox) is not inside the container")
    crypttab = cat("/etc/crypttab")
    if crypttab != plan["crypttab"]:
        fail(f"etc/crypttab differs from the plan:\n{crypttab}\n--- planned:\n{plan['crypttab']}")
    fstab = cat("/etc/fstab")
    if f"UUID={luks['fs_uuid']} / ext4 " not in fstab:
        fail(f"etc/fstab has no line for / by UUID={luks['fs_uuid']}:\n{fstab}")
    report = cat("/var/log/anemos/deploy-report.txt")
    if "deploy" not in report:
        fail("no deploy report in the target")
    if any(s.decode() in report for s in secrets):
        fail("a passphrase is in the deploy report")
    # Every byte of the filesystem, free blocks included: no file, log or leftover holds it.
    with open(fsdev, "rb") as f:
        tail = b""
        while True:
            chunk = f.read(16 << 20)
            if not chunk:
                break
            if any(s in tail + chunk for s in secrets):
                fail(f"a passphrase is in the filesystem inside {name}")
            tail = chunk[-max(len(s) for s in secrets):]
    print("ok: busybox installed, crypttab as planned, fstab mounts / by UUID, deploy report present; "
          "the passphrase is nowhere in the filesystem (report and free blocks included)")


def open_container(loop, passphrase, dump):
    """The decrypted filesystem: /dev/mapper/... when the host has device-mapper, else a file
    decrypted in userspace with the volume key that the passphrase unlocks (a container without
    dm_mod, e.g. a CI sandbox)."""
    mapping = f"anemos-check-{os.getpid()}"
    r = subprocess.run(["cryptsetup", "open", "--readonly", "--type", "luks2", "--key-file", "-", loop,
                        mapping], input=passphrase, capture_output=True)
    if r.returncode == 0:
        CLEANUP.append(["cryptsetup", "close", mapping])
        return f"/dev/mapper/{mapping}"
    if b"device-mapper" not in r.stderr:
        fail(f"cryptsetup open with the passphrase: {r.stderr.decode()}")
    print("note: no device-mapper on this host; decrypting in userspace with the volume key")
    out = run("cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file", "-", loop,
              stdin=passphrase.decode())
    lines = out.splitlines()
    i = next(n for n, ln in enumerate(lines) if ln.startswith("MK dump:"))
    hexkey = lines[i].split(":", 1)[1].strip()
    for ln in lines[i + 1:]:
        if not ln.startswith((" ", "\t")) or ":" in ln:
            break
        hexkey += ln.strip()
    key = bytes.fromhex(hexkey.replace(" ", ""))
    seg = dump.split("Data segments:", 1)[1]
    if "aes-xts-plain64" not in seg:
        fail(f"unexpected cipher:\n{seg}")
    offset = int(seg.split("offset:", 1)[1].split("[bytes]")[0])
    sector = int(seg.split("sector:", 1)[1].split("[bytes]")[0])
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    fd, path = tempfile.mkstemp(prefix="anemos-luks-", suffix=".fs")
    CLEANUP.append(["rm", "-f", path])
    with open(loop, "rb") as src, os.fdopen(fd, "wb") as dst:
        src.seek(offset)
        n = 0
        while True:
            block = src.read(sector * 256)
            if not block:
                break
            outb = bytearray()
            for j in range(0, len(block), sector):
                # plain64: the little-endian 512-byte sector number of the data segment.
                iv = ((n + j) // 512).to_bytes(16, "little")
                d = Cipher(algorithms.AES(key), modes.XTS(iv)).decryptor()
                outb += d.update(block[j:j + sector]) + d.finalize()
            dst.write(outb)
            n += len(block)
    return path


def main():
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    try:
        check(*sys.argv[1:])
    finally:
        for c in reversed(CLEANUP):
            r = subprocess.run(c, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"cleanup: {' '.join(c)}: {r.stderr.strip()}", file=sys.stderr)
    print("ok: luks deploy checked")


if __name__ == "__main__":
    main()
