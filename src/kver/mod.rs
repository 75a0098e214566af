//! Which kernel release a deploy image will run, and whether a base image's kernel modules are
//! for it. Pure: callers read the files, this module only looks at bytes and listings.
//!
//! A kernel module loads only into the kernel release it was built for, so a base image whose
//! modules are for another release boots into a deploy image with no disk or network drivers,
//! after the kexec, where the user rarely sees the console. `anemos kexec` therefore compares
//! the release in the kernel image it will boot with the release of the base image's module
//! manifest (see [`crate::module_manifest`]) before it loads anything.
//!
//! The kernel image's release is read from the x86 boot protocol's setup header
//! (Documentation/arch/x86/boot.rst in the kernel sources): `HdrS` at 0x202, the protocol
//! version at 0x206, and at 0x20E `kernel_version`, a pointer to a NUL-terminated string that
//! starts with the release (`6.1.0-57-cloud-amd64 (debian-kernel@...) #1 SMP ...`), stored
//! minus 0x200. Reading that is three fixed offsets; no crate offers it without pulling in a
//! whole VMM boot loader, so it is done here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::module_manifest;

/// Bytes of a kernel image worth reading for [`bzimage_version`]: the boot sector and the
/// largest setup part the header can describe (`setup_sects` is one byte: 255 sectors).
pub const SETUP_MAX: usize = 256 * 512;

/// Offset of the setup header's `HdrS` magic.
const HDR_MAGIC_AT: usize = 0x202;
/// Offset of the boot protocol version (u16, little endian).
const HDR_VERSION_AT: usize = 0x206;
/// Offset of `kernel_version` (u16, little endian; the string is at this value + 0x200).
const KERNEL_VERSION_AT: usize = 0x20E;
/// Longest version string accepted (the kernel's is `UTS_RELEASE (...) #n SMP ...`).
const MAX_VERSION_LEN: usize = 512;

/// The version string of a kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelVersion {
    /// The release, as `uname -r` prints it once that kernel runs.
    pub release: String,
    /// The whole version string (release, builder, build number, date).
    pub full: String,
}

/// Why a kernel image's release could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BzImageError {
    /// Too short to hold a setup header.
    #[error("{len} bytes: too short for an x86 kernel image (setup header at 0x202)")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// No `HdrS` magic: not a bzImage (an ELF vmlinux, another architecture's image, ...).
    #[error("no x86 boot setup header (\"HdrS\" at 0x202): not a bzImage kernel")]
    NoHeader,
    /// A boot protocol older than 2.00 has no `kernel_version` field.
    #[error("boot protocol {major}.{minor:02} has no kernel version field (2.00 or later has)")]
    OldProtocol {
        /// Protocol major version.
        major: u8,
        /// Protocol minor version.
        minor: u8,
    },
    /// `kernel_version` is 0: the image carries no version string.
    #[error("the setup header has no kernel version string (kernel_version = 0)")]
    NoVersion,
    /// The string lies outside the bytes given or is not terminated.
    #[error("kernel version string at 0x{offset:x} lies outside the image's setup part or is not NUL-terminated")]
    OutOfRange {
        /// Where the string should start.
        offset: usize,
    },
    /// The string does not start with a plausible release.
    #[error("kernel version string {text:?} does not start with a release")]
    BadText {
        /// The bytes found, lossily decoded.
        text: String,
    },
}

/// Reads the release from the start of a bzImage (at least its setup part; see
/// [`SETUP_MAX`]).
pub fn bzimage_version(image: &[u8]) -> Result<KernelVersion, BzImageError> {
    if image.len() < KERNEL_VERSION_AT + 2 {
        return Err(BzImageError::TooShort { len: image.len() });
    }
    if &image[HDR_MAGIC_AT..HDR_MAGIC_AT + 4] != b"HdrS" {
        return Err(BzImageError::NoHeader);
    }
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]);
    let proto = u16_at(HDR_VERSION_AT);
    if proto < 0x0200 {
        return Err(BzImageError::OldProtocol {
            major: (proto >> 8) as u8,
            minor: proto as u8,
        });
    }
    let ptr = u16_at(KERNEL_VERSION_AT) as usize;
    if ptr == 0 {
        return Err(BzImageError::NoVersion);
    }
    let offset = ptr + 0x200;
    let tail = image
        .get(offset..)
        .ok_or(BzImageError::OutOfRange { offset })?;
    let end = tail
        .iter()
        .take(MAX_VERSION_LEN)
        .position(|&b| b == 0)
        .ok_or(BzImageError::OutOfRange { offset })?;
    let full = String::from_utf8_lossy(&tail[..end]).trim().to_string();
    let release = full.split_whitespace().next().unwrap_or("").to_string();
    if !is_release(&release) {
        return Err(BzImageError::BadText { text: full });
    }
    Ok(KernelVersion { release, full })
}

