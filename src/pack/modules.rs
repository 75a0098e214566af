//! Kernel-module closure for `anemos pack --kernel-modules DIR --module NAME|ALIAS|SET...`.
//!
//! Given a `/lib/modules/<release>` tree (as produced by `depmod`), this module
//! resolves requested module names, aliases and named sets to the full set of
//! modules that must be packed, in an order in which they can be loaded one by
//! one (every module after its `modules.dep` dependencies and softdep
//! pre-dependencies, and before its softdep post-dependencies). It reads the
//! module files (decompressing `.ko.xz`, `.ko.zst` and `.ko.gz` unless asked
//! not to), finds the firmware each module declares in its `.modinfo` ELF
//! section, and renders the manifest that the init reads at boot to load the
//! modules in order.
//!
//! Files read from the tree: `modules.dep` (required), `modules.softdep`,
//! `modules.alias`, `modules.builtin` and `modules.builtin.modinfo`
//! (all optional).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// First words of the manifest's header line; ` release=<release>` follows.
pub const MANIFEST_HEADER: &str = "# anemos module manifest v1";

/// File name of the manifest inside `/lib/modules/<release>/` in the image.
#[allow(dead_code)] // part of the manifest format, used by tests
pub const MANIFEST_FILE_NAME: &str = "anemos.modules";

/// How many "closest known names" an unknown-module error suggests.
const MAX_SUGGESTIONS: usize = 3;

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

/// One line of the module manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Module name.
    pub name: String,
    /// Absolute path of the module file in the image.
    pub path: PathBuf,
    /// Module parameters (`key=value ...`), passed to the kernel as they are.
    pub params: Option<String>,
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
        source: ElfError,
    },
    /// A manifest line is malformed.
    #[error("module manifest line {line}: {reason}")]
    Manifest {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
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

/// A malformed ELF file (bad offsets or sizes in its headers).
#[derive(Debug, thiserror::Error)]
#[error("malformed elf: {0}")]
pub struct ElfError(String);

// ---------------------------------------------------------------------------
// Named sets
// ---------------------------------------------------------------------------

/// One member of a named module set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMember {
    /// A module by name; skipped when this kernel does not have it.
    Module(&'static str),
    /// Every module whose path (relative to the tree) starts with this prefix.
    Dir(&'static str),
}

/// A named set of modules, usable wherever a module name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleSet {
    /// Set name, case-sensitive (`usb-storage` keeps its dash).
    pub name: &'static str,
    /// One-line description for help texts.
    pub description: &'static str,
    /// Members; those missing from the kernel are skipped silently.
    pub members: &'static [SetMember],
}

use SetMember::{Dir, Module};

/// All named sets, in the order help texts list them.
const SETS: &[ModuleSet] = &[
    ModuleSet {
        name: "virtio",
        description: "virtio transports, disks, network, console and rng",
        members: &[
            Module("virtio_pci"),
            Module("virtio_mmio"),
            Module("virtio_blk"),
            Module("virtio_scsi"),
            Module("virtio_net"),
            Module("virtio_console"),
            Module("virtio_rng"),
        ],
    },
    ModuleSet {
        name: "nvme",
        description: "NVMe disks",
        members: &[Module("nvme"), Module("nvme_core")],
    },
    ModuleSet {
        name: "ahci",
        description: "SATA disks behind an AHCI controller",
        members: &[
            Module("ahci"),
            Module("libahci"),
            Module("libata"),
            Module("sd_mod"),
        ],
    },
    ModuleSet {
        name: "usb-storage",
        description: "USB mass storage and USB host controllers",
        members: &[
            Module("usb_storage"),
            Module("uas"),
            Module("xhci_pci"),
            Module("ehci_pci"),
            Module("ohci_pci"),
            Module("sd_mod"),
        ],
    },
    ModuleSet {
        name: "storage",
        description: "every block, SCSI, ATA, NVMe, MD/DM and MMC driver, plus virtio disks",
        members: &[
            Dir("kernel/drivers/block/"),
            Dir("kernel/drivers/scsi/"),
            Dir("kernel/drivers/ata/"),
            Dir("kernel/drivers/nvme/"),
            Dir("kernel/drivers/md/"),
            Dir("kernel/drivers/mmc/"),
            Module("virtio_blk"),
            Module("virtio_scsi"),
        ],
    },
    ModuleSet {
        name: "net",
        description: "every network driver (ethernet, virtio_net, ...)",
        members: &[Dir("kernel/drivers/net/")],
    },
    ModuleSet {
        name: "fs",
        description: "every filesystem module",
        members: &[Dir("kernel/fs/")],
    },
];

/// Looks up a named module set; names are case-sensitive.
pub fn module_set(name: &str) -> Option<&'static ModuleSet> {
    SETS.iter().find(|s| s.name == name)
}

/// All named module sets.
#[allow(dead_code)] // listing for docs/tests
pub fn module_sets() -> &'static [ModuleSet] {
    SETS
}

// ---------------------------------------------------------------------------
// Names, globs and edit distance
// ---------------------------------------------------------------------------

/// Normalizes a module name: `-` becomes `_`.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Normalizes an alias or alias pattern like kmod does: `-` becomes `_`
/// except inside `[...]` bracket expressions.
fn normalize_alias(alias: &str) -> String {
    let mut out = String::with_capacity(alias.len());
    let mut in_bracket = false;
    for c in alias.chars() {
        match c {
            '[' if !in_bracket => in_bracket = true,
            ']' if in_bracket => in_bracket = false,
            _ => {}
        }
        out.push(if c == '-' && !in_bracket { '_' } else { c });
    }
    out
}

/// Module name of a `modules.dep`/`modules.builtin` path: its file name without
/// `.ko` and any compression suffix, normalized.
fn name_from_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = strip_compression(base).0;
    let base = base.strip_suffix(".ko").unwrap_or(base);
    normalize_name(base)
}

pub use crate::util::glob::fnmatch;

/// Levenshtein edit distance between two strings, by characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The `n` candidates closest to `name` by edit distance, ties broken by name.
fn closest_names<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
    n: usize,
) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = candidates.map(|c| (levenshtein(name, c), c)).collect();
    scored.sort_unstable();
    scored.dedup();
    scored
        .into_iter()
        .take(n)
        .map(|(_, c)| c.to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// The modules tree index
// ---------------------------------------------------------------------------

/// One loadable module from `modules.dep`.
#[derive(Debug, Clone)]
struct ModEntry {
    /// Path relative to the tree, as in `modules.dep`.
    rel: String,
    /// Dependency paths, as in `modules.dep`.
    deps: Vec<String>,
}

/// Soft dependencies of one module, as raw names or aliases.
#[derive(Debug, Clone, Default)]
struct SoftDep {
    pre: Vec<String>,
    post: Vec<String>,
}

/// Everything read from a `/lib/modules/<release>` tree.
#[derive(Debug)]
struct KernelIndex {
    kdir: PathBuf,
    release: String,
    /// Loadable modules by normalized name.
    modules: BTreeMap<String, ModEntry>,
    /// `modules.dep` path to module name.
    by_rel: HashMap<String, String>,
    /// Built-in module names.
    builtin: BTreeSet<String>,
    /// (normalized alias, built-in module) from `modules.builtin.modinfo`.
    builtin_aliases: Vec<(String, String)>,
    /// (normalized alias pattern, module) from `modules.alias`.
    aliases: Vec<(String, String)>,
    /// Soft dependencies by module name.
    softdeps: BTreeMap<String, SoftDep>,
}

/// Something a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// A loadable module.
    Module(String),
    /// A module built into the kernel.
    Builtin(String),
}

