//! The modules tree index: what `modules.dep`, `modules.alias`, `modules.softdep`,
//! `modules.builtin` and `modules.builtin.modinfo` say, and how a requested name, alias or
//! set resolves against them. Also the name helpers (normalization, suggestions).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::sets::{companions, module_set, ModuleSet, SetMember, SETS};
use super::ModuleError;
use crate::codec::Compression;
use crate::util::fnmatch;

/// How many "closest known names" an unknown-module error suggests.
const MAX_SUGGESTIONS: usize = 3;

// ---------------------------------------------------------------------------
// Names and edit distance
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
pub(super) fn name_from_path(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = Compression::strip_suffix(base).0;
    let base = base.strip_suffix(".ko").unwrap_or(base);
    normalize_name(base)
}

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
pub(super) struct ModEntry {
    /// Path relative to the tree, as in `modules.dep`.
    pub(super) rel: String,
    /// Dependency paths, as in `modules.dep`.
    pub(super) deps: Vec<String>,
}

/// Soft dependencies of one module, as raw names or aliases.
#[derive(Debug, Clone, Default)]
pub(super) struct SoftDep {
    pub(super) pre: Vec<String>,
    pub(super) post: Vec<String>,
}

/// The contents of a tree's `modules.*` files; a missing optional file is empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexFiles<'a> {
    /// `modules.dep` (required).
    pub dep: &'a str,
    /// `modules.builtin`.
    pub builtin: &'a str,
    /// `modules.builtin.modinfo` (NUL-separated records).
    pub builtin_modinfo: &'a [u8],
    /// `modules.alias`.
    pub alias: &'a str,
    /// `modules.softdep`.
    pub softdep: &'a str,
}

/// Everything read from a `/lib/modules/<release>` tree.
#[derive(Debug)]
pub struct KernelIndex {
    pub(super) kdir: PathBuf,
    pub(super) release: String,
    /// Loadable modules by normalized name.
    pub(super) modules: BTreeMap<String, ModEntry>,
    /// `modules.dep` path to module name.
    by_rel: HashMap<String, String>,
    /// Built-in module names.
    pub(super) builtin: BTreeSet<String>,
    /// (normalized alias, built-in module) from `modules.builtin.modinfo`.
    builtin_aliases: Vec<(String, String)>,
    /// (normalized alias pattern, module) from `modules.alias`.
    aliases: Vec<(String, String)>,
    /// Soft dependencies by module name.
    pub(super) softdeps: BTreeMap<String, SoftDep>,
}

/// Something a name resolves to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
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
    pub(super) fn load(kdir: &Path) -> Result<Self, ModuleError> {
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
        let dep = read_text(&dep_path)?;
        let builtin_modinfo =
            read_optional(&kdir.join("modules.builtin.modinfo"))?.unwrap_or_default();
        let builtin = read_optional_text(&kdir.join("modules.builtin"))?;
        let alias = read_optional_text(&kdir.join("modules.alias"))?;
        let softdep = read_optional_text(&kdir.join("modules.softdep"))?;
        let files = IndexFiles {
            dep: &dep,
            builtin: &builtin,
            builtin_modinfo: &builtin_modinfo,
            alias: &alias,
            softdep: &softdep,
        };
        Self::parse(kdir, &release, &files)
    }

    /// The index from the files' contents, without reading anything (`kdir` names the tree in
    /// messages and is where module files would be read from later).
    pub fn parse(kdir: &Path, release: &str, files: &IndexFiles) -> Result<Self, ModuleError> {
        let dep_path = kdir.join("modules.dep");
        let entries = parse_modules_dep(files.dep, &dep_path, release)?;
        let mut modules = BTreeMap::new();
        let mut by_rel = HashMap::new();
        for entry in entries {
            let name = name_from_path(&entry.rel);
            by_rel.insert(entry.rel.clone(), name.clone());
            modules.insert(name, entry);
        }
        Ok(Self {
            kdir: kdir.to_path_buf(),
            builtin: parse_builtin(files.builtin),
            builtin_aliases: parse_builtin_aliases(files.builtin_modinfo),
            aliases: parse_aliases(files.alias),
            softdeps: parse_softdeps(files.softdep),
            release: release.to_string(),
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
    pub(super) fn lookup(&self, name: &str) -> Vec<Target> {
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

    /// Resolves one request: a set name, module name, builtin or alias, plus the companions
    /// of what it names (see [`super::sets::COMPANIONS`]).
    pub fn resolve_request(&self, request: &str) -> Result<Vec<Target>, ModuleError> {
        let found = if let Some(set) = module_set(request) {
            self.expand_set(set)
        } else if request.trim().is_empty() {
            Vec::new()
        } else {
            self.lookup(request)
        };
        if found.is_empty() && module_set(request).is_none() {
            return Err(self.unknown(request));
        }
        let extra: Vec<Target> = found
            .iter()
            .flat_map(|t| match t {
                Target::Module(n) | Target::Builtin(n) => companions(n),
            })
            .filter_map(|c| self.lookup_name(c))
            .collect();
        Ok(found.into_iter().chain(extra).collect())
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
    pub(super) fn dep_name(&self, rel: &str) -> String {
        self.by_rel
            .get(rel)
            .cloned()
            .unwrap_or_else(|| name_from_path(rel))
    }
}
