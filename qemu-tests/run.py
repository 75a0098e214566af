#!/usr/bin/env python3
"""QEMU scenario runner for anemos.

Each scenario is a TOML file under qemu-tests/scenarios/ stating the image to pack, the disks,
the kernel command line and the console lines expected (in order). The runner packs a fresh
image with the real `anemos pack`, boots Debian's cloud kernel in QEMU (TCG) with it, and fails
with the relevant console excerpt when a line is missing, a rejected line appears, or the
timeout hits.

Usage: qemu-tests/run.py [-j N] [--binary PATH] [SCENARIO.toml | NAME ...]
       (no scenarios = all of them)

  -j N, --jobs N   run up to N scenarios at once (default 2, or $ANEMOS_QEMU_JOBS); each VM
                   takes one core (TCG, -smp 1). The longest first: scenarios start in order of
                   their timeout (plus boot2's) descending, a free slot takes the next one. Their
                   log lines are interleaved, each prefixed "qemu-tests: NAME:"; a failure's
                   console excerpt is printed as one block. Figures and the summary come at the
                   end in the scenarios' own order (alphabetical, or as given), with the time of
                   each and the wall time.

Processes: everything the harness starts (QEMU, the HTTP server, host commands, setup and post
commands) is stopped after each scenario, on failure and on Ctrl-C/SIGTERM; a process it started
that is still alive after that (e.g. a background job of a setup command) fails the run and is
listed, then killed. With scenarios running at once, each one's processes are told apart by
their marker (see spawn()), so a leak fails only the scenario that started it. There is no
skip: a missing tool or kernel fails the run.

Scenario keys:
  description = "..."
  timeout = 90                      # seconds for the whole boot
  cmdline = "anemos.debug"          # appended to "console=ttyS0 panic=-1 ..."
  memory = "512M"
  setup = ["command", ...]          # shell commands run before packing (check=True)
  [pack]  compress = "zstd"; modules = ["virtio_blk"]; rootfs = "busybox"|PATH;
          payload = "examples/x"|PATH; args = ["--add", "a:b"]
          (rootfs/payload: a relative PATH is taken from the repository root)
          no_validate = true (pack the payload with `pack-payload --no-validate`: no host-side
          check of anemos.toml, IMGBUILD or rootfs archive, so the init's own checks are tested)
          corrupt_payload = "TEXT" (flip TEXT inside the packed payload: its sha256 must fail)
  [[disk]] size = "64M"; serial = "sys0"; fill = "ext4-with-files" | "gpt-ext4" | "zeros"
           label = "data" (the ext4 label of fill = "ext4-with-files")
           unchanged = true (sha256 the same after every boot; reported as figure diskI_sha256)
           | "deploy" (after the deploy's boot only: the deployed system may mount it in boot2)
           bus = "scsi" (scsi-hd on virtio-scsi; default virtio-blk); wwn = "0x..."; model = "..."
           bus = "nvme" (an NVMe controller with one namespace, /dev/nvme<i>n1; serial is
           required and becomes the by-id name nvme-QEMU_NVMe_Ctrl_<serial>); sector = 4096 (the
           namespace's logical and physical block size, 512 when absent: 4Kn disks)
  expect = ["line", ...]            # substrings that must appear, in this order
  reject = ["Kernel panic"]         # substrings that must never appear
  exit = "poweroff" | "reboot" | "any"   # how QEMU must end (-no-reboot makes both exit)
  [[send]] after = "substring"; text = "command\n"   # typed on the serial line
  [[figure]] name = "..."; start = "substring"; end = "substring"  # ms between two lines
  report_lines = ["regex with (?P<name>...)"]   # named groups of console lines become figures
  post = ["command", ...]           # shell commands after the boot; each must exit 0 (their
                                    # output: out/<run>.post.log)
  net = true                        # user networking, ssh forwarded from 127.0.0.1:{port}
  http = { dir = PATH, drop_first = true }   # test HTTP server, 10.0.2.100:80 in the guest
  [host_cmd] after = "substring"; run = "command"; expect = [...]; reject = [...]; timeout = 60
             exit = 0                 # the exit status the host command must end with
  efi = true                        # boot the kernel and image (-kernel/-initrd/-append) through
                                    # OVMF, so the system runs on UEFI with EFI variables; the
                                    # variable store (qemu-tests/out/NAME.efivars.fd, fresh per
                                    # run) is kept for [boot2], which boots the same way unless it
                                    # sets firmware = "ovmf"
  [boot2] ...                       # a second boot of the same disks (firmware = "ovmf", ...);
                                    # without firmware it boots the same deploy image again
  [boot2] firmware = "ovmf"         # boot the disks through UEFI (OVMF, a fresh variable store)
  [boot2] firmware = "seabios"      # boot the disks through legacy BIOS (SeaBIOS, -boot order=c):
                                    # the MBR's boot code, e.g. grub's core image; no -kernel
  [boot2] stop_after_expect = true  # stop the second boot once every expected line was seen
  [boot3] ... [boot9]               # further boots, in this order, the same way (their own keys)
  [bootN] timeout, cmdline, memory, firmware, send, expect, reject, qemu_args, detach,
          stop_after_expect, keep_efi_vars: as for the first boot or above; also:
  [bootN] exit = "poweroff" | "reboot" | "any"   # checked only when given (default: not checked)
  [bootN] post = ["command", ...]   # host commands after that boot (placeholders as in post)
  [bootN.pack] ...                  # boot another image, packed from this table like [pack]
                                    # (e.g. a different deploy over what the last one left)
  cut = { stage = "mkfs", after_ms = [MIN, MAX] }   # (top level or in [bootN]) a power cut:
          QEMU is killed with SIGKILL (no clean shutdown; what the guest had not written to
          its virtual disks is lost) a random whole number of ms in [MIN, MAX] (or exactly N
          with after_ms = N) after the console line "STAGE <stage> begin" arrived. The delay
          comes from the run's seed (printed once; $ANEMOS_CUT_SEED=N replays it) and the
          boot's name. after = "text": count from this console line instead. before = [...]:
          lines that, like "STAGE <stage> ok" and "STAGE <stage> fail", mean the moment was
          missed when they come after the anchor. The boot fails ("cut missed the stage") when the anchor never came, the VM
          ended first, or one of those lines reached the console before QEMU died (what QEMU
          wrote before the kill is read to its end first). The cut boot's exit is not checked;
          its figure <boot>_cut has the planned and the measured ms, the seed and the last
          console line before the cut. Each boot's console with the host's ms per line is
          also written to out/<run>.console.times.
  [boot2]/[boot3] detach = [1]      # these [[disk]] entries (by index) are left out of that boot
  efi_vars_from = "{out}/x.fd"       # with efi = true: start from this variable store (made by a
                                    # setup command) instead of a pristine OVMF_VARS
  [boot2] keep_efi_vars = true      # with efi = true and firmware = "ovmf": boot the disks with
                                    # the variable store the deploy wrote (its boot entries)

Placeholders (Python format syntax, so a literal brace is doubled in setup/post/host_cmd.run):
  {repo} the repository, {here} qemu-tests/, {out} qemu-tests/out/, {anemos} the binary,
  {cache} the cache directory ($ANEMOS_CACHE or qemu-tests/cache), {busybox} a tools root of
  busybox-static and its applet links (what rootfs = "busybox" packs), in: setup, post,
  host_cmd.run, [pack] rootfs/payload/args and http.dir. post also has {disk0}, {disk1}, ...
  (the disk images); host_cmd.run has {port} (the forwarded ssh port). A [pack] rootfs/payload
  or http.dir that is absolute after substitution is used as is, else taken from the repository.
"""
import argparse
import atexit
import shlex
import hashlib
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("ANEMOS_CACHE", HERE / "cache")).absolute()
OUT = HERE / "out"
BASE_CMDLINE = "console=ttyS0,115200 panic=-1 printk.devkmsg=on"
JOBS_ENV = "ANEMOS_QEMU_JOBS"
DEFAULT_JOBS = 2
LATER_BOOTS = tuple(f"boot{i}" for i in range(2, 10))  # [boot2] ... [boot9], run in this order
LATER_BOOT_KEYS = {"timeout", "cmdline", "memory", "firmware", "keep_efi_vars", "send", "exit", "expect", "reject",
                   "detach", "stop_after_expect", "qemu_args", "cut", "pack", "post",
                   "efi_vars", "net_port", "http_port"}  # the last three are set by the harness
