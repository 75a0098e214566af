//! The built-in image builder (`anemos makeimg`): reads an IMGBUILD, bootstraps a root
//! (debian, arch or alpine), lays the project's files, patches, templates and secrets over
//! it, runs its `provision()` chrooted, and writes the root out as a directory, a tar or a
//! raw disk image; with `format = custom` the IMGBUILD's `setup()` and `cleanup()` run around
//! the build. docs/makeimg.md compares it with makeimg(1) point by point.

pub mod backend;
pub mod chroot;
pub mod imgbuild;
pub mod raw;
pub mod steps;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::codec::Compression;
use imgbuild::{Format, ImgBuild, PartType};
use raw::RawFs;
use steps::Copy;

pub use chroot::ChrootMounts;

/// Where the built root goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Built in place in this directory (created if missing; may be a mounted file system).
    Dir(PathBuf),
    /// Built in a temporary directory next to the file, then archived into it.
    Tar(PathBuf, Compression),
    /// Built in a temporary directory next to the file, then written into it as a disk image
    /// of `size` bytes with a `table` partition table and one `fs` partition (see [`raw`]).
    Raw {
        path: PathBuf,
        size: u64,
        table: PartType,
        fs: RawFs,
    },
}

impl Output {
    /// The directory or file the build produces.
    pub fn path(&self) -> &Path {
        match self {
            Output::Dir(p) | Output::Tar(p, _) | Output::Raw { path: p, .. } => p,
        }
    }
}

/// The output kind asked for on the command line, overriding the IMGBUILD's `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    Dir,
    Tar,
    Raw,
}

/// Where the image goes: `kind` (else the IMGBUILD's format) and `out` (else named after
/// `imgname` in the current directory: `IMGNAME`, `IMGNAME.tar[.EXT]`, `IMGNAME.img`). A
/// tar's compression comes from OUT's suffix, else from the IMGBUILD's `tar COMPRESSION`; a
/// raw image's size, table and file system from the IMGBUILD's `raw ...`, else the defaults
/// (8G msdos ext4). `custom` builds into the directory. A raw file system that cannot be
/// built is refused here, before anything is bootstrapped.
pub fn output(b: &ImgBuild, kind: Option<OutKind>, out: Option<PathBuf>) -> Result<Output> {
    let kind = match (kind, &b.format) {
        (Some(k), _) => k,
        (None, Format::Dir | Format::Custom) => OutKind::Dir,
        (None, Format::Tar(_)) => OutKind::Tar,
        (None, Format::Raw { .. }) => OutKind::Raw,
    };
    let from_format = match b.format {
        Format::Tar(c) => c,
        _ => Compression::None,
    };
    Ok(match kind {
        OutKind::Dir => Output::Dir(out.unwrap_or_else(|| PathBuf::from(&b.imgname))),
        OutKind::Raw => {
            let (size, table, fs) = match &b.format {
                Format::Raw { size, parttype, fs } => (*size, *parttype, fs.as_str()),
                _ => (8 << 30, PartType::Msdos, "ext4"),
            };
            let Some(fs) = RawFs::parse(fs) else {
                bail!(
                    "{}: format: raw file system {fs:?} is not supported by the built-in \
                     builder: use {} (or --format tar/dir and make the file system yourself)",
                    b.path.display(),
                    RawFs::SUPPORTED
                );
            };
            if size < raw::MIN_SIZE {
                bail!(
                    "{}: format: raw SIZE {} is too small: at least {} (the partition starts \
                     at 1 MiB)",
                    b.path.display(),
                    crate::util::human(size),
                    crate::util::human(raw::MIN_SIZE)
                );
            }
            Output::Raw {
                path: out.unwrap_or_else(|| PathBuf::from(format!("{}.img", b.imgname))),
                size,
                table,
                fs,
            }
        }
        OutKind::Tar => {
            let path = out.unwrap_or_else(|| {
                let ext = match from_format {
                    Compression::None => "",
                    Compression::Gzip => ".gz",
                    Compression::Zstd => ".zst",
                    Compression::Xz => ".xz",
                };
                PathBuf::from(format!("{}.tar{ext}", b.imgname))
            });
            let (_, by_name) = Compression::strip_suffix(&path.to_string_lossy());
            let c = if by_name == Compression::None {
                from_format
            } else {
                by_name
            };
            Output::Tar(path, c)
        }
    })
}

