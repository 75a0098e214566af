//! PID-1 duties: reaping orphans, signals, and the final reboot(2).
//!
//! Children we start ourselves (shells, mkfs, installers) are spawned through [`spawn`], which
//! records their pid under a lock; the reaper thread only collects exited processes that are
//! *not* ours, so `Child::wait` still sees its own child's status. Without the lock a child
//! could exit between fork and registration and be reaped by the wrong party.

use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cmd::TRACKED;

/// Reaps exited children that nobody is waiting for (orphans re-parented to PID 1).
fn reap_once() -> usize {
    let mut n = 0;
    loop {
        let g = TRACKED.lock().unwrap_or_else(|e| e.into_inner());
        // WNOWAIT: look without collecting, so a tracked child's status stays for its owner.
        let peek = waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        );
        let pid = match peek {
            Ok(WaitStatus::StillAlive) | Err(_) => return n,
            Ok(s) => match s.pid() {
                Some(p) => p,
                None => return n,
            },
        };
        if g.as_ref()
            .map(|s| s.contains(&pid.as_raw()))
            .unwrap_or(false)
        {
            return n;
        }
        let _ = waitpid(Pid::from_raw(pid.as_raw()), Some(WaitPidFlag::WNOHANG));
        n += 1;
        log::debug!("reaped orphan process {pid}");
    }
}

/// Starts the reaper thread.
pub fn start_reaper() {
    let _ = std::thread::Builder::new()
        .name("reaper".into())
        .spawn(|| loop {
            reap_once();
            std::thread::sleep(Duration::from_millis(250));
        });
}

/// What a signal sent to PID 1 asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    Reboot,
    Poweroff,
}

/// The mapping documented in docs/init.md: SIGINT (ctrl-alt-del, after RB_DISABLE_CAD) and
/// SIGTERM reboot, SIGPWR and SIGUSR2 power off (the sysvinit/systemd conventions).
pub fn signal_request(sig: Signal) -> Option<PowerRequest> {
    match sig {
        Signal::SIGINT | Signal::SIGTERM => Some(PowerRequest::Reboot),
        Signal::SIGPWR | Signal::SIGUSR2 => Some(PowerRequest::Poweroff),
        _ => None,
    }
}

/// Blocks the handled signals in this thread (inherited by threads started later; std's
/// Command resets the mask in children) and starts a thread that acts on them.
pub fn start_signal_thread() {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGPWR,
        Signal::SIGUSR2,
    ] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        log::warn!("could not block signals; SIGTERM/SIGINT/SIGPWR will be ignored");
        return;
    }
    // Ctrl-alt-del then sends SIGINT to PID 1 instead of an immediate hard reboot.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let Ok(sig) = set.wait() else { continue };
            match signal_request(sig) {
                Some(PowerRequest::Reboot) => {
                    log::warn!("received {sig:?}: rebooting");
                    power(PowerRequest::Reboot);
                }
                Some(PowerRequest::Poweroff) => {
                    log::warn!("received {sig:?}: powering off");
                    power(PowerRequest::Poweroff);
                }
                None => {}
            }
        });
}

/// Syncs, unmounts what it can (reverse mount order), then reboots or powers off.
/// Never returns: if reboot(2) fails (not PID 1, e.g. a test), it idles forever rather than
/// exiting, because PID 1 exiting panics the kernel.
pub fn power(req: PowerRequest) -> ! {
    rustix::fs::sync();
    unmount_all();
    rustix::fs::sync();
    let cmd = match req {
        PowerRequest::Reboot => rustix::system::RebootCommand::Restart,
        PowerRequest::Poweroff => rustix::system::RebootCommand::PowerOff,
    };
    if let Err(e) = rustix::system::reboot(cmd) {
        log::error!("reboot(2) failed: {e}; halting here");
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Unmounts every mount below / except the API filesystems, deepest first.
pub fn unmount_all() {
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let keep = [
        "/", "/dev", "/proc", "/sys", "/run", "/dev/pts", "/dev/shm", "/tmp",
    ];
    let mut points: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| !keep.contains(p))
        .collect();
    points.reverse();
    for p in points {
        let p = p.replace("\\040", " ");
        if let Err(e) = rustix::mount::unmount(p.as_str(), rustix::mount::UnmountFlags::empty()) {
            log::warn!("unmounting {p}: {e}");
        } else {
            log::debug!("unmounted {p}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::{spawn, wait};
    use std::process::Command;

    #[test]
    fn signal_mapping() {
        assert_eq!(signal_request(Signal::SIGINT), Some(PowerRequest::Reboot));
        assert_eq!(signal_request(Signal::SIGTERM), Some(PowerRequest::Reboot));
        assert_eq!(signal_request(Signal::SIGPWR), Some(PowerRequest::Poweroff));
        assert_eq!(signal_request(Signal::SIGHUP), None);
    }

    #[test]
    fn tracked_child_status_is_kept() {
        // The reaper itself is exercised in QEMU (it would steal other tests' children here).
        let mut c = spawn(Command::new("sh").args(["-c", "exit 7"])).unwrap();
        let st = wait(&mut c).unwrap();
        assert_eq!(st.code(), Some(7));
        assert!(!TRACKED
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .contains(&(c.id() as i32)));
    }
}
