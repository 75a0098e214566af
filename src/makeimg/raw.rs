//! The raw disk image (`format = raw SIZE PARTTYPE FS`), made without loop devices or mounts:
//! a sparse file of SIZE, a partition table written into it by sfdisk (one partition from
//! 1 MiB to the end), and the file system made inside that partition by mke2fs, which
//! populates it from the built root (`-d`) at the partition's offset (`-E offset=`). No
//! bootloader is installed.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::imgbuild::PartType;

/// Where the one partition starts: 1 MiB, the usual alignment.
pub const PART_START: u64 = 1 << 20;

/// The smallest image: the partition's offset plus 1 MiB.
pub const MIN_SIZE: u64 = 2 << 20;

/// GPT type of the partition: "Linux filesystem data", the same on every architecture (the
/// discoverable per-architecture root types would assume the image's architecture).
pub const GPT_LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// MBR type of the partition: Linux.
pub const MBR_LINUX: &str = "83";

/// The file systems mke2fs can populate from a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFs {
    Ext2,
    Ext3,
    Ext4,
}

impl RawFs {
    /// The supported values, as listed in errors.
    pub const SUPPORTED: &'static str = "ext4, ext3 or ext2";

    pub fn parse(s: &str) -> Option<RawFs> {
        match s {
            "ext2" => Some(RawFs::Ext2),
            "ext3" => Some(RawFs::Ext3),
            "ext4" => Some(RawFs::Ext4),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RawFs::Ext2 => "ext2",
            RawFs::Ext3 => "ext3",
            RawFs::Ext4 => "ext4",
        }
    }

    /// The program making it.
    pub fn mkfs(self) -> String {
        format!("mkfs.{}", self.name())
    }
}

/// `name` from PATH, else from the sbin directories (a user's PATH may lack them).
fn find_tool(name: &str) -> Option<String> {
    crate::cmd::which(name).or_else(|| {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| format!("{d}/{name}"))
            .find(|p| Path::new(p).is_file())
    })
}

/// The tools of a raw image (sfdisk, mkfs.FS), found or refused with the package to install.
pub fn tools(fs: RawFs) -> Result<(String, String)> {
    let mkfs = fs.mkfs();
    let need = |name: &str, package: &str| {
        find_tool(name).ok_or_else(|| {
            anyhow!("format raw needs {name} (package {package}), which is not installed")
        })
    };
    Ok((
        need("sfdisk", "util-linux or fdisk")?,
        need(&mkfs, "e2fsprogs")?,
    ))
}

/// The sfdisk script: a `table` label and one Linux partition from [`PART_START`] to the end.
fn sfdisk_script(table: PartType) -> String {
    let (label, ty) = match table {
        PartType::Msdos => ("dos", MBR_LINUX),
        PartType::Gpt => ("gpt", GPT_LINUX_FS),
    };
    format!(
        "label: {label}\nunit: sectors\n\nstart={}, type={ty}\n",
        PART_START / 512
    )
}

/// The first partition of `img` as (offset, length) in bytes, read back with `sfdisk --json`
/// (sfdisk decides where a GPT partition ends: before the backup table, aligned).
fn first_partition(sfdisk: &str, img: &Path) -> Result<(u64, u64)> {
    let out = crate::cmd::run(sfdisk, &["--json".into(), img.display().to_string()])?;
    let v: serde_json::Value =
        serde_json::from_str(&out).context("reading the output of sfdisk --json")?;
    let t = &v["partitiontable"];
    let sector = t["sectorsize"].as_u64().unwrap_or(512);
    let p = &t["partitions"][0];
    match (p["start"].as_u64(), p["size"].as_u64()) {
        (Some(start), Some(size)) => Ok((start * sector, size * sector)),
        _ => bail!(
            "sfdisk --json shows no partition in {}: {out}",
            img.display()
        ),
    }
}

