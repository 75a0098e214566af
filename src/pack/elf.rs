//! Shared-library closure of host executables (`--binary PATH`).
//!
//! Given ELF executables on the host (or under a fake root), compute every
//! file the dynamic loader would need to run them: the binaries themselves,
//! their `PT_INTERP` interpreter and the transitive `DT_NEEDED` libraries,
//! resolved the way glibc's `ld.so` does it (RPATH, RUNPATH, `ld.so.conf`,
//! default directories), like dracut and mkinitcpio do.
//!
//! Only the ELF header, the program headers, the dynamic segment and the
//! dynamic string table are read, as the loader does; section headers and
//! symbol tables are never parsed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use goblin::container::Ctx;
use goblin::elf::dynamic::{Dynamic, DF_1_NODEFLIB, DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME};
use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS64, EM_386, EM_AARCH64, EM_ARM, EM_X86_64};
use goblin::elf::program_header::{ProgramHeader, PT_INTERP};
use goblin::elf::Elf;

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
pub enum ElfError {
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
/// different sources for one `dest` are an [`ElfError::Conflict`].
///
/// `$ORIGIN` expands to the image directory of the object (`dirname(dest)`),
/// which is what the loader will see once the files are in the image.
/// `LD_LIBRARY_PATH`, `ld.so.cache`, `glibc-hwcaps` subdirectories and
/// `LD_PRELOAD` are not considered.
pub fn resolve_closure(sysroot: &Path, binaries: &[PathBuf]) -> Result<Vec<ElfFile>, ElfError> {
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
fn canonical_root(sysroot: &Path, binaries: &[PathBuf]) -> Result<PathBuf, ElfError> {
    fs::canonicalize(sysroot).map_err(|source| ElfError::Read {
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
) -> Result<(), ElfError> {
    match files.get(&file.dest) {
        Some(existing) if *existing != file.src => Err(ElfError::Conflict {
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
// ELF parsing
// ---------------------------------------------------------------------------

/// What the loader needs to know about one ELF object.
#[derive(Debug, Clone, Default)]
struct ElfInfo {
    /// Class, byte order and machine: libraries must match the requester.
    kind: ElfKind,
    /// `PT_INTERP`, if any.
    interpreter: Option<String>,
    /// `DT_SONAME`, if any.
    soname: Option<String>,
    /// `DT_NEEDED` entries, in order.
    needed: Vec<String>,
    /// `DT_RPATH` entries (each a colon-separated list).
    rpath: Vec<String>,
    /// `DT_RUNPATH` entries (each a colon-separated list).
    runpath: Vec<String>,
    /// `DF_1_NODEFLIB`: do not search the default directories.
    nodeflib: bool,
}

/// The identity a library must share with the object that loads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ElfKind {
    /// `EI_CLASS` (1 = 32-bit, 2 = 64-bit).
    class: u8,
    /// `EI_DATA` (1 = little endian, 2 = big endian).
    data: u8,
    /// `e_machine`.
    machine: u16,
}

/// Why bytes could not be turned into an [`ElfInfo`].
#[derive(Debug)]
enum ParseError {
    /// No ELF magic at all.
    NotElf,
    /// ELF magic, but the structure is broken.
    Malformed(String),
}

/// True if `bytes` starts with the ELF magic.
fn has_elf_magic(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x7fELF")
}

/// Parse the parts of an ELF file the dynamic loader looks at.
fn parse_elf(bytes: &[u8]) -> Result<ElfInfo, ParseError> {
    if !has_elf_magic(bytes) {
        return Err(ParseError::NotElf);
    }
    let malformed = |e: goblin::error::Error| ParseError::Malformed(e.to_string());
    let header = Elf::parse_header(bytes).map_err(malformed)?;
    let container = header.container().map_err(malformed)?;
    let endian = header.endianness().map_err(malformed)?;
    let ctx = Ctx::new(container, endian);
    let phoff =
        usize::try_from(header.e_phoff).map_err(|_| bad("program header offset out of range"))?;
    let phdrs =
        ProgramHeader::parse(bytes, phoff, usize::from(header.e_phnum), ctx).map_err(malformed)?;
    let mut info = ElfInfo {
        kind: ElfKind {
            class: header.e_ident[EI_CLASS],
            data: header.e_ident[EI_DATA],
            machine: header.e_machine,
        },
        interpreter: read_interpreter(bytes, &phdrs)?,
        ..ElfInfo::default()
    };
    if let Some(dynamic) = Dynamic::parse(bytes, &phdrs, ctx).map_err(malformed)? {
        read_dynamic(bytes, &dynamic, &mut info)?;
    }
    Ok(info)
}

/// Shorthand for a [`ParseError::Malformed`] with a fixed message.
fn bad(reason: &str) -> ParseError {
    ParseError::Malformed(reason.to_string())
}

/// The `PT_INTERP` string, if the file has one.
fn read_interpreter(bytes: &[u8], phdrs: &[ProgramHeader]) -> Result<Option<String>, ParseError> {
    let Some(ph) = phdrs.iter().find(|ph| ph.p_type == PT_INTERP) else {
        return Ok(None);
    };
    let start = usize::try_from(ph.p_offset).map_err(|_| bad("PT_INTERP offset out of range"))?;
    let len = usize::try_from(ph.p_filesz).map_err(|_| bad("PT_INTERP size out of range"))?;
    let end = start
        .checked_add(len)
        .ok_or_else(|| bad("PT_INTERP out of range"))?;
    let raw = bytes
        .get(start..end)
        .ok_or_else(|| bad("PT_INTERP beyond end of file"))?;
    let raw = raw.split(|&b| b == 0).next().unwrap_or_default();
    let interp = std::str::from_utf8(raw).map_err(|_| bad("PT_INTERP is not valid UTF-8"))?;
    if interp.is_empty() {
        return Err(bad("empty PT_INTERP"));
    }
    Ok(Some(interp.to_string()))
}

/// Fill the dynamic-section fields of `info`.
fn read_dynamic(bytes: &[u8], dynamic: &Dynamic, info: &mut ElfInfo) -> Result<(), ParseError> {
    let strtab = StrTab {
        bytes,
        start: dynamic.info.strtab,
        size: dynamic.info.strsz,
    };
    info.nodeflib = dynamic.info.flags_1 & DF_1_NODEFLIB != 0;
    for entry in &dynamic.dyns {
        let tag = entry.d_tag;
        if tag != DT_NEEDED && tag != DT_RPATH && tag != DT_RUNPATH && tag != DT_SONAME {
            continue;
        }
        let value = strtab
            .get(entry.d_val)
            .ok_or_else(|| bad("dynamic entry points outside the string table"))?;
        match tag {
            DT_NEEDED => info.needed.push(value),
            DT_RPATH => info.rpath.push(value),
            DT_RUNPATH => info.runpath.push(value),
            _ => info.soname = Some(value),
        }
    }
    Ok(())
}

/// The dynamic string table (`DT_STRTAB`/`DT_STRSZ`), read defensively.
struct StrTab<'a> {
    bytes: &'a [u8],
    start: usize,
    size: usize,
}

impl StrTab<'_> {
    /// The NUL-terminated string at `offset`, if it lies inside the table.
    fn get(&self, offset: u64) -> Option<String> {
        let offset = usize::try_from(offset).ok()?;
        if offset >= self.size {
            return None;
        }
        let end = self.start.checked_add(self.size)?.min(self.bytes.len());
        let from = self.start.checked_add(offset)?;
        let tail = self.bytes.get(from..end)?;
        let nul = tail.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&tail[..nul]).ok().map(str::to_string)
    }
}

/// Read the ELF identity of a candidate library without reading it all.
fn read_kind(path: &Path) -> Option<ElfKind> {
    let mut head = [0u8; 64];
    let mut file = fs::File::open(path).ok()?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    let head = &head[..filled];
    if !has_elf_magic(head) {
        return None;
    }
    let header = Elf::parse_header(head).ok()?;
    Some(ElfKind {
        class: header.e_ident[EI_CLASS],
        data: header.e_ident[EI_DATA],
        machine: header.e_machine,
    })
}

// ---------------------------------------------------------------------------
// Dynamic string tokens and architecture names
// ---------------------------------------------------------------------------

/// Values substituted for `$ORIGIN`, `$LIB` and `$PLATFORM`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DstValues {
    /// Image directory of the object whose string is being expanded.
    origin: String,
    /// Value of `$LIB`.
    lib: String,
    /// Value of `$PLATFORM`.
    platform: String,
}

/// Expand the dynamic string tokens of one search-path element, like
/// glibc's `_dl_dst_substitute`: `$NAME` is a token only if followed by the
/// end of the string or `/`; `${NAME}` always is. Unknown names are kept
/// literally.
fn expand_dst(element: &str, values: &DstValues) -> String {
    let mut out = String::with_capacity(element.len());
    let mut rest = element;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match match_dst(after, values) {
            Some((value, consumed)) => {
                out.push_str(value);
                rest = &after[consumed..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// If `s` (the text after a `$`) starts with a known token, return its value
/// and how many bytes of `s` the token occupies.
fn match_dst<'v>(s: &str, values: &'v DstValues) -> Option<(&'v str, usize)> {
    let known: [(&str, &'v str); 3] = [
        ("ORIGIN", &values.origin),
        ("LIB", &values.lib),
        ("PLATFORM", &values.platform),
    ];
    for (name, value) in known {
        if let Some(after) = s.strip_prefix('{').and_then(|t| t.strip_prefix(name)) {
            if after.starts_with('}') {
                return Some((value, name.len() + 2));
            }
        }
        if let Some(after) = s.strip_prefix(name) {
            if after.is_empty() || after.starts_with('/') {
                return Some((value, name.len()));
            }
        }
    }
    None
}

/// Debian multiarch triplet for an ELF kind, if known.
fn multiarch(kind: ElfKind) -> Option<&'static str> {
    let is_64 = kind.class == ELFCLASS64;
    match (kind.machine, is_64) {
        (EM_X86_64, true) => Some("x86_64-linux-gnu"),
        (EM_X86_64, false) => Some("x86_64-linux-gnux32"),
        (EM_386, false) => Some("i386-linux-gnu"),
        (EM_AARCH64, true) => Some("aarch64-linux-gnu"),
        (EM_ARM, false) => Some("arm-linux-gnueabihf"),
        _ => None,
    }
}

/// `$PLATFORM` value for an ELF kind (what `AT_PLATFORM` reports).
fn platform(kind: ElfKind) -> &'static str {
    match kind.machine {
        EM_X86_64 => "x86_64",
        EM_386 => "i686",
        EM_AARCH64 => "aarch64",
        EM_ARM => "v7l",
        _ => "unknown",
    }
}

/// `$LIB` value: `lib64` for 64-bit objects, `lib` for 32-bit ones, except on
/// multiarch (Debian) roots where glibc expands it to `lib/<triplet>`.
fn lib_token(root: &Path, kind: ElfKind) -> String {
    if let Some(triplet) = multiarch(kind) {
        let dir = format!("/lib/{triplet}");
        if resolve_in_root(root, Path::new(&dir))
            .map(|p| p.is_dir())
            .unwrap_or(false)
        {
            return format!("lib/{triplet}");
        }
    }
    if kind.class == ELFCLASS64 {
        "lib64".to_string()
    } else {
        "lib".to_string()
    }
}

/// The built-in search directories, after RPATH/RUNPATH/`ld.so.conf`.
fn default_dirs(kind: ElfKind) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(triplet) = multiarch(kind) {
        dirs.push(PathBuf::from(format!("/lib/{triplet}")));
        dirs.push(PathBuf::from(format!("/usr/lib/{triplet}")));
    }
    for dir in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
        dirs.push(PathBuf::from(dir));
    }
    dirs
}

// ---------------------------------------------------------------------------
// Paths inside the root
// ---------------------------------------------------------------------------

/// Lexically normalize an absolute image path: drop `.`, apply `..`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// One step of a path walk inside the root.
enum Step {
    Root,
    Parent,
    Name(OsString),
}

/// Push the components of `path` on `stack` so they pop in order.
fn push_steps(stack: &mut Vec<Step>, path: &Path) {
    let steps: Vec<Step> = path
        .components()
        .filter_map(|c| match c {
            Component::RootDir | Component::Prefix(_) => Some(Step::Root),
            Component::ParentDir => Some(Step::Parent),
            Component::Normal(name) => Some(Step::Name(name.to_os_string())),
            Component::CurDir => None,
        })
        .collect();
    stack.extend(steps.into_iter().rev());
}

/// Resolve `path` as if `root` were `/` (like a chroot): symlinks are
/// followed, absolute link targets and `..` never escape `root`. Returns the
/// real host path, which must exist.
fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    const MAX_LINKS: usize = 40;
    let mut stack = Vec::new();
    push_steps(&mut stack, path);
    let mut resolved = root.to_path_buf();
    let mut links = 0;
    while let Some(step) = stack.pop() {
        match step {
            Step::Root => resolved = root.to_path_buf(),
            Step::Parent => {
                if resolved != root {
                    resolved.pop();
                }
            }
            Step::Name(name) => {
                let candidate = resolved.join(&name);
                let meta = fs::symlink_metadata(&candidate)?;
                if !meta.file_type().is_symlink() {
                    resolved = candidate;
                    continue;
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                push_steps(&mut stack, &fs::read_link(&candidate)?);
            }
        }
    }
    Ok(resolved)
}

// ---------------------------------------------------------------------------
// ld.so.conf
// ---------------------------------------------------------------------------

/// Directories listed in the root's `/etc/ld.so.conf`, includes followed,
/// duplicates removed, in order. Missing or unreadable files are ignored.
fn ld_so_conf_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut seen_files = HashSet::new();
    parse_ld_so_conf(
        root,
        Path::new("/etc/ld.so.conf"),
        0,
        &mut seen_files,
        &mut dirs,
    );
    let mut seen_dirs = HashSet::new();
    dirs.retain(|d| seen_dirs.insert(d.clone()));
    dirs
}

/// Parse one configuration file (image path `conf`) into `dirs`.
fn parse_ld_so_conf(
    root: &Path,
    conf: &Path,
    depth: usize,
    seen: &mut HashSet<PathBuf>,
    dirs: &mut Vec<PathBuf>,
) {
    const MAX_DEPTH: usize = 16;
    if depth > MAX_DEPTH || !seen.insert(normalize(conf)) {
        return;
    }
    let Ok(host) = resolve_in_root(root, conf) else {
        return;
    };
    let Ok(text) = fs::read_to_string(host) else {
        return;
    };
    let conf_dir = conf.parent().unwrap_or(Path::new("/"));
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(patterns) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with(char::is_whitespace))
        {
            for pattern in patterns.split_whitespace() {
                for file in expand_glob(root, &conf_dir.join(pattern)) {
                    parse_ld_so_conf(root, &file, depth + 1, seen, dirs);
                }
            }
        } else if !line.starts_with("hwcap") {
            dirs.extend(conf_line_dirs(line));
        }
    }
}

