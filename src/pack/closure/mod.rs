//! Shared-library closure of host executables (`--binary PATH`).
//!
//! Given ELF executables on the host (or under a fake root), compute every
//! file the dynamic loader would need to run them: the binaries themselves,
//! their `PT_INTERP` interpreter and the transitive `DT_NEEDED` libraries,
//! resolved the way glibc's `ld.so` does it (RPATH, RUNPATH, `ld.so.conf`,
//! default directories), like dracut and mkinitcpio do.
//!
//! The ELF files are read by [`crate::elf`]; this module does the loader's search.

mod search;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::elf::{parse_elf, read_kind, ElfError, ElfInfo};
use search::{
    default_dirs, expand_dst, ld_so_conf_dirs, lib_token, normalize, platform, resolve_in_root,
    DstValues,
};

/// One file to place in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ElfFile {
    /// Absolute path inside the image, e.g. `/lib/x86_64-linux-gnu/libc.so.6`.
    pub dest: PathBuf,
    /// Host path to read the contents from (symlinks resolved).
    pub src: PathBuf,
}

/// Why the closure of a `--binary` could not be computed.
///
/// Every variant names the `--binary` argument it concerns and, where it
/// differs, the file that caused the problem.
#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    /// The binary itself does not exist.
    #[error("--binary {}: no such file", .binary.display())]
    NotFound {
        /// The `--binary` argument.
        binary: PathBuf,
    },
    /// The binary is not an ELF file (a script, a text file...).
    #[error("--binary {}: not an ELF file", .binary.display())]
    NotElf {
        /// The `--binary` argument.
        binary: PathBuf,
    },
    /// The binary is a directory, device, FIFO...
    #[error("--binary {}: not a regular file", .binary.display())]
    NotAFile {
        /// The `--binary` argument.
        binary: PathBuf,
    },
    /// A file could not be read.
    #[error("--binary {}: cannot read {}: {source}", .binary.display(), .file.display())]
    Read {
        /// The `--binary` argument.
        binary: PathBuf,
        /// The host file that could not be read.
        file: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An ELF file could not be parsed.
    #[error("--binary {}: malformed ELF file {}: {reason}", .binary.display(), .file.display())]
    Malformed {
        /// The `--binary` argument.
        binary: PathBuf,
        /// The host file that is malformed.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `PT_INTERP` interpreter does not exist under the root.
    #[error("--binary {}: interpreter {} not found", .binary.display(), .interpreter.display())]
    InterpreterNotFound {
        /// The `--binary` argument.
        binary: PathBuf,
        /// The interpreter path named by the binary.
        interpreter: PathBuf,
    },
    /// A `DT_NEEDED` library was not found in any search directory.
    #[error(
        "--binary {}: library {library}{} not found (searched: {})",
        .binary.display(),
        needed_by_suffix(.needed_by),
        join_paths(.searched)
    )]
    LibraryNotFound {
        /// The `--binary` argument.
        binary: PathBuf,
        /// The library name as written in `DT_NEEDED`.
        library: String,
        /// Image path of the library that needs it; `None` for the binary itself.
        needed_by: Option<PathBuf>,
        /// Image directories searched, in order.
        searched: Vec<PathBuf>,
    },
    /// Two different host files would be placed at the same image path.
    #[error(
        "--binary {}: {} would come from both {} and {}",
        .binary.display(),
        .dest.display(),
        .first.display(),
        .second.display()
    )]
    Conflict {
        /// The `--binary` argument that introduced the second file.
        binary: PathBuf,
        /// The image path.
        dest: PathBuf,
        /// Host file already chosen for `dest`.
        first: PathBuf,
        /// Host file that conflicts with it.
        second: PathBuf,
    },
}

/// ` (needed by X)` when the library is not needed by the binary itself.
fn needed_by_suffix(needed_by: &Option<PathBuf>) -> String {
    match needed_by {
        Some(path) => format!(" (needed by {})", path.display()),
        None => String::new(),
    }
}

/// Comma-separated list of paths for error messages.
fn join_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing".to_string();
    }
    let parts: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    parts.join(", ")
}