CUT_SEED_ENV = "ANEMOS_CUT_SEED"

_print_lock = threading.Lock()  # one log call (a failure with its excerpt: one block) at a time


def log(msg):
    with _print_lock:
        print(f"qemu-tests: {msg}", flush=True)


# Every process the harness starts goes through spawn(): it runs in a session of its own (so a
# Ctrl-C on the terminal reaches only the harness, which then stops the children in order) and
# carries MARK=<marker> in its environment, which everything it starts in turn inherits. The
# marker is RUN_ID for what the harness starts before the scenarios (the kernel fetch) and
# RUN_ID.NAME for what scenario NAME starts (a Tracker per scenario, found by the thread running
# it). After each scenario the harness stops what that scenario registered, then looks for its
# survivors: a process carrying its marker, or still in one of the sessions it created (a
# daemon, a shell's background job, a socat QEMU forked) unless it carries another scenario's
# marker. At exit it does the same for every marker of the run and every session left. Leaks
# fail the run, are listed, and are killed.
MARK = "ANEMOS_HARNESS"
RUN_ID = f"{os.getpid()}.{time.time_ns()}"
GRACE = 5.0  # seconds between SIGTERM and SIGKILL


class Tracker:
    """The processes of one scenario (or of the harness itself): live Popen objects started by
    spawn() and the ids of the sessions they were started in."""

    def __init__(self, marker):
        self.marker = marker
        self.children = []
        self.sessions = set()
        self.lock = threading.Lock()

    def add(self, p):
        with self.lock:
            self.children.append(p)
            self.sessions.add(p.pid)

    def discard(self, p):
        with self.lock:
            if p in self.children:
                self.children.remove(p)

    def live(self):
        with self.lock:
            return list(self.children)


MAIN = Tracker(RUN_ID)
_trackers = {MAIN.marker: MAIN}  # every tracker whose processes may still be running
_registry_lock = threading.Lock()  # guards _trackers and _stopping; held while spawning
_stopping = False  # set on interrupt/exit: spawn() refuses, so nothing starts after the stop
_local = threading.local()  # .tracker: the tracker of the scenario this thread runs


class Interrupted(BaseException):
    """SIGINT/SIGTERM/SIGHUP: unwinds through every finally, like KeyboardInterrupt."""


class Cancelled(Exception):
    """The run is being stopped (interrupt): a scenario may start no further process."""


def _on_signal(signum, _frame):
    raise Interrupted(signum)


def current_tracker():
    return getattr(_local, "tracker", MAIN)


def spawn(args, **kw):
    t = current_tracker()
    env = dict(kw.pop("env", None) or os.environ)
    env[MARK] = t.marker
    with _registry_lock:
        if _stopping:
            raise Cancelled("the run is being stopped")
        p = subprocess.Popen(args, start_new_session=True, env=env, **kw)
        p.tracker = t
        t.add(p)
    return p


def _proc_stat(pid):
    """(state, pgid, sid, starttime) of a process, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[3]), int(fields[19])


def _proc_marker(pid):
    """The value of MARK in a process's (initial) environment, or None."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = f"{MARK}=".encode()
    for e in env:
        if e.startswith(prefix):
            return e[len(prefix):].decode(errors="replace")
    return None


def _of_this_run(marker):
    return marker is not None and (marker == RUN_ID or marker.startswith(RUN_ID + "."))


