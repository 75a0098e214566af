//! Kernel-module closure for `anemos pack --kernel-modules DIR --module NAME|ALIAS|SET...`.
//!
//! Given a `/lib/modules/<release>` tree (as produced by `depmod`), this module
//! resolves requested module names, aliases and named sets to the full set of
//! modules that must be packed, in an order in which they can be loaded one by
//! one (every module after its `modules.dep` dependencies and softdep
//! pre-dependencies, and before its softdep post-dependencies). It reads the
//! module files (decompressing `.ko.xz`, `.ko.zst` and `.ko.gz` unless asked
//! not to), finds the firmware each module declares in its `.modinfo` ELF
//! section, and renders the manifest (see [`crate::module_manifest`]) that the
//! init reads at boot to load the modules in order.
//!
//! Files read from the tree: `modules.dep` (required), `modules.softdep`,
//! `modules.alias`, `modules.builtin` and `modules.builtin.modinfo`
//! (all optional).

pub mod index;
mod order;
mod sets;

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::codec::{self, Compression};
use crate::elf;
use crate::module_manifest::{self, ManifestEntry};
use index::{KernelIndex, Target};

/// What to resolve: a modules tree and the names wanted from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleRequest {
    /// A `/lib/modules/<release>` tree; the last component of its canonical
    /// path (symlinks resolved) is the release.
    pub kdir: PathBuf,
    /// Module names, aliases or set names (see [`module_set`]), in request order.
    pub names: Vec<String>,
    /// Keep `.ko.xz`/`.ko.zst`/`.ko.gz` files compressed instead of decompressing them.
    pub keep_compressed: bool,
    /// Directories searched, in order, for the firmware the modules declare.
    pub firmware_dirs: Vec<PathBuf>,
}

/// One module file to put in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Module name, normalized (`-` replaced by `_`).
    pub name: String,
    /// Absolute path in the image, e.g.
    /// `/lib/modules/6.1.0-28-cloud-amd64/kernel/drivers/block/virtio_blk.ko`.
    pub dest: PathBuf,
    /// File contents, decompressed unless [`ModuleRequest::keep_compressed`].
    pub data: Vec<u8>,
}

/// One firmware file to copy into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareFile {
    /// Absolute path in the image, `/lib/firmware/<name>` (plus `.xz`/`.zst`
    /// when only a compressed variant was found; the kernel loads those itself).
    pub dest: PathBuf,
    /// Where the file was found on the host.
    pub src: PathBuf,
}

/// The result of [`resolve_modules`]: everything the packer needs to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModulePlan {
    /// Kernel release, the last component of the canonical modules tree path.
    pub release: String,
    /// Module files in load order.
    pub modules: Vec<ModuleFile>,
    /// Firmware files declared by the modules and found in the firmware dirs.
    pub firmware: Vec<FirmwareFile>,
    /// Requested modules (or dependencies) that are built into the kernel, sorted.
    pub builtin_skipped: Vec<String>,
    /// Firmware names declared by the modules but found in no firmware dir, sorted.
    pub missing_firmware: Vec<String>,
    /// Manifest text to write at `/lib/modules/<release>/anemos.modules`.
    pub manifest: String,
}

/// Errors from resolving modules or parsing the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// The modules tree does not exist or is not a directory.
    #[error("kernel modules dir {} does not exist or is not a directory", .path.display())]
    KdirMissing {
        /// The path given as the modules tree.
        path: PathBuf,
    },
    /// The modules tree has no `modules.dep`.
    #[error("missing {} (run `depmod -b <root> {release}` to generate it)", .path.display())]
    NoModulesDep {
        /// Path of the missing `modules.dep`.
        path: PathBuf,
        /// Kernel release of the tree.
        release: String,
    },
    /// A file could not be read.
    #[error("reading {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line of a `modules.*` file could not be parsed.
    #[error("{}:{line}: {reason}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A requested name is no module, alias, builtin or set.
    #[error("unknown module {name:?} in {}{}", .kdir.display(), suggestion_suffix(.closest))]
    Unknown {
        /// The name as requested.
        name: String,
        /// The modules tree searched.
        kdir: PathBuf,
        /// Closest known names by edit distance, best first.
        closest: Vec<String>,
    },
    /// `modules.dep` names a dependency that is neither listed nor built in.
    #[error("module {module:?} depends on {dep}, which is not in modules.dep or modules.builtin")]
    MissingDep {
        /// The module whose dependency is missing.
        module: String,
        /// The dependency path as written in `modules.dep`.
        dep: String,
    },
    /// The dependencies (including softdeps) form a cycle.
    #[error("module dependency cycle: {}", .cycle.join(" -> "))]
    Cycle {
        /// Modules on the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A compressed module could not be decompressed.
    #[error("decompressing {}: {source}", .path.display())]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A module file is an ELF file whose section table is broken.
    #[error("reading .modinfo of {}: {source}", .path.display())]
    Elf {
        /// The module file.
        path: PathBuf,
        /// What is wrong.
        source: crate::elf::ElfError,
    },
}

/// Formats the ` (closest: a, b, c)` tail of an unknown-module error.
fn suggestion_suffix(closest: &[String]) -> String {
    if closest.is_empty() {
        String::new()
    } else {
        format!(" (closest: {})", closest.join(", "))
    }
}

