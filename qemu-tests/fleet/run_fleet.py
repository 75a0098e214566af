#!/usr/bin/env python3
"""Fleet end to end: Ansible deploys two QEMU "old systems" with the anemos.fleet collection.

Usage: qemu-tests/fleet/run_fleet.py [--binary PATH] [RUN ...]
       RUN: check, deploy, partial, serial-stop (default: all, in that order)

Each run starts two old-system VMs, fleet-a and fleet-b (busybox and dropbear, the init
qemu-tests/fixtures/oldsys-init.sh, a fresh 512 MiB disk each), with user networking restricted
to the VM (-netdev user,restrict=on) and ssh forwarded from 127.0.0.1 only. Once both are up it
runs the example playbook ansible/examples/deploy.yml with ansible-core from the pinned
virtualenv (scripts/ansible-venv.sh), forks 2, against an inventory of the two, each with its
own payload directory. A VM is a machine that reboots: when QEMU exits on a reboot it boots
again, through OVMF from its disk once a deploy wrote it (the deploy image's bootloader stage
passed), else into the old system.

Runs and what each must show:
  check        --check --diff: both plans printed, recap changed=1 each, disks byte-identical,
               no deploy image started.
  deploy       both deploy; their deploy images run at overlapping times; recap changed=1 and
               failed=0 each; each boots its own payload's system (hostname fleet-a, fleet-b).
  partial      fleet-a's payload fails before writing (its root is xfs, which the deploy image
               has no mkfs.xfs for: refused by its check stage; the workstation cannot know what
               the image lacks) while fleet-b's succeeds: fleet-a failed with the stage and the
               error, its old system back and its disk byte-identical; fleet-b changed=1, boots.
  serial-stop  -e fleet_serial=1 -e fleet_max_fail_percentage=0, fleet-a (failing) first: the
               play stops after the first batch; fleet-b is not in the recap, never kexec'd, and
               its disk is byte-identical.

The playbook output and each VM's console are kept in qemu-tests/out/fleet/RUN/. Every process
goes through run.py's spawn() and is stopped at the end; one still running fails the run. There
is no skip: a missing tool fails.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import run as h  # noqa: E402  (qemu-tests/run.py: the scenario harness's process and VM helpers)

REPO = h.REPO
OUT = h.OUT / "fleet"
HOSTS = ["fleet-a", "fleet-b"]
PLAYBOOK = REPO / "ansible" / "examples" / "deploy.yml"
PAYLOADS = HERE / "payloads"
RUNS = ["check", "deploy", "partial", "serial-stop"]
TOOLS = ["qemu-system-x86_64", "ssh", "ssh-keygen", "sgdisk", "mkfs.ext4", "zstd", "python3"]
OVMF = ["/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"]
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
PLAYBOOK_TIMEOUT = 1500


def log(msg):
    h.log(f"fleet: {msg}")


class Fail(Exception):
    pass


class Machine:
    """One server: a thread booting QEMU again and again on the same disk and ssh port."""

    def __init__(self, name, run_dir, kernel, oldsys_img, disk, port):
        self.name, self.run_dir, self.kernel, self.oldsys_img = name, run_dir, kernel, oldsys_img
        self.disk, self.port = disk, port
        self.boots = []  # (kind, console text) of each finished boot
        self.ready = threading.Event()  # the old system's first boot answers
        self.stop = threading.Event()
        self.stop_at = 0.0
        self.error = None
        # When the deploy image started, and when the deployed system it wrote came up.
        self.deploy_start = self.deploy_end = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self.thread.start()

    def halt(self):
        # A few seconds of grace: the console line the deployed system prints right after its
        # ssh server starts is still read.
        self.stop_at = time.monotonic()
        self.stop.set()

    def _stopped(self):
        return self.stop.is_set() and time.monotonic() > self.stop_at + 5

    def _on_line(self, text):
        if "OLD-SYSTEM-READY" in text:
            self.ready.set()
        if self.deploy_start is None and "init starting (pid 1)" in text:
            self.deploy_start = time.monotonic()
        if self.deploy_start is not None and self.deploy_end is None and "ANEMOS-DEPLOYED-SYSTEM-OK" in text:
            self.deploy_end = time.monotonic()

    def _run(self):
        kind, n = "old", 0
        try:
            while not self.stop.is_set():
                n += 1
                sc = {"memory": "1024M", "timeout": PLAYBOOK_TIMEOUT, "net_port": self.port}
                if kind == "deployed":
                    sc["firmware"] = "ovmf"
                name = f"fleet/{self.run_dir.name}/{self.name}.boot{n}-{kind}"
                _, text, _, _ = h.run_qemu(sc, name, self.kernel, self.oldsys_img, [(self.disk, {"serial": "sys0"})],
                                           stop_when=self._stopped, on_line=self._on_line)
                self.boots.append((kind, text))
                if self.stop.is_set():
                    break
                if "reboot: Restarting system" not in text:
                    raise Fail(f"boot {n} ({kind}) ended without a reboot\n{h.excerpt(text)}")
                kind = "deployed" if kind == "old" and "STAGE bootloader ok" in text else "old"
        except Exception as e:  # reported by the run, which waits for this thread
            self.error = f"{self.name}: {e}"
            self.ready.set()

    def console(self):
        return "".join(t for _, t in self.boots)


def need_tools():
    missing = [t for t in TOOLS if shutil.which(t) is None] + [f for f in OVMF if not Path(f).exists()]
    if missing:
        raise SystemExit(f"fleet: missing {', '.join(missing)} (scripts/setup.sh installs them)")


def prepare(anemos, modules_dir):
    """Builds what every run shares: the test key, the systems' archive, the base image (with
    dropbear, so deploys are watched), the payloads' archives and the old system's image."""
    subs = h.placeholders(anemos)
    out, cache = h.OUT, h.CACHE
    h.call([str(REPO / "scripts" / "build-example.sh")], check=True, stdout=subprocess.DEVNULL)
    h.call([str(h.HERE / "fixtures" / "build-ssh-rootfs.sh"), str(anemos), str(out)], check=True)
    for host in HOSTS:
        shutil.copy(h.HERE / "payloads" / "deploy-ssh" / "rootfs.tar.zst", PAYLOADS / host / "rootfs.tar.zst")
    shutil.copy(h.HERE / "payloads" / "deploy-ssh" / "rootfs.tar.zst", PAYLOADS / "broken" / "rootfs.tar.zst")
    base = OUT / "base.img"
    h.call([str(h.HERE / "fixtures" / "build-watch-base.sh"), str(anemos), subs["busybox"], str(modules_dir), str(base),
            "virtio_pci", "virtio_blk", "virtio_net", "vfat", "nls_cp437", "nls_ascii"], check=True)
    boot = OUT / "oldsys-boot"
    shutil.rmtree(boot, ignore_errors=True)
    boot.mkdir(parents=True)
    shutil.copy(cache / "kernel" / "vmlinuz", boot / f"vmlinuz-{(cache / 'kernel' / 'modules').resolve().name}")
    sc = {"pack": {"rootfs": "busybox", "modules": ["virtio_pci", "virtio_blk", "virtio_net"],
                   "args": ["--init", str(h.HERE / "fixtures" / "oldsys-init.sh"), "--binary", "/usr/sbin/dropbear",
                            "--add", f"{out}/id_test.pub:/root/.ssh/authorized_keys", "--add", f"{boot}:/boot"]}}
    oldsys, _ = h.pack_image(anemos, sc, "fleet-oldsys", modules_dir)
    return base, oldsys


def write_inventory(path, machines, run_dir, base):
    key = h.OUT / "id_test"
    lines = ["---", "fleet:", "  hosts:"]
    for m in machines:
        lines += [f"    {m.name}:", "      ansible_host: 127.0.0.1", f"      ansible_port: {m.port}"]
    lines += [
        "  vars:",
        '    ansible_python_interpreter: "{{ ansible_playbook_python }}"',
        f'    anemos_payload: "{run_dir}/payloads/{{{{ inventory_hostname }}}}"',
        f"    anemos_image: {base}",
        "    anemos_ssh_options:",
        f"      - IdentityFile={key}",
        "      - StrictHostKeyChecking=no",
        "      - UserKnownHostsFile=/dev/null",
        "      - LogLevel=ERROR",
        "    anemos_append: anemos.countdown=1",
        "    anemos_timeout: 600",
    ]
    path.write_text("\n".join(lines) + "\n")


def ansible_playbook(venv, inventory, extra, anemos, logfile):
    """Runs the example playbook; prints and keeps its output. Returns (exit status, output)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "ansible"), ANSIBLE_HOME=str(OUT / "ansible-home"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    argv = [str(venv / "bin" / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK), "--forks", "2",
            "-e", f"anemos_binary={anemos}"] + extra
    log(f"ansible-playbook: {' '.join(argv)}")
    p = h.spawn(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(PLAYBOOK_TIMEOUT, h.terminate, [p])
    timer.start()
    text = []
    try:
        with open(logfile, "w") as f:
            for line in p.stdout:
                f.write(line)
                text.append(line)
                print(f"    | {line.rstrip()}", flush=True)
        rc = p.wait()
    finally:
        timer.cancel()
        h.terminate(p)
    return rc, "".join(text)


def recap(text):
    """{host: {ok, changed, unreachable, failed}} from the PLAY RECAP."""
    out = {}
    if "PLAY RECAP" not in text:
        return out
    for line in text.split("PLAY RECAP", 1)[1].splitlines():
        m = RECAP.match(line.strip())
        if m:
            out[m.group(1)] = dict(zip(["ok", "changed", "unreachable", "failed"], map(int, m.groups()[1:])))
    return out


def play(run, venv, anemos, kernel, oldsys, base, payload_of, extra):
    """One playbook run against two fresh old systems. Returns (status, output, machines,
    disks unchanged by host, seconds)."""
    run_dir = OUT / run
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "payloads").mkdir(parents=True)
    for host in HOSTS:
        shutil.copytree(PAYLOADS / payload_of[host], run_dir / "payloads" / host)
    machines = []
    for host in HOSTS:
        disk = run_dir / f"{host}.disk.img"
        h.make_disk(disk, {"size": "512M", "fill": "gpt-ext4"})
        machines.append(Machine(host, run_dir, kernel, oldsys, disk, h.free_port()))
    before = {m.name: h.sha256(m.disk) for m in machines}
    try:
        for m in machines:
            m.start()
        for m in machines:
            if not m.ready.wait(300) or m.error:
                raise Fail(m.error or f"{m.name}: the old system did not come up within 300 s")
        time.sleep(3)  # dropbear is started just before the ready line
        inventory = run_dir / "inventory.yml"
        write_inventory(inventory, machines, run_dir, base)
        t = time.monotonic()
        rc, text = ansible_playbook(venv, inventory, extra, anemos, run_dir / "ansible.log")
        secs = time.monotonic() - t
    finally:
        for m in machines:
            m.halt()
        for m in machines:
            m.thread.join(60)
    errors = [m.error for m in machines if m.error]
    if errors:
        raise Fail("\n".join(errors))
    same = {m.name: h.sha256(m.disk) == before[m.name] for m in machines}
    return rc, text, {m.name: m for m in machines}, same, secs


def expect(cond, what, text=""):
    if not cond:
        raise Fail(what + (f"\n{h.excerpt(text, 60)}" if text else ""))
    log(f"ok: {what}")


def check_recap(r, host, text, **want):
    got = r.get(host)
    expect(got is not None and all(got[k] == v for k, v in want.items()),
           f"recap {host}: {' '.join(f'{k}={v}' for k, v in want.items())} (got {got})", text)


def run_check(ctx):
    rc, text, ms, same, secs = play("check", *ctx, {h_: h_ for h_ in HOSTS}, ["--check", "--diff"])
    r = recap(text)
    expect(rc == 0, f"check: ansible-playbook exited 0 (got {rc})", text)
    for host in HOSTS:
        check_recap(r, host, text, changed=1, failed=0)
        expect(same[host], f"check: {host}'s disk is byte-identical")
        expect("init starting (pid 1)" not in ms[host].console() and len(ms[host].boots) == 1,
               f"check: {host} never left its old system")
    expect(text.count("DESTROYED: every partition and all data on /dev/vda") == 2, "check: both plans printed", text)
    expect(text.count("nothing was changed. Re-run with --yes") == 2, "check: both plans say nothing was changed", text)
    return secs, r


def run_deploy(ctx):
    rc, text, ms, _, secs = play("deploy", *ctx, {h_: h_ for h_ in HOSTS}, [])
    r = recap(text)
    expect(rc == 0, f"deploy: ansible-playbook exited 0 (got {rc})", text)
    for host in HOSTS:
        check_recap(r, host, text, changed=1, failed=0)
        kind, console = ms[host].boots[-1]
        expect(kind == "deployed" and f"ANEMOS-DEPLOYED-SYSTEM-OK hostname={host} " in console,
               f"deploy: {host} booted its own payload's system (hostname={host})", console)
    a, b = ms["fleet-a"], ms["fleet-b"]
    windows = [(m.deploy_start, m.deploy_end) for m in (a, b)]
    expect(all(s is not None and e is not None for s, e in windows), "deploy: both deploy images ran")
    overlap = min(a.deploy_end, b.deploy_end) - max(a.deploy_start, b.deploy_start)
    expect(overlap > 0, f"deploy: both deploys ran at the same time: {a.deploy_end - a.deploy_start:.0f} s and "
           f"{b.deploy_end - b.deploy_start:.0f} s from the deploy image's start to the deployed system, "
           f"{overlap:.0f} s of them together")
    return secs, r


def run_partial(ctx):
    rc, text, ms, same, secs = play("partial", *ctx, {"fleet-a": "broken", "fleet-b": "fleet-b"}, [])
    r = recap(text)
    expect(rc != 0, f"partial: ansible-playbook reports the failure (exit {rc})")
    check_recap(r, "fleet-a", text, failed=1)
    check_recap(r, "fleet-b", text, changed=1, failed=0)
    expect("fatal: [fleet-a]" in text and "anemos deploy failed in stage check: " in text
           and "mkfs.xfs not found in the image's tools root" in text, "partial: fleet-a failed with the stage (check) and the error", text)
    expect('"failed_stage": "check"' in text and '"disks_written": false' in text,
           "partial: fleet-a's result has failed_stage and disks_written", text)
    expect(same["fleet-a"], "partial: fleet-a's disk is byte-identical")
    expect(ms["fleet-a"].boots[-1][0] == "old" and len(ms["fleet-a"].boots) == 2,
           "partial: fleet-a rebooted into its old system")
    kind, console = ms["fleet-b"].boots[-1]
    expect(kind == "deployed" and "ANEMOS-DEPLOYED-SYSTEM-OK hostname=fleet-b " in console,
           "partial: fleet-b booted its own payload's system", console)
    return secs, r


def run_serial_stop(ctx):
    extra = ["-e", "fleet_serial=1", "-e", "fleet_max_fail_percentage=0"]
    rc, text, ms, same, secs = play("serial-stop", *ctx, {"fleet-a": "broken", "fleet-b": "fleet-b"}, extra)
    r = recap(text)
    expect(rc != 0, f"serial-stop: ansible-playbook reports the failure (exit {rc})")
    check_recap(r, "fleet-a", text, failed=1)
    expect("fleet-b" not in r and "[fleet-b]" not in text, "serial-stop: fleet-b's batch never started (not in the recap)", text)
    expect(same["fleet-b"] and "init starting (pid 1)" not in ms["fleet-b"].console(),
           "serial-stop: fleet-b was never kexec'd; its disk is byte-identical")
    return secs, r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*", metavar="RUN", help=f"one of {', '.join(RUNS)} (default: all)")
    ap.add_argument("--binary")
    a = ap.parse_args()
    runs = a.runs or RUNS
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        raise SystemExit(f"fleet: no run {', '.join(unknown)} (have: {', '.join(RUNS)})")
    need_tools()
    OUT.mkdir(parents=True, exist_ok=True)
    venv = Path(h.call([str(REPO / "scripts" / "ansible-venv.sh")], check=True, capture_output=True,
                       text=True).stdout.strip().splitlines()[-1])
    kernel, modules_dir = h.ensure_kernel()
    anemos = Path(a.binary).resolve() if a.binary else h.build_binary()
    base, oldsys = prepare(anemos, modules_dir)
    ctx = (venv, anemos, kernel, oldsys, base)
    steps = {"check": run_check, "deploy": run_deploy, "partial": run_partial, "serial-stop": run_serial_stop}
    figures = []
    t0 = time.monotonic()
    for run in runs:
        log(f"== {run}")
        secs, r = steps[run](ctx)
        figures.append((run, secs, r))
    for run, secs, r in figures:
        log(f"figures: {run}: playbook {secs:.0f} s; recap " +
            "; ".join(f"{host} changed={v['changed']} failed={v['failed']}" for host, v in r.items()))
    log(f"wall time {time.monotonic() - t0:.0f} s for the runs (VM boots included)")
    log(f"PASS: {', '.join(runs)}")


def entry():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, h._on_signal)
    code = 0
    try:
        main()
    except Fail as e:
        log(f"FAIL {e}")
        code = 1
    except h.Interrupted as e:
        log(f"interrupted ({signal.Signals(e.args[0]).name}): stopping every process started")
        code = 128 + e.args[0]
    except subprocess.CalledProcessError as e:
        log(f"FAIL {e}\n{e.stdout or ''}{e.stderr or ''}")
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        h.stop_all()
        leaks = h.reap_leaks()
    if leaks:
        log(f"FAIL: processes still running at the end (now killed):\n{h.leak_text(leaks)}")
        code = code or 1
    sys.exit(code)


if __name__ == "__main__":
    entry()