def _signal_group(p, sig):
    if p.returncode is None:
        # Not reaped yet (alive or a zombie): its pid, hence its group's id, is still taken.
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        return
    # Reaped: once its group emptied, the id may have been reused (pid_max can be 32768), so
    # only the group's members that carry this tracker's marker are signalled.
    marker = getattr(getattr(p, "tracker", None), "marker", None)
    if marker is None:
        return
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            state, pgid, _, _ = _proc_stat(d)
        except (OSError, ValueError, IndexError):
            continue
        if pgid == p.pid and state != "Z" and _proc_marker(d) == marker:
            try:
                os.kill(int(d), sig)
            except (ProcessLookupError, PermissionError):
                pass


def terminate(*procs):
    """Stops each process and its whole process group: SIGTERM, then SIGKILL after GRACE."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(p, signal.SIGKILL)
        p.wait()
        t = getattr(p, "tracker", None)
        if t is not None:
            t.discard(p)


def call(args, check=False, capture_output=False, **kw):
    """subprocess.run through spawn(). The command's own process group is stopped only when the
    harness is interrupted or fails while waiting: what a finished command leaves running is
    left for the leak check to report."""
    if capture_output:
        kw["stdout"] = kw["stderr"] = subprocess.PIPE
    p = spawn(args, **kw)
    try:
        out, err = p.communicate()
    except BaseException:
        terminate(p)
        raise
    if _stopping:
        # Interrupted while waiting (the signal reaches the main thread, which stopped this
        # command's leader): the rest of its group is stopped too, as on the main thread.
        terminate(p)
    p.tracker.discard(p)
    if check and p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, args, out, err)
    return subprocess.CompletedProcess(args, p.returncode, out, err)


def survivors(tracker=None):
    """(pid, start time, command line) of every live process started for `tracker` (None: by
    the whole run), directly or not."""
    me, found = os.getpid(), []
    if tracker is None:
        with _registry_lock:
            trackers = list(_trackers.values())
    else:
        trackers = [tracker]
    sessions = set()
    for t in trackers:
        with t.lock:
            sessions |= t.sessions
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            state, _, sid, start = _proc_stat(d)
            if state == "Z":
                continue
            marker = _proc_marker(d)
            if tracker is None:
                ours = _of_this_run(marker) or sid in sessions
            else:
                # In one of its sessions but marked by another scenario of this run: a session
                # id reused by that scenario after this one's process ended.
                ours = marker == tracker.marker or (sid in sessions and not _of_this_run(marker))
            if ours:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append((int(d), start, cmd.strip() or Path(f"/proc/{d}/comm").read_text().strip()))
        except (OSError, ValueError, IndexError):
            continue  # ended while being read
    return found


def _same_process(pid, start):
    try:
        return _proc_stat(pid)[3] == start
    except (OSError, ValueError, IndexError):
        return False


def reap_leaks(tracker=None):
    """Stops every child registered for `tracker` (None: for all of them), then kills and returns
    the (pid, command) of the processes that survived that."""
    if tracker is None:
        with _registry_lock:
            trackers = list(_trackers.values())
    else:
        trackers = [tracker]
    terminate(*[p for t in trackers for p in t.live()])
    leaks = survivors(tracker)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start, _ in leaks:
            if _same_process(pid, start):  # not a pid reused since the scan
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        if sig == signal.SIGTERM:
            deadline = time.monotonic() + GRACE
            while time.monotonic() < deadline and any(_same_process(pid, start) for pid, start, _ in leaks):
                time.sleep(0.1)
    for t in trackers:
        with t.lock:
            t.sessions.clear()  # all ended: their ids may be reused by unrelated processes from now on
    if tracker is not None and tracker is not MAIN:
        with _registry_lock:
            _trackers.pop(tracker.marker, None)
    return [(pid, cmd) for pid, _, cmd in leaks]


def stop_all():
    """On interrupt or exit: no process may start any more; every registered child of every
    scenario is stopped (with its process group)."""
    global _stopping
    with _registry_lock:
        _stopping = True
        trackers = list(_trackers.values())
    terminate(*[p for t in trackers for p in t.live()])


def leak_text(leaks):
    return "\n".join(f"    pid {pid}: {cmd}" for pid, cmd in leaks)


def ensure_kernel():
    call([str(HERE / "fetch-kernel.sh")], check=True, stdout=subprocess.DEVNULL)
    return CACHE / "kernel" / "vmlinuz", CACHE / "kernel" / "modules"


def build_binary():
    # Not through spawn(): a build server cargo may be configured with (sccache) is meant to
    # outlive the run, and cargo leaves nothing else running.
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    return REPO / "target" / "x86_64-unknown-linux-musl" / "release" / "anemos"


_busybox_lock = threading.Lock()  # scenarios running at once build it once


def busybox_root():
    """A tools root holding busybox-static and its applet links (cached)."""
    with _busybox_lock:
        return _busybox_root()


def _busybox_root():
    root = OUT / "busybox-root"
    if (root / "bin" / "sh").exists():
        return root
    bb = shutil.which("busybox") or "/bin/busybox"
    if not Path(bb).exists():
        raise SystemExit("qemu-tests: busybox-static is not installed (apt-get install busybox-static)")
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(bb, root / "bin" / "busybox")
    applets = call([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = root / "bin" / a
        if not link.exists():
            link.symlink_to("busybox")
    return root


def placeholders(anemos):
    """The substitutions every scenario command and path may use (see the docstring)."""
    return {"repo": str(REPO), "here": str(HERE), "anemos": str(anemos), "out": str(OUT), "cache": str(CACHE),
            "busybox": str(busybox_root())}


def expand(text, subs):
    """{key} replaced by subs[key], other braces left alone (for [pack] values)."""
    for k, v in subs.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def repo_path(value, subs):
    """A scenario path after substitution: as is when absolute, else under the repository."""
    v = Path(expand(value, subs))
    return v if v.is_absolute() else REPO / v


def pack_image(anemos, sc, name, modules_dir):
    p = sc.get("pack", {})
    subs = placeholders(anemos)
    img = OUT / f"{name}.img"
    args = [str(anemos), "pack", "-o", str(img), "--compress", p.get("compress", "zstd")]
    mods = p.get("modules", [])
    if mods:
        args += ["--kernel-modules", str(modules_dir), "--module", *mods]
    rootfs = p.get("rootfs")
    if rootfs == "busybox":
        args += ["--rootfs", str(busybox_root())]
    elif rootfs:
        args += ["--rootfs", str(repo_path(rootfs, subs))]
    if p.get("no_validate"):
        # Pack the payload without host-side validation, so the init's own checks are tested.
        pl = OUT / f"{name}.payload"
        call([str(anemos), "pack-payload", str(repo_path(p["payload"], subs)), "-o", str(pl), "--no-validate"], check=True)
        args += ["--payload", str(pl)]
    elif p.get("corrupt_payload"):
        # Pack the payload uncompressed, then flip bytes inside a file's data so the init's
        # sha256 check must catch it.
        pl = OUT / f"{name}.payload"
        call([str(anemos), "pack-payload", str(repo_path(p["payload"], subs)), "-o", str(pl), "--compress", "none"], check=True)
        data = pl.read_bytes()
        needle = p["corrupt_payload"].encode()
        if needle not in data:
            raise SystemExit(f"qemu-tests: {name}: corrupt_payload text {needle!r} not in payload")
        pl.write_bytes(data.replace(needle, b"X" * len(needle), 1))
        args += ["--payload", str(pl)]
    elif p.get("payload"):
        args += ["--payload", str(repo_path(p["payload"], subs))]
    args += [expand(a, subs) for a in p.get("args", [])]
    t = time.monotonic()
    call(args, check=True, cwd=REPO)
    return img, (time.monotonic() - t) * 1000


def make_disk(path, d):
    size = d.get("size", "64M")
    if path.exists():
        path.unlink()
    call(["truncate", "-s", size, str(path)], check=True)
    fill = d.get("fill", "zeros")
    if fill == "ext4-with-files":
        src = path.with_name(path.name + ".src")  # per disk: scenarios may run at once
        shutil.rmtree(src, ignore_errors=True)
        (src / "docs").mkdir(parents=True)
        (src / "docs" / "keep.txt").write_text("precious data\n")
        call(["mkfs.ext4", "-q", "-F", "-L", d.get("label", "data"), "-d", str(src), str(path)], check=True)
    elif fill == "gpt-ext4":
        # A disk with a GPT and one ext4 partition (an "old system").
        call(["sgdisk", "-o", "-n", "1:2048:0", "-c", "1:oldroot", str(path)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        call(["mkfs.ext4", "-q", "-F", "-L", "oldroot", "-E", "offset=1048576", str(path), "16M"], check=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Failure(Exception):
    pass


_ports_lock = threading.Lock()
_ports = set()  # handed out in this run: two scenarios running at once never get the same one


def free_port():
    import socket
    with _ports_lock:
        while True:
            with socket.socket() as so:
                so.bind(("127.0.0.1", 0))
                port = so.getsockname()[1]
            if port not in _ports:
                _ports.add(port)
                return port


def run_qemu(sc, name, kernel, image, disks, stop_when=None, on_line=None):
    cmdline = f"{BASE_CMDLINE} {sc.get('cmdline', '')}".strip()
    qemu = [
        "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", "max", "-m", sc.get("memory", "512M"),
        "-smp", "1", "-nographic", "-no-reboot", "-serial", "stdio", "-monitor", "none",
    ]
    if sc.get("net_port"):
        # Only user-mode networking, restricted, with ssh forwarded from 127.0.0.1 and, for
        # HTTP tests, 10.0.2.100:80 in the guest forwarded to the test server on 127.0.0.1.
        nd = f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{sc['net_port']}-:22"
        if sc.get("http_port"):
            # cmd: starts one socat per guest connection (a tcp: chardev would be a single,
            # shared connection, which breaks reconnects).
            nd += f",guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:127.0.0.1:{sc['http_port']}"
        qemu += ["-netdev", nd, "-device", "virtio-net-pci,netdev=n0"]
    else:
        qemu += ["-nic", "none"]
    if sc.get("firmware") == "ovmf":
        # Boot the disks through UEFI firmware: OVMF -> systemd-boot on the ESP -> the entry.
        if sc.get("keep_efi_vars"):
            # The variable store the first boot (efi = true) wrote into, e.g. its boot entries.
            vars_copy = sc["efi_vars"]
        else:
            vars_copy = OUT / f"{name}.OVMF_VARS.fd"
            shutil.copy("/usr/share/OVMF/OVMF_VARS_4M.fd", vars_copy)
        qemu += ["-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                 "-drive", f"if=pflash,format=raw,file={vars_copy}"]
    elif sc.get("firmware") == "seabios":
        # Boot the disks through legacy BIOS (QEMU's SeaBIOS): the MBR's boot code, e.g. grub's
        # core image in a BIOS boot partition. No -kernel, no UEFI variables.
        qemu += ["-boot", "order=c"]
    else:
        if sc.get("efi_vars"):
            # efi = true: OVMF boots the kernel given by -kernel itself (UEFI, EFI variables in
            # the scenario's own writable store, shared by its boots).
            qemu += ["-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                     "-drive", f"if=pflash,format=raw,file={sc['efi_vars']}"]
        qemu += ["-kernel", str(kernel), "-initrd", str(image), "-append", cmdline]
    if any(d.get("bus") == "scsi" for _, d in disks):
        qemu += ["-device", "virtio-scsi-pci,id=scsi0"]
    for i, (path, d) in enumerate(disks):
        if "sector" in d and d.get("bus") != "nvme":
            raise Failure(f"disk {i}: sector = ... is only for bus = \"nvme\"")
        qemu += ["-drive", f"file={path},if=none,id=d{i},format=raw"]
        if d.get("bus") == "scsi":
            # scsi-hd on virtio-scsi: the disk is /dev/sdX; serial, wwn and model reach the
            # guest through the SCSI INQUIRY data and VPD pages.
            dev = f"scsi-hd,drive=d{i},bus=scsi0.0,channel=0,scsi-id=0,lun={i}"
            for key, prop in (("serial", "serial"), ("wwn", "wwn"), ("model", "product")):
                if d.get(key):
                    dev += f",{prop}={d[key]}"
            qemu += ["-device", dev]
        elif d.get("bus") == "nvme":
            if not d.get("serial"):
                raise Failure(f"disk {i}: bus = \"nvme\" needs a serial")
            ss = int(d.get("sector", 512))
            qemu += ["-device", f"nvme,drive=d{i},serial={d['serial']},"
                     f"logical_block_size={ss},physical_block_size={ss}"]
        else:
            qemu += ["-device", f"virtio-blk-pci,drive=d{i}" + (f",serial={d['serial']}" if d.get("serial") else "")]
    qemu += sc.get("qemu_args", [])
    # Ad-hoc extra QEMU arguments, e.g. a packet capture (see qemu-tests/capture-dhcp.sh).
    # "{run}" becomes the run's name (scenario, or scenario.boot2) so files do not collide.
    qemu += shlex.split(os.environ.get("ANEMOS_QEMU_EXTRA", "").replace("{run}", name))
    log(f"{name}: booting: {' '.join(qemu)}")
    proc = spawn(qemu, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    timeout = sc.get("timeout", 90)
    start = time.monotonic()
    buf = b""
    lines = []  # (t_ms, text)
    sends = list(sc.get("send", []))
    reject = sc.get("reject", ["Kernel panic", "Attempted to kill init"])
    partial = b""
    send_pos = 0
    cut = plan_cut(sc["cut"], name) if sc.get("cut") else None
    anchor_t = None  # when the cut's anchor line arrived
    os.set_blocking(proc.stdout.fileno(), False)
    try:
        while True:
            if stop_when is not None and stop_when():
                break
            now = time.monotonic()
            if now - start > timeout:
                raise Failure(f"timeout after {timeout}s")
            wait = 0.2
            if anchor_t is not None:
                due = anchor_t + cut["delay_ms"] / 1000
                if now >= due:
                    buf = power_cut(proc, buf, cut, anchor_t)
                    partial = b""
                    lines.append(((time.monotonic() - start) * 1000, "(power cut: QEMU killed)"))
                    break
                wait = min(wait, due - now)
            r, _, _ = select.select([proc.stdout], [], [], wait)
            if r:
                chunk = proc.stdout.read() or b""
                if not chunk and proc.poll() is not None:
                    break
                buf += chunk
                partial += chunk
                while b"\n" in partial:
                    line, partial = partial.split(b"\n", 1)
                    text = line.decode("utf-8", "replace").rstrip("\r")
                    lines.append(((time.monotonic() - start) * 1000, text))
                text_all = buf.decode("utf-8", "replace")
                if cut is not None and anchor_t is None and cut["after"] in text_all:
                    anchor_t = time.monotonic()
                if on_line is not None:
                    on_line(text_all)
                for rj in reject:
                    if rj in text_all:
                        raise Failure(f"rejected console text appeared: {rj!r}")
                if sc.get("stop_after_expect") and check_order(text_all, sc.get("expect", [])) is None:
                    # Everything expected was seen: stop the VM (e.g. a deployed system at its
                    # login prompt that the test cannot log in to).
                    break
                if sends and sends[0]["after"] in text_all[send_pos:]:
                    send_pos = text_all.index(sends[0]["after"], send_pos) + len(sends[0]["after"])
                    s = sends.pop(0)
                    time.sleep(s.get("delay", 0.5))
                    proc.stdin.write(s["text"].encode())
                    proc.stdin.flush()
            elif proc.poll() is not None:
                rest = proc.stdout.read() or b""
                buf += rest
                partial += rest
                if not rest:
                    break
        if partial:
            lines.append(((time.monotonic() - start) * 1000, partial.decode("utf-8", "replace")))
    finally:
        terminate(proc)  # QEMU and what it forked (guestfwd socat)
        (OUT / f"{name}.console.log").write_bytes(buf)
        # The same lines with the host's ms since QEMU started (when each line arrived).
        (OUT / f"{name}.console.times").write_text("".join(f"{t:9.0f} {l}\n" for t, l in lines))
    text = buf.decode("utf-8", "replace")
    if cut is not None:
        if anchor_t is None:
            raise Failure(f"cut: {cut['after']!r} never appeared on the console: no power cut in stage {cut['stage']}")
        if "cut_ms" not in cut:
            raise Failure(f"cut missed the stage: the VM ended by itself {cut['delay_ms']} ms into stage {cut['stage']}, before the cut")
        after_anchor = text[text.index(cut["after"]):]
        done = [d for d in cut["done"] if d in after_anchor]
        if done:
            raise Failure(f"cut missed the stage: {done[0]!r} was on the console before the kill, "
                          f"{cut['cut_ms']} ms after {cut['after']!r} (seed {cut['seed']})")
        log(f"{name}: power cut {cut['cut_ms']} ms after {cut['after']!r} (planned {cut['delay_ms']} ms); "
            f"last console line: {cut['last_line']!r}")
        sc["_cut"] = {k: cut[k] for k in ("stage", "after", "seed", "delay_ms", "cut_ms", "last_line")}
    return proc.returncode, text, lines, time.monotonic() - start


_cut_seed = None


def cut_seed():
    """The seed of this run's cut delays: $ANEMOS_CUT_SEED, or a random one (printed once)."""
    global _cut_seed
    with _print_lock:
        if _cut_seed is None:
            env = os.environ.get(CUT_SEED_ENV)
            _cut_seed = int(env) if env else random.SystemRandom().randrange(1, 10**6)
            print(f"qemu-tests: power cuts: seed {_cut_seed} (replay: {CUT_SEED_ENV}={_cut_seed})", flush=True)
    return _cut_seed