/// One build.
pub struct Options {
    pub imgbuild: ImgBuild,
    /// The project directory: the IMGBUILD's, holding pacman.conf, repositories, keys/ and
    /// secrets/.
    pub project: PathBuf,
    /// Input directories for files, patches and templates; empty: `files/` of the project
    /// when it exists.
    pub inputs: Vec<PathBuf>,
    pub output: Output,
    pub mirror: Option<String>,
    /// Values of `${VAR}` in templates (the CLI passes its environment).
    pub env: BTreeMap<String, String>,
    /// Added to the environment of the bootstrap tool and of `provision()` (e.g. the proxy
    /// variables from `[install] proxy` in the deploy image; the CLI's tools inherit them).
    pub tool_env: BTreeMap<String, String>,
}

/// Runs `f` as step `name`, logging its begin and its end with the time it took.
fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    log::info!("makeimg: step {name} begin");
    let t = Instant::now();
    let r = f().with_context(|| format!("makeimg: step {name}"))?;
    log::info!("makeimg: step {name} ok ({} ms)", t.elapsed().as_millis());
    Ok(r)
}

/// The input directories of `o`, each checked to exist.
fn inputs(o: &Options) -> Result<Vec<PathBuf>> {
    if o.inputs.is_empty() {
        let d = o.project.join("files");
        return Ok(if d.is_dir() { vec![d] } else { vec![] });
    }
    for d in &o.inputs {
        if !d.is_dir() {
            bail!("input directory {} does not exist", d.display());
        }
    }
    Ok(o.inputs.clone())
}

/// Builds the image: bootstrap, hostconf, files, patches, templates, secrets, provision,
/// then the output. When the IMGBUILD's format is `custom` and the output a directory, its
/// `setup()` runs first and its `cleanup()` last (see [`with_custom`]), whoever the caller.
/// Needs root (bootstrapping, chroot, mounts, file owners).
pub fn build(o: &Options) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("makeimg builds as root (bootstrap, chroot, mounts, file owners); --check does not");
    }
    build_with(o, &|root| bootstrap(o, root))
}

/// [`build`] with the bootstrap step given (the tests lay a root without a package manager).
fn build_with(o: &Options, bootstrap: &dyn Fn(&Path) -> Result<()>) -> Result<()> {
    let dirs = inputs(o)?;
    if let Output::Raw { fs, .. } = &o.output {
        // Missing tools are told before a long bootstrap, not after it.
        raw::tools(*fs)?;
    }
    let total = Instant::now();
    let (root, temp) = match &o.output {
        Output::Dir(d) => {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.clone(), false)
        }
        Output::Tar(f, _) | Output::Raw { path: f, .. } => {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
            let t = f.with_file_name(format!(
                ".{}.makeimg-root.{}",
                name.unwrap_or_default(),
                std::process::id()
            ));
            fs::create_dir(&t).with_context(|| format!("creating {}", t.display()))?;
            (t, true)
        }
    };
    // Absolute: the tools run in the project directory, and chroot resolves from there.
    let root = std::path::absolute(&root).unwrap_or(root);
    let r = if o.imgbuild.format == Format::Custom && matches!(o.output, Output::Dir(_)) {
        with_custom(o, &root, || build_into(o, &root, &dirs, bootstrap))
    } else {
        build_into(o, &root, &dirs, bootstrap)
    };
    let r = r.and_then(|_| match &o.output {
        Output::Tar(f, c) => step("output", || write_tar(&root, f, *c)),
        Output::Raw {
            path,
            size,
            table,
            fs,
        } => step("output", || {
            raw::write_image(&root, path, *size, *table, *fs)
        }),
        Output::Dir(_) => Ok(()),
    });
    if temp {
        remove_root(&root);
    }
    r?;
    log::info!(
        "makeimg: {} built in {} ms",
        o.output.path().display(),
        total.elapsed().as_millis()
    );
    Ok(())
}

