//! `[bootloader] kind = "grub"`: GRUB from the target's own packages, run chrooted in the
//! target (with /proc, /sys, /dev and /run bound in), for the firmware the config names.
//!
//! - BIOS: `grub-install --target=i386-pc DISK` on every repartitioned disk that has a BIOS boot
//!   partition (where the core image goes on GPT), so each of them boots.
//! - UEFI: `grub-install --target=x86_64-efi --no-nvram` onto the ESP as
//!   `\EFI\anemos\grubx64.efi`, which the native `Boot####` entry (written by the caller through
//!   [`super::bootentry`]) starts, and a copy of that image as the fallback
//!   `\EFI\BOOT\BOOTX64.EFI`, which firmware without any entry boots. The image finds /boot/grub
//!   by the filesystem's UUID, wherever it lies on the ESP, so the copy is what a second
//!   `grub-install --removable` would write (at a third of the bootloader stage's time under
//!   emulation). `--no-nvram`: the deploy image writes the entry itself, and grub-install's
//!   efibootmgr may be missing or fail in the chroot.
//! - grub.cfg: the target's `grub-mkconfig`, with the configured options in a defaults file
//!   anemos writes ([`render_defaults`]). grub-mkconfig itself finds the root filesystem and
//!   writes `root=UUID=<its filesystem UUID>` when /dev/disk/by-uuid has that UUID, which the
//!   deploy image creates after mkfs as udev would; the defaults file keeps it from using a
//!   kernel device name instead (GRUB_DISABLE_LINUX_UUID=false), and the generated grub.cfg is
//!   checked for that `root=`.
//!
//! The kexec finish boots what grub was given: the newest kernel in the target's /boot (as
//! grub-mkconfig's first entry) with `root=UUID=… ro` and the options ([`kexec_entry`]).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::bootloader::{esp_and_root, find_kernel, Entry};
use crate::config::{Bootloader, Firmware};
use crate::disk::plan::{DiskAction, Plan};

/// The ESP directory of anemos' grub (`--bootloader-id`).
pub const EFI_ID: &str = "anemos";

/// The loader path that anemos' `Boot####` entry starts for grub.
pub const LOADER: &str = "\\EFI\\anemos\\grubx64.efi";

/// What anemos runs of the target's grub: the tool names (Debian and most distributions call
/// them grub-*, Fedora and openSUSE grub2-*), and the platform module directories.
pub struct Tools {
    /// Path inside the target, e.g. "/usr/sbin/grub-install".
    pub install: String,
    pub mkconfig: String,
    /// "/boot/grub" or "/boot/grub2" (inside the target).
    pub boot_dir: &'static str,
}

const BIN_DIRS: &[&str] = &["usr/sbin", "usr/bin", "sbin", "bin"];

/// The platform module directory of `target` ("i386-pc", "x86_64-efi") in the target's
/// lib/grub (or lib/grub2), if present.
fn platform_dir(target: &Path, platform: &str) -> Option<PathBuf> {
    ["usr/lib/grub", "usr/lib/grub2", "usr/share/grub2"]
        .iter()
        .map(|d| target.join(d).join(platform))
        .find(|p| p.is_dir())
}

/// Finds grub-install and grub-mkconfig in `target`, and the platform modules each firmware
/// needs. The error says which package to put into the image.
pub fn find_tools(target: &Path, firmware: Firmware) -> Result<Tools> {
    let find = |name: &str| {
        BIN_DIRS
            .iter()
            .map(|d| format!("/{d}/{name}"))
            .find(|p| target.join(p.trim_start_matches('/')).is_file())
    };
    let (install, mkconfig, boot_dir) = match (find("grub-install"), find("grub2-install")) {
        (Some(i), _) => (i, find("grub-mkconfig"), "/boot/grub"),
        (None, Some(i)) => (i, find("grub2-mkconfig"), "/boot/grub2"),
        (None, None) => bail!(
            "grub-install not found in the target: install grub-pc / grub-efi-amd64-bin in the image (Debian names; grub2-pc / grub2-efi-x64 on Fedora)"
        ),
    };
    let mkconfig = mkconfig.ok_or_else(|| {
        anyhow!("{install} is in the target but grub-mkconfig is not: install the distribution's complete grub packages in the image")
    })?;
    for (wanted, platform, package) in [
        (firmware.bios, "i386-pc", "grub-pc (Debian: grub-pc-bin)"),
        (
            firmware.uefi,
            "x86_64-efi",
            "grub-efi-amd64-bin (Fedora: grub2-efi-x64-modules)",
        ),
    ] {
        if wanted && platform_dir(target, platform).is_none() {
            bail!("grub's {platform} modules are not in the target (no usr/lib/grub/{platform}): install {package} in the image");
        }
    }
    Ok(Tools {
        install,
        mkconfig,
        boot_dir,
    })
}