def plan_cut(c, name):
    """A boot's `cut` table as a plan: the anchor line, the delay after it (drawn from after_ms
    with the run's seed and the boot's name, so the same seed gives the same delays), and the
    lines that mean the stage was over before the cut."""
    stage = c["stage"]
    after_ms = c.get("after_ms", 0)
    lo, hi = (after_ms, after_ms) if isinstance(after_ms, int) else tuple(after_ms)
    if not 0 <= lo <= hi:
        raise Failure(f"cut: after_ms must be N or [MIN, MAX] with 0 <= MIN <= MAX, not {after_ms!r}")
    seed = cut_seed()
    delay = random.Random(f"{seed}:{name}").randint(lo, hi)
    after = c.get("after", f"STAGE {stage} begin")
    done = [f"STAGE {stage} ok", f"STAGE {stage} fail"] + list(c.get("before", []))
    log(f"{name}: power cut planned {delay} ms (of {lo}..{hi}) after {after!r}, seed {seed}")
    return {"stage": stage, "after": after, "done": done, "delay_ms": delay, "seed": seed}


def power_cut(proc, buf, cut, anchor_t):
    """Kills QEMU at once (SIGKILL: no clean shutdown, the guest's unwritten caches are lost),
    records when, then reads what QEMU wrote to the console before it died. Returns the whole
    console output."""
    os.kill(proc.pid, signal.SIGKILL)
    cut["cut_ms"] = round((time.monotonic() - anchor_t) * 1000)
    proc.wait()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if not r:
            continue
        chunk = proc.stdout.read()
        if not chunk:
            break
        buf += chunk
    tail = [l for l in buf.decode("utf-8", "replace").splitlines() if l.strip()]
    cut["last_line"] = tail[-1].strip() if tail else ""
    return buf


