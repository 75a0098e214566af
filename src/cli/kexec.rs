//! `anemos kexec`: run on the server. Validates the payload, prints the plan against the
//! server's real disks, checks RAM and kexec availability, then (with --yes) loads the running
//! kernel (or --kernel) with the base image + payload as initramfs and reboots into it.

use crate::fetch::mem_available;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::codec::Compression;
use crate::pack;

/// Candidate kernel images for the running system, in the order they are tried.
pub fn kernel_candidates(release: &str, cmdline: &str) -> Vec<PathBuf> {
    let mut v = vec![
        PathBuf::from(format!("/boot/vmlinuz-{release}")),
        PathBuf::from("/boot/vmlinuz-linux"),
        PathBuf::from(format!("/lib/modules/{release}/vmlinuz")),
        PathBuf::from(format!("/usr/lib/modules/{release}/vmlinuz")),
    ];
    for w in crate::kcmdline::split_words(cmdline) {
        if let Some(b) = w.strip_prefix("BOOT_IMAGE=") {
            // GRUB may prefix a device: BOOT_IMAGE=(hd0,gpt2)/vmlinuz-...
            let p = b.rsplit(')').next().unwrap_or(b);
            v.push(PathBuf::from(p));
            v.push(Path::new("/boot").join(p.trim_start_matches('/')));
        }
    }
    v
}

