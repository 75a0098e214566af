//! Bootloader stage: systemd-boot installed by us, grub from the target ([`super::grub`]), a
//! command chrooted in the target, or none.
//!
//! systemd-boot: `EFI/systemd/systemd-bootx64.efi` and the fallback `EFI/BOOT/BOOTX64.EFI`
//! (from the target, the tools root or the payload, in that order), `loader/loader.conf`, and a
//! Boot Loader Specification type #1 entry for the kernel and initrd found in the target's
//! /boot (or given in the config) with `root=PARTUUID=…`. Kernels outside the ESP are copied
//! into `<ESP>/anemos/`, since the firmware can only read the ESP.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::disk::plan::{DiskAction, Plan};
use crate::util::uuid_string;

const SD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// What was installed, for the kexec finish and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub entry_path: PathBuf,
    pub kernel: PathBuf,
    pub initrd: Vec<PathBuf>,
    pub options: String,
}

/// (ESP mount point in the target, the `root=` value: `PARTUUID=…` of the partition mounted at
/// "/", or `UUID=…` of the filesystem when "/" is on an array, which has no PARTUUID). The ESP
/// is the plan's mounted one ([`crate::disk::plan::esps`]: the first with a mount point, in
/// disk order); ESPs without one (a second disk's, kept as a mirror) are not it.
pub fn esp_and_root(plan: &Plan) -> Result<(String, String)> {
    let esp = crate::disk::plan::esps(plan)
        .and_then(|(main, _)| main.part.mount.clone())
        .ok_or_else(|| {
            anyhow!("the bootloader (systemd-boot, or grub for UEFI) needs an ESP (type = \"esp\") with a mount point in anemos.toml")
        })?;
    Ok((esp, root_arg(plan)?))
}

/// The `root=` value: `PARTUUID=…` of the partition mounted at "/", or `UUID=…` of the
/// filesystem when "/" is on an array or a LUKS volume (no PARTUUID).
pub fn root_arg(plan: &Plan) -> Result<String> {
    let mut root = None;
    for d in &plan.disks {
        if let DiskAction::Repartition { parts, .. } = &d.action {
            for p in parts {
                if p.mount.as_deref() == Some("/") {
                    root = Some(format!("PARTUUID={}", uuid_string(&p.part_uuid)));
                }
            }
        }
    }
    for a in &plan.arrays {
        if let (Some("/"), Some(u)) = (a.mount.as_deref(), a.fs_uuid) {
            root = Some(format!("UUID={}", uuid_string(&u)));
        }
    }
    for l in &plan.luks {
        // The installed initramfs unlocks it from crypttab, then mounts the filesystem inside.
        if let (Some("/"), Some(u)) = (l.mount.as_deref(), l.fs_uuid) {
            root = Some(format!("UUID={}", uuid_string(&u)));
        }
    }
    root.ok_or_else(|| {
        anyhow!("the bootloader needs a partition, array or LUKS volume mounted at \"/\" for root=")
    })
}

/// Finds `vmlinuz-<v>` (newest by version order) or `vmlinuz` in `boot`, and its initrd.
pub fn find_kernel(boot: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let mut names: Vec<String> = fs::read_dir(boot)
        .with_context(|| format!("listing {}", boot.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "vmlinuz" || n.starts_with("vmlinuz-"))
        .collect();
    names.sort_by(|a, b| version_cmp(a, b));
    let k = names.pop().ok_or_else(|| {
        anyhow!(
            "no kernel (vmlinuz or vmlinuz-*) in the target's {}; set [bootloader] kernel",
            boot.display()
        )
    })?;
    let ver = k.strip_prefix("vmlinuz-").unwrap_or("");
    let cands = if ver.is_empty() {
        vec!["initrd.img".to_string(), "initramfs.img".to_string()]
    } else {
        vec![
            format!("initrd.img-{ver}"),
            format!("initramfs-{ver}.img"),
            format!("initrd-{ver}"),
        ]
    };
    let initrd = cands
        .into_iter()
        .map(|c| boot.join(c))
        .filter(|p| p.is_file())
        .take(1)
        .collect();
    Ok((boot.join(k), initrd))
}

/// Compares names with embedded numbers numerically ("vmlinuz-6.10" > "vmlinuz-6.9").
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |s: &str| -> Vec<(u64, String)> {
        let mut v = Vec::new();
        let mut num = String::new();
        let mut txt = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !txt.is_empty() {
                    v.push((0, std::mem::take(&mut txt)));
                }
                num.push(c);
            } else {
                if !num.is_empty() {
                    v.push((num.parse().unwrap_or(0), String::new()));
                    num.clear();
                }
                txt.push(c);
            }
        }
        if !num.is_empty() {
            v.push((num.parse().unwrap_or(0), String::new()));
        }
        if !txt.is_empty() {
            v.push((0, txt));
        }
        v
    };
    split(a).cmp(&split(b))
}

