//! The `check` stage, the last before the first write: what the later stages will need is
//! looked up now, and what the install will read is read now, to its end.
//!
//! - A rootfs archive in the payload or downloaded into RAM is decompressed completely and
//!   every entry checked ([`install::TarAudit`]: no absolute path, no "..", nothing written
//!   through a symlink, no hard link to outside, device nodes only under dev/, a bounded entry
//!   count, sizes that fit the planned partitions), so a truncated, corrupt or hostile archive —
//!   one built broken on the workstation passes the payload's sha256 manifest — fails here,
//!   with the old system intact, instead of in the install stage after the disks were
//!   repartitioned. The install then skips its own pre-scan of that archive. Only a streamed
//!   download (`download = "stream"`) cannot be read twice: its entries are checked as they
//!   are unpacked, after the disks are written, and the stage says so.
//! - [`needs`] lists, from the config and the plan alone, the programs, kernel filesystems,
//!   payload files and kernel features the writing stages will use; [`stage`] looks each up
//!   and reports every missing one at once. cryptsetup and the passphrase files are looked up
//!   by `luks::check`, mdadm and the md personalities by the `verify` stage.
//! - With `[bootloader] kind = "grub"`, the archive read here must hold grub-install,
//!   grub-mkconfig and the modules of each firmware named (a warning only when a provision
//!   script may still install them).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::install::{self, Fetched, TarAudit};
use crate::config::layout::FsKind;
use crate::config::{Bootloader, Finish, Install, RootfsSource, Validated};
use crate::disk::plan::{DiskAction, Plan};

/// Where systemd-boot's EFI binary is in a root tree (the target's, or the tools root).
pub const SD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// One thing a later stage will need, with the config field that needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// A program in the tools root: any of `names` (a name with a '/' is a path); `hint`
    /// says how to get it into the image.
    Program {
        names: Vec<String>,
        field: String,
        hint: String,
    },
    /// A filesystem the running kernel must know (listed in /proc/filesystems) to mount it.
    Filesystem { fs: FsKind, field: String },
    /// A file in the payload (path relative to it).
    PayloadFile { path: String, field: String },
    /// systemd-boot's EFI binary, from the tools root, the payload, or the target. `archive`:
    /// the target's files are exactly a rootfs archive (no provision script), so whether it
    /// brings the binary is known before the first write.
    SystemdBootEfi { archive: bool },
    /// kexec in the running kernel, for `finish = "kexec"`.
    Kexec,
}

/// What the writing stages will use, from the config, its effective install and the plan.
/// Pure: nothing is looked up here.
pub fn needs(cfg: &Validated, install: Option<&Install>, plan: Option<&Plan>) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    let mut push = |n: Need| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    if let Some(p) = plan {
        // Every filesystem the mkfs stage creates with a tool (vfat and swap are written
        // natively), and every one the mount stage mounts.
        let mut made: Vec<(FsKind, String, bool)> = Vec::new();
        for d in &p.disks {
            if let DiskAction::Repartition { parts, .. } = &d.action {
                for part in parts {
                    if let Some(fs) = part.fs {
                        let field = format!(
                            "disk \"{}\" partition \"{}\": format = \"{}\"",
                            d.name,
                            part.label,
                            fs.name()
                        );
                        made.push((fs, field, part.mount.is_some()));
                    }
                }
            }
        }
        for a in &p.arrays {
            if let Some(fs) = a.fs {
                let field = format!("array \"{}\": format = \"{}\"", a.name, fs.name());
                made.push((fs, field, a.mount.is_some()));
            }
        }
        for l in &p.luks {
            if let Some(fs) = l.fs {
                let field = format!("luks \"{}\": format = \"{}\"", l.name, fs.name());
                made.push((fs, field, l.mount.is_some()));
            }
        }
        for (fs, field, mounted) in made {
            if let Some((tool, _)) = crate::disk::mkfs::mkfs_command(fs, "", "", "") {
                let mut names = vec![tool.to_string()];
                if fs == FsKind::Ext4 {
                    names.push("mke2fs".into());
                }
                push(Need::Program {
                    hint: format!("pack it with `--binary /sbin/{tool}` or a tools root (--rootfs) that has it"),
                    names,
                    field: field.clone(),
                });
            }
            if mounted && fs != FsKind::Swap {
                push(Need::Filesystem { fs, field });
            }
        }
    }
    match install {
        Some(Install::Makeimg {
            command: Some(c), ..
        }) => push(Need::Program {
            names: vec![c.clone()],
            field: format!("[install] command = {c:?}"),
            hint: "pack a tools root that has it (--rootfs), or leave command out to use the built-in builder".into(),
        }),
        Some(Install::Script { path, .. }) => push(Need::PayloadFile {
            path: path.clone(),
            field: format!("[install] path = {path:?}"),
        }),
        Some(Install::Rootfs {
            provision: Some(s), ..
        }) => push(Need::PayloadFile {
            path: s.clone(),
            field: format!("[install] provision = {s:?}"),
        }),
        _ => {}
    }
    if plan.is_some() {
        match &cfg.bootloader {
            Bootloader::SystemdBoot { .. } => {
                let archive = matches!(
                    install,
                    Some(Install::Rootfs {
                        provision: None,
                        ..
                    })
                );
                push(Need::SystemdBootEfi { archive });
            }
            // grub runs from the target: its tools are looked for while the archive is
            // read (the stage below); the command runs chrooted in the target, which the
            // install has not made yet.
            Bootloader::Grub { .. } | Bootloader::Command { .. } | Bootloader::None => {}
        }
        if cfg.deploy.finish == Finish::Kexec {
            push(Need::Kexec);
        }
    }
    out
}