/// The kernel command line for the deploy image: the current `console=` arguments (so the
/// operator sees the same console), the current `anemos.*` ones (but not an earlier deploy's
/// ID), then `--append`, then `anemos.deploy_id=` (last, so it wins).
pub fn compose_cmdline(current: &str, append: Option<&str>, deploy_id: &str) -> String {
    let mut words: Vec<String> = crate::kcmdline::split_words(current)
        .into_iter()
        .filter(|w| w.starts_with("console=") || w.starts_with("anemos."))
        .filter(|w| !w.starts_with("anemos.deploy_id="))
        .collect();
    if let Some(a) = append {
        words.extend(crate::kcmdline::split_words(a));
    }
    words.push(format!("anemos.deploy_id={deploy_id}"));
    words
        .iter()
        .map(|w| {
            if w.contains(' ') {
                format!("\"{w}\"")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Headroom beyond the unpacked image: the init, page cache for unpacking, tools.
pub const RAM_HEADROOM: u64 = 256 << 20;

/// Refuses when the image and payload, unpacked in RAM, plus headroom do not fit.
pub fn check_ram(available: u64, packed: u64, unpacked: u64) -> Result<()> {
    // The packed initramfs stays in memory until the kernel has unpacked it.
    let need = unpacked + packed + RAM_HEADROOM;
    if available < need {
        bail!(
            "not enough free RAM for the deploy image: {} MiB available, need {} MiB ({} MiB unpacked + {} MiB packed + {} MiB headroom)",
            available >> 20,
            need >> 20,
            unpacked >> 20,
            packed >> 20,
            RAM_HEADROOM >> 20
        );
    }
    Ok(())
}

/// Refuses when the kernel will not kexec (disabled by sysctl, or lockdown).
pub fn check_kexec_allowed(load_disabled: Option<&str>, lockdown: Option<&str>) -> Result<()> {
    if load_disabled.map(|s| s.trim() == "1").unwrap_or(false) {
        bail!("kexec is disabled on this machine (/proc/sys/kernel/kexec_load_disabled = 1; it can only be re-enabled by a reboot)");
    }
    if let Some(l) = lockdown {
        if !l.contains("[none]") && !l.trim().is_empty() {
            bail!(
                "kernel lockdown is active ({}); kexec needs a signed kernel and is refused here",
                l.trim()
            );
        }
    }
    Ok(())
}

/// Reads the release of the kernel image that would boot (its bzImage setup header).
pub fn kernel_release_of(kernel: &Path) -> Result<crate::kver::KernelVersion> {
    use std::io::Read;
    let mut head = Vec::with_capacity(crate::kver::SETUP_MAX);
    fs::File::open(kernel)
        .with_context(|| format!("kernel {}: cannot open it", kernel.display()))?
        .take(crate::kver::SETUP_MAX as u64)
        .read_to_end(&mut head)
        .with_context(|| format!("kernel {}: cannot read it", kernel.display()))?;
    crate::kver::bzimage_version(&head).with_context(|| {
        format!(
            "kernel {}: cannot read its release, so the base image's modules cannot be checked against it",
            kernel.display()
        )
    })
}

/// What a base image carries in kernel modules, from its listing and module manifest.
pub fn base_modules_of(
    image: &Path,
    segments: &[pack::inspect::Segment],
) -> Result<crate::kver::BaseModules> {
    let entries = || segments.iter().flat_map(|s| s.entries.iter());
    let canon = |p: &str| {
        p.trim_start_matches("./")
            .trim_start_matches('/')
            .to_string()
    };
    let link = crate::module_manifest::LINK.trim_start_matches('/');
    // The manifest is where the link points, else the one lib/modules/*/anemos.modules.
    let manifest_path = entries()
        .filter(|e| canon(&e.path) == link)
        .filter_map(|e| e.link_target.as_deref())
        .map(canon)
        .next_back()
        .or_else(|| {
            entries()
                .filter(|e| e.is_file())
                .map(|e| canon(&e.path))
                .find(|p| {
                    p.starts_with("lib/modules/")
                        && p.ends_with(&format!("/{}", crate::module_manifest::FILE_NAME))
                })
        });
    let text = match &manifest_path {
        Some(p) => Some(
            String::from_utf8_lossy(&pack::inspect::cat(image, p).with_context(|| {
                format!(
                    "--image {}: its module manifest /{p} cannot be read",
                    image.display()
                )
            })?)
            .into_owned(),
        ),
        None => None,
    };
    let files: Vec<&str> = entries()
        .filter(|e| e.is_file())
        .map(|e| e.path.as_str())
        .collect();
    let manifest = manifest_path.as_deref().zip(text.as_deref());
    crate::kver::base_modules(files, manifest).with_context(|| {
        format!(
            "--image {}: its module manifest /{} is damaged",
            image.display(),
            manifest_path.as_deref().unwrap_or("")
        )
    })
}

/// Refuses a base image whose modules do not fit the kernel that would boot it; returns the
/// line saying what was checked.
pub fn check_image_fits_kernel(
    image: &Path,
    segments: &[pack::inspect::Segment],
    kernel: &Path,
) -> Result<String> {
    let kv = kernel_release_of(kernel)?;
    let base = base_modules_of(image, segments)?;
    Ok(
        match crate::kver::check_base(&base, image, kernel, &kv.release)? {
            crate::kver::Verdict::Matches { release, modules } => {
                let mut line = format!(
                    "kernel release: {release} (kernel {} and the base image's {modules} modules agree)",
                    kernel.display()
                );
                // The drivers this system uses for its disks and NICs, when it runs that kernel.
                let running = rustix::system::uname().release().to_string_lossy() == release;
                if running {
                    let drivers = super::autobase::device_driver_modules(Path::new("/sys"));
                    for (dev, m) in crate::kver::absent_drivers(&base, &drivers) {
                        line.push_str(&format!(
                            "\nwarning: this system drives {dev} with the module {m}, which the base image lacks: the deploy image may not see {dev} (pack it with --module {m}, or use --image auto)"
                        ));
                    }
                }
                line
            }
            crate::kver::Verdict::NoModules => format!(
                "kernel release: {} ({}); the base image has no kernel modules, so the deploy image relies on the drivers built into that kernel",
                kv.release,
                kernel.display()
            ),
        },
    )
}

pub struct KexecArgs {
    /// The base image, or `auto` (see [`super::autobase`]).
    pub image: PathBuf,
    /// Where `--image auto` caches the images it builds.
    pub cache_dir: PathBuf,
    /// A tools root for `--image auto`.
    pub tools_root: Option<PathBuf>,
    pub payload: PathBuf,
    pub kernel: Option<PathBuf>,
    pub append: Option<String>,
    pub network_keep: bool,
    /// This deploy's ID; a fresh one when not given.
    pub deploy_id: Option<String>,
    /// An access bundle (ssh keys for the deploy image's ssh server) made by `anemos deploy`.
    pub access: Option<PathBuf>,
    pub yes: bool,
}

/// Reads anemos.toml out of a payload given as a dir, a tar or a packed payload file.
fn payload_segment(p: &Path) -> Result<(Vec<u8>, String)> {
    let md = fs::metadata(p)
        .with_context(|| format!("--payload {}: no such file or directory", p.display()))?;
    let seg = if md.is_dir() || has_tar_name(p) {
        pack::payload_segment(p, Compression::Zstd, None, pack::mtime_from_env()?)?.0
    } else {
        fs::read(p).with_context(|| format!("reading {}", p.display()))?
    };
    let tmp = std::env::temp_dir().join(format!("anemos-payload-{}.img", std::process::id()));
    fs::write(&tmp, &seg)?;
    let cfg = pack::inspect::cat(&tmp, "payload/anemos.toml");
    let _ = fs::remove_file(&tmp);
    let cfg =
        cfg.with_context(|| format!("--payload {}: no payload/anemos.toml in it", p.display()))?;
    Ok((seg, String::from_utf8_lossy(&cfg).into_owned()))
}

/// Whether the file name says tar (`.tar`, `.tgz`, `.tar.gz|zst|xz`); the content is not read.
fn has_tar_name(p: &Path) -> bool {
    let n = p.to_string_lossy();
    n.ends_with(".tar")
        || n.ends_with(".tar.gz")
        || n.ends_with(".tgz")
        || n.ends_with(".tar.zst")
        || n.ends_with(".tar.xz")
}

/// Notes about disks that hold the running root.
fn running_root_notes(plan: &crate::disk::plan::Plan) -> Vec<String> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let root_src = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("");
    let mut v = Vec::new();
    for d in &plan.disks {
        if let crate::disk::plan::DiskAction::Repartition { .. } = d.action {
            if !root_src.is_empty() && root_src.starts_with(&d.disk.path) {
                v.push(format!(
                    "note: {} holds the running system's root ({root_src}); that is expected: after kexec the deploy runs from RAM and the old system is gone",
                    d.disk.path
                ));
            }
        }
    }
    v
}

pub fn run(a: KexecArgs) -> Result<()> {
    let (seg, cfg_text) = payload_segment(&a.payload)?;
    let v = crate::config::load(&cfg_text, "payload anemos.toml")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let current = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let kernel = match &a.kernel {
        Some(k) => k.clone(),
        None => kernel_candidates(&release, &current).into_iter().find(|p| p.is_file()).with_context(|| {
            format!("no kernel image found for the running kernel {release} (tried /boot/vmlinuz-{release}, /boot/vmlinuz-linux, /lib/modules/{release}/vmlinuz, BOOT_IMAGE); pass --kernel PATH")
        })?,
    };
    let image = if a.image.as_os_str() == super::autobase::AUTO {
        let kv = kernel_release_of(&kernel)?;
        super::autobase::ensure(
            &kv.release,
            kv.release == release,
            &a.cache_dir,
            a.tools_root.as_deref(),
        )?
    } else {
        if a.tools_root.is_some() {
            bail!("--tools-root is for --image auto; give `anemos pack --rootfs` the tools root instead");
        }
        a.image.clone()
    };
    let base = fs::metadata(&image)
        .with_context(|| format!("--image {}: no such file", image.display()))?
        .len();
    let segments = pack::inspect::read_segments(&image)
        .with_context(|| format!("--image {}: not an initramfs image", image.display()))?;
    // Before the plan and before anything is loaded: a base image for another kernel would
    // boot into a deploy image without drivers.
    println!("{}", check_image_fits_kernel(&image, &segments, &kernel)?);
    let disks = crate::blockdev::identity::disks_from_sysfs(Path::new("/sys"), Path::new("/dev"))?;
    let plan = crate::disk::plan::plan(&v.layout, &disks)?;
    println!("{}", crate::disk::plan::render(&plan).trim_end());
    for n in running_root_notes(&plan) {
        println!("{n}");
    }
    let unpacked = segments.iter().map(|s| s.uncompressed_size).sum::<u64>() + seg.len() as u64 * 4;
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let avail = mem_available(&meminfo).unwrap_or(0);
    check_ram(avail, base + seg.len() as u64, unpacked)?;
    check_kexec_allowed(
        fs::read_to_string("/proc/sys/kernel/kexec_load_disabled")
            .ok()
            .as_deref(),
        fs::read_to_string("/sys/kernel/security/lockdown")
            .ok()
            .as_deref(),
    )?;
    let kept = if a.network_keep {
        let text = super::netkeep::capture()?;
        println!("network: kept from this system (--network keep); the deploy image uses it before anemos.toml's [network]:");
        for l in text.lines().filter(|l| !l.starts_with("# captured")) {
            println!("  {l}");
        }
        Some(text)
    } else {
        None
    };
    let access = match &a.access {
        Some(p) => {
            let b =
                fs::read(p).with_context(|| format!("--access {}: cannot read it", p.display()))?;
            crate::remote::bundle::check_segment(&b)
                .with_context(|| format!("--access {}: not an access bundle", p.display()))?;
            println!("ssh access: the deploy image gets the access bundle {} (operator keys and this deploy's host key)", p.display());
            Some(b)
        }
        None => None,
    };
    let deploy_id = match &a.deploy_id {
        Some(id) => {
            crate::deploy_id::check(id).map_err(|e| anyhow::anyhow!("--deploy-id {e}"))?;
            id.clone()
        }
        None => crate::deploy_id::new(),
    };
    let cmdline = compose_cmdline(&current, a.append.as_deref(), &deploy_id);
    println!(
        "deploy id: {deploy_id}\nkernel: {}\ncommand line: {cmdline}\nRAM: {} MiB available",
        kernel.display(),
        avail >> 20
    );
    if !a.yes {
        println!("nothing was changed. Re-run with --yes to kexec into the deploy image and carry out this plan.");
        return Ok(());
    }
    // Base image + payload, joined in RAM-backed storage.
    let dir = Path::new("/run/anemos-kexec");
    fs::create_dir_all(dir).or_else(|_| fs::create_dir_all("/tmp/anemos-kexec"))?;
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        PathBuf::from("/tmp/anemos-kexec")
    };
    let initrd = dir.join("initrd.img");
    {
        let mut f =
            fs::File::create(&initrd).with_context(|| format!("creating {}", initrd.display()))?;
        let b = fs::read(&image)?;
        // The kernel reads concatenated segments; each cpio header must start 4-byte aligned
        // (zero bytes between segments are skipped).
        let mut segments = vec![b, seg];
        if let Some(text) = &kept {
            segments.push(super::netkeep::segment(text)?);
        }
        if let Some(b) = access {
            segments.push(b);
        }
        for s in &segments {
            f.write_all(s)?;
            f.write_all(&[0u8; 3][..(4 - s.len() % 4) % 4])?;
        }
    }
    crate::kexec::load(&kernel, Some(&initrd), &cmdline)?;
    eprintln!("anemos: kexec loaded; syncing and rebooting into the deploy image");
    crate::kexec::exec()?;
    bail!("reboot(KEXEC) returned")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_discovery_order() {
        let c = kernel_candidates(
            "6.1.0-1-amd64",
            "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.1.0-1-amd64 root=UUID=x",
        );
        assert_eq!(c[0], Path::new("/boot/vmlinuz-6.1.0-1-amd64"));
        assert_eq!(c[1], Path::new("/boot/vmlinuz-linux"));
        assert_eq!(c[2], Path::new("/lib/modules/6.1.0-1-amd64/vmlinuz"));
        assert!(c.contains(&PathBuf::from("/vmlinuz-6.1.0-1-amd64")));
        assert!(c.contains(&PathBuf::from("/boot/vmlinuz-6.1.0-1-amd64")));
    }

    #[test]
    fn cmdline_keeps_consoles_and_anemos_params() {
        let c = compose_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro console=tty0 console=ttyS0,115200 quiet anemos.debug anemos.deploy_id=old-1", Some("anemos.on_failure=shell \"x=a b\""), "new-2");
        assert_eq!(
            c,
            "console=tty0 console=ttyS0,115200 anemos.debug anemos.on_failure=shell \"x=a b\" anemos.deploy_id=new-2"
        );
        assert_eq!(
            compose_cmdline("root=/dev/sda1", None, "x"),
            "anemos.deploy_id=x"
        );
    }

    #[test]
    fn ram_check_states_the_numbers() {
        let m = "MemTotal:  2048000 kB\nMemFree: 100 kB\nMemAvailable:  1024000 kB\n";
        assert_eq!(mem_available(m), Some(1024000 * 1024));
        assert!(check_ram(2 << 30, 20 << 20, 60 << 20).is_ok());
        let e = check_ram(300 << 20, 20 << 20, 60 << 20)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "not enough free RAM for the deploy image: 300 MiB available, need 336 MiB (60 MiB unpacked + 20 MiB packed + 256 MiB headroom)");
    }

    #[test]
    fn kexec_refusals() {
        assert!(
            check_kexec_allowed(Some("0\n"), Some("[none] integrity confidentiality\n")).is_ok()
        );
        assert!(check_kexec_allowed(None, None).is_ok());
        assert!(check_kexec_allowed(Some("1\n"), None)
            .unwrap_err()
            .to_string()
            .contains("kexec_load_disabled = 1"));
        assert!(
            check_kexec_allowed(Some("0"), Some("none [integrity] confidentiality"))
                .unwrap_err()
                .to_string()
                .contains("lockdown is active")
        );
    }
}
