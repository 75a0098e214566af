"""Host-side helpers for the checks: mount a partition of a raw disk image read-only."""
import contextlib
import re
import subprocess
import tempfile


def partition_range(disk, num):
    """(offset, size) in bytes of GPT partition NUM of DISK, from sgdisk."""
    info = subprocess.run(["sgdisk", "-i", str(num), disk], capture_output=True, text=True).stdout
    m1, m2 = re.search(r"First sector: (\d+)", info), re.search(r"Last sector: (\d+)", info)
    if not m1 or not m2:
        raise SystemExit(f"FAIL: {disk} has no partition {num}:\n{info}")
    first, last = int(m1.group(1)), int(m2.group(1))
    return first * 512, (last - first + 1) * 512


@contextlib.contextmanager
def mounted(disk, num, fstype=None):
    """Mounts partition NUM of DISK read-only (no journal replay, so the image is not written)
    on a temporary directory; unmounts it afterwards."""
    off, size = partition_range(disk, num)
    opts = f"ro,loop,offset={off},sizelimit={size}"
    if fstype in (None, "ext4"):
        opts += ",noload"
    with tempfile.TemporaryDirectory() as mnt:
        argv = ["mount", "-o", opts] + (["-t", fstype] if fstype else []) + [disk, mnt]
        subprocess.run(argv, check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", mnt], check=True)


def file_list(root, skip=()):
    """Every path under ROOT (relative, sorted), not descending into SKIP prefixes."""
    out = subprocess.run(["find", root, "-mindepth", "1", "-printf", "%P\\n"], capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.splitlines() if not any(p == s or p.startswith(s + "/") for s in skip))