/// Compute the files needed to run `binaries` inside an image.
///
/// `sysroot` is normally `/`; tests may pass a fake root directory. Absolute
/// binary paths are looked up under `sysroot` and keep their path as `dest`;
/// relative paths are read relative to the current directory and get
/// `dest = /usr/bin/<name>`.
///
/// Returns the binaries, their interpreter and every library they load
/// (transitively), sorted and deduplicated by `dest`. Each binary is walked
/// on its own (its own RPATH chain), then the results are merged; two
/// different sources for one `dest` are an [`ClosureError::Conflict`].
///
/// `$ORIGIN` expands to the image directory of the object (`dirname(dest)`),
/// which is what the loader will see once the files are in the image.
/// `LD_LIBRARY_PATH`, `ld.so.cache`, `glibc-hwcaps` subdirectories and
/// `LD_PRELOAD` are not considered.
pub fn resolve_closure(sysroot: &Path, binaries: &[PathBuf]) -> Result<Vec<ElfFile>, ClosureError> {
    if binaries.is_empty() {
        return Ok(Vec::new());
    }
    let root = canonical_root(sysroot, binaries)?;
    let conf_dirs = ld_so_conf_dirs(&root);
    let mut files: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    for binary in binaries {
        let resolver = Resolver {
            root: &root,
            conf_dirs: &conf_dirs,
            binary,
        };
        for file in resolver.closure()? {
            merge_file(&mut files, binary, file)?;
        }
    }
    Ok(files
        .into_iter()
        .map(|(dest, src)| ElfFile { dest, src })
        .collect())
}

/// Canonicalize the root directory so that host paths built from it are real.
fn canonical_root(sysroot: &Path, binaries: &[PathBuf]) -> Result<PathBuf, ClosureError> {
    fs::canonicalize(sysroot).map_err(|source| ClosureError::Read {
        binary: binaries
            .first()
            .cloned()
            .unwrap_or_else(|| sysroot.to_path_buf()),
        file: sysroot.to_path_buf(),
        source,
    })
}