def check_order(text, expect):
    pos = 0
    for e in expect:
        i = text.find(e, pos)
        if i < 0:
            return e
        pos = i + len(e)
    return None


def check_exit(label, text, exit_kind):
    if exit_kind == "poweroff" and "reboot: Power down" not in text:
        raise Failure(f"{label}: VM did not power off cleanly\n{excerpt(text)}")
    if exit_kind == "reboot" and "reboot: Restarting system" not in text:
        raise Failure(f"{label}: VM did not reboot\n{excerpt(text)}")


def excerpt(text, n=40):
    return "\n".join("    | " + l for l in text.splitlines()[-n:])


def run_scenario(path, anemos, kernel, modules_dir):  # noqa: C901
    sc = tomllib.loads(path.read_text())
    name = path.stem
    unknown = set(sc) - {"description", "timeout", "cmdline", "memory", "expect", "reject", "report_lines", "exit",
                         "qemu_args", "pack", "disk", "send", "figure", "post", "setup", "efi_vars_from", "host_cmd", "net", "http",
                         "efi", "cut", *LATER_BOOTS}
    if unknown or not sc.get("expect"):
        # Guards against TOML's rule that keys after [pack] belong to [pack].
        raise Failure(f"{name}: scenario must set top-level expect (before any [table]); unknown keys: {sorted(unknown)}")
    log(f"{name}: {sc.get('description', '')}")
    subs = placeholders(anemos)
    for cmd in sc.get("setup", []):
        call(cmd.format(**subs), shell=True, check=True)
    image, pack_ms = pack_image(anemos, sc, name, modules_dir)
    disks = []
    for i, d in enumerate(sc.get("disk", [])):
        p = OUT / f"{name}.disk{i}.img"
        make_disk(p, d)
        disks.append((p, d))
    before = {p: sha256(p) for p, _ in disks}
    if sc.get("efi"):
        # A fresh variable store per run, kept for the second boot (see efi in the docstring).
        efi_vars = OUT / f"{name}.efivars.fd"
        src = sc.get("efi_vars_from", "/usr/share/OVMF/OVMF_VARS_4M.fd").format(**subs)
        shutil.copy(src, efi_vars)
        sc["efi_vars"] = str(efi_vars)
        for key in LATER_BOOTS:
            fw = sc.get(key, {}).get("firmware")
            if sc.get(key) and (fw not in ("ovmf", "seabios") or sc[key].get("keep_efi_vars")):
                sc[key]["efi_vars"] = str(efi_vars)
    host = sc.get("host_cmd")
    host_proc = []
    if host or sc.get("net"):
        port = free_port()
        sc["net_port"] = port
        for key in LATER_BOOTS:
            if sc.get(key):
                sc[key]["net_port"] = port

    http_proc = None
    if sc.get("http"):
        sc["http_port"] = free_port()
        for key in LATER_BOOTS:
            if sc.get(key):
                sc[key]["http_port"] = sc["http_port"]
        h = sc["http"]
        argv = ["python3", str(HERE / "http_server.py"), str(repo_path(h["dir"], subs)), str(sc["http_port"])] + (["--drop-first"] if h.get("drop_first") else [])
        with open(OUT / f"{name}.http.log", "wb") as hlog:
            http_proc = spawn(argv, stdout=hlog, stderr=subprocess.STDOUT)
        time.sleep(0.5)

    def start_host(text_all):
        if host and not host_proc and host["after"] in text_all:
            cmd = host["run"].format(**subs, port=sc["net_port"])
            log(f"{name}: host command: {cmd}")
            with open(OUT / f"{name}.host.log", "wb") as hlog:
                host_proc.append(spawn(cmd, shell=True, stdout=hlog, stderr=subprocess.STDOUT))
    try:
        rc, text, lines, secs = run_qemu(sc, name, kernel, image, disks, on_line=start_host)
    except Failure as f:
        text = (OUT / f"{name}.console.log").read_text(errors="replace")
        raise Failure(f"{name}: {f}\n{excerpt(text)}")
    finally:
        if not any(sc.get(k) for k in LATER_BOOTS):
            terminate(http_proc)
    missing = check_order(text, sc.get("expect", []))
    if missing is not None:
        raise Failure(f"{name}: expected console line not seen (in order): {missing!r}\n{excerpt(text)}")
    cuts = {}
    if sc.get("cut"):
        cuts["boot1"] = sc["_cut"]  # a cut boot ends killed: no clean power-off to check
    else:
        check_exit(name, text, sc.get("exit", "poweroff"))
    for p, d in disks:
        if d.get("unchanged") and sha256(p) != before[p]:
            raise Failure(f"{name}: disk {p.name} changed but must not")
    disk_subs = {f"disk{i}": str(p) for i, (p, _) in enumerate(disks)}

    def run_posts(cmds, label, run_name):
        log_path = OUT / f"{run_name}.post.log"  # every post command's whole output, for the record
        log_path.unlink(missing_ok=True)
        for cmd in cmds:
            line = cmd.format(**subs, **disk_subs)
            r = call(line, shell=True, capture_output=True, text=True)
            with open(log_path, "a") as pl:
                pl.write(f"$ {line}\n{r.stdout}{r.stderr}")
            if r.returncode != 0:
                raise Failure(f"{label}: post-check failed: {line}\n{r.stdout}{r.stderr}")
            log(f"{label}: post-check ok: {r.stdout.strip().splitlines()[-1] if r.stdout.strip() else line}")
    run_posts(sc.get("post", []), name, name)
    later_s = {}
    for key in LATER_BOOTS:
        if not sc.get(key):
            continue
        b2 = dict(sc[key])
        unknown = set(b2) - LATER_BOOT_KEYS
        if unknown:
            raise Failure(f"{name}: [{key}] has unknown keys: {sorted(unknown)}")
        b2.setdefault("reject", ["Kernel panic"])
        # detach = [i, ...]: those [[disk]] entries are not attached in this boot (a member
        # disk pulled from the machine).
        detach = set(b2.get("detach", []))
        if not detach <= set(range(len(disks))):
            raise Failure(f"{name}: [{key}] detach names a disk that does not exist: {sorted(detach)}")
        attached = [(p, d) for i, (p, d) in enumerate(disks) if i not in detach]
        stop = (lambda: host_proc[0].poll() is not None) if host_proc else None
        image2 = image
        if b2.get("pack"):
            # Another image for this boot: e.g. a different deploy over what the last one left.
            image2, _ = pack_image(anemos, b2, f"{name}.{key}", modules_dir)
        try:
            _, text2, _, later_s[key] = run_qemu(b2, f"{name}.{key}", kernel, image2, attached, stop_when=stop)
        except Failure as f:
            text2 = (OUT / f"{name}.{key}.console.log").read_text(errors="replace")
            raise Failure(f"{name} ({key}): {f}\n{excerpt(text2)}")
        missing = check_order(text2, b2.get("expect", []))
        if missing is not None:
            raise Failure(f"{name} ({key}): expected console line not seen: {missing!r}\n{excerpt(text2)}")
        if b2.get("cut"):
            cuts[key] = b2["_cut"]
        elif "exit" in b2:
            check_exit(f"{name} ({key})", text2, b2["exit"])
        for p, d in disks:
            # "deploy": the deployed system may mount it (e.g. a preserved /home), which
            # changes its superblock; only the deploy itself must leave it as it was.
            if d.get("unchanged") is True and sha256(p) != before[p]:
                raise Failure(f"{name}: disk {p.name} changed during {key} but must not")
        run_posts(b2.get("post", []), f"{name} ({key})", f"{name}.{key}")
    if host:
        if not host_proc:
            raise Failure(f"{name}: the host command never started (no {host['after']!r} on the console)")
        try:
            hrc = host_proc[0].wait(timeout=host.get("timeout", 60))
        except subprocess.TimeoutExpired:
            terminate(host_proc[0])
            hrc = "timeout"
        hout = (OUT / f"{name}.host.log").read_text(errors="replace")
        bad = [r for r in host.get("reject", []) if r in hout]
        if hrc != host.get("exit", 0) or bad or any(e not in hout for e in host.get("expect", [])):
            raise Failure(f"{name}: host command ended with {hrc}; output:\n{hout[-3000:]}")
        log(f"{name}: host command ok: {hout.strip().splitlines()[-1]}")
    figures = {"pack_ms": round(pack_ms), "boot_s": round(secs, 1), "image_bytes": image.stat().st_size}
    for key, secs2 in later_s.items():
        figures[f"{key}_s"] = round(secs2, 1)
    for key, c in cuts.items():
        figures[f"{key}_cut"] = c
    for i, (p, d) in enumerate(disks):
        if d.get("unchanged"):
            figures[f"disk{i}_sha256"] = before[p]
    for f in sc.get("figure", []):
        t0 = next((t for t, l in lines if f["start"] in l), None)
        t1 = next((t for t, l in lines if f["end"] in l), None)
        if t0 is not None and t1 is not None:
            figures[f["name"]] = round(t1 - t0)
    for f in sc.get("report_lines", []):
        for _, l in lines:
            m = re.search(f, l)
            if m:
                figures.update(m.groupdict())
    log(f"{name}: PASS {figures}")
    return figures