/// Renders a BLS type #1 entry. Pure.
pub fn render_entry(
    title: &str,
    version: &str,
    linux: &str,
    initrds: &[String],
    options: &str,
) -> String {
    let mut s = format!("# written by anemos\ntitle {title}\n");
    if !version.is_empty() {
        s.push_str(&format!("version {version}\n"));
    }
    s.push_str(&format!("linux {linux}\n"));
    for i in initrds {
        s.push_str(&format!("initrd {i}\n"));
    }
    s.push_str(&format!("options {options}\n"));
    s
}

/// Places `file` on the ESP: its ESP-relative path if it already lives there, else a copy
/// under `<esp>/anemos/`.
fn on_esp(esp: &Path, file: &Path) -> Result<String> {
    if let Ok(rel) = file.strip_prefix(esp) {
        return Ok(format!("/{}", rel.display()));
    }
    let name = file
        .file_name()
        .ok_or_else(|| anyhow!("bad kernel path {}", file.display()))?;
    let dir = esp.join("anemos");
    fs::create_dir_all(&dir)?;
    fs::copy(file, dir.join(name))
        .with_context(|| format!("copying {} to the ESP", file.display()))?;
    Ok(format!("/anemos/{}", name.to_string_lossy()))
}

/// Installs systemd-boot and its entry. `target` is the mounted target root.
pub fn install_systemd_boot(
    plan: &Plan,
    target: &Path,
    options: Option<&str>,
    kernel: Option<&str>,
    initrd: &[String],
    title: &str,
) -> Result<Entry> {
    let (esp_mount, root) = esp_and_root(plan)?;
    let esp = target.join(esp_mount.trim_start_matches('/'));
    let sources = [
        target.join(SD_BOOT),
        Path::new("/").join(SD_BOOT),
        PathBuf::from("/payload/systemd-bootx64.efi"),
    ];
    let efi = sources.iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow!("systemd-bootx64.efi not found in the target, the tools root or the payload (looked at {})", sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))
    })?;
    for dst in ["EFI/systemd/systemd-bootx64.efi", "EFI/BOOT/BOOTX64.EFI"] {
        let d = esp.join(dst);
        fs::create_dir_all(d.parent().unwrap_or(&esp))?;
        fs::copy(efi, &d)
            .with_context(|| format!("copying {} to {}", efi.display(), d.display()))?;
    }
    log::info!(
        "installed systemd-boot from {} to the ESP ({})",
        efi.display(),
        esp.display()
    );
    let (kpath, ipaths) = match kernel {
        Some(k) => (
            target.join(k.trim_start_matches('/')),
            initrd
                .iter()
                .map(|i| target.join(i.trim_start_matches('/')))
                .collect(),
        ),
        None => find_kernel(&target.join("boot"))?,
    };
    if !kpath.is_file() {
        bail!("kernel {} does not exist in the target", kpath.display());
    }
    let linux = on_esp(&esp, &kpath)?;
    let initrds: Vec<String> = ipaths
        .iter()
        .map(|i| on_esp(&esp, i))
        .collect::<Result<_>>()?;
    let version = kpath
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .unwrap_or("")
        .to_string();
    let opts = format!("root={root} {}", options.unwrap_or("rw"))
        .trim()
        .to_string();
    let entry_name = format!(
        "anemos-{}.conf",
        title.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    fs::create_dir_all(esp.join("loader/entries"))?;
    fs::write(
        esp.join("loader/loader.conf"),
        format!("# written by anemos\ndefault {entry_name}\ntimeout 0\n"),
    )?;
    let entry_path = esp.join("loader/entries").join(&entry_name);
    fs::write(
        &entry_path,
        render_entry(
            &format!("{title} (anemos)"),
            &version,
            &linux,
            &initrds,
            &opts,
        ),
    )?;
    log::info!(
        "wrote boot entry {}: linux {linux}, initrd {}, options {opts}",
        entry_path.display(),
        if initrds.is_empty() {
            "-".into()
        } else {
            initrds.join(" ")
        }
    );
    Ok(Entry {
        entry_path,
        kernel: kpath,
        initrd: ipaths,
        options: opts,
    })
}

