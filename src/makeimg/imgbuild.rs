//! The IMGBUILD: a POSIX shell file setting variables and defining functions. It is read by
//! running it in `sh` (first `sh -n` for its syntax, then sourced, its variables printed
//! NUL-separated), so what it means is exactly what sh makes of it; the printed output is then
//! parsed and validated here, every error naming the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

use crate::codec::Compression;

/// The variables read from an IMGBUILD.
pub const VARIABLES: [&str; 6] = [
    "imgname",
    "target",
    "debian_suite",
    "format",
    "hostconf",
    "packages",
];

/// The functions whose presence is detected.
pub const FUNCTIONS: [&str; 3] = ["provision", "setup", "cleanup"];

/// The distribution to bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Debian,
    Arch,
    Alpine,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Debian => "debian",
            Target::Arch => "arch",
            Target::Alpine => "alpine",
        }
    }
}

/// Partition table of a raw image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartType {
    Msdos,
    Gpt,
}

/// What the build produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// A disk image: size in bytes, partition table, filesystem.
    Raw {
        size: u64,
        parttype: PartType,
        fs: String,
    },
    /// A tar archive of the root.
    Tar(Compression),
    /// A directory holding the root.
    Dir,
    /// The IMGBUILD's own `setup()`/`cleanup()` prepare and finish the target.
    Custom,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Format::Raw { size, parttype, fs } => write!(
                f,
                "raw {} {} {fs}",
                crate::util::human(*size),
                match parttype {
                    PartType::Msdos => "msdos",
                    PartType::Gpt => "gpt",
                }
            ),
            Format::Tar(c) => write!(f, "tar {c}"),
            Format::Dir => f.write_str("dir"),
            Format::Custom => f.write_str("custom"),
        }
    }
}

/// An IMGBUILD, read and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImgBuild {
    /// The file it was read from.
    pub path: PathBuf,
    pub imgname: String,
    pub target: Target,
    pub debian_suite: String,
    pub format: Format,
    /// `hostconf` contains `keyring`: the build host's package keyring goes into the image.
    pub host_keyring: bool,
    pub packages: Vec<String>,
    /// Which of [`FUNCTIONS`] it defines.
    pub functions: Vec<String>,
}

impl ImgBuild {
    pub fn has(&self, function: &str) -> bool {
        self.functions.iter().any(|f| f == function)
    }
}

/// The shell program that sources the IMGBUILD ($1) and prints `v:NAME=VALUE` for every set
/// variable and `f:NAME` for every defined function, each followed by a NUL. PATH is emptied
/// before `command -v` so that a program of the same name is not taken for a function.
fn probe_script() -> String {
    let mut s = String::from(". \"$1\" >&2 || exit 1\n");
    for v in VARIABLES {
        s.push_str(&format!(
            "if [ \"${{{v}+set}}\" = set ]; then printf 'v:%s=%s\\0' {v} \"${v}\"; fi\n"
        ));
    }
    s.push_str("PATH=/nonexistent-makeimg-probe\n");
    for f in FUNCTIONS {
        s.push_str(&format!(
            "if command -v {f} >/dev/null 2>&1; then printf 'f:%s\\0' {f}; fi\n"
        ));
    }
    s
}

