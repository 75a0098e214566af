//! `anemos kexec --image auto`: the base image built on the server itself, for the kernel it
//! will boot, from that kernel's own `/lib/modules` and the server's own tools, and cached
//! for the next deploy.
//!
//! What goes in: the storage, net and fs module sets (so that any disk or NIC the kernel
//! drives is driven), every module loaded now (`/proc/modules`), and the modules of the
//! drivers bound to this machine's disks and NICs (sysfs), which catches an uncommon storage
//! module outside the sets; the filesystem and disk tools found on the server (mke2fs,
//! mkfs.xfs, mkfs.btrfs, mdadm, cryptsetup, sgdisk) with their libraries; dropbear and a shell
//! when the server has them (the deploy image's ssh server); an optional tools root.
//!
//! The image is cached in the cache dir under [`crate::kver::cache_key`]; a `.info` file
//! beside it keeps what went in and how long it took, for the message when it is reused.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::pack::{self, PackOptions};

/// The module sets every server-built image has.
pub const SETS: [&str; 3] = ["storage", "net", "fs"];

/// Tools taken from the server when it has them, by name, with their libraries.
pub const TOOLS: &[&str] = &[
    "mke2fs",
    "mkfs.xfs",
    "mkfs.btrfs",
    "mdadm",
    "cryptsetup",
    "sgdisk",
    "dropbear",
    "busybox",
];

/// Where tools are looked for on the server, in order.
const TOOL_DIRS: [&str; 4] = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// zstd level of a server-built image: it is made on the server and read once by the kernel;
/// packing speed matters more there than the last megabytes.
const LEVEL: i32 = 3;

/// The keyword for `--image`.
pub const AUTO: &str = "auto";