/// What a rootfs archive holds of grub, seen entry by entry by the check stage (before any
/// disk is written), so a deploy whose image lacks grub stops with the old system intact.
#[derive(Debug, Default)]
pub struct ArchiveScan {
    install: bool,
    mkconfig: bool,
    i386_pc: bool,
    x86_64_efi: bool,
}

impl ArchiveScan {
    /// Notes one entry's path (as stored: "usr/sbin/x" or "./usr/sbin/x").
    pub fn see(&mut self, path: &Path) {
        let p = path.strip_prefix("./").unwrap_or(path);
        let Some(s) = p.to_str() else { return };
        let s = s.trim_end_matches('/');
        let tool = |name: &str| {
            BIN_DIRS.iter().any(|d| {
                s.strip_prefix(d)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|r| r == format!("grub-{name}") || r == format!("grub2-{name}"))
            })
        };
        self.install |= tool("install");
        self.mkconfig |= tool("mkconfig");
        let under = |platform: &str| {
            ["usr/lib/grub/", "usr/lib/grub2/", "usr/share/grub2/"]
                .iter()
                .any(|d| {
                    s.strip_prefix(d)
                        .is_some_and(|r| r.split('/').next() == Some(platform))
                })
        };
        self.i386_pc |= under("i386-pc");
        self.x86_64_efi |= under("x86_64-efi");
    }

    /// What the archive lacks for `firmware`, as the error to give; None when complete.
    pub fn problem(&self, firmware: Firmware) -> Option<String> {
        let mut missing = Vec::new();
        if !self.install {
            missing.push("grub-install");
        }
        if !self.mkconfig {
            missing.push("grub-mkconfig");
        }
        if firmware.bios && !self.i386_pc {
            missing.push("usr/lib/grub/i386-pc (grub-pc)");
        }
        if firmware.uefi && !self.x86_64_efi {
            missing.push("usr/lib/grub/x86_64-efi (grub-efi-amd64-bin)");
        }
        if missing.is_empty() {
            return None;
        }
        Some(format!(
            "[bootloader] kind = \"grub\" for {}: the rootfs archive has no {}: install grub-pc / grub-efi-amd64-bin in the image",
            firmware.describe(),
            missing.join(", ")
        ))
    }
}

/// The device paths of the disks that get grub's BIOS core image: every repartitioned disk
/// with a BIOS boot partition, in disk order.
pub fn bios_disks(plan: &Plan) -> Vec<String> {
    let bios_boot = crate::config::part_type_guid("bios-boot");
    plan.disks
        .iter()
        .filter(|d| match &d.action {
            DiskAction::Repartition { parts, .. } => {
                parts.iter().any(|p| Some(p.type_guid) == bios_boot)
            }
            DiskAction::Preserve => false,
        })
        .map(|d| d.disk.path.clone())
        .collect()
}

/// The defaults file's text: sourced by grub-mkconfig after the distribution's own
/// /etc/default/grub. Pure.
pub fn render_defaults(options: Option<&str>) -> String {
    format!(
        "# written by anemos: the kernel command line of the deployed system is\n\
         # root=UUID=<root filesystem> ro, then these options.\n\
         GRUB_DISABLE_LINUX_UUID=false\n\
         GRUB_CMDLINE_LINUX=\"{}\"\n\
         GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n",
        options.unwrap_or("")
    )
}

/// The `root=` value grub-mkconfig writes: `UUID=` and the UUID of the filesystem mounted at
/// "/" (a partition's, an array's or an opened LUKS volume's), as the filesystem reports it.
pub fn root_uuid(plan: &Plan) -> Result<String> {
    let parts = plan.disks.iter().flat_map(|d| match &d.action {
        DiskAction::Repartition { parts, .. } => {
            parts.iter().map(|p| (&p.mount, p.fs, p.fs_uuid)).collect()
        }
        DiskAction::Preserve => Vec::new(),
    });
    let arrays = plan.arrays.iter().map(|a| (&a.mount, a.fs, a.fs_uuid));
    let luks = plan.luks.iter().map(|l| (&l.mount, l.fs, l.fs_uuid));
    parts
        .chain(arrays)
        .chain(luks)
        .find_map(|(m, fs, u)| match (m.as_deref(), fs, u) {
            (Some("/"), Some(fs), Some(u)) => {
                Some(format!("UUID={}", crate::disk::mkfs::display_uuid(fs, &u)))
            }
            _ => None,
        })
        .ok_or_else(|| anyhow!("grub needs a filesystem mounted at \"/\" (with a UUID) for root="))
}