/// Whether `s` looks like a kernel release: starts with a digit, printable, no `/`.
pub fn is_release(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_graphic() && c != '/')
}

/// The kernel modules a base image carries, as read from its listing and module manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseModules {
    /// Release named by the module manifest (its header, else the directory it lies in).
    pub release: Option<String>,
    /// Where the manifest lies in the image (`lib/modules/<release>/anemos.modules`).
    pub manifest: Option<String>,
    /// Modules the manifest lists.
    pub listed: usize,
    /// Names of the modules the manifest lists.
    pub names: BTreeSet<String>,
    /// Manifest entries whose file is not in the image: `(name, path)`.
    pub missing: Vec<(String, PathBuf)>,
    /// Releases under `lib/modules/` that hold module files (`.ko`, `.ko.xz`, ...).
    pub trees: BTreeSet<String>,
}

/// Reads what a base image carries from its file listing (paths relative to the image root,
/// regular files only) and, when it has one, its module manifest (path and text).
pub fn base_modules<'a>(
    files: impl IntoIterator<Item = &'a str>,
    manifest: Option<(&str, &str)>,
) -> Result<BaseModules, module_manifest::ManifestError> {
    let files: BTreeSet<&str> = files.into_iter().map(canonical).collect();
    let mut out = BaseModules::default();
    for f in &files {
        let Some(rest) = f.strip_prefix("lib/modules/") else {
            continue;
        };
        if let Some((rel, file)) = rest.split_once('/') {
            let name = file.rsplit('/').next().unwrap_or(file);
            if [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                .iter()
                .any(|s| name.ends_with(s))
            {
                out.trees.insert(rel.to_string());
            }
        }
    }
    if let Some((path, text)) = manifest {
        let path = canonical(path);
        let dir_release = path
            .strip_prefix("lib/modules/")
            .and_then(|r| r.split_once('/'))
            .map(|(r, _)| r.to_string());
        out.release = module_manifest::release(text)
            .map(str::to_string)
            .or(dir_release);
        out.manifest = Some(path.to_string());
        let entries = module_manifest::parse(text)?;
        out.listed = entries.len();
        for e in entries {
            out.names.insert(e.name.clone());
            if !files.contains(canonical(&e.path.to_string_lossy())) {
                out.missing.push((e.name, e.path));
            }
        }
    }
    Ok(out)
}

/// A path in an image without its leading `/` or `./`.
fn canonical(p: &str) -> &str {
    p.trim_start_matches("./").trim_start_matches('/')
}

/// What [`check_base`] found acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The manifest's release is the kernel's and every listed module is in the image.
    Matches {
        /// The common release.
        release: String,
        /// Modules the manifest lists.
        modules: usize,
    },
    /// The image has no kernel modules at all: the deploy image relies on built-in drivers.
    NoModules,
}