// ---------------------------------------------------------------------------
// Module files and firmware
// ---------------------------------------------------------------------------

/// Whether a firmware name is a safe relative path (no `..`, not absolute).
fn safe_firmware_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Finds firmware `name` in the dirs, also as `.xz`/`.zst`.
fn find_firmware(name: &str, dirs: &[PathBuf]) -> Option<FirmwareFile> {
    for dir in dirs {
        for suffix in ["", ".xz", ".zst"] {
            let file = format!("{name}{suffix}");
            let src = dir.join(&file);
            if src.is_file() {
                return Some(FirmwareFile {
                    dest: Path::new("/lib/firmware").join(&file),
                    src,
                });
            }
        }
    }
    None
}

/// Module files and firmware gathered for a load order.
#[derive(Debug, Default)]
struct Files {
    modules: Vec<ModuleFile>,
    firmware: Vec<FirmwareFile>,
    missing_firmware: BTreeSet<String>,
}

/// Reads one module (decompressing as asked) and collects its firmware.
fn load_module(
    idx: &KernelIndex,
    req: &ModuleRequest,
    name: &str,
    files: &mut Files,
    seen_fw: &mut BTreeSet<String>,
) -> Result<(), ModuleError> {
    let Some(entry) = idx.modules.get(name) else {
        return Ok(());
    };
    let src = idx.kdir.join(&entry.rel);
    let raw = fs::read(&src).map_err(|source| ModuleError::Io {
        path: src.clone(),
        source,
    })?;
    let (stem, compression) = Compression::strip_suffix(&entry.rel);
    let decode = |bytes: &[u8]| {
        codec::decode_all(compression, bytes).map_err(|source| ModuleError::Decompress {
            path: src.clone(),
            source,
        })
    };
    let (data, rel) = if req.keep_compressed {
        (raw, entry.rel.as_str())
    } else {
        (decode(&raw)?, stem)
    };
    let info = if req.keep_compressed && compression != Compression::None {
        elf::modinfo(&decode(&data)?)
    } else {
        elf::modinfo(&data)
    };
    let info = info.map_err(|source| ModuleError::Elf {
        path: src.clone(),
        source,
    })?;
    for fw in info
        .into_iter()
        .filter(|(k, _)| k == "firmware")
        .map(|(_, v)| v)
    {
        if !safe_firmware_name(&fw) || !seen_fw.insert(fw.clone()) {
            continue;
        }
        match find_firmware(&fw, &req.firmware_dirs) {
            Some(f) => files.firmware.push(f),
            None => {
                files.missing_firmware.insert(fw);
            }
        }
    }
    let dest = Path::new("/lib/modules").join(&idx.release).join(rel);
    files.modules.push(ModuleFile {
        name: name.to_string(),
        dest,
        data,
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/// Resolves the requested modules, their dependency closure and firmware, in
/// load order. See the module docs for the rules.
pub fn resolve_modules(req: &ModuleRequest) -> Result<ModulePlan, ModuleError> {
    let idx = KernelIndex::load(&req.kdir)?;
    let (order, builtin) = load_order(&idx, &req.names)?;
    let mut files = Files::default();
    let mut seen_fw = BTreeSet::new();
    for name in &order {
        load_module(&idx, req, name, &mut files, &mut seen_fw)?;
    }
    let entries: Vec<ManifestEntry> = files
        .modules
        .iter()
        .map(|m| ManifestEntry {
            name: m.name.clone(),
            path: m.dest.clone(),
            params: None,
        })
        .collect();
    Ok(ModulePlan {
        manifest: module_manifest::render(&idx.release, &entries),
        release: idx.release,
        modules: files.modules,
        firmware: files.firmware,
        builtin_skipped: builtin.into_iter().collect(),
        missing_firmware: files.missing_firmware.into_iter().collect(),
    })
}

/// The pure part of [`resolve_modules`]: the modules `names` need, dependencies included, in
/// load order, and the built-in modules they name. No file is read.
pub fn load_order(
    idx: &KernelIndex,
    names: &[String],
) -> Result<(Vec<String>, BTreeSet<String>), ModuleError> {
    let mut builtin = BTreeSet::new();
    let mut roots = BTreeSet::new();
    for request in names {
        for target in idx.resolve_request(request)? {
            match target {
                Target::Module(m) => roots.insert(m),
                Target::Builtin(b) => builtin.insert(b),
            };
        }
    }
    let graph = order::closure(idx, &roots, &mut builtin)?;
    Ok((order::load_order(&graph)?, builtin))
}

/// Splits requested names into those the tree at `kdir` knows (sets, module names, builtins,
/// aliases) and those it does not, each in request order without repeats.
pub fn partition_known(
    kdir: &Path,
    names: &[String],
) -> Result<(Vec<String>, Vec<String>), ModuleError> {
    let idx = KernelIndex::load(kdir)?;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for n in names {
        if known.contains(n) || unknown.contains(n) {
            continue;
        }
        if sets::module_set(n).is_some() || !idx.lookup(n).is_empty() {
            known.push(n.clone());
        } else {
            unknown.push(n.clone());
        }
    }
    Ok((known, unknown))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