/// The directories of one non-include `ld.so.conf` line. Like ldconfig,
/// accepts several separated by whitespace, `:` or `,`, and drops a `=TYPE`
/// suffix. Relative entries are ignored.
fn conf_line_dirs(line: &str) -> Vec<PathBuf> {
    line.split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .map(|entry| entry.split('=').next().unwrap_or_default())
        .filter(|entry| entry.starts_with('/'))
        .map(|entry| normalize(Path::new(entry)))
        .collect()
}

/// Expand an image-path pattern with `*`/`?` in its last component only.
/// Returns matching image paths, sorted (like glob(3)); a pattern without
/// wildcards is returned as is.
fn expand_glob(root: &Path, pattern: &Path) -> Vec<PathBuf> {
    let pattern = normalize(pattern);
    let Some(last) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !last.contains(['*', '?']) {
        return vec![pattern];
    }
    let parent = pattern.parent().unwrap_or(Path::new("/"));
    let Ok(host_dir) = resolve_in_root(root, parent) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(host_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.') && crate::util::glob::fnmatch(last, name))
        .collect();
    names.sort();
    names.into_iter().map(|name| parent.join(name)).collect()
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
    fn closure(&self) -> Result<Vec<ElfFile>, ElfError> {
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
    fn locate_binary(&self) -> Result<(PathBuf, PathBuf), ElfError> {
        let result = if self.binary.is_absolute() {
            resolve_in_root(self.root, self.binary).map(|src| (normalize(self.binary), src))
        } else {
            let name = self.binary.file_name().ok_or_else(|| ElfError::NotFound {
                binary: self.binary.to_path_buf(),
            })?;
            fs::canonicalize(self.binary).map(|src| (Path::new("/usr/bin").join(name), src))
        };
        result.map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ElfError::NotFound {
                binary: self.binary.to_path_buf(),
            },
            _ => self.read_error(self.binary, source),
        })
    }

    /// Read and parse the binary; a non-ELF binary is [`ElfError::NotElf`].
    fn parse_binary(&self, src: &Path) -> Result<ElfInfo, ElfError> {
        if !src.is_file() {
            return Err(ElfError::NotAFile {
                binary: self.binary.to_path_buf(),
            });
        }
        let bytes = fs::read(src).map_err(|e| self.read_error(src, e))?;
        parse_elf(&bytes).map_err(|e| match e {
            ParseError::NotElf => ElfError::NotElf {
                binary: self.binary.to_path_buf(),
            },
            ParseError::Malformed(reason) => self.malformed(src, reason),
        })
    }

    /// Read and parse a dependency (interpreter or library).
    fn parse_dependency(&self, src: &Path) -> Result<ElfInfo, ElfError> {
        let bytes = fs::read(src).map_err(|e| self.read_error(src, e))?;
        parse_elf(&bytes).map_err(|e| match e {
            ParseError::NotElf => self.malformed(src, "not an ELF file".to_string()),
            ParseError::Malformed(reason) => self.malformed(src, reason),
        })
    }

    /// The `PT_INTERP` file, placed at exactly the path the binary names.
    fn load_interpreter(&self, interp: &str) -> Result<Node, ElfError> {
        let dest = normalize(&Path::new("/").join(interp));
        let src = resolve_in_root(self.root, &dest).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ElfError::InterpreterNotFound {
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
    fn find_library(&self, nodes: &[Node], index: usize, name: &str) -> Result<Node, ElfError> {
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
    fn not_found(&self, needed_by: Option<&Node>, name: &str, searched: Vec<PathBuf>) -> ElfError {
        ElfError::LibraryNotFound {
            binary: self.binary.to_path_buf(),
            library: name.to_string(),
            needed_by: needed_by.map(|node| node.dest.clone()),
            searched,
        }
    }

    /// [`ElfError::Read`] for `file`.
    fn read_error(&self, file: &Path, source: io::Error) -> ElfError {
        ElfError::Read {
            binary: self.binary.to_path_buf(),
            file: file.to_path_buf(),
            source,
        }
    }

    /// [`ElfError::Malformed`] for `file`.
    fn malformed(&self, file: &Path, reason: String) -> ElfError {
        ElfError::Malformed {
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
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::os::unix::fs::symlink;
    use std::process::Command;

    const INTERP: &str = "/lib64/ld-linux-x86-64.so.2";

    /// Basename of a path as a String.
    fn base(path: &Path) -> String {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Run `ldd` on `binary` and return the basenames of every resolved
    /// object (interpreter included, linux-vdso excluded). Panics on a
    /// "not found" line.
    fn ldd_basenames(binary: &Path) -> BTreeSet<String> {
        let out = Command::new("ldd").arg(binary).output().expect("run ldd");
        assert!(
            out.status.success(),
            "ldd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("ldd output is UTF-8");
        let mut names = BTreeSet::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            assert!(!line.contains("not found"), "ldd could not resolve: {line}");
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next().unwrap_or_default(),
                None => line.split_whitespace().next().unwrap_or_default(),
            };
            if line.starts_with("linux-vdso") || line.starts_with("linux-gate") || path.is_empty() {
                continue;
            }
            names.insert(base(Path::new(path)));
        }
        names
    }

    /// True on a glibc x86_64 host where the ldd comparison makes sense.
    fn glibc_x86_64_host() -> bool {
        Path::new(INTERP).exists() && Command::new("ldd").arg("--version").output().is_ok()
    }

    /// Copy `host` (following symlinks) to `root` + `image`, creating dirs.
    fn install(root: &Path, host: &Path, image: &str) -> PathBuf {
        let target = root.join(image.trim_start_matches('/'));
        fs::create_dir_all(target.parent().expect("has parent")).expect("mkdir");
        fs::copy(host, &target).expect("copy file into fake root");
        target
    }

    fn write(root: &Path, image: &str, contents: &[u8]) -> PathBuf {
        let target = root.join(image.trim_start_matches('/'));
        fs::create_dir_all(target.parent().expect("has parent")).expect("mkdir");
        fs::write(&target, contents).expect("write file");
        target
    }

    /// Compile C source with gcc; `None` (with a note) if gcc is unavailable.
    fn gcc(args: &[&str]) -> Option<()> {
        match Command::new("gcc").args(args).output() {
            Ok(out) if out.status.success() => Some(()),
            Ok(out) => panic!(
                "gcc {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(_) => {
                eprintln!("note: gcc not available, skipping");
                None
            }
        }
    }

    #[test]
    fn mke2fs_closure_matches_ldd() {
        if !glibc_x86_64_host() {
            eprintln!("note: not a glibc x86_64 host, skipping mke2fs/ldd comparison");
            return;
        }
        let mke2fs = Path::new("/sbin/mke2fs");
        assert!(
            mke2fs.exists(),
            "/sbin/mke2fs missing: apt-get install -y e2fsprogs"
        );
        let files =
            resolve_closure(Path::new("/"), &[mke2fs.to_path_buf()]).expect("closure of mke2fs");

        let dests: Vec<&Path> = files.iter().map(|f| f.dest.as_path()).collect();
        let mut sorted = dests.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            dests, sorted,
            "result must be sorted and deduplicated by dest"
        );

        assert!(dests.contains(&mke2fs), "binary itself missing: {dests:?}");
        assert!(
            dests.contains(&Path::new(INTERP)),
            "interpreter missing: {dests:?}"
        );
        let loaders = dests
            .iter()
            .filter(|d| base(d) == "ld-linux-x86-64.so.2")
            .count();
        assert_eq!(
            loaders, 1,
            "libc's DT_NEEDED on the loader must match it by soname: {dests:?}"
        );
        assert!(
            dests.contains(&Path::new("/lib/x86_64-linux-gnu/libc.so.6")),
            "libc dest: {dests:?}"
        );
        for lib in [
            "libc.so.6",
            "libext2fs.so.2",
            "libcom_err.so.2",
            "libblkid.so.1",
            "libuuid.so.1",
            "libe2p.so.2",
        ] {
            assert!(
                dests.iter().any(|d| base(d) == lib),
                "{lib} missing from {dests:?}"
            );
        }
        for file in &files {
            let meta = fs::symlink_metadata(&file.src).expect("src exists");
            assert!(
                meta.is_file(),
                "src {} must be a real file, not a symlink",
                file.src.display()
            );
            assert!(file.dest.is_absolute());
        }

        let ours: BTreeSet<String> = files
            .iter()
            .filter(|f| f.dest != mke2fs)
            .map(|f| base(&f.dest))
            .collect();
        assert_eq!(ours, ldd_basenames(mke2fs), "closure differs from ldd");
    }

    #[test]
    fn missing_library_names_binary_and_library() {
        let root = tempfile::tempdir().expect("tempdir");
        install(root.path(), Path::new("/bin/ls"), "/usr/bin/ls");
        install(root.path(), Path::new(INTERP), INTERP);
        let err = resolve_closure(root.path(), &[PathBuf::from("/usr/bin/ls")])
            .expect_err("libs are missing");
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                ElfError::LibraryNotFound {
                    needed_by: None,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(msg.starts_with("--binary /usr/bin/ls: library "), "{msg}");
        assert!(
            msg.contains("libselinux.so.1") || msg.contains("libc.so.6"),
            "{msg}"
        );
        assert!(
            msg.contains("not found (searched: /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn missing_interpreter_is_reported() {
        let root = tempfile::tempdir().expect("tempdir");
        install(root.path(), Path::new("/bin/true"), "/usr/bin/true");
        let err = resolve_closure(root.path(), &[PathBuf::from("/usr/bin/true")])
            .expect_err("no interpreter");
        assert_eq!(
            err.to_string(),
            format!("--binary /usr/bin/true: interpreter {INTERP} not found")
        );
    }

    #[test]
    fn missing_file_is_reported() {
        let err =
            resolve_closure(Path::new("/"), &[PathBuf::from("/nope")]).expect_err("no such file");
        assert!(matches!(err, ElfError::NotFound { .. }), "{err:?}");
        assert_eq!(err.to_string(), "--binary /nope: no such file");

        let err = resolve_closure(Path::new("/"), &[PathBuf::from("nope-relative-xyz")])
            .expect_err("no such file");
        assert_eq!(err.to_string(), "--binary nope-relative-xyz: no such file");
    }

    #[test]
    fn non_elf_is_reported() {
        let err = resolve_closure(Path::new("/"), &[PathBuf::from("/etc/passwd")])
            .expect_err("text file");
        assert_eq!(err.to_string(), "--binary /etc/passwd: not an ELF file");
        let err = resolve_closure(Path::new("/"), &[PathBuf::from("/etc")]).expect_err("directory");
        assert_eq!(err.to_string(), "--binary /etc: not a regular file");

        let root = tempfile::tempdir().expect("tempdir");
        write(root.path(), "/usr/bin/script", b"#!/bin/sh\necho hi\n");
        write(root.path(), "/usr/bin/tiny", b"\x7fE");
        for name in ["/usr/bin/script", "/usr/bin/tiny"] {
            let err = resolve_closure(root.path(), &[PathBuf::from(name)]).expect_err("not ELF");
            assert_eq!(err.to_string(), format!("--binary {name}: not an ELF file"));
        }
    }

    #[test]
    fn malformed_elf_is_an_error_naming_the_file() {
        let root = tempfile::tempdir().expect("tempdir");
        let bytes = fs::read("/bin/true").expect("read /bin/true");
        write(root.path(), "/usr/bin/trunc", &bytes[..70]);
        let err = resolve_closure(root.path(), &[PathBuf::from("/usr/bin/trunc")])
            .expect_err("truncated");
        let msg = err.to_string();
        assert!(matches!(err, ElfError::Malformed { .. }), "{err:?}");
        assert!(
            msg.starts_with("--binary /usr/bin/trunc: malformed ELF file "),
            "{msg}"
        );
        assert!(msg.contains("/usr/bin/trunc:"), "{msg}");
    }

    /// File ranges of the ELF header + program headers and of PT_DYNAMIC.
    fn interesting_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let header = Elf::parse_header(bytes).expect("header");
        let ctx = Ctx::new(
            header.container().expect("class"),
            header.endianness().expect("endian"),
        );
        let phdrs =
            ProgramHeader::parse(bytes, header.e_phoff as usize, header.e_phnum as usize, ctx)
                .expect("phdrs");
        let phdr_end = header.e_phoff as usize + phdrs.len() * usize::from(header.e_phentsize);
        let mut ranges = Vec::new();
        ranges.push(0..phdr_end);
        for ph in phdrs
            .iter()
            .filter(|ph| ph.p_type == goblin::elf::program_header::PT_DYNAMIC)
        {
            ranges.push(ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize);
        }
        ranges
    }

    #[test]
    fn mutated_elf_never_panics() {
        if !glibc_x86_64_host() {
            eprintln!("note: not a glibc x86_64 host, skipping");
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        install(root.path(), Path::new(INTERP), INTERP);
        install(
            root.path(),
            Path::new("/lib/x86_64-linux-gnu/libc.so.6"),
            "/lib/x86_64-linux-gnu/libc.so.6",
        );
        let original = fs::read("/bin/true").expect("read /bin/true");
        let ranges = interesting_ranges(&original);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut ok, mut failed) = (0, 0);
        for round in 0..1000 {
            let mut bytes = original.clone();
            for _ in 0..(1 + round % 4) {
                let range = &ranges[(next() as usize) % ranges.len()];
                let at = range.start + (next() as usize) % range.len().max(1);
                if let Some(b) = bytes.get_mut(at) {
                    *b = next() as u8;
                }
            }
            if round % 100 == 0 {
                bytes.truncate((next() as usize) % original.len());
            }
            write(root.path(), "/usr/bin/fuzz", &bytes);
            // Any result is fine as long as it does not panic.
            match resolve_closure(root.path(), &[PathBuf::from("/usr/bin/fuzz")]) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(e.to_string().starts_with("--binary /usr/bin/fuzz: "), "{e}");
                    failed += 1;
                }
            }
        }
        assert!(
            ok > 0 && failed > 0,
            "fuzzing should hit both outcomes: ok={ok} failed={failed}"
        );
    }

    #[test]
    fn static_binary_is_just_itself() {
        let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
        else {
            eprintln!("note: busybox not installed (apt-get install -y busybox-static), skipping");
            return;
        };
        let info = parse_elf(&fs::read(busybox).expect("read busybox")).expect("busybox is ELF");
        if info.interpreter.is_some() || !info.needed.is_empty() {
            eprintln!(
                "note: {} is dynamically linked (not busybox-static), skipping",
                busybox.display()
            );
            return;
        }
        let files = resolve_closure(Path::new("/"), &[busybox.to_path_buf()]).expect("closure");
        let expected_src = fs::canonicalize(busybox).expect("canonicalize");
        assert_eq!(
            files,
            vec![ElfFile {
                dest: busybox.to_path_buf(),
                src: expected_src
            }]
        );
    }

    #[test]
    fn relative_binary_goes_to_usr_bin() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = install(dir.path(), Path::new("/bin/true"), "/mytrue");
        let cwd = std::env::current_dir().expect("cwd");
        let relative = pathdiff(&copy, &cwd);
        let files = resolve_closure(Path::new("/"), &[relative]).expect("closure");
        let me = files
            .iter()
            .find(|f| f.dest == Path::new("/usr/bin/mytrue"))
            .expect("binary dest");
        assert_eq!(me.src, fs::canonicalize(&copy).expect("canonicalize"));
        assert!(
            files.iter().any(|f| base(&f.dest) == "libc.so.6"),
            "{files:?}"
        );
    }

    /// `path` relative to `from` using `..` steps (both absolute).
    fn pathdiff(path: &Path, from: &Path) -> PathBuf {
        let path: Vec<_> = path.components().collect();
        let from: Vec<_> = from.components().collect();
        let common = path.iter().zip(&from).take_while(|(a, b)| a == b).count();
        let mut out = PathBuf::new();
        for _ in common..from.len() {
            out.push("..");
        }
        for c in &path[common..] {
            out.push(c);
        }
        out
    }

    #[test]
    fn expand_dst_substitutes_known_tokens() {
        let v = DstValues {
            origin: "/opt/app/bin".into(),
            lib: "lib64".into(),
            platform: "x86_64".into(),
        };
        assert_eq!(expand_dst("$ORIGIN/../lib", &v), "/opt/app/bin/../lib");
        assert_eq!(expand_dst("${ORIGIN}/../lib", &v), "/opt/app/bin/../lib");
        assert_eq!(expand_dst("$ORIGIN", &v), "/opt/app/bin");
        assert_eq!(expand_dst("/usr/$LIB/x", &v), "/usr/lib64/x");
        assert_eq!(
            expand_dst("/usr/${LIB}x/$PLATFORM", &v),
            "/usr/lib64x/x86_64"
        );
        assert_eq!(expand_dst("/p/${PLATFORM}/q", &v), "/p/x86_64/q");
        // Not tokens: glued to other characters, unknown, unterminated, lone `$`.
        assert_eq!(expand_dst("$ORIGINAL/x", &v), "$ORIGINAL/x");
        assert_eq!(expand_dst("/a/$FOO/b", &v), "/a/$FOO/b");
        assert_eq!(expand_dst("${ORIGIN/x", &v), "${ORIGIN/x");
        assert_eq!(expand_dst("/a$", &v), "/a$");
        assert_eq!(
            expand_dst("$ORIGIN/$ORIGIN", &v),
            "/opt/app/bin//opt/app/bin"
        );
    }

    #[test]
    fn wildcard_and_glob() {
        let root = tempfile::tempdir().expect("tempdir");
        write(
            root.path(),
            "/etc/ld.so.conf",
            b"# comment\n/opt/first\ninclude /etc/ld.so.conf.d/*.conf\n",
        );
        write(
            root.path(),
            "/etc/ld.so.conf.d/b.conf",
            b"/opt/b1 /opt/b2:/opt/b3 # trailing\nhwcap 0 nosegneg\n",
        );
        write(
            root.path(),
            "/etc/ld.so.conf.d/a.conf",
            b"/opt/a\ninclude more/*.conf\nrelative/dir\n",
        );
        write(
            root.path(),
            "/etc/ld.so.conf.d/ignored.txt",
            b"/opt/ignored\n",
        );
        write(
            root.path(),
            "/etc/ld.so.conf.d/more/m.conf",
            b"/opt/m=libc6\n/opt/first\n",
        );
        // An include loop must terminate.
        write(
            root.path(),
            "/etc/ld.so.conf.d/z.conf",
            b"include /etc/ld.so.conf\n",
        );
        let dirs = ld_so_conf_dirs(root.path());
        let expected: Vec<PathBuf> = [
            "/opt/first",
            "/opt/a",
            "/opt/m",
            "/opt/b1",
            "/opt/b2",
            "/opt/b3",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, expected);
    }

    #[test]
    fn resolve_in_root_stays_inside_root() {
        let root = tempfile::tempdir().expect("tempdir");
        let real = write(root.path(), "/usr/lib/real.so", b"x");
        fs::create_dir_all(root.path().join("lib64")).expect("mkdir");
        symlink("/usr/lib/real.so", root.path().join("lib64/abs.so")).expect("symlink");
        symlink(
            "../../../../../usr/lib/real.so",
            root.path().join("lib64/rel.so"),
        )
        .expect("symlink");
        symlink("loop", root.path().join("lib64/loop")).expect("symlink");
        let root_path = fs::canonicalize(root.path()).expect("canonicalize");
        let real = fs::canonicalize(real).expect("canonicalize");
        assert_eq!(
            resolve_in_root(&root_path, Path::new("/lib64/abs.so")).expect("abs"),
            real
        );
        assert_eq!(
            resolve_in_root(&root_path, Path::new("/lib64/rel.so")).expect("rel"),
            real
        );
        assert!(resolve_in_root(&root_path, Path::new("/lib64/loop")).is_err());
        assert!(resolve_in_root(&root_path, Path::new("/lib64/none")).is_err());
        assert_eq!(
            normalize(Path::new("/a/./b/../c//d")),
            PathBuf::from("/a/c/d")
        );
    }

    /// Minimal 32-bit i386 ELF header (enough for the class check).
    fn elf32_header() -> Vec<u8> {
        let mut h = vec![0u8; 52];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 1; // ELFCLASS32
        h[5] = 1; // little endian
        h[6] = 1;
        h[16] = 3; // ET_DYN
        h[18] = EM_386 as u8;
        h
    }

    #[test]
    fn wrong_class_and_non_elf_candidates_are_skipped() {
        if !glibc_x86_64_host() {
            eprintln!("note: not a glibc x86_64 host, skipping");
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        install(r, Path::new("/bin/true"), "/usr/bin/true");
        install(
            r,
            &fs::canonicalize(INTERP).expect("interp"),
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        );
        fs::create_dir_all(r.join("lib64")).expect("mkdir");
        symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            r.join("lib64/ld-linux-x86-64.so.2"),
        )
        .expect("ln");
        install(
            r,
            Path::new("/lib/x86_64-linux-gnu/libc.so.6"),
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
        );
        write(r, "/etc/ld.so.conf", b"/opt/lib32\n/opt/text\n");
        write(r, "/opt/lib32/libc.so.6", &elf32_header());
        write(r, "/opt/text/libc.so.6", b"GROUP ( /lib/libc.so.6 )\n");

        let files = resolve_closure(r, &[PathBuf::from("/usr/bin/true")]).expect("closure");
        let rc = fs::canonicalize(r).expect("canonicalize");
        let got: Vec<(String, PathBuf)> = files
            .iter()
            .map(|f| {
                (
                    f.dest.display().to_string(),
                    f.src.strip_prefix(&rc).expect("inside root").into(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    INTERP.to_string(),
                    PathBuf::from("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
                ),
                ("/usr/bin/true".to_string(), PathBuf::from("usr/bin/true")),
                (
                    "/usr/lib/x86_64-linux-gnu/libc.so.6".to_string(),
                    PathBuf::from("usr/lib/x86_64-linux-gnu/libc.so.6")
                ),
            ]
        );
    }

    /// Build /opt/app/{bin/app, lib/libfoo.so, lib2/libbar.so} in `dir` where
    /// app needs libfoo (found via `$ORIGIN/../lib`) and libfoo needs libbar,
    /// which only the executable's search path `$ORIGIN/../lib2` provides.
    /// `dtags` selects RPATH or RUNPATH for app; `foo_extra` adds link flags
    /// for libfoo.
    fn build_origin_app(dir: &Path, dtags: &str, foo_extra: &[&str]) -> Option<PathBuf> {
        let d = |p: &str| dir.join(p).display().to_string();
        for sub in ["src", "bin", "lib", "lib2"] {
            fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        fs::write(dir.join("src/bar.c"), "int bar(void){return 0;}\n").expect("write");
        fs::write(
            dir.join("src/foo.c"),
            "int bar(void); int foo(void){return bar();}\n",
        )
        .expect("write");
        fs::write(
            dir.join("src/app.c"),
            "int foo(void); int main(void){return foo();}\n",
        )
        .expect("write");
        gcc(&[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libbar.so",
            "-o",
            &d("lib2/libbar.so"),
            &d("src/bar.c"),
        ])?;
        let (foo_out, foo_src, lib2) = (d("lib/libfoo.so"), d("src/foo.c"), d("lib2"));
        let mut foo_args = vec![
            "-shared",
            "-fPIC",
            "-Wl,-soname,libfoo.so",
            "-o",
            &foo_out,
            &foo_src,
            "-L",
            &lib2,
            "-lbar",
        ];
        foo_args.extend_from_slice(foo_extra);
        gcc(&foo_args)?;
        let rpath = "-Wl,-rpath,$ORIGIN/../lib:${ORIGIN}/../lib2";
        gcc(&[
            "-o",
            &d("bin/app"),
            &d("src/app.c"),
            "-L",
            &d("lib"),
            "-L",
            &d("lib2"),
            "-lfoo",
            "-Wl,--allow-shlib-undefined",
            dtags,
            rpath,
        ])?;
        Some(dir.join("bin/app"))
    }

    #[test]
    fn origin_rpath_is_inherited_by_libraries() {
        if !glibc_x86_64_host() {
            eprintln!("note: not a glibc x86_64 host, skipping");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(dir.path()).expect("canonicalize");
        let Some(app) = build_origin_app(&dir, "-Wl,--disable-new-dtags", &[]) else {
            return;
        };
        let info = parse_elf(&fs::read(&app).expect("read")).expect("parse");
        assert!(
            info.runpath.is_empty() && !info.rpath.is_empty(),
            "expected DT_RPATH: {info:?}"
        );

        let files = resolve_closure(Path::new("/"), std::slice::from_ref(&app)).expect("closure");
        let dests: Vec<&Path> = files.iter().map(|f| f.dest.as_path()).collect();
        assert!(
            dests.contains(&dir.join("lib/libfoo.so").as_path()),
            "{dests:?}"
        );
        assert!(
            dests.contains(&dir.join("lib2/libbar.so").as_path()),
            "{dests:?}"
        );
        let ours: BTreeSet<String> = files
            .iter()
            .filter(|f| f.dest != app)
            .map(|f| base(&f.dest))
            .collect();
        assert_eq!(ours, ldd_basenames(&app));
    }

    #[test]
    fn origin_runpath_is_not_inherited() {
        if !glibc_x86_64_host() {
            eprintln!("note: not a glibc x86_64 host, skipping");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(dir.path()).expect("canonicalize");
        let Some(app) = build_origin_app(&dir, "-Wl,--enable-new-dtags", &[]) else {
            return;
        };
        let info = parse_elf(&fs::read(&app).expect("read")).expect("parse");
        assert!(!info.runpath.is_empty(), "expected DT_RUNPATH: {info:?}");

        // The real loader agrees that libbar is unreachable.
        let ldd = Command::new("ldd").arg(&app).output().expect("ldd");
        assert!(String::from_utf8_lossy(&ldd.stdout).contains("libbar.so => not found"));

        let err = resolve_closure(Path::new("/"), std::slice::from_ref(&app))
            .expect_err("libbar unreachable");
        let msg = err.to_string();
        let expected = format!(
            "--binary {}: library libbar.so (needed by {}) not found (searched: ",
            app.display(),
            dir.join("lib/libfoo.so").display()
        );
        assert!(msg.starts_with(&expected), "{msg}");
    }

    #[test]
    fn runpath_of_requester_disables_rpath_of_loaders() {
        if !glibc_x86_64_host() {
            eprintln!("note: not a glibc x86_64 host, skipping");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let dir = fs::canonicalize(dir.path()).expect("canonicalize");
        let foo_runpath = [
            "-Wl,--enable-new-dtags",
            "-Wl,-rpath,/nonexistent-anemos-test",
        ];
        let Some(app) = build_origin_app(&dir, "-Wl,--disable-new-dtags", &foo_runpath) else {
            return;
        };

        // The real loader ignores app's DT_RPATH for libfoo's needs.
        let ldd = Command::new("ldd").arg(&app).output().expect("ldd");
        assert!(String::from_utf8_lossy(&ldd.stdout).contains("libbar.so => not found"));

        let err = resolve_closure(Path::new("/"), std::slice::from_ref(&app))
            .expect_err("libbar unreachable");
        let msg = err.to_string();
        assert!(msg.contains("library libbar.so (needed by "), "{msg}");
        assert!(
            msg.contains("searched: /nonexistent-anemos-test, "),
            "{msg}"
        );
        assert!(
            !msg.contains("lib2"),
            "app's RPATH must not be searched: {msg}"
        );
    }

    /// A synthetic loaded object for search-order tests.
    fn node(dest: &str, loader: Option<usize>, rpath: &[&str], runpath: &[&str]) -> Node {
        let info = ElfInfo {
            kind: ElfKind {
                class: ELFCLASS64,
                data: 1,
                machine: EM_X86_64,
            },
            rpath: rpath.iter().map(|s| s.to_string()).collect(),
            runpath: runpath.iter().map(|s| s.to_string()).collect(),
            ..ElfInfo::default()
        };
        Node {
            dest: dest.into(),
            src: dest.into(),
            info,
            loader,
        }
    }

    #[test]
    fn search_order_follows_ld_so() {
        let conf = vec![PathBuf::from("/conf")];
        let resolver = Resolver {
            root: Path::new("/"),
            conf_dirs: &conf,
            binary: Path::new("/opt/x/bin/exe"),
        };
        let mut nodes = vec![
            node(
                "/opt/x/bin/exe",
                None,
                &["$ORIGIN/../rpath-exe:/opt/r2"],
                &[],
            ),
            // Both tags: RPATH ignored, RUNPATH used for its own needs only.
            node(
                "/opt/x/lib/liba.so",
                Some(0),
                &["/ignored"],
                &["${ORIGIN}/run-a"],
            ),
            node(
                "/opt/x/lib/libb.so",
                Some(1),
                &["/rpath-b", "relative/skipped::/rpath-b2"],
                &[],
            ),
            node("/lib64/ld-linux-x86-64.so.2", None, &[], &[]),
        ];
        let paths = |v: &[&str]| -> Vec<PathBuf> { v.iter().map(PathBuf::from).collect() };
        let defaults = [
            "/conf",
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib64",
            "/usr/lib64",
            "/lib",
            "/usr/lib",
        ];
        let with_defaults = |v: &[&str]| paths(&[v, &defaults[..]].concat());

        assert_eq!(
            resolver.search_dirs(&nodes, 0),
            with_defaults(&["/opt/x/rpath-exe", "/opt/r2"])
        );
        assert_eq!(
            resolver.search_dirs(&nodes, 1),
            with_defaults(&["/opt/x/lib/run-a"])
        );
        assert_eq!(
            resolver.search_dirs(&nodes, 2),
            with_defaults(&["/rpath-b", "/rpath-b2", "/opt/x/rpath-exe", "/opt/r2"])
        );
        // Objects outside the loader chain still get the executable's RPATH.
        assert_eq!(
            resolver.search_dirs(&nodes, 3),
            with_defaults(&["/opt/x/rpath-exe", "/opt/r2"])
        );

        nodes[2].info.nodeflib = true;
        assert_eq!(
            resolver.search_dirs(&nodes, 2),
            paths(&["/rpath-b", "/rpath-b2", "/opt/x/rpath-exe", "/opt/r2"])
        );
    }

    #[test]
    fn several_binaries_are_merged() {
        if !glibc_x86_64_host() {
            eprintln!("note: not a glibc x86_64 host, skipping");
            return;
        }
        let bins = [
            PathBuf::from("/bin/true"),
            PathBuf::from("/bin/ls"),
            PathBuf::from("/bin/true"),
        ];
        let files = resolve_closure(Path::new("/"), &bins).expect("closure");
        let libc = files
            .iter()
            .filter(|f| base(&f.dest) == "libc.so.6")
            .count();
        assert_eq!(libc, 1, "{files:?}");
        assert!(files.iter().any(|f| f.dest == Path::new("/bin/ls")));
        assert!(files.iter().any(|f| f.dest == Path::new("/bin/true")));
        assert!(files.iter().any(|f| base(&f.dest) == "libselinux.so.1"));
        assert!(resolve_closure(Path::new("/"), &[])
            .expect("empty")
            .is_empty());
    }
}
