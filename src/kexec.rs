//! kexec_file_load(2) and the kexec reboot. Neither nix nor rustix wraps kexec_file_load
//! (both cover kexec only as a reboot command), so this is a thin libc::syscall wrapper.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Loads `kernel` (+ optional initrd) with `cmdline` for a later reboot(LINUX_REBOOT_CMD_KEXEC).
#[allow(unsafe_code)]
pub fn load(kernel: &Path, initrd: Option<&Path>, cmdline: &str) -> Result<()> {
    let k = File::open(kernel).with_context(|| format!("opening kernel {}", kernel.display()))?;
    let i = match initrd {
        Some(p) => Some(File::open(p).with_context(|| format!("opening initrd {}", p.display()))?),
        None => None,
    };
    let c = CString::new(cmdline).context("kernel command line contains a NUL byte")?;
    let flags: libc::c_ulong = if i.is_none() {
        libc::KEXEC_FILE_NO_INITRAMFS as libc::c_ulong
    } else {
        0
    };
    let ifd = i.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
    // SAFETY: the fds are open for the duration of the call; the cmdline pointer and its
    // length (including the trailing NUL, as the syscall requires) describe a live CString.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            k.as_raw_fd(),
            ifd,
            c.as_bytes_with_nul().len(),
            c.as_ptr(),
            flags,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        bail!("kexec_file_load of {} failed: {e} (kexec disabled, lockdown, or an unsigned kernel under Secure Boot?)", kernel.display());
    }
    Ok(())
}

/// Syncs and jumps into the loaded kernel. Returns only on failure.
pub fn exec() -> Result<()> {
    rustix::fs::sync();
    rustix::system::reboot(rustix::system::RebootCommand::Kexec)
        .context("reboot(LINUX_REBOOT_CMD_KEXEC)")?;
    Ok(())
}
