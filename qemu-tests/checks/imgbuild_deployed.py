#!/usr/bin/env python3
"""Host checks of a disk deployed from examples/debian-imgbuild: the effects of every makeimg
step (files, patch, template, secret, provision) on the root partition, and that the secret's
content appears neither on the console nor in the deploy report.
Usage: imgbuild_deployed.py DISK EXAMPLE_DIR CONSOLE_LOG"""
import os
import stat
import sys

from diskimg import mounted

disk, example, console = sys.argv[1:4]
failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def read(root, rel):
    try:
        with open(os.path.join(root, rel), errors="replace") as f:
            return f.read()
    except OSError as e:
        return f"<{e}>"


secret_path = os.path.join(example, "secrets/etc/ssh/ssh_host_ed25519_key")
secret = open(secret_path).read()
# The key's body lines (the BEGIN/END markers are not secret).
secret_lines = [l for l in secret.splitlines() if l and not l.startswith("-----")]

with mounted(disk, 2) as root:
    check(read(root, "etc/hostname").strip() == "imgserver", "files: /etc/hostname is imgserver")
    check(read(root, "srv/app/README").startswith("This directory belongs"), "files: /srv/app/README copied")
    unit = "etc/systemd/system/hello-anemos.service"
    check(read(root, unit) == read(example, "files/" + unit), "files: hello-anemos.service copied as is")
    st = os.lstat(os.path.join(root, unit))
    check(st.st_uid == 0 and st.st_gid == 0, f"files: owned by root (uid {st.st_uid}, gid {st.st_gid})")
    sshd = read(root, "etc/ssh/sshd_config")
    check("\nPasswordAuthentication no\n" in sshd and "#PasswordAuthentication yes" not in sshd,
          "patch: sshd_config has PasswordAuthentication no")
    check(not os.path.exists(os.path.join(root, "etc/ssh/sshd_config.makeimg.patch")), "patch: the .makeimg.patch itself is not in the image")
    check(read(root, "etc/motd") == "Welcome to imgserver: Debian 12 built from an IMGBUILD by anemos makeimg.\n",
          "template: /etc/motd rendered with ANEMOS_HOSTNAME")
    key = os.path.join(root, "etc/ssh/ssh_host_ed25519_key")
    st = os.lstat(key)
    check(read(root, "etc/ssh/ssh_host_ed25519_key") == secret, "secret: the host key is the project's secret")
    check(stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0, f"secret: mode {oct(stat.S_IMODE(st.st_mode))}, uid {st.st_uid}")
    users = {l.split(":")[0]: l.split(":") for l in read(root, "etc/passwd").splitlines() if l}
    check("app" in users, "provision: user app created")
    if "app" in users:
        uid = int(users["app"][2])
        st = os.stat(os.path.join(root, "srv/app"))
        check(st.st_uid == uid, f"provision: /srv/app owned by app (uid {st.st_uid}, app is {uid})")
    link = os.path.join(root, "etc/systemd/system/multi-user.target.wants/hello-anemos.service")
    check(os.path.islink(link) and os.readlink(link) == "/etc/systemd/system/hello-anemos.service",
          "provision: hello-anemos.service enabled")
    check(not os.path.exists(os.path.join(root, ".makeimg.IMGBUILD")), "provision: the IMGBUILD copy was removed")
    check(any(n.startswith("vmlinuz-") for n in os.listdir(os.path.join(root, "boot"))), "bootstrap: a kernel in /boot")
    fstab = read(root, "etc/fstab")
    check("LABEL=home" in fstab and "/home" in fstab, "fstab: the preserved disk is mounted at /home")
    report = read(root, "var/log/anemos/deploy-report.txt")
    check(not report.startswith("<"), "deploy report present")
    check(not any(l in report for l in secret_lines), "secret: not in the deploy report")

log = open(console, errors="replace").read()
check(not any(l in log for l in secret_lines), f"secret: none of its {len(secret_lines)} lines on the console (kernel and init log)")
if failures:
    raise SystemExit(f"{len(failures)} check(s) failed")
print("all deployed-image checks passed")