/// `format = custom`: the IMGBUILD's `setup()` before `build`, its `cleanup()` after it. Once
/// setup() succeeded, cleanup() runs whatever happened (so what setup mounted is undone); after
/// a failed build a failing cleanup() is only a warning and the build's own error is returned,
/// after a successful one it fails the build. A function the IMGBUILD lacks is skipped.
fn with_custom(o: &Options, root: &Path, build: impl FnOnce() -> Result<()>) -> Result<()> {
    hook(o, root, "setup")?;
    let r = build();
    let c = hook(o, root, "cleanup");
    match (r, c) {
        (Err(e), Err(ce)) => {
            log::warn!("makeimg: cleanup() failed after the failed build: {ce:#}");
            Err(e)
        }
        (r, c) => r.and(c),
    }
}

/// Runs the IMGBUILD's function `name` (setup or cleanup) as a step, on the build host, not
/// chrooted: `/bin/sh -e -c '. IMGBUILD; NAME'` in the project directory, with `ANEMOS_ROOT`
/// the absolute root directory and the tool environment.
fn hook(o: &Options, root: &Path, name: &str) -> Result<()> {
    if !o.imgbuild.has(name) {
        log::info!("makeimg: format custom: the IMGBUILD defines no {name}(); skipped");
        return Ok(());
    }
    let path = std::path::absolute(&o.imgbuild.path).unwrap_or_else(|_| o.imgbuild.path.clone());
    let quoted = format!("'{}'", path.display().to_string().replace('\'', "'\\''"));
    let mut env = o.tool_env.clone();
    env.insert("ANEMOS_ROOT".to_string(), root.display().to_string());
    step(name, || {
        crate::cmd::run_streamed(
            "/bin/sh",
            &["-e".into(), "-c".into(), format!(". {quoted}; {name}")],
            &crate::cmd::Builder {
                cwd: &o.project,
                env: &env,
                chroot: None,
                prefix: name,
            },
        )
    })
}

/// The bootstrap step: the target's tool into `root` (see [`backend`]).
fn bootstrap(o: &Options, root: &Path) -> Result<()> {
    let b = &o.imgbuild;
    let argv = backend::bootstrap(
        b,
        &backend::Inputs {
            root,
            project: &o.project,
            mirror: o.mirror.as_deref(),
            have: &|p| crate::cmd::which(p).is_some(),
        },
    )?;
    let builder = crate::cmd::Builder {
        cwd: &o.project,
        env: &o.tool_env,
        chroot: None,
        prefix: "bootstrap",
    };
    crate::cmd::run_streamed(&argv.prog, &argv.args, &builder)?;
    if b.target == imgbuild::Target::Alpine {
        alpine_config(&o.project, root)?;
    }
    Ok(())
}

fn build_into(
    o: &Options,
    root: &Path,
    dirs: &[PathBuf],
    bootstrap: &dyn Fn(&Path) -> Result<()>,
) -> Result<()> {
    let b = &o.imgbuild;
    step("bootstrap", || bootstrap(root))?;
    if b.host_keyring {
        step("hostconf", || {
            for p in backend::host_keyring_paths(b.target) {
                let src = Path::new("/").join(p);
                if src.is_dir() {
                    steps::copy_tree(&src, root, Path::new(p), Copy::Files)?;
                }
            }
            Ok(())
        })?;
    }
    step("files", || {
        let mut n = 0;
        for d in dirs {
            n += steps::copy_tree(d, root, Path::new(""), Copy::Files)?;
        }
        log::info!("makeimg: {n} file(s) copied");
        Ok(())
    })?;
    step("patches", || {
        let mut n = 0;
        for d in dirs {
            n += steps::apply_patches(d, root)?;
        }
        log::info!("makeimg: {n} patch(es) applied");
        Ok(())
    })?;
    step("templates", || {
        let mut n = 0;
        for d in dirs {
            n += steps::apply_templates(d, root, &o.env)?;
        }
        log::info!("makeimg: {n} template(s) rendered");
        Ok(())
    })?;
    let secrets = o.project.join("secrets");
    if secrets.is_dir() {
        step("secrets", || {
            let n = steps::copy_tree(&secrets, root, Path::new(""), Copy::Secrets)?;
            log::info!("makeimg: {n} secret(s) copied (names not logged)");
            Ok(())
        })?;
    }
    if b.has("provision") {
        step("provision", || provision(o, root))?;
    }
    Ok(())
}