/// The `bootloader` stage.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    let (Some(payload), Some(plan)) = (&ctx.payload, &ctx.plan) else {
        return Ok(());
    };
    match &payload.config.bootloader {
        crate::config::Bootloader::None => log::info!("bootloader: none configured"),
        crate::config::Bootloader::SystemdBoot {
            options,
            kernel,
            initrd,
        } => {
            let title = payload
                .config
                .hostname
                .clone()
                .unwrap_or_else(|| "anemos".into());
            let e = install_systemd_boot(
                plan,
                Path::new(super::disks::TARGET),
                options.as_deref(),
                kernel.as_deref(),
                initrd,
                &title,
            )?;
            ctx.entry = Some(e);
            super::bootentry::write_entries(plan, &title, super::bootentry::SYSTEMD_BOOT);
        }
        crate::config::Bootloader::Grub { firmware, options } => {
            let e = super::grub::install(
                plan,
                Path::new(super::disks::TARGET),
                *firmware,
                options.as_deref(),
            )?;
            ctx.entry = Some(e);
            if firmware.uefi {
                let title = payload
                    .config
                    .hostname
                    .clone()
                    .unwrap_or_else(|| "anemos".into());
                super::bootentry::write_entries(plan, &title, super::grub::LOADER);
            }
        }
        crate::config::Bootloader::Command { command } => {
            let target = Path::new(super::disks::TARGET);
            let _m = crate::makeimg::ChrootMounts::new(target)?;
            let env =
                super::install::builder_env(Some(plan), "/", payload.config.hostname.as_deref());
            crate::cmd::run_streamed(
                "/bin/sh",
                &["-c".into(), command.clone()],
                &crate::cmd::Builder {
                    cwd: Path::new("/"),
                    env: &env,
                    chroot: Some(target),
                    prefix: "bootloader",
                },
            )?;
        }
    }
    // Last: the mirrors get the ESP as the loader left it.
    super::espmirror::sync(plan, Path::new(super::disks::TARGET))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_discovery_picks_newest_with_matching_initrd() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "vmlinuz-6.9.0-1",
            "vmlinuz-6.10.0-1",
            "initrd.img-6.9.0-1",
            "initrd.img-6.10.0-1",
            "config-6.10.0-1",
        ] {
            fs::write(d.path().join(f), "x").unwrap();
        }
        let (k, i) = find_kernel(d.path()).unwrap();
        assert_eq!(k.file_name().unwrap(), "vmlinuz-6.10.0-1");
        assert_eq!(i, vec![d.path().join("initrd.img-6.10.0-1")]);
        let e = find_kernel(tempfile::tempdir().unwrap().path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no kernel"), "{e}");
    }

    #[test]
    fn entry_text() {
        let e = render_entry(
            "web1 (anemos)",
            "6.1.0",
            "/vmlinuz-6.1.0",
            &["/initrd.img-6.1.0".into()],
            "root=PARTUUID=abc rw",
        );
        assert_eq!(e, "# written by anemos\ntitle web1 (anemos)\nversion 6.1.0\nlinux /vmlinuz-6.1.0\ninitrd /initrd.img-6.1.0\noptions root=PARTUUID=abc rw\n");
    }

    #[test]
    fn the_esp_is_the_first_mounted_one() {
        use crate::blockdev::identity::DiskIdentity;
        let cfg = "hostname = \"h\"\n\
            [[disk]]\nname = \"a\"\nmatch = { serial = \"s0\" }\nwipe = true\npartitions = [\n\
            { label = \"esp-a\", type = \"esp\", size = \"100MiB\", format = \"vfat\", mount = \"/boot\" },\n\
            { label = \"root\", type = \"root\", size = \"rest\", format = \"ext4\", mount = \"/\" },\n]\n\
            [[disk]]\nname = \"b\"\nmatch = { serial = \"s1\" }\nwipe = true\npartitions = [\n\
            { label = \"esp-b\", type = \"esp\", size = \"100MiB\", format = \"vfat\" },\n]\n\
            [bootloader]\nkind = \"systemd-boot\"\n";
        let v = crate::config::load(cfg, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
        let disk = |path: &str, serial: &str| DiskIdentity {
            path: path.into(),
            size_bytes: 1 << 30,
            sector_size: 512,
            serial: Some(serial.into()),
            ..Default::default()
        };
        let p =
            crate::disk::plan::plan(&v.layout, &[disk("/dev/vda", "s0"), disk("/dev/vdb", "s1")])
                .unwrap();
        let (esp, root) = esp_and_root(&p).unwrap();
        assert_eq!(esp, "/boot", "disk b's unmounted ESP is not the one");
        assert!(root.starts_with("PARTUUID="), "{root}");
    }
}