/// Reads a text file, mapping errors to [`ModuleError::Io`].
fn read_text(path: &Path) -> Result<String, ModuleError> {
    fs::read_to_string(path).map_err(|source| ModuleError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads an optional file: `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, ModuleError> {
    match fs::read(path) {
        Ok(data) => Ok(Some(data)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ModuleError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads an optional text file as lossy UTF-8; empty when missing.
fn read_optional_text(path: &Path) -> Result<String, ModuleError> {
    Ok(read_optional(path)?
        .map(|d| String::from_utf8_lossy(&d).into_owned())
        .unwrap_or_default())
}

/// Turns a `modules.dep` path into one relative to the tree (old depmods wrote
/// absolute `/lib/modules/<release>/...` paths).
fn relative_dep_path(path: &str, release: &str) -> String {
    let prefix = format!("/lib/modules/{release}/");
    path.strip_prefix(&prefix).unwrap_or(path).to_string()
}

/// Parses `modules.dep`: `path: dep dep ...` per line.
fn parse_modules_dep(text: &str, file: &Path, release: &str) -> Result<Vec<ModEntry>, ModuleError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((path, deps)) = line.split_once(':') else {
            return Err(ModuleError::Parse {
                path: file.to_path_buf(),
                line: i + 1,
                reason: format!("expected \"<module>: <deps>\", got {line:?}"),
            });
        };
        let rel = relative_dep_path(path.trim(), release);
        if rel.is_empty() || rel.contains(char::is_whitespace) {
            return Err(ModuleError::Parse {
                path: file.to_path_buf(),
                line: i + 1,
                reason: format!("bad module path {:?}", path.trim()),
            });
        }
        let deps = deps
            .split_whitespace()
            .map(|d| relative_dep_path(d, release))
            .collect();
        entries.push(ModEntry { rel, deps });
    }
    Ok(entries)
}

/// Parses `modules.builtin`: one module path per line.
fn parse_builtin(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(name_from_path)
        .collect()
}

/// Parses `modules.builtin.modinfo` (NUL-separated `module.key=value`) for aliases.
fn parse_builtin_aliases(data: &[u8]) -> Vec<(String, String)> {
    data.split(|&b| b == 0)
        .filter_map(|rec| {
            let rec = std::str::from_utf8(rec).ok()?;
            let (key, alias) = rec.split_once('=')?;
            let module = key.strip_suffix(".alias")?;
            Some((normalize_alias(alias), normalize_name(module)))
        })
        .collect()
}

/// Parses `modules.alias`: `alias PATTERN module` per line.
fn parse_aliases(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "alias" {
                return None;
            }
            let pattern = words.next()?;
            let module = words.next()?;
            Some((normalize_alias(pattern), normalize_name(module)))
        })
        .collect()
}

/// Parses `modules.softdep`: `softdep MOD pre: a b post: c` per line. Like
/// kmod, words before the first `pre:`/`post:` are ignored.
fn parse_softdeps(text: &str) -> BTreeMap<String, SoftDep> {
    let mut map: BTreeMap<String, SoftDep> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else { continue };
        let entry = map.entry(normalize_name(module)).or_default();
        let mut list: Option<&mut Vec<String>> = None;
        for word in words {
            match word {
                "pre:" => list = Some(&mut entry.pre),
                "post:" => list = Some(&mut entry.post),
                _ => {
                    if let Some(l) = list.as_mut() {
                        l.push(word.to_string());
                    }
                }
            }
        }
    }
    map
}

/// The release name of a modules tree: the last component of its canonical
/// path (so a `cache/kernel/modules` symlink yields the release it points to).
fn release_of(kdir: &Path) -> String {
    let canonical = fs::canonicalize(kdir).unwrap_or_else(|_| kdir.to_path_buf());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl KernelIndex {
    /// Reads the `modules.*` files of a tree.
    fn load(kdir: &Path) -> Result<Self, ModuleError> {
        if !kdir.is_dir() {
            return Err(ModuleError::KdirMissing {
                path: kdir.to_path_buf(),
            });
        }
        let release = release_of(kdir);
        let dep_path = kdir.join("modules.dep");
        if !dep_path.is_file() {
            return Err(ModuleError::NoModulesDep {
                path: dep_path,
                release,
            });
        }
        let entries = parse_modules_dep(&read_text(&dep_path)?, &dep_path, &release)?;
        let mut modules = BTreeMap::new();
        let mut by_rel = HashMap::new();
        for entry in entries {
            let name = name_from_path(&entry.rel);
            by_rel.insert(entry.rel.clone(), name.clone());
            modules.insert(name, entry);
        }
        let builtin_modinfo =
            read_optional(&kdir.join("modules.builtin.modinfo"))?.unwrap_or_default();
        Ok(Self {
            kdir: kdir.to_path_buf(),
            builtin: parse_builtin(&read_optional_text(&kdir.join("modules.builtin"))?),
            builtin_aliases: parse_builtin_aliases(&builtin_modinfo),
            aliases: parse_aliases(&read_optional_text(&kdir.join("modules.alias"))?),
            softdeps: parse_softdeps(&read_optional_text(&kdir.join("modules.softdep"))?),
            release,
            modules,
            by_rel,
        })
    }

    /// Resolves a plain module or builtin name.
    fn lookup_name(&self, name: &str) -> Option<Target> {
        let name = normalize_name(name);
        if self.modules.contains_key(&name) {
            Some(Target::Module(name))
        } else if self.builtin.contains(&name) {
            Some(Target::Builtin(name))
        } else {
            None
        }
    }

    /// Every module and builtin whose alias matches `alias`, sorted, deduplicated.
    fn lookup_alias(&self, alias: &str) -> Vec<Target> {
        let alias = normalize_alias(alias);
        let mut found = BTreeSet::new();
        for (pattern, module) in &self.aliases {
            if fnmatch(pattern, &alias) {
                if let Some(t) = self.lookup_name(module) {
                    found.insert(t);
                }
            }
        }
        for (builtin_alias, module) in &self.builtin_aliases {
            if *builtin_alias == alias && self.builtin.contains(module) {
                found.insert(Target::Builtin(module.clone()));
            }
        }
        found.into_iter().collect()
    }

    /// Resolves a name or alias (no sets); empty when unknown.
    fn lookup(&self, name: &str) -> Vec<Target> {
        match self.lookup_name(name) {
            Some(t) => vec![t],
            None => self.lookup_alias(name),
        }
    }

    /// Expands a named set to the modules this kernel has.
    fn expand_set(&self, set: &ModuleSet) -> Vec<Target> {
        let mut out = Vec::new();
        for member in set.members {
            match member {
                SetMember::Module(name) => out.extend(self.lookup_name(name)),
                SetMember::Dir(prefix) => out.extend(
                    self.modules
                        .iter()
                        .filter(|(_, e)| e.rel.starts_with(prefix))
                        .map(|(n, _)| Target::Module(n.clone())),
                ),
            }
        }
        out
    }

    /// Resolves one request: a set name, module name, builtin or alias.
    fn resolve_request(&self, request: &str) -> Result<Vec<Target>, ModuleError> {
        if let Some(set) = module_set(request) {
            return Ok(self.expand_set(set));
        }
        let found = if request.trim().is_empty() {
            Vec::new()
        } else {
            self.lookup(request)
        };
        if found.is_empty() {
            return Err(self.unknown(request));
        }
        Ok(found)
    }

    /// Builds the unknown-module error with suggestions.
    fn unknown(&self, request: &str) -> ModuleError {
        let wanted = normalize_name(request);
        let candidates = self
            .modules
            .keys()
            .chain(self.builtin.iter())
            .map(String::as_str)
            .chain(SETS.iter().map(|s| s.name));
        ModuleError::Unknown {
            name: request.to_string(),
            kdir: self.kdir.clone(),
            closest: closest_names(&wanted, candidates, MAX_SUGGESTIONS),
        }
    }

    /// Name of a `modules.dep` dependency path.
    fn dep_name(&self, rel: &str) -> String {
        self.by_rel
            .get(rel)
            .cloned()
            .unwrap_or_else(|| name_from_path(rel))
    }
}

// ---------------------------------------------------------------------------
// Closure and load order
// ---------------------------------------------------------------------------

/// A dependency graph: edges point from a module to those loaded after it.
#[derive(Debug, Default)]
struct Graph {
    nodes: BTreeSet<String>,
    after: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    /// Records that `first` must be loaded before `then`.
    fn edge(&mut self, first: &str, then: &str) {
        if first != then {
            self.after
                .entry(first.to_string())
                .or_default()
                .insert(then.to_string());
        }
    }
}

/// Collects the closure of `roots` over modules.dep deps and softdeps.
fn closure(
    idx: &KernelIndex,
    roots: &BTreeSet<String>,
    builtin: &mut BTreeSet<String>,
) -> Result<Graph, ModuleError> {
    let mut graph = Graph::default();
    let mut todo: Vec<String> = roots.iter().rev().cloned().collect();
    while let Some(name) = todo.pop() {
        if !graph.nodes.insert(name.clone()) {
            continue;
        }
        let Some(entry) = idx.modules.get(&name) else {
            continue;
        };
        for dep_rel in &entry.deps {
            let dep = idx.dep_name(dep_rel);
            if idx.modules.contains_key(&dep) {
                graph.edge(&dep, &name);
                todo.push(dep);
            } else if idx.builtin.contains(&dep) {
                builtin.insert(dep);
            } else {
                return Err(ModuleError::MissingDep {
                    module: name,
                    dep: dep_rel.clone(),
                });
            }
        }
        let Some(soft) = idx.softdeps.get(&name) else {
            continue;
        };
        for (list, pre) in [(&soft.pre, true), (&soft.post, false)] {
            for target in list.iter().flat_map(|s| idx.lookup(s)) {
                match target {
                    Target::Module(m) => {
                        if pre {
                            graph.edge(&m, &name)
                        } else {
                            graph.edge(&name, &m)
                        }
                        todo.push(m);
                    }
                    Target::Builtin(b) => {
                        builtin.insert(b);
                    }
                }
            }
        }
    }
    Ok(graph)
}

/// Topologically sorts the graph (Kahn), picking the smallest name among the
/// ready modules at each step.
fn load_order(graph: &Graph) -> Result<Vec<String>, ModuleError> {
    let mut indegree: BTreeMap<&str, usize> = graph.nodes.iter().map(|n| (n.as_str(), 0)).collect();
    for succs in graph.after.values() {
        for s in succs {
            if let Some(d) = indegree.get_mut(s.as_str()) {
                *d += 1;
            }
        }
    }
    let mut ready: BTreeSet<&str> = indegree
        .iter()
        .filter(|(_, &d)| d == 0)
        .map(|(&n, _)| n)
        .collect();
    let mut order = Vec::with_capacity(graph.nodes.len());
    while let Some(next) = ready.pop_first() {
        order.push(next.to_string());
        for s in graph.after.get(next).into_iter().flatten() {
            if let Some(d) = indegree.get_mut(s.as_str()) {
                *d -= 1;
                if *d == 0 {
                    ready.insert(s.as_str());
                }
            }
        }
    }
    if order.len() < graph.nodes.len() {
        let stuck: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, &d)| d > 0)
            .map(|(&n, _)| n)
            .collect();
        return Err(ModuleError::Cycle {
            cycle: find_cycle(graph, &stuck),
        });
    }
    Ok(order)
}

/// Finds one cycle among `stuck` (nodes left with predecessors after Kahn's
/// algorithm; each has a predecessor among them), first node repeated last.
fn find_cycle(graph: &Graph, stuck: &BTreeSet<&str>) -> Vec<String> {
    let mut pred: BTreeMap<&str, &str> = BTreeMap::new();
    for (from, succs) in &graph.after {
        if !stuck.contains(from.as_str()) {
            continue;
        }
        for to in succs {
            if stuck.contains(to.as_str()) {
                pred.entry(to.as_str()).or_insert(from.as_str());
            }
        }
    }
    // Walk predecessors until a node repeats; the repeated stretch is a cycle.
    let mut path: Vec<&str> = Vec::new();
    let mut cur = stuck.first().copied();
    while let Some(node) = cur {
        if let Some(pos) = path.iter().position(|&p| p == node) {
            let mut cycle: Vec<String> = path[pos..].iter().rev().map(|s| s.to_string()).collect();
            cycle.push(cycle.first().cloned().unwrap_or_default());
            return cycle;
        }
        path.push(node);
        cur = pred.get(node).copied();
    }
    stuck.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// Module files: compression and .modinfo
// ---------------------------------------------------------------------------

/// Compression of a module file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

/// Splits a compression suffix off a file name.
fn strip_compression(name: &str) -> (&str, Compression) {
    for (suffix, c) in [
        (".xz", Compression::Xz),
        (".zst", Compression::Zstd),
        (".gz", Compression::Gzip),
    ] {
        if let Some(stem) = name.strip_suffix(suffix) {
            return (stem, c);
        }
    }
    (name, Compression::None)
}

/// Decompresses module data (a copy when it is not compressed).
fn decompress(data: &[u8], compression: Compression) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match compression {
        Compression::None => out.extend_from_slice(data),
        Compression::Xz => {
            liblzma::read::XzDecoder::new_multi_decoder(data).read_to_end(&mut out)?;
        }
        Compression::Zstd => out = zstd::stream::decode_all(data)?,
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out)?;
        }
    }
    Ok(out)
}

/// Little/big-endian, 32/64-bit view of an ELF file's bytes.
struct Elf<'a> {
    data: &'a [u8],
    is64: bool,
    little: bool,
}

impl<'a> Elf<'a> {
    /// Reads `N` bytes at `off`, bounds-checked.
    fn bytes<const N: usize>(&self, off: u64) -> Result<[u8; N], ElfError> {
        usize::try_from(off)
            .ok()
            .and_then(|o| self.data.get(o..o.checked_add(N)?))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or_else(|| ElfError(format!("read of {N} bytes at offset {off} is past the end")))
    }

    fn u16(&self, off: u64) -> Result<u64, ElfError> {
        let b = self.bytes::<2>(off)?;
        Ok(u64::from(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }))
    }

    fn u32(&self, off: u64) -> Result<u64, ElfError> {
        let b = self.bytes::<4>(off)?;
        Ok(u64::from(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }))
    }

    fn u64(&self, off: u64) -> Result<u64, ElfError> {
        let b = self.bytes::<8>(off)?;
        Ok(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }

    /// A word: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, off: u64) -> Result<u64, ElfError> {
        if self.is64 {
            self.u64(off)
        } else {
            self.u32(off)
        }
    }

    /// A slice of the file, bounds-checked.
    fn slice(&self, off: u64, len: u64) -> Result<&'a [u8], ElfError> {
        usize::try_from(off)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| self.data.get(o..o.checked_add(l)?))
            .ok_or_else(|| {
                ElfError(format!(
                    "section of {len} bytes at offset {off} is past the end"
                ))
            })
    }
}

/// One section header: name offset, type, file offset, size, link.
struct Section {
    name: u64,
    kind: u64,
    offset: u64,
    size: u64,
    link: u64,
}

/// Reads section header `index`.
fn section(elf: &Elf, shoff: u64, shentsize: u64, index: u64) -> Result<Section, ElfError> {
    let base = index
        .checked_mul(shentsize)
        .and_then(|o| o.checked_add(shoff))
        .ok_or_else(|| ElfError("section header offset overflows".into()))?;
    let (off_at, size_at, link_at) = if elf.is64 { (24, 32, 40) } else { (16, 20, 24) };
    Ok(Section {
        name: elf.u32(base)?,
        kind: elf.u32(base + 4)?,
        offset: elf.word(base + off_at)?,
        size: elf.word(base + size_at)?,
        link: elf.u32(base + link_at)?,
    })
}

/// Returns the `.modinfo` section's bytes, `None` when there is none or the
/// data is not ELF at all.
fn modinfo_section(data: &[u8]) -> Result<Option<&[u8]>, ElfError> {
    const SHT_NOBITS: u64 = 8;
    const SHN_XINDEX: u64 = 0xffff;
    if data.len() < 6 || &data[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let is64 = match data[4] {
        1 => false,
        2 => true,
        c => return Err(ElfError(format!("unknown elf class {c}"))),
    };
    let little = match data[5] {
        1 => true,
        2 => false,
        d => return Err(ElfError(format!("unknown elf data encoding {d}"))),
    };
    let elf = Elf { data, is64, little };
    let (shoff, hdr) = if is64 {
        (elf.u64(0x28)?, 0x3a)
    } else {
        (elf.u32(0x20)?, 0x2e)
    };
    let shentsize = elf.u16(hdr)?;
    let mut shnum = elf.u16(hdr + 2)?;
    let mut shstrndx = elf.u16(hdr + 4)?;
    if shoff == 0 {
        return Ok(None);
    }
    if shentsize < if is64 { 64 } else { 40 } {
        return Err(ElfError(format!(
            "section header size {shentsize} is too small"
        )));
    }
    if shnum == 0 || shstrndx == SHN_XINDEX {
        // Extended numbering: the real values live in section header 0.
        let first = section(&elf, shoff, shentsize, 0)?;
        if shnum == 0 {
            shnum = first.size;
        }
        if shstrndx == SHN_XINDEX {
            shstrndx = first.link;
        }
    }
    if shstrndx >= shnum {
        return Err(ElfError(format!(
            "section name table index {shstrndx} is out of range ({shnum} sections)"
        )));
    }
    let strtab = section(&elf, shoff, shentsize, shstrndx)?;
    let names = elf.slice(strtab.offset, strtab.size)?;
    for i in 0..shnum {
        let sec = section(&elf, shoff, shentsize, i)?;
        let name = usize::try_from(sec.name)
            .ok()
            .and_then(|n| names.get(n..))
            .unwrap_or_default();
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if name == b".modinfo" {
            if sec.kind == SHT_NOBITS {
                return Ok(Some(&[]));
            }
            return elf.slice(sec.offset, sec.size).map(Some);
        }
    }
    Ok(None)
}

/// Reads the `key=value` entries of a module's `.modinfo` section, in order.
/// Data that is not ELF (or has no `.modinfo`) yields no entries.
pub fn modinfo_entries(data: &[u8]) -> Result<Vec<(String, String)>, ElfError> {
    let Some(section) = modinfo_section(data)? else {
        return Ok(Vec::new());
    };
    Ok(section
        .split(|&b| b == 0)
        .filter(|rec| !rec.is_empty())
        .filter_map(|rec| {
            let rec = String::from_utf8_lossy(rec);
            let (k, v) = rec.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

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
    let (stem, compression) = strip_compression(&entry.rel);
    let decode = |bytes: &[u8]| {
        decompress(bytes, compression).map_err(|source| ModuleError::Decompress {
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
        modinfo_entries(&decode(&data)?)
    } else {
        modinfo_entries(&data)
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
// Manifest
// ---------------------------------------------------------------------------

/// Renders the manifest: the header, then `<name> <path>[ <params>]` per module.
pub fn render_manifest(release: &str, entries: &[ManifestEntry]) -> String {
    let mut out = format!("{MANIFEST_HEADER} release={release}\n");
    for e in entries {
        out.push_str(&format!("{} {}", e.name, e.path.display()));
        if let Some(params) = e.params.as_deref().filter(|p| !p.trim().is_empty()) {
            out.push(' ');
            out.push_str(params.trim());
        }
        out.push('\n');
    }
    out
}

/// Splits off the first whitespace-separated word.
fn first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Parses a manifest, ignoring blank lines and `#` comments. Lines are
/// `<name> <absolute path> [params...]`.
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>, ModuleError> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| ModuleError::Manifest {
            line: i + 1,
            reason,
        };
        let (name, rest) = first_word(line);
        let (path, rest) = first_word(rest);
        if path.is_empty() {
            return Err(bad(format!("expected \"<name> <path>\", got {line:?}")));
        }
        if name.contains('/') {
            return Err(bad(format!("module name {name:?} contains '/'")));
        }
        if !path.starts_with('/') {
            return Err(bad(format!("module path {path:?} is not absolute")));
        }
        let params = Some(rest.trim())
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        entries.push(ManifestEntry {
            name: name.to_string(),
            path: PathBuf::from(path),
            params,
        });
    }
    Ok(entries)
}