/// Reads `path`: its syntax checked with `sh -n`, then sourced in `sh` (in its own directory)
/// and the result validated.
pub fn load(path: &Path) -> Result<ImgBuild> {
    if !path.is_file() {
        bail!("{}: no such file (an IMGBUILD is needed)", path.display());
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = Command::new("sh")
        .arg("-n")
        .arg(path)
        .output()
        .context("running sh -n")?;
    if !out.status.success() {
        bail!(
            "{}: shell syntax error: {}",
            path.display(),
            one_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let out = Command::new("sh")
        .arg("-c")
        .arg(probe_script())
        .arg("makeimg-probe")
        .arg(&abs)
        .current_dir(dir)
        .output()
        .context("running sh")?;
    if !out.status.success() {
        bail!(
            "{}: sourcing it failed ({}): {}",
            path.display(),
            out.status,
            one_line(&String::from_utf8_lossy(&out.stderr))
        );
    }
    let (vars, functions) = parse_probe(&out.stdout)?;
    validate(path, &vars, functions)
}

/// The lines of a tool's message joined into one.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Splits the probe's output into variables (only those set) and defined functions.
pub fn parse_probe(out: &[u8]) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let mut vars = BTreeMap::new();
    let mut functions = Vec::new();
    for rec in out.split(|&b| b == 0).filter(|r| !r.is_empty()) {
        let rec = String::from_utf8(rec.to_vec())
            .map_err(|_| anyhow!("IMGBUILD variable is not valid UTF-8"))?;
        if let Some(kv) = rec.strip_prefix("v:") {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("unexpected probe output {rec:?}"))?;
            vars.insert(k.to_string(), v.to_string());
        } else if let Some(f) = rec.strip_prefix("f:") {
            functions.push(f.to_string());
        } else {
            bail!("unexpected probe output {rec:?}");
        }
    }
    Ok((vars, functions))
}

/// Values of a multi-valued variable: one per line (blank lines skipped; since none of these
/// values can contain blanks, words on one line are separate values too).
pub fn values(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// Validates the variables of `path`, applying the defaults.
pub fn validate(
    path: &Path,
    vars: &BTreeMap<String, String>,
    functions: Vec<String>,
) -> Result<ImgBuild> {
    let name = path.display();
    let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let target = match get("target") {
        None => bail!("{name}: target: missing: set target=debian, arch or alpine"),
        Some("debian") => Target::Debian,
        Some("arch") => Target::Arch,
        Some("alpine") => Target::Alpine,
        Some(t) => bail!("{name}: target: unknown target {t:?}: use debian, arch or alpine"),
    };
    let format =
        parse_format(get("format").unwrap_or("raw")).map_err(|e| anyhow!("{name}: format: {e}"))?;
    let mut host_keyring = false;
    for h in values(get("hostconf").unwrap_or("")) {
        match h.as_str() {
            "keyring" => host_keyring = true,
            other => bail!("{name}: hostconf: unknown value {other:?}: the one known is keyring"),
        }
    }
    let imgname = get("imgname").unwrap_or("image").to_string();
    if imgname.contains('/') {
        bail!("{name}: imgname: {imgname:?} must not contain '/'");
    }
    let b = ImgBuild {
        path: path.to_path_buf(),
        imgname,
        target,
        debian_suite: get("debian_suite").unwrap_or("stable").to_string(),
        format,
        host_keyring,
        packages: values(get("packages").unwrap_or("")),
        functions,
    };
    if b.format == Format::Custom && !b.has("setup") {
        bail!("{name}: format: custom needs a setup() function");
    }
    Ok(b)
}

/// `raw [SIZE [PARTTYPE [FS]]]` | `tar [COMPRESSION]` | `dir` | `custom`.
pub fn parse_format(text: &str) -> std::result::Result<Format, String> {
    let w: Vec<&str> = text.split_whitespace().collect();
    let extra = |n: usize| -> std::result::Result<(), String> {
        match w.get(n) {
            Some(x) => Err(format!("unexpected {x:?} in {text:?}")),
            None => Ok(()),
        }
    };
    match w.first().copied() {
        Some("raw") => {
            extra(4)?;
            let size = crate::config::parse_size(w.get(1).copied().unwrap_or("8G"))
                .map_err(|e| format!("raw size: {e}"))?;
            let parttype = match w.get(2).copied().unwrap_or("msdos") {
                "msdos" => PartType::Msdos,
                "gpt" => PartType::Gpt,
                p => return Err(format!("raw partition table {p:?}: use msdos or gpt")),
            };
            let fs = w.get(3).copied().unwrap_or("ext4").to_string();
            Ok(Format::Raw { size, parttype, fs })
        }
        Some("tar") => {
            extra(2)?;
            Ok(Format::Tar(match w.get(1).copied() {
                None | Some("none") => Compression::None,
                Some("gzip" | "gz") => Compression::Gzip,
                Some("zstd" | "zst") => Compression::Zstd,
                Some("xz") => Compression::Xz,
                Some(c) => {
                    return Err(format!("tar compression {c:?}: use none, gzip, zstd or xz"))
                }
            }))
        }
        Some("dir") => extra(1).map(|_| Format::Dir),
        Some("custom") => extra(1).map(|_| Format::Custom),
        Some(f) => Err(format!("unknown format {f:?}: use raw, tar, dir or custom")),
        None => Err("empty".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(vars: &[(&str, &str)], fns: &[&str]) -> Vec<u8> {
        let mut o = Vec::new();
        for (k, v) in vars {
            o.extend_from_slice(format!("v:{k}={v}\0").as_bytes());
        }
        for f in fns {
            o.extend_from_slice(format!("f:{f}\0").as_bytes());
        }
        o
    }

    fn check(vars: &[(&str, &str)], fns: &[&str]) -> Result<ImgBuild> {
        let (v, f) = parse_probe(&probe(vars, fns))?;
        validate(Path::new("IMGBUILD"), &v, f)
    }

    #[test]
    fn defaults_and_multiline_packages() {
        let b = check(
            &[
                ("target", "debian"),
                (
                    "packages",
                    "\n  linux-image-amd64\nopenssh-server\n\n systemd-sysv \n",
                ),
            ],
            &["provision"],
        )
        .unwrap();
        assert_eq!(b.imgname, "image");
        assert_eq!(b.debian_suite, "stable");
        assert_eq!(
            b.format,
            Format::Raw {
                size: 8 << 30,
                parttype: PartType::Msdos,
                fs: "ext4".into()
            }
        );
        assert_eq!(
            b.packages,
            ["linux-image-amd64", "openssh-server", "systemd-sysv"]
        );
        assert!(b.has("provision") && !b.has("setup"));
        assert!(!b.host_keyring);
    }

    #[test]
    fn values_keep_quotes_and_equals_signs() {
        let (v, _) = parse_probe(b"v:imgname=a=b 'c'\nd\0v:format=tar zstd\0").unwrap();
        assert_eq!(v["imgname"], "a=b 'c'\nd");
        assert_eq!(v["format"], "tar zstd");
        assert!(parse_probe(b"garbage\0").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(parse_format("dir"), Ok(Format::Dir));
        assert_eq!(parse_format("tar"), Ok(Format::Tar(Compression::None)));
        assert_eq!(
            parse_format(" tar  zst "),
            Ok(Format::Tar(Compression::Zstd))
        );
        assert_eq!(
            parse_format("raw 2G gpt btrfs"),
            Ok(Format::Raw {
                size: 2 << 30,
                parttype: PartType::Gpt,
                fs: "btrfs".into()
            })
        );
        assert!(parse_format("raw 2G mbr")
            .unwrap_err()
            .contains("msdos or gpt"));
        assert!(parse_format("tar lz4").unwrap_err().contains("lz4"));
        assert!(parse_format("dir x").unwrap_err().contains("\"x\""));
        assert!(parse_format("iso").unwrap_err().contains("unknown format"));
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            |vars: &[(&str, &str)], fns: &[&str]| format!("{:#}", check(vars, fns).unwrap_err());
        assert!(e(&[], &[]).starts_with("IMGBUILD: target: missing"));
        assert!(e(&[("target", "gentoo")], &[])
            .starts_with("IMGBUILD: target: unknown target \"gentoo\""));
        assert!(e(&[("target", "arch"), ("format", "qcow2")], &[]).starts_with("IMGBUILD: format:"));
        assert!(e(&[("target", "arch"), ("hostconf", "keyring\nssh")], &[])
            .starts_with("IMGBUILD: hostconf:"));
        assert!(e(&[("target", "arch"), ("format", "custom")], &[]).contains("setup()"));
        let b = check(
            &[
                ("target", "alpine"),
                ("hostconf", "keyring"),
                ("format", "custom"),
            ],
            &["setup", "cleanup"],
        )
        .unwrap();
        assert!(b.host_keyring && b.has("cleanup") && b.format == Format::Custom);
    }

    #[test]
    fn load_runs_sh() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("IMGBUILD");
        std::fs::write(
            &p,
            "imgname=\"web 1\"\ntarget=arch\nformat='tar xz'\npackages=\"\nbase\n  linux\n\"\nprovision() {\n  echo hi\n}\n",
        )
        .unwrap();
        let b = load(&p).unwrap();
        assert_eq!(b.imgname, "web 1");
        assert_eq!(b.format, Format::Tar(Compression::Xz));
        assert_eq!(b.packages, ["base", "linux"]);
        assert_eq!(b.functions, ["provision"]);
        std::fs::write(&p, "target=arch\nprovision() {\n  echo hi\n").unwrap();
        let e = format!("{:#}", load(&p).unwrap_err());
        assert!(
            e.contains("shell syntax error") && (e.contains(": 4:") || e.contains("line 4")),
            "{e}"
        );
    }
}