/// Whether /proc/filesystems (its text) lists `name`. Pure.
pub fn kernel_has_fs(proc_filesystems: &str, name: &str) -> bool {
    proc_filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some(name))
}

/// Bytes the rootfs can fill at most: every planned partition but swap. A loose bound (an
/// array's members count each), so only an archive that cannot fit anyhow is refused.
pub fn capacity(plan: &Plan) -> u64 {
    let mut total = 0u64;
    for d in &plan.disks {
        if let DiskAction::Repartition { parts, .. } = &d.action {
            for p in parts.iter().filter(|p| p.fs != Some(FsKind::Swap)) {
                let sectors = p.last_lba.saturating_sub(p.first_lba) + 1;
                total = total.saturating_add(sectors.saturating_mul(d.disk.sector_size));
            }
        }
    }
    total
}

/// Looks up one need; `Err` names the field and what is missing. `audit`: the rootfs archive
/// read by this stage, if any.
fn look_up(need: &Need, audit: Option<&TarAudit>) -> std::result::Result<(), String> {
    match need {
        Need::Program { names, field, hint } => {
            let found = names.iter().any(|n| {
                if n.contains('/') {
                    Path::new(n).is_file()
                } else {
                    crate::cmd::which(n).is_some()
                }
            });
            if found {
                return Ok(());
            }
            Err(format!(
                "{field}: {} not found in the image's tools root; {hint}",
                names.join(" or ")
            ))
        }
        Need::Filesystem { fs, field } => {
            let known = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
            if kernel_has_fs(&known, fs.name()) {
                return Ok(());
            }
            Err(format!(
                "{field}: the kernel has no {0} filesystem to mount it (not in /proc/filesystems); pack its module with --module {0}",
                fs.name()
            ))
        }
        Need::PayloadFile { path, field } => {
            if Path::new(install::PAYLOAD).join(path).is_file() {
                return Ok(());
            }
            Err(format!("{field}: {path} is not in the payload"))
        }
        Need::SystemdBootEfi { archive } => {
            let tools = Path::new("/").join(SD_BOOT);
            let payload = Path::new(install::PAYLOAD).join("systemd-bootx64.efi");
            if tools.is_file() || payload.is_file() {
                return Ok(());
            }
            match audit {
                Some(a) if *archive && a.has(Path::new(SD_BOOT)) => Ok(()),
                Some(_) if *archive => Err(format!(
                    "[bootloader] kind = \"systemd-boot\": systemd-bootx64.efi is neither in the rootfs archive ({SD_BOOT}), the tools root nor the payload (systemd-bootx64.efi)"
                )),
                _ => {
                    log::info!("check: systemd-bootx64.efi is not in the tools root or the payload; the install must bring it ({SD_BOOT}), which can be seen only after it ran");
                    Ok(())
                }
            }
        }
        Need::Kexec => {
            if !Path::new("/sys/kernel/kexec_loaded").exists() {
                return Err("[deploy] finish = \"kexec\": the running kernel has no kexec (/sys/kernel/kexec_loaded is missing)".into());
            }
            let disabled = std::fs::read_to_string("/proc/sys/kernel/kexec_load_disabled")
                .map(|t| t.trim() == "1")
                .unwrap_or(false);
            if disabled {
                return Err("[deploy] finish = \"kexec\": kexec is disabled in the running kernel (kernel.kexec_load_disabled = 1)".into());
            }
            Ok(())
        }
    }
}