/// Module names from `/proc/modules` text (first word of each line). Pure.
pub fn loaded_modules(proc_modules: &str) -> Vec<String> {
    proc_modules
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// The modules of the drivers bound to the devices behind `/sys/class/block/*` and
/// `/sys/class/net/*` (each device and its parents: a disk's driver, its controller's, the
/// bus's), as (device name, module names). Drivers built into the kernel have no module.
pub fn device_driver_modules(sys: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for class in ["block", "net"] {
        let Ok(rd) = fs::read_dir(sys.join("class").join(class)) else {
            continue;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let Ok(mut dev) =
                fs::canonicalize(sys.join("class").join(class).join(&name).join("device"))
            else {
                continue;
            };
            let mut mods = Vec::new();
            while dev.starts_with(sys.join("devices")) {
                if let Ok(m) = fs::read_link(dev.join("driver/module")) {
                    if let Some(m) = m.file_name() {
                        let m = m.to_string_lossy().into_owned();
                        if !mods.contains(&m) {
                            mods.push(m);
                        }
                    }
                }
                if !dev.pop() {
                    break;
                }
            }
            if !mods.is_empty() {
                out.push((name.to_string_lossy().into_owned(), mods));
            }
        }
    }
    out
}

/// The modules tree of `release` on this machine.
fn modules_dir(release: &str) -> Result<PathBuf> {
    for base in ["/lib/modules", "/usr/lib/modules"] {
        let d = Path::new(base).join(release);
        if d.join("modules.dep").is_file() {
            return Ok(d);
        }
    }
    bail!(
        "cannot build the base image here: no /lib/modules/{release}/modules.dep for the kernel {release} \
         (install that kernel's modules package, e.g. linux-image-{release}, or run depmod {release}); \
         or pass --image with a base image packed for {release}"
    )
}

/// The first of `TOOL_DIRS` that holds `name`.
fn find_tool(name: &str) -> Option<PathBuf> {
    TOOL_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// What the cache keeps about a built image, for the reuse message.
#[derive(Debug, Default)]
struct Info {
    build_ms: u64,
    summary: String,
}

fn read_info(p: &Path) -> Option<Info> {
    let text = fs::read_to_string(p).ok()?;
    let mut i = Info::default();
    for l in text.lines() {
        if let Some(v) = l.strip_prefix("build_ms=") {
            i.build_ms = v.trim().parse().ok()?;
        } else if let Some(v) = l.strip_prefix("summary=") {
            i.summary = v.to_string();
        }
    }
    Some(i)
}

/// sha256 of the running anemos binary (part of the cache key: it becomes the image's /init).
fn self_digest() -> Result<String> {
    let me = std::env::current_exe().context("finding the running anemos binary")?;
    let f = fs::File::open(&me).with_context(|| format!("reading {}", me.display()))?;
    Ok(pack::payload::sha256_reader(f)?.0)
}

/// The digest in the cache key: the binary's, combined with the tools root's when there is
/// one (a tar by its content; a directory by its path, as walking it would cost as much as
/// packing it).
fn build_digest(tools_root: Option<&Path>) -> Result<String> {
    let me = self_digest()?;
    let Some(t) = tools_root else {
        return Ok(me);
    };
    let root = if t.is_file() {
        let f = fs::File::open(t).with_context(|| format!("--tools-root {}", t.display()))?;
        pack::payload::sha256_reader(f)?.0
    } else {
        t.display().to_string()
    };
    Ok(pack::payload::sha256_reader(format!("{me} {root}").as_bytes())?.0)
}

/// Returns the cached base image for `release`, building it first when there is none.
/// `running` is whether `release` is the running kernel's (then the loaded modules and the
/// sysfs drivers are added).
pub fn ensure(
    release: &str,
    running: bool,
    cache_dir: &Path,
    tools_root: Option<&Path>,
) -> Result<PathBuf> {
    let key = crate::kver::cache_key(
        release,
        env!("CARGO_PKG_VERSION"),
        &build_digest(tools_root)?,
    );
    let image = cache_dir.join(&key);
    let info_path = cache_dir.join(format!("{key}.info"));
    if image.is_file() && pack::inspect::read_segments(&image).is_ok() {
        let info = read_info(&info_path).unwrap_or_default();
        println!(
            "base image: reusing {} (cached for kernel {release} and this anemos, {} MiB{}); {}",
            image.display(),
            fs::metadata(&image).map(|m| m.len() >> 20).unwrap_or(0),
            if info.summary.is_empty() {
                String::new()
            } else {
                format!(": {}", info.summary)
            },
            if info.build_ms == 0 {
                "no build now".to_string()
            } else {
                format!(
                    "building it took {:.1} s, saved now",
                    info.build_ms as f64 / 1000.0
                )
            }
        );
        return Ok(image);
    }
    fs::create_dir_all(cache_dir)
        .with_context(|| format!("creating the cache dir {}", cache_dir.display()))?;
    let kdir = modules_dir(release)?;
    let t = Instant::now();
    let mut modules: Vec<String> = SETS.iter().map(|s| s.to_string()).collect();
    let mut notes = vec![format!("module sets {}", SETS.join(", "))];
    if running {
        let loaded = loaded_modules(&fs::read_to_string("/proc/modules").unwrap_or_default());
        notes.push(format!("{} modules loaded now", loaded.len()));
        modules.extend(loaded);
        let drivers = device_driver_modules(Path::new("/sys"));
        if !drivers.is_empty() {
            notes.push(format!(
                "drivers of {}",
                drivers
                    .iter()
                    .map(|(d, m)| format!("{d}: {}", m.join("+")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        modules.extend(drivers.into_iter().flat_map(|(_, m)| m));
    }
    // A loaded module this tree does not know (built out of tree and not installed there) is
    // left out rather than failing the build; the sets and the rest still go in.
    let (known, unknown) = pack::modules::partition_known(&kdir, &modules)?;
    if !unknown.is_empty() {
        notes.push(format!(
            "left out (not in {}): {}",
            kdir.display(),
            unknown.join(", ")
        ));
    }
    let mut binaries = Vec::new();
    let mut tools = Vec::new();
    for name in TOOLS {
        if let Some(p) = find_tool(name) {
            tools.push(name.to_string());
            binaries.push(p);
        }
    }
    if !tools.iter().any(|t| t == "mke2fs") {
        bail!("cannot build the base image here: no mke2fs in {} (install e2fsprogs), which the deploy image needs for ext4", TOOL_DIRS.join(", "));
    }
    // A shell for the install scripts and the ssh sessions: busybox when there is one, else
    // the server's own /bin/sh.
    let mut links = Vec::new();
    if tools_root.is_none() {
        if let Some(bb) = find_tool("busybox") {
            links.push(("/bin/sh".to_string(), bb.display().to_string()));
        } else if let Ok(sh) = fs::canonicalize("/bin/sh") {
            binaries.push(sh.clone());
            links.push(("/bin/sh".to_string(), sh.display().to_string()));
            tools.push(format!("sh ({})", sh.display()));
        }
    }
    let o = PackOptions {
        output: image.clone(),
        rootfs: tools_root.map(Path::to_path_buf),
        links,
        binaries,
        kernel_modules: Some(kdir.clone()),
        modules: known,
        compression: Some(crate::codec::Compression::Zstd),
        level: Some(LEVEL),
        mtime: pack::mtime_from_env()?,
        ..Default::default()
    };
    println!(
        "base image: building {} for kernel {release} from {} (first deploy with this kernel and this anemos)",
        image.display(),
        kdir.display()
    );
    let r =
        pack::pack(&o).with_context(|| format!("building the base image {}", image.display()))?;
    let ms = t.elapsed().as_millis() as u64;
    let summary = format!(
        "{} modules ({}), tools {}{}",
        r.modules,
        notes.join("; "),
        tools.join(", "),
        tools_root
            .map(|p| format!(", tools root {}", p.display()))
            .unwrap_or_default()
    );
    fs::write(&info_path, format!("build_ms={ms}\nsummary={summary}\n"))
        .with_context(|| format!("writing {}", info_path.display()))?;
    println!(
        "base image: built {} in {:.1} s: {summary}; {} MiB ({} MiB unpacked)",
        image.display(),
        ms as f64 / 1000.0,
        r.image_size >> 20,
        r.uncompressed >> 20
    );
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_modules_are_the_first_words() {
        let t = "virtio_net 61440 0 - Live 0x0000000000000000\nvirtio_blk 20480 2 - Live 0x0\n\n";
        assert_eq!(loaded_modules(t), ["virtio_net", "virtio_blk"]);
    }

    #[test]
    fn drivers_of_disks_and_nics_from_a_sysfs_tree() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        let pci = sys.join("devices/pci0000:00/0000:00:03.0");
        let vdev = pci.join("virtio1");
        fs::create_dir_all(&vdev).unwrap();
        fs::create_dir_all(sys.join("module/virtio_blk")).unwrap();
        fs::create_dir_all(sys.join("module/virtio_pci")).unwrap();
        fs::create_dir_all(sys.join("bus/virtio/drivers/virtio_blk")).unwrap();
        fs::create_dir_all(sys.join("bus/pci/drivers/virtio-pci")).unwrap();
        symlink(
            sys.join("module/virtio_blk"),
            sys.join("bus/virtio/drivers/virtio_blk/module"),
        )
        .unwrap();
        symlink(
            sys.join("module/virtio_pci"),
            sys.join("bus/pci/drivers/virtio-pci/module"),
        )
        .unwrap();
        symlink(
            sys.join("bus/virtio/drivers/virtio_blk"),
            vdev.join("driver"),
        )
        .unwrap();
        symlink(sys.join("bus/pci/drivers/virtio-pci"), pci.join("driver")).unwrap();
        fs::create_dir_all(sys.join("class/block/vda")).unwrap();
        symlink(&vdev, sys.join("class/block/vda/device")).unwrap();
        // A virtual device (loop) has no device link; a NIC with a built-in driver no module.
        fs::create_dir_all(sys.join("class/block/loop0")).unwrap();
        let nic = sys.join("devices/pci0000:00/0000:00:04.0");
        fs::create_dir_all(nic.join("bus/pci/drivers/e1000")).unwrap();
        fs::create_dir_all(sys.join("class/net/eth0")).unwrap();
        symlink(&nic, sys.join("class/net/eth0/device")).unwrap();
        assert_eq!(
            device_driver_modules(sys),
            vec![(
                "vda".to_string(),
                vec!["virtio_blk".to_string(), "virtio_pci".to_string()]
            )]
        );
    }
}