def weight(path):
    """The scheduling key: the scenario's timeout plus its second boot's (a bound on how long it
    takes). Unreadable files weigh 0: run_scenario reports them."""
    try:
        sc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return 0
    try:
        w = sc.get("timeout", 90)
        for key in LATER_BOOTS:
            if isinstance(sc.get(key), dict):
                w += sc[key].get("timeout", 90)
        return float(w)
    except (TypeError, ValueError):
        return 0


def run_one(path, anemos, kernel, modules_dir):
    """Runs one scenario in this thread, with a process tracker of its own, and stops and checks
    its processes afterwards. Returns (figures or None when it failed, seconds)."""
    name = path.stem
    t = Tracker(f"{RUN_ID}.{name}")
    with _registry_lock:
        _trackers[t.marker] = t
    _local.tracker = t
    start = time.monotonic()
    figures = fail = None
    try:
        figures = run_scenario(path, anemos, kernel, modules_dir)
    except Failure as e:
        fail = str(e)
    except subprocess.CalledProcessError as e:
        out = "".join(x if isinstance(x, str) else x.decode(errors="replace") for x in (e.stdout, e.stderr) if x)
        fail = f"{name}: {e}" + (f"\n{out.rstrip()}" if out.strip() else "")
    except Cancelled as e:
        fail = f"{name}: {e}"
    except SystemExit as e:
        fail = f"{name}: {e.code}"
    except Exception:
        fail = f"{name}: harness error\n{traceback.format_exc().rstrip()}"
    finally:
        leaks = reap_leaks(t)
        _local.tracker = MAIN
    secs = time.monotonic() - start
    if fail is not None and _stopping:
        reason = fail.splitlines()[0].removeprefix(f"{name}: ")
        log(f"{name}: ended by the interrupt: {reason}")  # no excerpt: not a result
    elif fail is not None:
        log(f"FAIL {fail}")  # one block, excerpt included: not interleaved with other scenarios
    if leaks:
        log(f"FAIL {name}: processes it started were still running after it ended (now killed):\n{leak_text(leaks)}")
    return (None if fail is not None or leaks else figures), secs