/// The marker line of the block anemos appends to /etc/default/grub when the target's
/// grub-mkconfig reads no drop-in directory.
const BLOCK_MARK: &str = "# --- anemos (everything below is rewritten by each deploy) ---";

/// `/etc/default/grub` with anemos' block (replacing an earlier one) at its end. Pure.
pub fn with_block(current: &str, block: &str) -> String {
    let kept = match current.find(BLOCK_MARK) {
        Some(i) => &current[..i],
        None => current,
    };
    let mut s = kept.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str(BLOCK_MARK);
    s.push('\n');
    s.push_str(block);
    s
}

/// The kernel command line grub-mkconfig writes for `root` and `options`: `root=… ro` and the
/// options (GRUB_CMDLINE_LINUX; GRUB_CMDLINE_LINUX_DEFAULT is emptied). Pure.
pub fn cmdline(root: &str, options: Option<&str>) -> String {
    format!("root={root} ro {}", options.unwrap_or(""))
        .trim()
        .to_string()
}

/// What `finish = "kexec"` boots after a grub install: the newest kernel in `boot` (the first
/// entry grub-mkconfig writes) with its initrd, and the command line grub gives it.
pub fn kexec_entry(
    boot: &Path,
    grub_cfg: PathBuf,
    root: &str,
    options: Option<&str>,
) -> Result<Entry> {
    let (kernel, initrd) = find_kernel(boot)?;
    Ok(Entry {
        entry_path: grub_cfg,
        kernel,
        initrd,
        options: cmdline(root, options),
    })
}

