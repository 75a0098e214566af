//! Block-device side effects: exclusive open, lock, re-reading the partition table, waiting
//! for partition nodes. The only `unsafe` here is the BLKRRPART ioctl in
//! [`reread_partitions`].

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// An exclusively opened disk: the O_EXCL claim and the flock last until this is dropped.
/// Drop it before running tools (mkfs) on the disk's partitions: the claim makes their own
/// O_EXCL opens fail ("apparently in use by the system").
pub struct Exclusive {
    pub file: File,
    _lock: nix::fcntl::Flock<File>,
}

/// Opens a whole-disk device for writing with O_EXCL (the kernel refuses if any partition is
/// mounted or held) and takes flock(LOCK_EX), which udev and systemd-repart honour.
pub fn open_exclusive(dev: &str) -> Result<Exclusive> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL | libc::O_CLOEXEC)
        .open(dev)
        .with_context(|| format!("refusing to write {dev}: exclusive open failed (is a partition mounted, used as swap, or held by md/dm?)"))?;
    let lock = nix::fcntl::Flock::lock(
        f.try_clone().context("duplicating the device handle")?,
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .map_err(|(_, e)| {
        anyhow::anyhow!("refusing to write {dev}: another process holds a lock on it ({e})")
    })?;
    Ok(Exclusive {
        file: f,
        _lock: lock,
    })
}

/// Asks the kernel to re-read the partition table, retrying while the device is busy
/// (udev-less systems rarely are, but a just-closed handle can linger briefly).
#[allow(unsafe_code)]
pub fn reread_partitions(f: &File, dev: &str) -> Result<()> {
    use std::os::fd::AsRawFd;
    // BLKRRPART = _IO(0x12, 95): ask the kernel to re-read the partition table.
    nix::ioctl_none_bad!(blkrrpart, nix::request_code_none!(0x12, 95));
    let mut last = None;
    for _ in 0..20 {
        // SAFETY: BLKRRPART takes no argument and touches no memory of ours; `f` is an open
        // file descriptor that outlives the call.
        match unsafe { blkrrpart(f.as_raw_fd()) } {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                last = Some(nix::errno::Errno::EBUSY);
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => bail!("{dev}: re-reading the partition table failed: {}", e.desc()),
        }
    }
    bail!(
        "{dev}: re-reading the partition table failed: device busy after 20 tries ({:?})",
        last
    )
}

/// Waits until /dev/<kname><N> (or <kname>p<N>) exists for every partition number.
pub fn wait_partition_nodes(kname: &str, count: u32, timeout: Duration) -> Result<Vec<String>> {
    let t = Instant::now();
    loop {
        let nodes: Vec<String> = (1..=count).map(|n| partition_node(kname, n)).collect();
        if nodes.iter().all(|n| Path::new(n).exists()) {
            return Ok(nodes);
        }
        if t.elapsed() > timeout {
            let missing: Vec<&String> = nodes
                .iter()
                .filter(|n| !Path::new(n.as_str()).exists())
                .collect();
            bail!(
                "partition nodes did not appear within {} s: {:?}",
                timeout.as_secs(),
                missing
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The kernel's partition naming: a trailing digit in the disk name gets a "p" (nvme0n1p1).
pub fn partition_node(kname: &str, n: u32) -> String {
    let k = kname.trim_start_matches("/dev/");
    if k.chars()
        .last()
        .map(|c| c.is_ascii_digit())
        .unwrap_or(false)
    {
        format!("/dev/{k}p{n}")
    } else {
        format!("/dev/{k}{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names() {
        assert_eq!(partition_node("vda", 1), "/dev/vda1");
        assert_eq!(partition_node("/dev/sda", 12), "/dev/sda12");
        assert_eq!(partition_node("nvme0n1", 2), "/dev/nvme0n1p2");
        assert_eq!(partition_node("mmcblk0", 1), "/dev/mmcblk0p1");
    }
}