/// The alpine image keeps the project's `repositories` and `keys/` for later `apk` runs.
fn alpine_config(project: &Path, root: &Path) -> Result<()> {
    let repos = project.join("repositories");
    if repos.is_file() {
        let dst = steps::resolve_in_root(root, Path::new("etc/apk/repositories"))?;
        fs::create_dir_all(dst.parent().unwrap_or(root))?;
        fs::copy(&repos, &dst).with_context(|| format!("copying {}", repos.display()))?;
    }
    let keys = project.join("keys");
    if keys.is_dir() {
        steps::copy_tree(&keys, root, Path::new("etc/apk/keys"), Copy::Files)?;
    }
    Ok(())
}

/// Where the IMGBUILD is put in the image for `provision()` (removed afterwards).
const IMGBUILD_IN_ROOT: &str = ".makeimg.IMGBUILD";

/// Runs `provision()` chrooted in the root with /proc, /sys and /dev bound: the IMGBUILD is
/// copied in, sourced by `/bin/sh -e` (a failing command ends the build) and the function
/// called.
fn provision(o: &Options, root: &Path) -> Result<()> {
    let copy = root.join(IMGBUILD_IN_ROOT);
    fs::copy(&o.imgbuild.path, &copy)
        .with_context(|| format!("copying {} into the image", o.imgbuild.path.display()))?;
    let mut env = o.tool_env.clone();
    env.insert(
        "PATH".to_string(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    );
    let r = (|| {
        let _mounts = ChrootMounts::api(root)?;
        crate::cmd::run_streamed(
            "/bin/sh",
            &[
                "-e".into(),
                "-c".into(),
                format!(". /{IMGBUILD_IN_ROOT}; provision"),
            ],
            &crate::cmd::Builder {
                cwd: &o.project,
                env: &env,
                chroot: Some(root),
                prefix: "provision",
            },
        )
    })();
    let _ = fs::remove_file(&copy);
    r
}

/// Writes `root` as a tar (owners, modes and times as they are; symlinks as symlinks) through
/// a temporary file renamed into place.
fn write_tar(root: &Path, out: &Path, c: Compression) -> Result<()> {
    let tmp = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name().unwrap_or_default().to_string_lossy()
    ));
    let r = (|| -> Result<()> {
        let f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let w = std::io::BufWriter::new(f);
        let ((), w) = crate::codec::compress_with(c, None, w, |w| -> std::io::Result<()> {
            let mut t = tar::Builder::new(w);
            t.follow_symlinks(false);
            t.mode(tar::HeaderMode::Complete);
            t.append_dir_all("", root)?;
            t.finish()
        })?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, out).with_context(|| format!("renaming to {}", out.display()))?;
        Ok(())
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// Removes a temporary root, unless something is still mounted in it (then it is left, with
/// a warning, rather than descending into the host's /proc, /sys or /dev).
fn remove_root(root: &Path) {
    let dev = fs::metadata(root).map(|m| m.dev()).ok();
    let mounted = ["proc", "sys", "dev", "run"].iter().any(|d| {
        fs::symlink_metadata(root.join(d)).is_ok_and(|m| m.is_dir() && Some(m.dev()) != dev)
    });
    if mounted {
        log::warn!("makeimg: {} still has mounts; not removed", root.display());
        return;
    }
    if let Err(e) = fs::remove_dir_all(root) {
        log::warn!("makeimg: removing {}: {e}", root.display());
    }
}

#[cfg(test)]
mod build_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn img(format: &str) -> ImgBuild {
        let out = format!("v:target=debian\0v:imgname=web\0v:format={format}\0");
        let (v, f) = imgbuild::parse_probe(out.as_bytes()).unwrap();
        imgbuild::validate(Path::new("IMGBUILD"), &v, f).unwrap()
    }

    #[test]
    fn output_choice() {
        assert_eq!(
            output(&img("dir"), None, None).unwrap(),
            Output::Dir("web".into())
        );
        assert_eq!(
            output(&img("tar zstd"), None, None).unwrap(),
            Output::Tar("web.tar.zst".into(), Compression::Zstd)
        );
        assert_eq!(
            output(&img("tar zstd"), None, Some("x.tar.xz".into())).unwrap(),
            Output::Tar("x.tar.xz".into(), Compression::Xz)
        );
        assert_eq!(
            output(&img("raw"), Some(OutKind::Tar), Some("x.tar".into())).unwrap(),
            Output::Tar("x.tar".into(), Compression::None)
        );
        assert_eq!(
            output(&img("raw"), Some(OutKind::Dir), Some("/mnt".into())).unwrap(),
            Output::Dir("/mnt".into())
        );
        assert_eq!(
            output(&img("raw 4G gpt ext3"), None, None).unwrap(),
            Output::Raw {
                path: "web.img".into(),
                size: 4 << 30,
                table: PartType::Gpt,
                fs: RawFs::Ext3
            }
        );
        // --format raw on another format: the defaults.
        assert_eq!(
            output(&img("tar"), Some(OutKind::Raw), Some("x.img".into())).unwrap(),
            Output::Raw {
                path: "x.img".into(),
                size: 8 << 30,
                table: PartType::Msdos,
                fs: RawFs::Ext4
            }
        );
        let custom = {
            let out = "v:target=debian\0v:imgname=web\0v:format=custom\0f:setup\0";
            let (v, f) = imgbuild::parse_probe(out.as_bytes()).unwrap();
            imgbuild::validate(Path::new("IMGBUILD"), &v, f).unwrap()
        };
        assert_eq!(
            output(&custom, None, None).unwrap(),
            Output::Dir("web".into())
        );
        assert_eq!(
            output(&custom, None, Some("/mnt".into())).unwrap(),
            Output::Dir("/mnt".into())
        );
    }

    #[test]
    fn unsupported_raw_file_systems_are_refused_before_building() {
        for fs in ["btrfs", "xfs", "vfat"] {
            let e = output(&img(&format!("raw 4G gpt {fs}")), None, None)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("IMGBUILD: format: raw file system")
                    && e.contains(&format!("{fs:?}"))
                    && e.contains("ext4, ext3 or ext2"),
                "{e}"
            );
        }
        let e = output(&img("raw 1M"), None, None).unwrap_err().to_string();
        assert!(
            e.starts_with("IMGBUILD: format: raw SIZE 1 MiB is too small"),
            "{e}"
        );
    }

    #[test]
    fn tar_output_keeps_links_and_modes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/secret"), "s").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(root.join("etc/secret"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("/etc/secret", root.join("link")).unwrap();
        let out = d.path().join("img.tar.gz");
        write_tar(&root, &out, Compression::Gzip).unwrap();
        let data = fs::read(&out).unwrap();
        assert_eq!(Compression::of(&data), Compression::Gzip);
        let plain = crate::codec::decode_all(Compression::Gzip, &data).unwrap();
        let mut a = tar::Archive::new(&plain[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            let h = e.header();
            seen.push((
                p,
                h.mode().unwrap() & 0o7777,
                h.link_name().unwrap().map(|l| l.display().to_string()),
            ));
        }
        seen.sort();
        assert!(
            seen.contains(&("etc/secret".into(), 0o600, None)),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|(p, _, l)| p == "link" && l.as_deref() == Some("/etc/secret")),
            "{seen:?}"
        );
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn alpine_keeps_the_project_repositories_and_keys() {
        let d = tempfile::tempdir().unwrap();
        let (p, root) = (d.path().join("p"), d.path().join("root"));
        fs::create_dir_all(p.join("keys")).unwrap();
        fs::write(p.join("repositories"), "https://m/v3.20/main\n").unwrap();
        fs::write(p.join("keys/me.rsa.pub"), "KEY").unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        alpine_config(&p, &root).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/apk/repositories")).unwrap(),
            "https://m/v3.20/main\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/apk/keys/me.rsa.pub")).unwrap(),
            "KEY"
        );
    }

    #[test]
    fn remove_root_removes_a_plain_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("r");
        fs::create_dir_all(root.join("proc")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        remove_root(&root);
        assert!(!root.exists());
    }
}
