//! Early setup: API filesystems, console stdio, environment, hostname.

use std::fs;
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use rustix::mount::{mount, MountFlags};

struct M {
    src: &'static str,
    dst: &'static str,
    fs: &'static str,
    flags: MountFlags,
    data: &'static str,
}

/// Mounts, in order, every API filesystem the init and its children need.
/// Already-mounted targets (EBUSY, e.g. devtmpfs automounted by the kernel) are fine.
pub fn mount_api_filesystems() -> Result<()> {
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let list = [
        M {
            src: "devtmpfs",
            dst: "/dev",
            fs: "devtmpfs",
            flags: MountFlags::NOSUID,
            data: "mode=0755",
        },
        M {
            src: "proc",
            dst: "/proc",
            fs: "proc",
            flags: nosuid_nodev_noexec,
            data: "",
        },
        M {
            src: "sysfs",
            dst: "/sys",
            fs: "sysfs",
            flags: nosuid_nodev_noexec,
            data: "",
        },
        M {
            src: "devpts",
            dst: "/dev/pts",
            fs: "devpts",
            flags: MountFlags::NOSUID | MountFlags::NOEXEC,
            data: "gid=5,mode=620,ptmxmode=000",
        },
        M {
            src: "shm",
            dst: "/dev/shm",
            fs: "tmpfs",
            flags: MountFlags::NOSUID | MountFlags::NODEV,
            data: "mode=1777",
        },
        M {
            src: "run",
            dst: "/run",
            fs: "tmpfs",
            flags: MountFlags::NOSUID | MountFlags::NODEV,
            data: "mode=0755",
        },
        M {
            src: "tmp",
            dst: "/tmp",
            fs: "tmpfs",
            flags: MountFlags::NOSUID | MountFlags::NODEV,
            data: "mode=1777",
        },
    ];
    for m in list {
        fs::create_dir_all(m.dst).with_context(|| format!("creating {}", m.dst))?;
        let data = c_str(m.data);
        match mount(
            m.src,
            m.dst,
            m.fs,
            m.flags,
            if m.data.is_empty() {
                None
            } else {
                Some(data.as_c_str())
            },
        ) {
            Ok(()) => log::debug!("mounted {} on {}", m.fs, m.dst),
            Err(rustix::io::Errno::BUSY) => log::debug!("{} already mounted", m.dst),
            Err(e) => return Err(e).with_context(|| format!("mounting {} on {}", m.fs, m.dst)),
        }
    }
    Ok(())
}

fn c_str(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap_or_default()
}

/// Points stdin/stdout/stderr at /dev/console when the kernel could not (no /dev/console
/// in the image, or it was opened before devtmpfs).
pub fn console_stdio() {
    let ok = rustix::io::fcntl_getfd(std::io::stderr().as_fd()).is_ok();
    if ok {
        return;
    }
    if let Ok(f) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        for fd in 0..3 {
            // SAFETY-free: rustix::stdio::dup2_* take owned-fd semantics care of themselves.
            let _ = match fd {
                0 => rustix::stdio::dup2_stdin(&f),
                1 => rustix::stdio::dup2_stdout(&f),
                _ => rustix::stdio::dup2_stderr(&f),
            };
        }
    }
}

/// PATH and friends for every child the init starts.
pub fn environment() {
    std::env::set_var(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    std::env::set_var("HOME", "/root");
    std::env::set_var(
        "TERM",
        std::env::var("TERM").unwrap_or_else(|_| "linux".into()),
    );
}

/// Sets the hostname (the payload's, once loaded; "anemos" until then).
pub fn set_hostname(name: &str) {
    if let Err(e) = rustix::system::sethostname(name.as_bytes()) {
        log::warn!("setting hostname {name:?}: {e}");
    }
}