_workers = []  # the threads running scenarios, joined (bounded) on interrupt


def run_all(chosen, jobs, anemos, kernel, modules_dir):
    """Runs the scenarios, up to `jobs` at once, the longest first. Returns {name: (figures or
    None, seconds)}."""
    queue = sorted(chosen, key=weight, reverse=True)  # stable: equal weights keep their order
    qlock = threading.Lock()
    results = {}

    def worker():
        while True:
            with qlock:
                if not queue or _stopping:
                    return
                p = queue.pop(0)
            results[p.stem] = run_one(p, anemos, kernel, modules_dir)

    for i in range(min(jobs, len(queue))):
        th = threading.Thread(target=worker, name=f"slot{i}", daemon=True)
        _workers.append(th)
        th.start()
    # Only the main thread gets signals: it waits here (join with a timeout, so a signal is
    # handled at once) and an Interrupted raised here is handled in harness().
    while any(th.is_alive() for th in _workers):
        for th in _workers:
            th.join(timeout=0.5)
    return results


def positive_int(v):
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {v!r}")
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenarios", nargs="*")
    ap.add_argument("--binary")
    ap.add_argument("-j", "--jobs", type=positive_int, default=None,
                    help=f"scenarios run at once (default {DEFAULT_JOBS}, or ${JOBS_ENV})")
    a = ap.parse_args()
    jobs = a.jobs
    if jobs is None:
        try:
            jobs = positive_int(os.environ.get(JOBS_ENV) or DEFAULT_JOBS)
        except argparse.ArgumentTypeError as e:
            raise SystemExit(f"qemu-tests: {JOBS_ENV} {e}")
    OUT.mkdir(parents=True, exist_ok=True)
    all_sc = sorted((HERE / "scenarios").glob("*.toml"))
    chosen = []
    for s in a.scenarios or [str(p) for p in all_sc]:
        p = Path(s)
        if not p.exists():
            p = HERE / "scenarios" / f"{s}.toml"
        if not p.exists():
            raise SystemExit(f"qemu-tests: no scenario {s!r} (have: {', '.join(x.stem for x in all_sc)})")
        if any(c.stem == p.stem for c in chosen):
            continue  # the same name twice would share its files in out/ (and its marker)
        chosen.append(p)
    t0 = time.monotonic()
    kernel, modules_dir = ensure_kernel()
    anemos = Path(a.binary) if a.binary else build_binary()
    log(f"binary {anemos}: {anemos.stat().st_size} bytes")
    leaks = reap_leaks(MAIN)  # before the scenarios: nothing of the kernel fetch may be left
    if leaks:
        raise SystemExit(f"qemu-tests: FAIL: processes of the kernel fetch were still running (now killed):\n{leak_text(leaks)}")
    log(f"{len(chosen)} scenarios, {min(jobs, len(chosen))} at a time")
    t1 = time.monotonic()
    results = run_all(chosen, jobs, anemos, kernel, modules_dir)
    wall = time.monotonic() - t1
    failures = [p.stem for p in chosen if results.get(p.stem, (None, 0))[0] is None]
    log(f"figures: binary_bytes={anemos.stat().st_size}")
    for p in chosen:
        figures = results.get(p.stem, (None, 0))[0]
        if figures is not None:
            log(f"figures: {p.stem}: {figures}")
    total = sum(secs for _, secs in results.values())
    log("times: " + ", ".join(f"{p.stem} {results[p.stem][1]:.1f}s" for p in chosen if p.stem in results))
    log(f"wall time {wall:.1f}s for the scenarios (-j {jobs}; {total:.1f}s one after another), "
        f"{time.monotonic() - t0:.1f}s with the kernel and binary")
    if failures:
        log(f"{len(failures)} of {len(chosen)} scenarios failed: {', '.join(failures)}")
        sys.exit(1)
    log(f"all {len(chosen)} scenarios passed")


def harness():
    """main() with every started process stopped on any exit (failure, Ctrl-C, SIGTERM), and the
    run failed if one was still alive."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    atexit.register(reap_leaks)  # a last resort; the finally below normally leaves nothing
    code = 0
    try:
        main()
    except Interrupted as e:
        signum = e.args[0]
        log(f"interrupted ({signal.Signals(signum).name}): stopping every process the harness started")
        code = 128 + signum
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (1 if e.code else 0)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        # Every running scenario's children are stopped here (after an interrupt; otherwise
        # there are none), then the scenario threads end their scenarios and check their leaks.
        stop_all()
        deadline = time.monotonic() + 4 * GRACE
        for th in _workers:
            th.join(timeout=max(0.0, deadline - time.monotonic()))
        leaks = reap_leaks()
    if leaks:
        log(f"FAIL: processes the harness started were still running at exit (now killed):\n{leak_text(leaks)}")
        code = code or 1
    sys.exit(code)


if __name__ == "__main__":
    harness()
