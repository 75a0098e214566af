//! The PID-1 init of the deploy image.
//!
//! It never returns: every path ends in reboot(2), power-off or a recovery console, and a
//! panic anywhere is caught and routed into the failure policy, so the kernel never sees
//! init exit.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

/// Init mode when we are PID 1, or when invoked as `/init` / `init` (e.g. by a test harness
/// or another init that execs us).
pub fn should_run_as_init(pid: u32, argv0: &OsStr) -> bool {
    if pid == 1 {
        return true;
    }
    Path::new(argv0).file_name().map(|n| n == "init").unwrap_or(false)
}

fn console(msg: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{msg}");
}

fn mount_early() {
    use rustix::mount::{mount, MountFlags};
    for (src, dst, fs) in [("devtmpfs", "/dev", "devtmpfs"), ("proc", "/proc", "proc"), ("sysfs", "/sys", "sysfs")] {
        let _ = std::fs::create_dir_all(dst);
        if let Err(e) = mount(src, dst, fs, MountFlags::empty(), None) {
            if e != rustix::io::Errno::BUSY {
                console(&format!("anemos: warning: mounting {fs} on {dst}: {e}"));
            }
        }
    }
}

fn power_off() -> ! {
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    // reboot(2) only returns on error (e.g. not PID 1 in a test run): idle forever rather
    // than exit, which would panic the kernel.
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Entry point of init mode.
pub fn run() -> ! {
    let r = std::panic::catch_unwind(|| {
        console(&format!("{} init starting (pid {})", crate::version::banner(), std::process::id()));
        console("STAGE early-mounts begin");
        mount_early();
        console("STAGE early-mounts ok");
    });
    if r.is_err() {
        console("anemos: init panicked; powering off");
    }
    console("anemos: powering off");
    power_off()
}
