#!/usr/bin/env python3
"""Builds examples/debian-imgbuild on the host with `anemos makeimg --format dir` from the same
mirror the deploy used, and compares its file list with the deployed root partition. The paths
that legitimately differ are listed below with the reason; any other difference fails.
Usage: imgbuild_host_compare.py ANEMOS DISK EXAMPLE_DIR MIRROR_DIR OUT_DIR"""
import os
import shutil
import subprocess
import sys

from diskimg import file_list, mounted

anemos, disk, example, mirror, out = sys.argv[1:6]

# Only on the deployed disk, because the deploy (not the IMGBUILD) puts them there.
ONLY_DEPLOYED = {
    "lost+found": "made by mkfs.ext4 on the root partition",
    "boot/efi": "mount point of the ESP (anemos.toml)",
    "etc/fstab": "written by anemos from anemos.toml's disks",
    "var/log/anemos": "the deploy report and log",
    "var/log/anemos/deploy-report.txt": "the deploy report",
    "var/log/anemos/deploy.log": "the deploy log",
}

host = os.path.join(out, "imgserver-host")
shutil.rmtree(host, ignore_errors=True)
env = dict(os.environ, ANEMOS_HOSTNAME="imgserver")
r = subprocess.run(
    [anemos, "makeimg", "--format", "dir", "-o", host, "--mirror", f"deb [trusted=yes] copy://{mirror} ./"],
    cwd=example, env=env, capture_output=True, text=True)
if r.returncode != 0:
    raise SystemExit(f"FAIL: anemos makeimg on the host failed:\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
built = [l for l in r.stderr.splitlines() if "built in" in l]
print(f"host: {built[-1] if built else 'built'}")
try:
    host_files = set(file_list(host))
    with mounted(disk, 2) as root:
        dep_files = set(file_list(root))
finally:
    shutil.rmtree(host, ignore_errors=True)
only_dep = sorted(dep_files - host_files)
only_host = sorted(host_files - dep_files)
print(f"deployed root: {len(dep_files)} paths; host build: {len(host_files)} paths; common: {len(dep_files & host_files)}")
for p in only_dep:
    print(f"  only deployed: {p}  ({ONLY_DEPLOYED.get(p, 'UNEXPECTED')})")
for p in only_host:
    print(f"  only on the host: {p}  (UNEXPECTED)")
bad = [p for p in only_dep if p not in ONLY_DEPLOYED] + only_host
if bad:
    raise SystemExit(f"FAIL: {len(bad)} unexpected difference(s): {bad[:20]}")
print(f"ok: same file list apart from {len(only_dep)} path(s) the deploy itself adds")