/// The space the tree at `root` takes on disk, as du counts it: allocated blocks of every
/// file and directory, hard links once, without descending into other file systems.
pub fn disk_usage(root: &Path) -> Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    for e in walkdir::WalkDir::new(root).same_file_system(true) {
        let e = e.with_context(|| format!("reading {}", root.display()))?;
        let m = e
            .metadata()
            .with_context(|| format!("reading {}", e.path().display()))?;
        if m.nlink() > 1 && !m.is_dir() && !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        total += m.blocks() * 512;
    }
    Ok(total)
}

/// Writes the image of `root` to `out` (SIZE `size` bytes, rounded down to whole sectors)
/// through a temporary file next to it, renamed into place; removed on failure.
pub fn write_image(root: &Path, out: &Path, size: u64, table: PartType, fs: RawFs) -> Result<()> {
    let (sfdisk, mkfs) = tools(fs)?;
    let size = size / 512 * 512;
    if size < MIN_SIZE {
        bail!(
            "format raw: SIZE {} is too small (the partition starts at 1 MiB)",
            crate::util::human(size)
        );
    }
    let tmp: PathBuf = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name().unwrap_or_default().to_string_lossy()
    ));
    let r = (|| -> Result<()> {
        let f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.set_len(size)
            .with_context(|| format!("sizing {}", tmp.display()))?;
        drop(f);
        crate::cmd::run_input(
            &sfdisk,
            &[
                "--quiet".into(),
                "--no-reread".into(),
                "--no-tell-kernel".into(),
                tmp.display().to_string(),
            ],
            sfdisk_script(table).as_bytes(),
        )?;
        let (offset, len) = first_partition(&sfdisk, &tmp)?;
        let used = disk_usage(root)?;
        log::info!(
            "makeimg: raw image {}: {} table, partition at {} of {}, {}; the root takes {}",
            out.display(),
            match table {
                PartType::Msdos => "msdos",
                PartType::Gpt => "gpt",
            },
            crate::util::human(offset),
            crate::util::human(len),
            fs.name(),
            crate::util::human(used)
        );
        if used > len {
            bail!(
                "format raw: SIZE {} is too small: the root takes {used} bytes ({}, as du \
                 counts), the partition holds {len} bytes ({}); raise SIZE in format=raw",
                crate::util::human(size),
                crate::util::human(used),
                crate::util::human(len)
            );
        }
        crate::cmd::run(
            &mkfs,
            &[
                "-q".into(),
                "-F".into(),
                "-d".into(),
                root.display().to_string(),
                "-E".into(),
                format!("offset={offset}"),
                tmp.display().to_string(),
                format!("{}k", len / 1024),
            ],
        )
        .with_context(|| {
            format!(
                "making the {} file system of the raw image (the root takes {}, the partition \
                 holds {}; the file system's own metadata needs room too: a larger SIZE may help)",
                fs.name(),
                crate::util::human(used),
                crate::util::human(len)
            )
        })?;
        fs::File::open(&tmp)?
            .sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
        Ok(())
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_and_names() {
        assert_eq!(
            sfdisk_script(PartType::Msdos),
            "label: dos\nunit: sectors\n\nstart=2048, type=83\n"
        );
        assert!(sfdisk_script(PartType::Gpt).contains("label: gpt\n"));
        assert!(sfdisk_script(PartType::Gpt).contains(GPT_LINUX_FS));
        assert_eq!(RawFs::parse("ext3"), Some(RawFs::Ext3));
        assert_eq!(RawFs::parse("btrfs"), None);
        assert_eq!(RawFs::Ext4.mkfs(), "mkfs.ext4");
    }

    #[test]
    fn disk_usage_counts_hard_links_once() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), vec![1u8; 256 << 10]).unwrap();
        let one = disk_usage(d.path()).unwrap();
        assert!(one >= 256 << 10, "{one}");
        fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        assert_eq!(disk_usage(d.path()).unwrap(), one);
        fs::write(d.path().join("c"), vec![1u8; 256 << 10]).unwrap();
        assert!(disk_usage(d.path()).unwrap() >= one + (256 << 10));
    }
}