/// Add `file` to the result set, refusing two different sources for one dest.
fn merge_file(
    files: &mut BTreeMap<PathBuf, PathBuf>,
    binary: &Path,
    file: ElfFile,
) -> Result<(), ClosureError> {
    match files.get(&file.dest) {
        Some(existing) if *existing != file.src => Err(ClosureError::Conflict {
            binary: binary.to_path_buf(),
            dest: file.dest,
            first: existing.clone(),
            second: file.src,
        }),
        Some(_) => Ok(()),
        None => {
            files.insert(file.dest, file.src);
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// The closure of one binary
// ---------------------------------------------------------------------------

/// One loaded object in the breadth-first walk.
#[derive(Debug)]
struct Node {
    /// Image path (where the loader will open it).
    dest: PathBuf,
    /// Real host file.
    src: PathBuf,
    /// Parsed dynamic information.
    info: ElfInfo,
    /// The object whose `DT_NEEDED` caused this one to be loaded.
    loader: Option<usize>,
}

/// Computes the closure of one `--binary` argument.
struct Resolver<'a> {
    /// Canonical root directory.
    root: &'a Path,
    /// Directories from `ld.so.conf`, in order.
    conf_dirs: &'a [PathBuf],
    /// The `--binary` argument, for error messages.
    binary: &'a Path,
}

impl Resolver<'_> {
    /// Walk the dependency graph breadth-first from the binary.
    fn closure(&self) -> Result<Vec<ElfFile>, ClosureError> {
        let (dest, src) = self.locate_binary()?;
        let info = self.parse_binary(&src)?;
        let mut nodes = vec![Node {
            dest,
            src,
            info,
            loader: None,
        }];
        let mut loaded: HashSet<String> = HashSet::new();
        let mut files = vec![ElfFile {
            dest: nodes[0].dest.clone(),
            src: nodes[0].src.clone(),
        }];
        if let Some(interp) = nodes[0].info.interpreter.clone() {
            let node = self.load_interpreter(&interp)?;
            files.push(ElfFile {
                dest: node.dest.clone(),
                src: node.src.clone(),
            });
            register(&mut loaded, &node);
            nodes.push(node);
        }
        let mut sources: HashSet<PathBuf> = nodes.iter().map(|n| n.src.clone()).collect();
        let mut queue: VecDeque<usize> = (0..nodes.len()).collect();
        while let Some(index) = queue.pop_front() {
            for name in nodes[index].info.needed.clone() {
                if loaded.contains(&name) {
                    continue;
                }
                let node = self.find_library(&nodes, index, &name)?;
                files.push(ElfFile {
                    dest: node.dest.clone(),
                    src: node.src.clone(),
                });
                loaded.insert(name);
                register(&mut loaded, &node);
                if sources.insert(node.src.clone()) {
                    queue.push_back(nodes.len());
                }
                nodes.push(node);
            }
        }
        Ok(files)
    }

    /// Image and host path of the binary itself.
    fn locate_binary(&self) -> Result<(PathBuf, PathBuf), ClosureError> {
        let result = if self.binary.is_absolute() {
            resolve_in_root(self.root, self.binary).map(|src| (normalize(self.binary), src))
        } else {
            let name = self
                .binary
                .file_name()
                .ok_or_else(|| ClosureError::NotFound {
                    binary: self.binary.to_path_buf(),
                })?;
            fs::canonicalize(self.binary).map(|src| (Path::new("/usr/bin").join(name), src))
        };
        result.map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ClosureError::NotFound {
                binary: self.binary.to_path_buf(),
            },
            _ => self.read_error(self.binary, source),
        })
    }

    /// Read and parse the binary; a non-ELF binary is [`ClosureError::NotElf`].
    fn parse_binary(&self, src: &Path) -> Result<ElfInfo, ClosureError> {
        if !src.is_file() {
            return Err(ClosureError::NotAFile {
                binary: self.binary.to_path_buf(),
            });
        }
        let bytes = fs::read(src).map_err(|e| self.read_error(src, e))?;
        parse_elf(&bytes).map_err(|e| match e {
            ElfError::NotElf => ClosureError::NotElf {
                binary: self.binary.to_path_buf(),
            },
            ElfError::Malformed(reason) => self.malformed(src, reason),
        })
    }

    /// Read and parse a dependency (interpreter or library).
    fn parse_dependency(&self, src: &Path) -> Result<ElfInfo, ClosureError> {
        let bytes = fs::read(src).map_err(|e| self.read_error(src, e))?;
        parse_elf(&bytes).map_err(|e| match e {
            ElfError::NotElf => self.malformed(src, "not an ELF file".to_string()),
            ElfError::Malformed(reason) => self.malformed(src, reason),
        })
    }

    /// The `PT_INTERP` file, placed at exactly the path the binary names.
    fn load_interpreter(&self, interp: &str) -> Result<Node, ClosureError> {
        let dest = normalize(&Path::new("/").join(interp));
        let src = resolve_in_root(self.root, &dest).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ClosureError::InterpreterNotFound {
                binary: self.binary.to_path_buf(),
                interpreter: dest.clone(),
            },
            _ => self.read_error(&dest, source),
        })?;
        let info = self.parse_dependency(&src)?;
        Ok(Node {
            dest,
            src,
            info,
            loader: None,
        })
    }

    /// Find `name` (a `DT_NEEDED` of `nodes[index]`) like ld.so does.
    fn find_library(&self, nodes: &[Node], index: usize, name: &str) -> Result<Node, ClosureError> {
        let requester = &nodes[index];
        let needed_by = (index != 0).then_some(requester);
        let name = if name.contains('$') {
            expand_dst(name, &self.dst_values(requester))
        } else {
            name.to_string()
        };
        let candidates: Vec<PathBuf> = if name.contains('/') {
            // A path, used as is; a relative one is taken from the root.
            vec![normalize(&Path::new("/").join(&name))]
        } else {
            self.search_dirs(nodes, index)
                .iter()
                .map(|dir| dir.join(&name))
                .collect()
        };
        for candidate in &candidates {
            if let Some(mut node) = self.try_candidate(requester, candidate) {
                node.loader = Some(index);
                return Ok(node);
            }
        }
        let searched = candidates
            .iter()
            .filter_map(|c| c.parent().map(Path::to_path_buf))
            .collect();
        Err(self.not_found(needed_by, &name, searched))
    }

    /// The directories searched for a `DT_NEEDED` of `nodes[index]`, in order.
    fn search_dirs(&self, nodes: &[Node], index: usize) -> Vec<PathBuf> {
        let requester = &nodes[index];
        let mut dirs = Vec::new();
        if requester.info.runpath.is_empty() {
            // RPATH of the requester, its loader, ... up to the executable
            // (node 0), which is always tried last. An object's RPATH is
            // ignored when it also has a RUNPATH.
            let mut chain = Vec::new();
            let mut current = Some(index);
            while let Some(i) = current.filter(|i| !chain.contains(i)) {
                chain.push(i);
                current = nodes[i].loader;
            }
            if !chain.contains(&0) {
                chain.push(0);
            }
            for i in chain
                .into_iter()
                .filter(|&i| nodes[i].info.runpath.is_empty())
            {
                dirs.extend(self.expand_list(&nodes[i], &nodes[i].info.rpath));
            }
        }
        dirs.extend(self.expand_list(requester, &requester.info.runpath));
        if !requester.info.nodeflib {
            dirs.extend(self.conf_dirs.iter().cloned());
            dirs.extend(default_dirs(requester.info.kind));
        }
        let mut seen = HashSet::new();
        dirs.retain(|d| seen.insert(d.clone()));
        dirs
    }

    /// Split and expand RPATH/RUNPATH strings of `node` into image dirs.
    /// Empty and relative elements (relative to the loader's cwd) are skipped.
    fn expand_list(&self, node: &Node, lists: &[String]) -> Vec<PathBuf> {
        if lists.is_empty() {
            return Vec::new();
        }
        let values = self.dst_values(node);
        lists
            .iter()
            .flat_map(|list| list.split(':'))
            .map(|element| expand_dst(element, &values))
            .filter(|element| element.starts_with('/'))
            .map(|element| normalize(Path::new(&element)))
            .collect()
    }

    /// Token values for strings found in `node`.
    fn dst_values(&self, node: &Node) -> DstValues {
        let origin = node.dest.parent().unwrap_or(Path::new("/"));
        DstValues {
            origin: origin.to_string_lossy().into_owned(),
            lib: lib_token(self.root, node.info.kind),
            platform: platform(node.info.kind).to_string(),
        }
    }

    /// Accept the image path `dest` if it is an ELF matching the requester.
    /// Candidates that are missing, unreadable, of another class or machine,
    /// or malformed are skipped, as ld.so does.
    fn try_candidate(&self, requester: &Node, dest: &Path) -> Option<Node> {
        let src = resolve_in_root(self.root, dest).ok()?;
        if !src.is_file() || read_kind(&src)? != requester.info.kind {
            return None;
        }
        let info = self.parse_dependency(&src).ok()?;
        Some(Node {
            dest: normalize(dest),
            src,
            info,
            loader: None,
        })
    }

    /// Error for a library that no search directory provides.
    /// `needed_by` is `None` when the binary itself needs the library.
    fn not_found(
        &self,
        needed_by: Option<&Node>,
        name: &str,
        searched: Vec<PathBuf>,
    ) -> ClosureError {
        ClosureError::LibraryNotFound {
            binary: self.binary.to_path_buf(),
            library: name.to_string(),
            needed_by: needed_by.map(|node| node.dest.clone()),
            searched,
        }
    }

    /// [`ClosureError::Read`] for `file`.
    fn read_error(&self, file: &Path, source: io::Error) -> ClosureError {
        ClosureError::Read {
            binary: self.binary.to_path_buf(),
            file: file.to_path_buf(),
            source,
        }
    }

    /// [`ClosureError::Malformed`] for `file`.
    fn malformed(&self, file: &Path, reason: String) -> ClosureError {
        ClosureError::Malformed {
            binary: self.binary.to_path_buf(),
            file: file.to_path_buf(),
            reason,
        }
    }
}

/// Record `node`'s soname as already loaded (ld.so matches by soname too).
fn register(loaded: &mut HashSet<String>, node: &Node) {
    if let Some(soname) = &node.info.soname {
        loaded.insert(soname.clone());
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