/// Why a base image does not fit the kernel that would boot it. The messages name both sides
/// and how to fix it; `{image}` and `{kernel}` are the paths as the user gave or we found them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MismatchError {
    /// The modules are for another release.
    #[error(
        "the base image {image} has kernel modules for {modules}, but the kernel it would boot, {kernel}, is {kernel_release}: \
         the deploy image could load none of them and would find no disks. Nothing was changed. \
         Fix: let anemos pack the base image for this kernel on this machine (`anemos kexec --image auto`, or `anemos deploy` without --image), \
         or pack one yourself from /lib/modules/{kernel_release} (`anemos pack --kernel-modules /lib/modules/{kernel_release} ...`), \
         or boot the kernel the image was packed for (--kernel /boot/vmlinuz-{modules})"
    )]
    Release {
        /// The base image.
        image: String,
        /// Release of its modules.
        modules: String,
        /// The kernel image.
        kernel: String,
        /// Its release.
        kernel_release: String,
    },
    /// Modules for several releases and no manifest saying which one is meant.
    #[error(
        "the base image {image} has kernel modules for several releases ({}) and no module manifest; \
         the kernel it would boot, {kernel}, is {kernel_release}. Nothing was changed. \
         Fix: pack the base image with `anemos pack --kernel-modules /lib/modules/{kernel_release} --module ...`",
        .trees.join(", ")
    )]
    Ambiguous {
        /// The base image.
        image: String,
        /// Releases found under lib/modules.
        trees: Vec<String>,
        /// The kernel image.
        kernel: String,
        /// Its release.
        kernel_release: String,
    },
    /// The manifest lists modules the image does not carry.
    #[error(
        "the base image {image} lacks {} of the {listed} kernel modules its own module manifest ({manifest}) lists: {}. \
         The deploy image would stop when loading them. Nothing was changed. Fix: pack the base image again (`anemos pack`), \
         and do not remove files from it afterwards",
        .missing.len(),
        .missing.iter().map(|(n, p)| format!("{n} ({})", p.display())).collect::<Vec<_>>().join(", ")
    )]
    Missing {
        /// The base image.
        image: String,
        /// Where its manifest lies.
        manifest: String,
        /// Modules the manifest lists.
        listed: usize,
        /// The missing ones.
        missing: Vec<(String, PathBuf)>,
    },
}

/// Checks a base image's modules against the release of the kernel that would boot it.
pub fn check_base(
    base: &BaseModules,
    image: &Path,
    kernel: &Path,
    kernel_release: &str,
) -> Result<Verdict, MismatchError> {
    let image = image.display().to_string();
    let kernel = kernel.display().to_string();
    let modules = match &base.release {
        Some(r) => r.clone(),
        None => match base.trees.len() {
            0 => return Ok(Verdict::NoModules),
            1 => base.trees.iter().next().cloned().unwrap_or_default(),
            _ => {
                return Err(MismatchError::Ambiguous {
                    image,
                    trees: base.trees.iter().cloned().collect(),
                    kernel,
                    kernel_release: kernel_release.to_string(),
                })
            }
        },
    };
    if !same_release(&modules, kernel_release) {
        return Err(MismatchError::Release {
            image,
            modules,
            kernel,
            kernel_release: kernel_release.to_string(),
        });
    }
    if !base.missing.is_empty() {
        return Err(MismatchError::Missing {
            image,
            manifest: format!("/{}", base.manifest.clone().unwrap_or_default()),
            listed: base.listed,
            missing: base.missing.clone(),
        });
    }
    Ok(Verdict::Matches {
        release: modules,
        modules: base.listed,
    })
}

/// The modules among `wanted` (device, module names) that the base image does not carry, as
/// (device, module); module names compare with `-` and `_` alike, as the kernel does.
pub fn absent_drivers(
    base: &BaseModules,
    wanted: &[(String, Vec<String>)],
) -> Vec<(String, String)> {
    let norm = |s: &str| s.replace('-', "_");
    let have: BTreeSet<String> = base.names.iter().map(|n| norm(n)).collect();
    wanted
        .iter()
        .flat_map(|(dev, mods)| mods.iter().map(move |m| (dev.clone(), m.clone())))
        .filter(|(_, m)| !have.contains(&norm(m)))
        .collect()
}

/// Whether modules built for release `modules` load into a kernel of release `kernel`: only
/// when the releases are the same string (the module loader compares the whole vermagic,
/// which starts with the release; `6.1.0-57-amd64` and `6.1.0-57-cloud-amd64` differ).
pub fn same_release(modules: &str, kernel: &str) -> bool {
    modules.trim() == kernel.trim()
}

/// File name of a base image built on the server and cached there, for reuse by later deploys.
///
/// Keyed by the kernel release (the modules it holds), the anemos version and a digest of the
/// anemos binary itself (with the tools root, if any): the image's /init is that binary, so a
/// rebuilt anemos of the same version must not reuse an image holding the old one. Characters outside `[A-Za-z0-9._+-]`
/// become `_` so that the name is one safe path component.
pub fn cache_key(release: &str, anemos_version: &str, binary_sha256: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let digest: String = binary_sha256.chars().take(12).collect();
    format!(
        "base-{}-anemos-{}-{}.img",
        safe(release),
        safe(anemos_version),
        safe(&digest)
    )
}

#[cfg(test)]
mod tests;