/// The release named in a manifest's header line, if any.
#[allow(dead_code)] // used by tests; the init checks the release via the path
pub fn manifest_release(text: &str) -> Option<&str> {
    let header = text.lines().find(|l| l.starts_with(MANIFEST_HEADER))?;
    header
        .split_whitespace()
        .find_map(|w| w.strip_prefix("release="))
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/// Resolves the requested modules, their dependency closure and firmware, in
/// load order. See the module docs for the rules.
pub fn resolve_modules(req: &ModuleRequest) -> Result<ModulePlan, ModuleError> {
    let idx = KernelIndex::load(&req.kdir)?;
    let mut builtin = BTreeSet::new();
    let mut roots = BTreeSet::new();
    for request in &req.names {
        for target in idx.resolve_request(request)? {
            match target {
                Target::Module(m) => roots.insert(m),
                Target::Builtin(b) => builtin.insert(b),
            };
        }
    }
    let graph = closure(&idx, &roots, &mut builtin)?;
    let order = load_order(&graph)?;
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
        manifest: render_manifest(&idx.release, &entries),
        release: idx.release,
        modules: files.modules,
        firmware: files.firmware,
        builtin_skipped: builtin.into_iter().collect(),
        missing_firmware: files.missing_firmware.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::Command;

    const RELEASE: &str = "6.1.0-99-test";

    /// A synthetic `/lib/modules/<release>` tree in a tempdir.
    struct FakeKdir {
        _tmp: tempfile::TempDir,
        kdir: PathBuf,
    }

    impl FakeKdir {
        /// Creates the tree with the given `modules.dep` and a fake file per module.
        fn new(dep: &str) -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let kdir = tmp.path().join("lib/modules").join(RELEASE);
            fs::create_dir_all(&kdir).unwrap();
            let me = Self { _tmp: tmp, kdir };
            me.write("modules.dep", dep.as_bytes());
            for line in dep.lines().filter(|l| !l.trim().is_empty()) {
                let rel = line.split(':').next().unwrap().trim();
                if !me.kdir.join(rel).exists() {
                    me.write(rel, format!("fake module {rel}\n").as_bytes());
                }
            }
            me
        }

        fn write(&self, rel: &str, data: &[u8]) {
            let path = self.kdir.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        }

        fn resolve(&self, names: &[&str]) -> Result<ModulePlan, ModuleError> {
            resolve_modules(&self.request(names))
        }

        fn request(&self, names: &[&str]) -> ModuleRequest {
            ModuleRequest {
                kdir: self.kdir.clone(),
                names: names.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }
        }
    }

    fn names(plan: &ModulePlan) -> Vec<&str> {
        plan.modules.iter().map(|m| m.name.as_str()).collect()
    }

    /// A minimal ELF file (header, `.modinfo`, `.shstrtab`, section table).
    fn elf_with_modinfo(entries: &[&str], is64: bool, little: bool) -> Vec<u8> {
        let put16 = |v: &mut Vec<u8>, x: u16| {
            v.extend(if little {
                x.to_le_bytes()
            } else {
                x.to_be_bytes()
            })
        };
        let put32 = |v: &mut Vec<u8>, x: u32| {
            v.extend(if little {
                x.to_le_bytes()
            } else {
                x.to_be_bytes()
            })
        };
        let put64 = |v: &mut Vec<u8>, x: u64| {
            v.extend(if little {
                x.to_le_bytes()
            } else {
                x.to_be_bytes()
            })
        };
        let putw = |v: &mut Vec<u8>, x: u64| {
            if is64 {
                put64(v, x)
            } else {
                put32(v, x as u32)
            }
        };
        let (ehsize, shentsize) = if is64 { (64u64, 64u16) } else { (52, 40) };
        let modinfo: Vec<u8> = entries.iter().flat_map(|e| e.bytes().chain([0])).collect();
        let shstrtab = b"\0.modinfo\0.shstrtab\0".to_vec();
        let modinfo_off = ehsize;
        let shstrtab_off = modinfo_off + modinfo.len() as u64;
        let shoff = shstrtab_off + shstrtab.len() as u64;

        let mut v = b"\x7fELF".to_vec();
        v.extend([if is64 { 2 } else { 1 }, if little { 1 } else { 2 }, 1, 0]);
        v.resize(16, 0);
        put16(&mut v, 1); // e_type ET_REL
        put16(&mut v, 62); // e_machine
        put32(&mut v, 1); // e_version
        putw(&mut v, 0); // e_entry
        putw(&mut v, 0); // e_phoff
        putw(&mut v, shoff);
        put32(&mut v, 0); // e_flags
        put16(&mut v, ehsize as u16);
        put16(&mut v, 0); // e_phentsize
        put16(&mut v, 0); // e_phnum
        put16(&mut v, shentsize);
        put16(&mut v, 3); // e_shnum
        put16(&mut v, 2); // e_shstrndx
        assert_eq!(v.len() as u64, ehsize);
        v.extend(&modinfo);
        v.extend(&shstrtab);
        // (name, type, offset, size)
        let sections = [
            (0u32, 0u32, 0u64, 0u64),
            (1, 1, modinfo_off, modinfo.len() as u64),
            (10, 3, shstrtab_off, shstrtab.len() as u64),
        ];
        for (name, kind, off, size) in sections {
            put32(&mut v, name);
            put32(&mut v, kind);
            putw(&mut v, 0); // sh_flags
            putw(&mut v, 0); // sh_addr
            putw(&mut v, off);
            putw(&mut v, size);
            put32(&mut v, 0); // sh_link
            put32(&mut v, 0); // sh_info
            putw(&mut v, 1); // sh_addralign
            putw(&mut v, 0); // sh_entsize
        }
        v
    }

    #[test]
    fn dependency_order_puts_deps_first_and_breaks_ties_by_name() {
        let k = FakeKdir::new(
            "kernel/a/top.ko: kernel/a/mid.ko kernel/a/base.ko\n\
             kernel/a/mid.ko: kernel/a/base.ko\n\
             kernel/a/base.ko:\n\
             kernel/b/zeta.ko:\n\
             kernel/b/alpha.ko:\n\
             kernel/b/user.ko: kernel/b/zeta.ko kernel/b/alpha.ko\n\
             kernel/c/unrelated.ko:\n",
        );
        let plan = k.resolve(&["top"]).unwrap();
        assert_eq!(names(&plan), ["base", "mid", "top"]);
        assert_eq!(plan.release, RELEASE);
        assert_eq!(
            plan.modules[0].dest,
            PathBuf::from(format!("/lib/modules/{RELEASE}/kernel/a/base.ko"))
        );
        assert_eq!(plan.modules[0].data, b"fake module kernel/a/base.ko\n");
        let plan = k.resolve(&["user", "top"]).unwrap();
        assert_eq!(
            names(&plan),
            ["alpha", "base", "mid", "top", "zeta", "user"]
        );
    }

    #[test]
    fn dash_and_underscore_are_the_same_name() {
        let k = FakeKdir::new("kernel/drivers/usb/usb-storage.ko:\n");
        let plan = k.resolve(&["usb_storage"]).unwrap();
        assert_eq!(names(&plan), ["usb_storage"]);
        let plan = k.resolve(&["usb-storage"]).unwrap(); // the set, which includes usb_storage
        assert_eq!(names(&plan), ["usb_storage"]);
    }

    #[test]
    fn softdep_pre_loads_before_and_post_after_missing_ignored() {
        let k = FakeKdir::new("kernel/x/main.ko:\nkernel/x/pre1.ko:\nkernel/x/post1.ko:\nkernel/x/zz_early.ko:\nkernel/crypto/crc32c.ko:\n");
        k.write(
            "modules.softdep",
            b"# comment\nsoftdep main pre: zz_early missing_pre crypto-crc32c post: post1 missing_post\nsoftdep main ignored_word\n",
        );
        k.write("modules.alias", b"alias crypto-crc32c crc32c\n");
        let plan = k.resolve(&["main"]).unwrap();
        let order = names(&plan);
        assert_eq!(order, ["crc32c", "zz_early", "main", "post1"]);
        assert!(!order.contains(&"pre1"));
    }

    #[test]
    fn alias_glob_matches_all_modules() {
        let k = FakeKdir::new(
            "kernel/virtio_blk.ko:\nkernel/other_blk.ko:\nkernel/vfat.ko:\nkernel/nomatch.ko:\n",
        );
        k.write(
            "modules.alias",
            b"alias virtio:d00000002v* virtio_blk\n\
              alias virtio:d0000000[0-2]v0000?AF4 other-blk\n\
              alias virtio:d00000003v* nomatch\n\
              alias fs-vfat vfat\n\
              alias pci:v*d*sv*sd*bc01sc[!0]* stale_module_not_in_dep\n",
        );
        let plan = k.resolve(&["virtio:d00000002v00001AF4"]).unwrap();
        assert_eq!(names(&plan), ["other_blk", "virtio_blk"]);
        let plan = k.resolve(&["fs_vfat"]).unwrap(); // `-`/`_` normalized in aliases too
        assert_eq!(names(&plan), ["vfat"]);
        let err = k.resolve(&["pci:v1d2sv3sd4bc01sc05i00"]).unwrap_err();
        assert!(matches!(err, ModuleError::Unknown { .. }), "{err}");
    }

    #[test]
    fn builtin_requests_and_deps_are_skipped() {
        let k = FakeKdir::new("kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\nkernel/drivers/x/needs_builtin.ko: kernel/crypto/crc32c_generic.ko\n");
        k.write(
            "modules.builtin",
            b"kernel/fs/ext4/ext4.ko\nkernel/fs/fat/fat.ko\nkernel/crypto/crc32c_generic.ko\n",
        );
        k.write(
            "modules.builtin.modinfo",
            b"ext4.alias=fs-ext4\0ext4.license=GPL\0",
        );
        let plan = k
            .resolve(&["ext4", "vfat", "needs-builtin", "fs-ext4"])
            .unwrap();
        assert_eq!(names(&plan), ["needs_builtin", "vfat"]);
        assert_eq!(plan.builtin_skipped, ["crc32c_generic", "ext4", "fat"]);
    }

    #[test]
    fn unknown_module_names_closest_matches() {
        let k = FakeKdir::new(
            "kernel/virtio_blk.ko:\nkernel/virtio_pci.ko:\nkernel/virtio_mmio.ko:\nkernel/zzz_far_away.ko:\nkernel/virtio_net.ko:\n",
        );
        let err = k.resolve(&["virtio_blk", "virtio_blkk"]).unwrap_err();
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!("unknown module \"virtio_blkk\" in {} (closest: virtio_blk, virtio_mmio, virtio_net)", k.kdir.display())
        );
        assert!(!msg.contains('\n'));
        // Set names are case-sensitive.
        let err = k.resolve(&["Virtio"]).unwrap_err();
        assert!(err.to_string().contains("(closest: virtio"), "{err}");
        assert!(k.resolve(&[""]).is_err());
    }

    #[test]
    fn levenshtein_distances() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("virtio_blkk", "virtio_blk"), 1);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
    }

    #[test]
    fn dependency_cycle_is_an_error() {
        let k = FakeKdir::new("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko: kernel/a.ko\nkernel/d.ko: kernel/a.ko\n");
        let err = k.resolve(&["d"]).unwrap_err();
        let ModuleError::Cycle { cycle } = &err else {
            panic!("expected cycle, got {err}")
        };
        assert_eq!(cycle.len(), 4);
        assert_eq!(cycle.first(), cycle.last());
        let members: BTreeSet<&str> = cycle.iter().map(String::as_str).collect();
        assert_eq!(members, BTreeSet::from(["a", "b", "c"]));
        assert!(
            err.to_string().starts_with("module dependency cycle: "),
            "{err}"
        );

        // A softdep post that is also a hard dependency is a cycle too.
        let k = FakeKdir::new("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n");
        k.write("modules.softdep", b"softdep a post: b\n");
        assert!(matches!(k.resolve(&["a"]), Err(ModuleError::Cycle { .. })));
    }

    #[test]
    fn compressed_modules_are_decompressed_or_kept() {
        let payload = |n: &str| format!("payload of {n} ").repeat(50).into_bytes();
        let k = FakeKdir::new("kernel/m/x.ko.xz: kernel/m/z.ko.zst\nkernel/m/z.ko.zst: kernel/m/g.ko.gz\nkernel/m/g.ko.gz:\n");
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&payload("x")).unwrap();
        k.write("kernel/m/x.ko.xz", &xz.finish().unwrap());
        k.write(
            "kernel/m/z.ko.zst",
            &zstd::encode_all(payload("z").as_slice(), 3).unwrap(),
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&payload("g")).unwrap();
        k.write("kernel/m/g.ko.gz", &gz.finish().unwrap());

        let plan = k.resolve(&["x"]).unwrap();
        assert_eq!(names(&plan), ["g", "z", "x"]);
        for (m, n) in plan.modules.iter().zip(["g", "z", "x"]) {
            assert_eq!(m.data, payload(n), "{n}");
            assert_eq!(
                m.dest,
                PathBuf::from(format!("/lib/modules/{RELEASE}/kernel/m/{n}.ko"))
            );
        }

        let mut req = k.request(&["x"]);
        req.keep_compressed = true;
        let plan = resolve_modules(&req).unwrap();
        let dests: Vec<String> = plan
            .modules
            .iter()
            .map(|m| m.dest.display().to_string())
            .collect();
        let base = format!("/lib/modules/{RELEASE}/kernel/m");
        assert_eq!(
            dests,
            [
                format!("{base}/g.ko.gz"),
                format!("{base}/z.ko.zst"),
                format!("{base}/x.ko.xz")
            ]
        );
        assert_eq!(
            plan.modules[1].data,
            fs::read(k.kdir.join("kernel/m/z.ko.zst")).unwrap()
        );

        k.write("kernel/m/g.ko.gz", b"not gzip at all");
        assert!(matches!(
            k.resolve(&["g"]),
            Err(ModuleError::Decompress { .. })
        ));
    }

    #[test]
    fn modinfo_is_read_from_elf_sections() {
        let entries = [
            "license=GPL",
            "firmware=a/b.bin",
            "description=x=y",
            "firmware=c.fw",
        ];
        for (is64, little) in [(true, true), (true, false), (false, true), (false, false)] {
            let elf = elf_with_modinfo(&entries, is64, little);
            let info = modinfo_entries(&elf).unwrap();
            let got: Vec<(&str, &str)> =
                info.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(
                got,
                [
                    ("license", "GPL"),
                    ("firmware", "a/b.bin"),
                    ("description", "x=y"),
                    ("firmware", "c.fw")
                ],
                "is64={is64} little={little}"
            );
        }
        assert!(modinfo_entries(b"not an elf").unwrap().is_empty());
        // .modinfo size pointing past the end of the file.
        let mut broken = elf_with_modinfo(&entries, true, true);
        let shoff = u64::from_le_bytes(broken[0x28..0x30].try_into().unwrap()) as usize;
        broken[shoff + 64 + 32..shoff + 64 + 40].copy_from_slice(&1_000_000u64.to_le_bytes());
        assert!(modinfo_entries(&broken)
            .unwrap_err()
            .to_string()
            .contains("past the end"));
        // Section table cut short.
        let mut cut = elf_with_modinfo(&entries, true, true);
        cut.truncate(shoff + 64 + 10);
        assert!(modinfo_entries(&cut).is_err());
    }

    #[test]
    fn firmware_is_found_in_firmware_dirs() {
        let k =
            FakeKdir::new("kernel/net/nic.ko.zst: kernel/net/helper.ko\nkernel/net/helper.ko:\n");
        let nic = elf_with_modinfo(
            &[
                "firmware=vendor/nic.bin",
                "firmware=nic-extra.fw",
                "firmware=missing.bin",
                "firmware=../evil",
            ],
            true,
            true,
        );
        k.write(
            "kernel/net/nic.ko.zst",
            &zstd::encode_all(nic.as_slice(), 3).unwrap(),
        );
        k.write(
            "kernel/net/helper.ko",
            &elf_with_modinfo(&["firmware=vendor/nic.bin"], true, true),
        );
        let fw1 = tempfile::tempdir().unwrap();
        let fw2 = tempfile::tempdir().unwrap();
        fs::create_dir_all(fw2.path().join("vendor")).unwrap();
        fs::write(fw2.path().join("vendor/nic.bin"), b"fw").unwrap();
        fs::write(fw1.path().join("nic-extra.fw.xz"), b"fwxz").unwrap();
        fs::write(fw2.path().join("nic-extra.fw"), b"shadowed by fw1's .xz").unwrap();

        for keep_compressed in [false, true] {
            let mut req = k.request(&["nic"]);
            req.firmware_dirs = vec![fw1.path().to_path_buf(), fw2.path().to_path_buf()];
            req.keep_compressed = keep_compressed;
            let plan = resolve_modules(&req).unwrap();
            assert_eq!(
                plan.firmware,
                [
                    FirmwareFile {
                        dest: "/lib/firmware/vendor/nic.bin".into(),
                        src: fw2.path().join("vendor/nic.bin")
                    },
                    FirmwareFile {
                        dest: "/lib/firmware/nic-extra.fw.xz".into(),
                        src: fw1.path().join("nic-extra.fw.xz")
                    },
                ]
            );
            assert_eq!(plan.missing_firmware, ["missing.bin"]);
        }
    }

    #[test]
    fn manifest_round_trips_and_reports_bad_lines() {
        let k = FakeKdir::new("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n");
        let plan = k.resolve(&["a"]).unwrap();
        let first = plan.manifest.lines().next().unwrap();
        assert_eq!(
            first,
            format!("# anemos module manifest v1 release={RELEASE}")
        );
        assert_eq!(manifest_release(&plan.manifest), Some(RELEASE));
        let parsed = parse_manifest(&plan.manifest).unwrap();
        let expected: Vec<ManifestEntry> = plan
            .modules
            .iter()
            .map(|m| ManifestEntry {
                name: m.name.clone(),
                path: m.dest.clone(),
                params: None,
            })
            .collect();
        assert_eq!(parsed, expected);
        assert_eq!(
            parsed[0].path,
            PathBuf::from(format!("/lib/modules/{RELEASE}/kernel/b.ko"))
        );

        let with_params = vec![ManifestEntry {
            name: "m".into(),
            path: "/lib/m.ko".into(),
            params: Some("debug=1 x=y".into()),
        }];
        assert_eq!(
            parse_manifest(&render_manifest("r", &with_params)).unwrap(),
            with_params
        );

        let err = parse_manifest("# header\n\nok /lib/ok.ko\nonlyname\n").unwrap_err();
        assert!(
            matches!(err, ModuleError::Manifest { line: 4, .. }),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("module manifest line 4: "),
            "{err}"
        );
        let err = parse_manifest("m relative/path.ko\n").unwrap_err();
        assert!(
            err.to_string().contains("line 1") && err.to_string().contains("not absolute"),
            "{err}"
        );
    }

    #[test]
    fn missing_kdir_and_modules_dep_are_clear_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("lib/modules/nope");
        let err = resolve_modules(&ModuleRequest {
            kdir: missing.clone(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ModuleError::KdirMissing { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );

        fs::create_dir_all(&missing).unwrap();
        let err = resolve_modules(&ModuleRequest {
            kdir: missing.clone(),
            ..Default::default()
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&missing.join("modules.dep").display().to_string())
                && msg.contains("depmod"),
            "{msg}"
        );

        let k = FakeKdir::new("kernel/a.ko: kernel/gone.ko\n");
        assert!(matches!(
            k.resolve(&["a"]),
            Err(ModuleError::MissingDep { .. })
        ));
        k.write("modules.dep", b"kernel/a.ko kernel/b.ko\n");
        let err = k.resolve(&["a"]).unwrap_err();
        assert!(err.to_string().contains("modules.dep:1: "), "{err}");
    }

    #[test]
    fn named_sets_expand_to_existing_members() {
        let k = FakeKdir::new(
            "kernel/drivers/virtio/virtio.ko:\n\
             kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/block/loop.ko:\n\
             kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/net/ethernet/intel/e1000e.ko:\n\
             kernel/fs/fat/vfat.ko:\n\
             kernel/drivers/scsi/sd_mod.ko:\n\
             kernel/drivers/usb/storage/uas.ko:\n",
        );
        assert_eq!(
            names(&k.resolve(&["virtio"]).unwrap()),
            ["virtio", "virtio_blk", "virtio_net", "virtio_pci"]
        );
        assert_eq!(
            names(&k.resolve(&["storage"]).unwrap()),
            ["loop", "sd_mod", "virtio", "virtio_blk"]
        );
        assert_eq!(
            names(&k.resolve(&["net"]).unwrap()),
            ["e1000e", "virtio", "virtio_net"]
        );
        assert_eq!(names(&k.resolve(&["fs"]).unwrap()), ["vfat"]);
        assert_eq!(
            names(&k.resolve(&["usb-storage"]).unwrap()),
            ["sd_mod", "uas"]
        );
        assert!(k.resolve(&["nvme"]).unwrap().modules.is_empty());
        assert!(module_set("usb-storage").is_some());
        assert!(module_set("USB-storage").is_none());
        assert_eq!(module_sets().len(), 7);
    }

    // -----------------------------------------------------------------------
    // Debian's cloud kernel, fetched by qemu-tests/fetch-kernel.sh
    // -----------------------------------------------------------------------

    /// The real modules tree, or `None` (with a skip note) when not fetched.
    fn real_kdir() -> Option<PathBuf> {
        let kdir = std::env::var_os("ANEMOS_KERNEL_MODULES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/cache/kernel/modules")
            });
        if kdir.join("modules.dep").is_file() {
            Some(kdir)
        } else {
            println!(
                "skipping: no kernel modules at {} (run qemu-tests/fetch-kernel.sh)",
                kdir.display()
            );
            None
        }
    }

    /// modules.dep parsed independently: name -> dependency names.
    fn independent_deps(kdir: &Path) -> HashMap<String, Vec<String>> {
        let base = |p: &str| {
            p.rsplit('/')
                .next()
                .unwrap()
                .split(".ko")
                .next()
                .unwrap()
                .replace('-', "_")
        };
        fs::read_to_string(kdir.join("modules.dep"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(m, d)| (base(m), d.split_whitespace().map(base).collect()))
            .collect()
    }

    /// `modprobe --show-depends` for the tree, when kmod is installed.
    fn modprobe_show_depends(kdir: &Path, name: &str) -> Option<BTreeSet<String>> {
        let canonical = fs::canonicalize(kdir).ok()?;
        let release = canonical.file_name()?.to_str()?.to_string();
        let root = canonical.parent()?.parent()?.parent()?;
        let empty_conf = tempfile::tempdir().ok()?;
        let modprobe = ["/usr/sbin/modprobe", "/sbin/modprobe"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let out = Command::new(modprobe)
            .args(["--show-depends", "-d"])
            .arg(root)
            .args(["-S", &release, "-C"])
            .arg(empty_conf.path())
            .arg(name)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "modprobe failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        Some(
            text.lines()
                .filter_map(|l| l.strip_prefix("insmod "))
                .map(|p| name_from_path(p.split_whitespace().next().unwrap()))
                .collect(),
        )
    }

    /// Asserts every module comes after all its modules.dep deps.
    fn assert_deps_first(plan: &ModulePlan, deps: &HashMap<String, Vec<String>>) {
        let pos: HashMap<&str, usize> = plan
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        for (i, m) in plan.modules.iter().enumerate() {
            for d in &deps[&m.name] {
                let dp = pos
                    .get(d.as_str())
                    .unwrap_or_else(|| panic!("{} needs {d}, missing from plan", m.name));
                assert!(
                    *dp < i,
                    "{} at {i} comes before its dep {d} at {dp}",
                    m.name
                );
            }
        }
    }

    #[test]
    fn real_kernel_closures_match_modules_dep_and_modprobe() {
        let Some(kdir) = real_kdir() else { return };
        let deps = independent_deps(&kdir);
        for name in ["virtio_blk", "vfat", "virtio_net", "xfs", "dm_crypt"] {
            let plan = resolve_modules(&ModuleRequest {
                kdir: kdir.clone(),
                names: vec![name.into()],
                ..Default::default()
            })
            .unwrap();
            let got: BTreeSet<String> = plan.modules.iter().map(|m| m.name.clone()).collect();
            let mut expected: BTreeSet<String> = deps[name].iter().cloned().collect();
            expected.insert(name.to_string());
            if let Some(modprobe) = modprobe_show_depends(&kdir, name) {
                // modprobe also follows softdeps; so do we.
                assert_eq!(got, modprobe, "{name} vs modprobe --show-depends");
                assert!(
                    expected.is_subset(&got),
                    "{name}: {expected:?} not in {got:?}"
                );
            } else {
                println!("kmod not installed; checking {name} against modules.dep only");
                assert!(
                    expected.is_subset(&got),
                    "{name}: {expected:?} not in {got:?}"
                );
            }
            if !plan.modules.is_empty() && !plan.release.is_empty() {
                assert!(plan.modules.iter().all(|m| m
                    .dest
                    .starts_with(format!("/lib/modules/{}/kernel/", plan.release))));
                assert!(plan.modules.iter().all(|m| m.data.starts_with(b"\x7fELF")));
            }
            assert_deps_first(&plan, &deps);
            println!(
                "{name} -> {} modules: {}",
                plan.modules.len(),
                names(&plan).join(" ")
            );
        }
        let plan = resolve_modules(&ModuleRequest {
            kdir: kdir.clone(),
            names: vec!["virtio_blk".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(names(&plan).last(), Some(&"virtio_blk"));
        let mut exact: BTreeSet<String> = deps["virtio_blk"].iter().cloned().collect();
        exact.insert("virtio_blk".into());
        assert_eq!(
            plan.modules
                .iter()
                .map(|m| m.name.clone())
                .collect::<BTreeSet<_>>(),
            exact
        );
    }

    #[test]
    fn real_kernel_builtins_sets_and_errors() {
        let Some(kdir) = real_kdir() else { return };
        let deps = independent_deps(&kdir);
        let builtin = fs::read_to_string(kdir.join("modules.builtin")).unwrap();
        let req = |names: &[&str]| ModuleRequest {
            kdir: kdir.clone(),
            names: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };

        // ext4 is built into Debian's cloud kernel; vfat is a module.
        let plan = resolve_modules(&req(&["ext4", "fs-vfat", "virtio_blk"])).unwrap();
        if builtin.lines().any(|l| l.ends_with("/ext4.ko")) {
            assert!(
                plan.builtin_skipped.contains(&"ext4".to_string()),
                "{:?}",
                plan.builtin_skipped
            );
        }
        assert!(names(&plan).contains(&"vfat") && names(&plan).contains(&"virtio_blk"));
        assert_deps_first(&plan, &deps);
        println!(
            "ext4+fs-vfat+virtio_blk -> {} modules, builtin skipped {:?}",
            plan.modules.len(),
            plan.builtin_skipped
        );

        for set in module_sets() {
            let plan = resolve_modules(&req(&[set.name])).unwrap();
            assert_deps_first(&plan, &deps);
            let bytes: usize = plan.modules.iter().map(|m| m.data.len()).sum();
            println!(
                "set {} -> {} modules ({} KiB), builtin skipped {:?}",
                set.name,
                plan.modules.len(),
                bytes / 1024,
                plan.builtin_skipped
            );
        }

        let err = resolve_modules(&req(&["virtio_blkk"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown module \"virtio_blkk\" in ")
                && err.contains("(closest: virtio_blk"),
            "{err}"
        );
        println!("{err}");
    }

    #[test]
    fn real_kernel_firmware_from_modinfo() {
        let Some(kdir) = real_kdir() else { return };
        let Some(rel) = fs::read_to_string(kdir.join("modules.dep"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(m, _)| m.to_string())
            .find(|m| m.ends_with("/ni_pcidio.ko"))
        else {
            println!("skipping: no ni_pcidio module in {}", kdir.display());
            return;
        };
        let fw = tempfile::tempdir().unwrap();
        fs::write(fw.path().join("ni6534a.bin"), b"fw").unwrap();
        let req = ModuleRequest {
            kdir: kdir.clone(),
            names: vec!["ni_pcidio".into()],
            firmware_dirs: vec![fw.path().to_path_buf()],
            ..Default::default()
        };
        let plan = resolve_modules(&req).unwrap();
        let info = modinfo_entries(&fs::read(kdir.join(&rel)).unwrap()).unwrap();
        assert!(
            info.iter()
                .any(|(k, v)| k == "license" && v.contains("GPL")),
            "{info:?}"
        );
        assert_eq!(
            plan.firmware,
            [FirmwareFile {
                dest: "/lib/firmware/ni6534a.bin".into(),
                src: fw.path().join("ni6534a.bin")
            }]
        );
        assert_eq!(plan.missing_firmware, ["niscrb01.bin", "niscrb02.bin"]);
    }
}
