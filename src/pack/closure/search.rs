//! Where the loader looks: dynamic string tokens (`$ORIGIN`, `$LIB`, `$PLATFORM`),
//! architecture names and default directories, `ld.so.conf`, and paths resolved inside the
//! root as if it were `/`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::elf::{ElfKind, ELFCLASS64, EM_386, EM_AARCH64, EM_ARM, EM_X86_64};
use crate::util::fnmatch;

// ---------------------------------------------------------------------------
// Dynamic string tokens and architecture names
// ---------------------------------------------------------------------------

/// Values substituted for `$ORIGIN`, `$LIB` and `$PLATFORM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DstValues {
    /// Image directory of the object whose string is being expanded.
    pub(super) origin: String,
    /// Value of `$LIB`.
    pub(super) lib: String,
    /// Value of `$PLATFORM`.
    pub(super) platform: String,
}

/// Expand the dynamic string tokens of one search-path element, like
/// glibc's `_dl_dst_substitute`: `$NAME` is a token only if followed by the
/// end of the string or `/`; `${NAME}` always is. Unknown names are kept
/// literally.
pub(super) fn expand_dst(element: &str, values: &DstValues) -> String {
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
pub(super) fn platform(kind: ElfKind) -> &'static str {
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
pub(super) fn lib_token(root: &Path, kind: ElfKind) -> String {
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
pub(super) fn default_dirs(kind: ElfKind) -> Vec<PathBuf> {
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
pub(super) fn normalize(path: &Path) -> PathBuf {
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
pub(super) fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
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
pub(super) fn ld_so_conf_dirs(root: &Path) -> Vec<PathBuf> {
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

/// Expand an image-path pattern with wildcards (`*`, `?`, `[...]`, as in
/// glob(3)) in its last component only. Returns matching image paths, sorted
/// (like glob(3)); a pattern without wildcards is returned as is.
fn expand_glob(root: &Path, pattern: &Path) -> Vec<PathBuf> {
    let pattern = normalize(pattern);
    let Some(last) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !last.contains(['*', '?', '[']) {
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
        .filter(|name| !name.starts_with('.') && fnmatch(last, name))
        .collect();
    names.sort();
    names.into_iter().map(|name| parent.join(name)).collect()
}