/// The bootloader lines of the plan: what will be installed where, for which firmware. Pure.
pub fn describe(bootloader: &Bootloader, plan: &Plan) -> Vec<String> {
    let esp = esp_and_root(plan).ok().map(|(e, _)| e);
    match bootloader {
        Bootloader::None => vec!["bootloader: none (the install sets up booting, or nothing boots the disks)".into()],
        Bootloader::Command { command } => {
            vec![format!("bootloader: the command {command:?}, chrooted in the target")]
        }
        Bootloader::SystemdBoot { .. } => vec![format!(
            "bootloader: systemd-boot for UEFI on the ESP {}, native Boot#### entry {} when the deploy runs on UEFI",
            esp.as_deref().unwrap_or("?"),
            super::bootentry::SYSTEMD_BOOT
        )],
        Bootloader::Grub { firmware, options } => {
            let mut v = vec![format!(
                "bootloader: grub from the target's packages for {}; kernel command line root=… ro {}",
                firmware.describe(),
                options.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_string()];
            if firmware.bios {
                v.push(format!(
                    "bootloader: BIOS: grub's core image on {} (its BIOS boot partition)",
                    bios_disks(plan).join(", ")
                ));
            }
            if firmware.uefi {
                v.push(format!(
                    "bootloader: UEFI: {LOADER} and the fallback \\EFI\\BOOT\\BOOTX64.EFI on the ESP {}, native Boot#### entry when the deploy runs on UEFI",
                    esp.as_deref().unwrap_or("?")
                ));
            }
            v
        }
    }
}

/// Installs grub into the mounted `target` for `firmware`; returns what the kexec finish boots.
pub fn install(
    plan: &Plan,
    target: &Path,
    firmware: Firmware,
    options: Option<&str>,
) -> Result<Entry> {
    let tools = find_tools(target, firmware)?;
    let root = root_uuid(plan)?;
    write_defaults(target, &tools, options)?;
    let _mounts = crate::makeimg::ChrootMounts::new(target)?;
    let env: std::collections::BTreeMap<String, String> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("LC_ALL", "C"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let run = |args: &[&str]| {
        crate::cmd::run_streamed(
            &tools.install,
            &args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            &crate::cmd::Builder {
                cwd: Path::new("/"),
                env: &env,
                chroot: Some(target),
                prefix: "grub",
            },
        )
    };
    if firmware.bios {
        let disks = bios_disks(plan);
        if disks.is_empty() {
            bail!("grub for BIOS: no disk has a BIOS boot partition (type = \"bios-boot\")");
        }
        for d in &disks {
            run(&["--target=i386-pc", d])
                .with_context(|| format!("installing grub for BIOS on {d}"))?;
            log::info!("grub: BIOS core image installed on {d}");
        }
    }
    if firmware.uefi {
        let (esp_mount, _) = esp_and_root(plan)?;
        let efi_dir = format!("--efi-directory={esp_mount}");
        run(&[
            "--target=x86_64-efi",
            &efi_dir,
            &format!("--bootloader-id={EFI_ID}"),
            "--no-nvram",
        ])
        .context("installing grub for UEFI onto the ESP")?;
        let esp = target.join(esp_mount.trim_start_matches('/'));
        let image = esp.join(format!("EFI/{EFI_ID}/grubx64.efi"));
        if !image.is_file() {
            bail!("grub-install ran but {} is not on the ESP", image.display());
        }
        let fallback = esp.join("EFI/BOOT/BOOTX64.EFI");
        fs::create_dir_all(esp.join("EFI/BOOT"))?;
        fs::copy(&image, &fallback)
            .with_context(|| format!("copying {} to {}", image.display(), fallback.display()))?;
        log::info!("grub: UEFI {LOADER} and \\EFI\\BOOT\\BOOTX64.EFI on the ESP {esp_mount}");
    }
    let cfg = format!("{}/grub.cfg", tools.boot_dir);
    crate::cmd::run_streamed(
        &tools.mkconfig,
        &["-o".to_string(), cfg.clone()],
        &crate::cmd::Builder {
            cwd: Path::new("/"),
            env: &env,
            chroot: Some(target),
            prefix: "grub",
        },
    )
    .context("generating grub.cfg in the target")?;
    let cfg_path = target.join(cfg.trim_start_matches('/'));
    let text =
        fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
    let want = format!("root={root} ");
    if !text.contains(&want) {
        bail!(
            "{} has no kernel line with {want:?}: the target's grub-mkconfig did not name the root filesystem by its UUID; the system might not find its root",
            cfg_path.display()
        );
    }
    let e = kexec_entry(&target.join("boot"), cfg_path, &root, options)?;
    log::info!(
        "grub: {} boots {} with {}",
        e.entry_path.display(),
        e.kernel.display(),
        e.options
    );
    Ok(e)
}

/// Writes the defaults: a drop-in `/etc/default/grub.d/anemos.cfg` where the target's
/// grub-mkconfig reads that directory (Debian, Ubuntu), else a block at the end of
/// `/etc/default/grub`.
fn write_defaults(target: &Path, tools: &Tools, options: Option<&str>) -> Result<()> {
    let text = render_defaults(options);
    let mkconfig =
        fs::read_to_string(target.join(tools.mkconfig.trim_start_matches('/'))).unwrap_or_default();
    let path = if mkconfig.contains("default/grub.d") {
        let dir = target.join("etc/default/grub.d");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let p = dir.join("anemos.cfg");
        fs::write(&p, &text).with_context(|| format!("writing {}", p.display()))?;
        p
    } else {
        let p = target.join("etc/default/grub");
        let current = fs::read_to_string(&p).unwrap_or_default();
        fs::create_dir_all(target.join("etc/default"))?;
        fs::write(&p, with_block(&current, &text))
            .with_context(|| format!("writing {}", p.display()))?;
        p
    };
    log::info!("grub: wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::identity::DiskIdentity;

    fn planned(cfg: &str, disks: &[(&str, &str)]) -> (crate::config::Validated, Plan) {
        let v = crate::config::load(cfg, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<DiskIdentity> = disks
            .iter()
            .map(|(path, serial)| DiskIdentity {
                path: (*path).into(),
                size_bytes: 4 << 30,
                sector_size: 512,
                serial: Some((*serial).into()),
                ..Default::default()
            })
            .collect();
        let p = crate::disk::plan::plan(&v.layout, &ids).unwrap();
        (v, p)
    }

    const TWO: &str = "hostname = \"h\"\n\
        [[disk]]\nname = \"a\"\nmatch = { serial = \"s0\" }\nwipe = true\npartitions = [\n\
        { label = \"bios-a\", type = \"bios-boot\", size = \"1MiB\" },\n\
        { label = \"esp\", type = \"esp\", size = \"128MiB\", format = \"vfat\", mount = \"/boot/efi\" },\n\
        { label = \"root\", type = \"root\", size = \"rest\", format = \"ext4\", mount = \"/\" },\n]\n\
        [[disk]]\nname = \"b\"\nmatch = { serial = \"s1\" }\nwipe = true\npartitions = [\n\
        { label = \"bios-b\", type = \"21686148-6449-6E6F-744E-656564454649\", size = \"1MiB\" },\n\
        { label = \"data\", type = \"linux\", size = \"rest\", format = \"ext4\", mount = \"/srv\" },\n]\n\
        [[disk]]\nname = \"c\"\nmatch = { serial = \"s2\" }\nwipe = true\npartitions = [\n\
        { label = \"other\", type = \"linux\", size = \"rest\", format = \"ext4\", mount = \"/var\" },\n]\n\
        [bootloader]\nkind = \"grub\"\nfirmware = [\"bios\", \"uefi\"]\noptions = \"console=ttyS0,115200\"\n";

    #[test]
    fn bios_targets_are_the_disks_with_a_bios_boot_partition() {
        let (_, p) = planned(
            TWO,
            &[("/dev/vda", "s0"), ("/dev/vdb", "s1"), ("/dev/vdc", "s2")],
        );
        // By type GUID, however the type was written; disk c has none.
        assert_eq!(bios_disks(&p), vec!["/dev/vda", "/dev/vdb"]);
    }

    #[test]
    fn the_plan_names_firmware_disks_and_esp() {
        let (v, p) = planned(
            TWO,
            &[("/dev/vda", "s0"), ("/dev/vdb", "s1"), ("/dev/vdc", "s2")],
        );
        let lines = describe(&v.bootloader, &p);
        assert_eq!(
            lines,
            vec![
                "bootloader: grub from the target's packages for BIOS and UEFI; kernel command line root=… ro console=ttyS0,115200".to_string(),
                "bootloader: BIOS: grub's core image on /dev/vda, /dev/vdb (its BIOS boot partition)".into(),
                "bootloader: UEFI: \\EFI\\anemos\\grubx64.efi and the fallback \\EFI\\BOOT\\BOOTX64.EFI on the ESP /boot/efi, native Boot#### entry when the deploy runs on UEFI".into(),
            ]
        );
        let bios_only = TWO.replace("[\"bios\", \"uefi\"]", "[\"bios\"]");
        let (v, p) = planned(
            &bios_only,
            &[("/dev/vda", "s0"), ("/dev/vdb", "s1"), ("/dev/vdc", "s2")],
        );
        let lines = describe(&v.bootloader, &p);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("for BIOS;"), "{lines:?}");
    }

    #[test]
    fn defaults_set_the_options() {
        let t = render_defaults(Some("console=ttyS0 quiet"));
        assert!(t.contains("\nGRUB_DISABLE_LINUX_UUID=false\n"), "{t}");
        assert!(
            t.contains("\nGRUB_CMDLINE_LINUX=\"console=ttyS0 quiet\"\n"),
            "{t}"
        );
        assert!(t.ends_with("GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n"), "{t}");
        assert!(render_defaults(None).contains("GRUB_CMDLINE_LINUX=\"\"\n"));
        // A real shell, after a distribution default, reads it as intended.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("GRUB_CMDLINE_LINUX_DEFAULT=quiet\nGRUB_DISABLE_LINUX_UUID=true\n{t}\necho \"$GRUB_DISABLE_LINUX_UUID|$GRUB_CMDLINE_LINUX|$GRUB_CMDLINE_LINUX_DEFAULT\""))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "false|console=ttyS0 quiet|\n"
        );
    }

    #[test]
    fn root_is_the_uuid_of_the_root_filesystem() {
        let (_, mut p) = planned(
            TWO,
            &[("/dev/vda", "s0"), ("/dev/vdb", "s1"), ("/dev/vdc", "s2")],
        );
        let DiskAction::Repartition { parts, .. } = &mut p.disks[0].action else {
            panic!("not repartitioned")
        };
        let u = parts[2].fs_uuid.unwrap();
        parts[2].mount = None;
        assert!(root_uuid(&p).is_err());
        let DiskAction::Repartition { parts, .. } = &mut p.disks[0].action else {
            panic!("not repartitioned")
        };
        parts[2].mount = Some("/".into());
        assert_eq!(
            root_uuid(&p).unwrap(),
            format!("UUID={}", crate::util::uuid_string(&u))
        );
    }

    #[test]
    fn the_block_in_default_grub_is_replaced_not_repeated() {
        let base = "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5";
        let once = with_block(base, "GRUB_DEVICE=\"UUID=a\"\n");
        assert_eq!(
            once,
            format!("GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n{BLOCK_MARK}\nGRUB_DEVICE=\"UUID=a\"\n")
        );
        let twice = with_block(&once, "GRUB_DEVICE=\"UUID=b\"\n");
        assert_eq!(twice, once.replace("UUID=a", "UUID=b"));
        assert_eq!(with_block("", "X=1\n"), format!("{BLOCK_MARK}\nX=1\n"));
    }

    #[test]
    fn kexec_boots_the_newest_kernel_with_grubs_command_line() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "vmlinuz-6.1.0-9-amd64",
            "initrd.img-6.1.0-9-amd64",
            "vmlinuz-6.1.0-10-amd64",
            "initrd.img-6.1.0-10-amd64",
        ] {
            fs::write(d.path().join(f), "x").unwrap();
        }
        let cfg = d.path().join("grub/grub.cfg");
        let e = kexec_entry(d.path(), cfg.clone(), "UUID=0a1b", Some("console=ttyS0 rw")).unwrap();
        assert_eq!(e.kernel, d.path().join("vmlinuz-6.1.0-10-amd64"));
        assert_eq!(e.initrd, vec![d.path().join("initrd.img-6.1.0-10-amd64")]);
        assert_eq!(e.options, "root=UUID=0a1b ro console=ttyS0 rw");
        assert_eq!(e.entry_path, cfg);
        assert_eq!(cmdline("UUID=u", None), "root=UUID=u ro");
        let empty = tempfile::tempdir().unwrap();
        assert!(kexec_entry(empty.path(), cfg, "UUID=u", None).is_err());
    }

    #[test]
    fn the_archive_scan_finds_grub_or_names_what_is_missing() {
        let both = Firmware {
            bios: true,
            uefi: true,
        };
        let mut s = ArchiveScan::default();
        for p in [
            "./usr/",
            "./usr/sbin/grub-install",
            "usr/sbin/grub-mkconfig",
            "usr/lib/grub/i386-pc/",
            "usr/lib/grub/i386-pc/boot.img",
        ] {
            s.see(Path::new(p));
        }
        let e = s.problem(both).unwrap();
        assert!(e.contains("for BIOS and UEFI: the rootfs archive has no usr/lib/grub/x86_64-efi (grub-efi-amd64-bin)"), "{e}");
        assert!(!e.contains("grub-install,"), "{e}");
        assert_eq!(
            s.problem(Firmware {
                bios: true,
                uefi: false
            }),
            None
        );
        s.see(Path::new("usr/lib/grub/x86_64-efi/core.efi"));
        assert_eq!(s.problem(both), None);
        // Names that only look alike do not count.
        let mut t = ArchiveScan::default();
        for p in [
            "usr/sbin/grub-installer",
            "usr/share/doc/grub-install",
            "usr/lib/grub/i386-pcx/a",
        ] {
            t.see(Path::new(p));
        }
        let e = t.problem(both).unwrap();
        assert!(e.contains("no grub-install, grub-mkconfig, usr/lib/grub/i386-pc (grub-pc), usr/lib/grub/x86_64-efi"), "{e}");
    }

    #[test]
    fn missing_grub_names_the_packages() {
        let t = tempfile::tempdir().unwrap();
        let both = Firmware {
            bios: true,
            uefi: true,
        };
        let e = find_tools(t.path(), both).err().unwrap().to_string();
        assert!(
            e.contains("grub-install not found in the target: install grub-pc / grub-efi-amd64-bin in the image"),
            "{e}"
        );
        fs::create_dir_all(t.path().join("usr/sbin")).unwrap();
        fs::write(t.path().join("usr/sbin/grub-install"), "").unwrap();
        fs::write(t.path().join("usr/sbin/grub-mkconfig"), "").unwrap();
        fs::create_dir_all(t.path().join("usr/lib/grub/i386-pc")).unwrap();
        let e = find_tools(t.path(), both).err().unwrap().to_string();
        assert!(
            e.contains("x86_64-efi modules are not in the target"),
            "{e}"
        );
        let bios = Firmware {
            bios: true,
            uefi: false,
        };
        let tools = find_tools(t.path(), bios).unwrap();
        assert_eq!(
            (
                tools.install.as_str(),
                tools.mkconfig.as_str(),
                tools.boot_dir
            ),
            (
                "/usr/sbin/grub-install",
                "/usr/sbin/grub-mkconfig",
                "/boot/grub"
            )
        );
    }
}