/// The `check` stage.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    let Some(payload) = &ctx.payload else {
        return Ok(());
    };
    let dir = Path::new(install::PAYLOAD);
    if let Some(p) = &ctx.plan {
        super::luks::check(dir, &p.luks)?;
    }
    let inst = install::effective(&payload.config.install, dir);
    let archive = match (&inst, &ctx.fetched) {
        (
            Some(Install::Rootfs {
                source: RootfsSource::Path(p),
                ..
            }),
            _,
        ) => Some(dir.join(p)),
        (
            Some(Install::Rootfs {
                source: RootfsSource::Url(_),
                ..
            }),
            Some(Fetched::File(f)),
        ) => Some(f.clone()),
        (
            Some(Install::Rootfs {
                source: RootfsSource::Url(u),
                ..
            }),
            _,
        ) => {
            log::info!("check: {u} is streamed (download = \"stream\"): its entries are checked as they are unpacked, after the disks are written");
            None
        }
        _ => None,
    };
    let mut audit = None;
    if let Some(archive) = archive {
        let t = Instant::now();
        let grub = match payload.config.bootloader {
            Bootloader::Grub { firmware, .. } => Some(firmware),
            _ => None,
        };
        let mut scan = super::grub::ArchiveScan::default();
        let cap = ctx.plan.as_ref().map(capacity);
        let a = install::check_tar_seeing(&archive, cap, &mut |p| scan.see(p)).map_err(|e| {
            e.context(format!(
                "the rootfs archive {} is damaged, truncated or unsafe (read before any disk is written: nothing was written)",
                archive.display()
            ))
        })?;
        log::info!(
            "check: {} is complete and safe: {} entries, {} MiB unpacked, read to its end in {:.1} s",
            archive.display(),
            a.entries,
            a.bytes >> 20,
            t.elapsed().as_secs_f64()
        );
        if let Some(firmware) = grub {
            let provision = matches!(
                inst,
                Some(Install::Rootfs {
                    provision: Some(_),
                    ..
                })
            );
            match scan.problem(firmware) {
                None => log::info!(
                    "check: the rootfs archive has grub for {}",
                    firmware.describe()
                ),
                Some(p) if provision => log::warn!(
                    "check: {p}; the provision step must install it, or the bootloader stage fails"
                ),
                Some(p) => anyhow::bail!("{p}; nothing was written"),
            }
        }
        ctx.archive_checked = Some((archive, a.entries));
        audit = Some(a);
    }
    let list = needs(&payload.config, inst.as_ref(), ctx.plan.as_ref());
    let missing: Vec<String> = list
        .iter()
        .filter_map(|n| look_up(n, audit.as_ref()).err())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!("{}; nothing was written", missing.join("; "));
    }
    if !list.is_empty() {
        log::info!(
            "check: {} program(s), filesystem(s) and file(s) the writing stages need are here",
            list.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::DiskIdentity;

    fn plan_for(toml: &str) -> (Validated, Plan) {
        let cfg = crate::config::load(toml, "t.toml").unwrap();
        let d = DiskIdentity {
            path: "/dev/vda".into(),
            size_bytes: 4 << 30,
            sector_size: 512,
            serial: Some("sys0".into()),
            by_id: vec!["virtio-sys0".into()],
            ..Default::default()
        };
        let p = crate::disk::plan::plan(&cfg.layout, &[d]).unwrap();
        (cfg, p)
    }

    const LAYOUT: &str = r#"
[[disk]]
name = "system"
match = { serial = "sys0" }
wipe = true
partitions = [
  { label = "esp",  type = "esp",  size = "100MiB", format = "vfat", mount = "/boot" },
  { label = "swap", type = "swap", size = "64MiB", format = "swap" },
  { label = "srv",  type = "linux", size = "1GiB", format = "xfs", mount = "/srv" },
  { label = "root", type = "root", size = "rest",   format = "ext4", mount = "/" },
]
"#;

    #[test]
    fn needs_mkfs_tools_filesystems_and_payload_files() {
        let toml = format!(
            "{LAYOUT}\n[install]\nkind = \"rootfs\"\npath = \"r.tar.zst\"\nprovision = \"setup.sh\"\n[deploy]\nfinish = \"kexec\"\n[bootloader]\nkind = \"systemd-boot\"\n"
        );
        let (cfg, p) = plan_for(&toml);
        let n = needs(&cfg, cfg.install.as_ref(), Some(&p));
        let f = |fs: FsKind, label: &str| Need::Filesystem {
            fs,
            field: format!(
                "disk \"system\" partition \"{label}\": format = \"{}\"",
                fs.name()
            ),
        };
        assert!(n.contains(&f(FsKind::Vfat, "esp")), "{n:?}");
        assert!(n.contains(&f(FsKind::Xfs, "srv")), "{n:?}");
        assert!(n.contains(&f(FsKind::Ext4, "root")), "{n:?}");
        assert!(!n
            .iter()
            .any(|x| matches!(x, Need::Filesystem { fs, .. } if *fs == FsKind::Swap)));
        let programs: Vec<&Vec<String>> = n
            .iter()
            .filter_map(|x| match x {
                Need::Program { names, .. } => Some(names),
                _ => None,
            })
            .collect();
        assert_eq!(
            programs,
            vec![
                &vec!["mkfs.xfs".to_string()],
                &vec!["mkfs.ext4".to_string(), "mke2fs".to_string()]
            ]
        );
        assert!(n.contains(&Need::PayloadFile {
            path: "setup.sh".into(),
            field: "[install] provision = \"setup.sh\"".into()
        }));
        // A provision script may install systemd-boot: the archive alone does not decide.
        assert!(n.contains(&Need::SystemdBootEfi { archive: false }));
        assert!(n.contains(&Need::Kexec));
    }

    #[test]
    fn needs_builder_script_and_archive_bootloader() {
        let (cfg, p) = plan_for(&format!(
            "{LAYOUT}\n[install]\nkind = \"makeimg\"\ncommand = \"makeimg\"\n"
        ));
        let n = needs(&cfg, cfg.install.as_ref(), Some(&p));
        assert!(n
            .iter()
            .any(|x| matches!(x, Need::Program { names, field, .. }
            if names == &["makeimg"] && field == "[install] command = \"makeimg\"")));
        assert!(!n.contains(&Need::Kexec));
        let (cfg, p) = plan_for(&format!(
            "{LAYOUT}\n[install]\nkind = \"script\"\npath = \"build.sh\"\n"
        ));
        let n = needs(&cfg, cfg.install.as_ref(), Some(&p));
        assert!(n.contains(&Need::PayloadFile {
            path: "build.sh".into(),
            field: "[install] path = \"build.sh\"".into()
        }));
        let (cfg, p) = plan_for(&format!(
            "{LAYOUT}\n[install]\nkind = \"rootfs\"\npath = \"r.tar\"\n[bootloader]\nkind = \"systemd-boot\"\n"
        ));
        let n = needs(&cfg, cfg.install.as_ref(), Some(&p));
        assert!(n.contains(&Need::SystemdBootEfi { archive: true }));
        // No disks: nothing is written, nothing is needed.
        let cfg = crate::config::load("hostname = \"h\"\n", "t.toml").unwrap();
        assert_eq!(needs(&cfg, None, None), vec![]);
    }

    #[test]
    fn proc_filesystems_and_capacity() {
        let t = "nodev\tsysfs\nnodev\tproc\n\text4\n\tvfat\nnodev\tbtrfs_test\n";
        assert!(kernel_has_fs(t, "ext4") && kernel_has_fs(t, "vfat"));
        assert!(!kernel_has_fs(t, "xfs") && !kernel_has_fs(t, "btrfs"));
        let (_, p) = plan_for(LAYOUT);
        let c = capacity(&p);
        // 4 GiB disk minus swap (64 MiB) and the GPT's own sectors and alignment.
        assert!(
            c < (4 << 30) - (64 << 20) && c > (4 << 30) - (70 << 20),
            "{c}"
        );
    }

    /// The failure names the field, what is missing and how to pack it.
    #[test]
    fn missing_program_message() {
        let e = look_up(
            &Need::Program {
                names: vec!["mkfs.anemos-none".into()],
                field: "disk \"system\" partition \"srv\": format = \"xfs\"".into(),
                hint: "pack it".into(),
            },
            None,
        )
        .unwrap_err();
        assert_eq!(e, "disk \"system\" partition \"srv\": format = \"xfs\": mkfs.anemos-none not found in the image's tools root; pack it");
    }
}
