//! The file steps that lay the project's input directories over the bootstrapped root:
//! files, patches, templates and secrets. Paths are resolved inside the root the way a
//! chroot would see them (an absolute symlink in the image points into the image, never at
//! the build host), and what lands in the image is owned by root.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Suffix of a patch in an input directory: `NAME.makeimg.patch` patches NAME.
pub const PATCH_SUFFIX: &str = ".makeimg.patch";
/// Suffix of a template: `NAME.makeimg.template` is rendered to NAME.
pub const TEMPLATE_SUFFIX: &str = ".makeimg.template";

/// Symlinks followed while resolving one path before giving up (as the kernel's ELOOP).
const MAX_LINKS: usize = 40;

/// The host path of `rel` inside `root`, its directories resolved as in a chroot at `root`:
/// symlinks among them are followed (absolute ones relative to `root`) and `..` stops at
/// `root`. The last component is not followed (a step replaces it).
pub fn resolve_in_root(root: &Path, rel: &Path) -> Result<PathBuf> {
    resolve(root, rel, false)
}

/// [`resolve_in_root`], the last component followed too when `follow_last`.
fn resolve(root: &Path, rel: &Path, follow_last: bool) -> Result<PathBuf> {
    let mut parts: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = rel
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            parts.pop();
            continue;
        }
        let here: PathBuf = root.join(parts.iter().collect::<PathBuf>()).join(&c);
        let is_last = todo.is_empty();
        match fs::symlink_metadata(&here) {
            Ok(md) if md.file_type().is_symlink() && (follow_last || !is_last) => {
                links += 1;
                if links > MAX_LINKS {
                    bail!("{}: too many levels of symbolic links", rel.display());
                }
                let target = fs::read_link(&here)?;
                if target.is_absolute() {
                    parts.clear();
                }
                for t in target.components().rev() {
                    match t {
                        Component::Normal(n) => todo.push(n.to_os_string()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => parts.push(c),
        }
    }
    Ok(root.join(parts.iter().collect::<PathBuf>()))
}

/// Owner root:root for `p` (not following a symlink) when running as root; a build by
/// another user cannot give files away and keeps its own.
fn chown_root(p: &Path) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::lchown(p, Some(0), Some(0))
            .with_context(|| format!("chown root {}", p.display()))?;
    }
    Ok(())
}

/// Removes what is at `dst` unless it is a directory, so a file or link can take its place.
fn clear(dst: &Path) -> Result<()> {
    match fs::symlink_metadata(dst) {
        Ok(md) if md.is_dir() => bail!("{} is a directory in the image", dst.display()),
        Ok(_) => fs::remove_file(dst).with_context(|| format!("removing {}", dst.display())),
        Err(_) => Ok(()),
    }
}

/// Creates the directories of `rel` (relative to `root`) that do not exist, each with the mode
/// of the same directory under `src` (`rel` minus `prefix`; else 0755), owned by root; returns
/// the resolved path of `rel`.
fn make_parents(root: &Path, src: &Path, prefix: &Path, rel: &Path) -> Result<PathBuf> {
    let mut acc = PathBuf::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            acc.push(c);
            let d = resolve(root, &acc, true)?;
            if !d.exists() {
                fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
                let mode = acc
                    .strip_prefix(prefix)
                    .ok()
                    .and_then(|r| fs::metadata(src.join(r)).ok())
                    .map_or(0o755, |m| m.mode() & 0o7777);
                fs::set_permissions(&d, fs::Permissions::from_mode(mode))?;
                chown_root(&d)?;
            }
        }
    }
    resolve_in_root(root, rel)
}

/// Entries of `dir` (relative paths), sorted, the directory itself left out.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, fs::Metadata)>> {
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name().min_depth(1) {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let md = e.metadata()?;
        let rel = e.path().strip_prefix(dir)?.to_path_buf();
        v.push((rel, md));
    }
    Ok(v)
}

/// How a tree is copied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// Modes kept; each file is logged at debug level.
    Files,
    /// Files get mode 0600; names are never logged.
    Secrets,
}

/// Copies every regular file and symlink of `src` to the same relative path under
/// `root`/`prefix`,
/// owned by root, with the mode kept ([`Copy::Files`]) or 0600 ([`Copy::Secrets`]). Patches and
/// templates are left to their own steps. Returns the number of entries copied.
pub fn copy_tree(src: &Path, root: &Path, prefix: &Path, how: Copy) -> Result<usize> {
    let r = copy_entries(src, root, prefix, how);
    if how == Copy::Secrets {
        // The error's context may hold a path: only its underlying cause is told.
        return r.map_err(|e| {
            let cause = e
                .root_cause()
                .downcast_ref::<std::io::Error>()
                .map_or("refused".to_string(), |io| io.kind().to_string());
            anyhow!("a secret could not be copied into the image (names are not logged): {cause}")
        });
    }
    r
}

fn copy_entries(src: &Path, root: &Path, prefix: &Path, how: Copy) -> Result<usize> {
    let mut n = 0;
    for (rel, md) in entries(src)? {
        let name = rel.to_string_lossy();
        let ft = md.file_type();
        if ft.is_dir()
            || (how == Copy::Files
                && (name.ends_with(PATCH_SUFFIX) || name.ends_with(TEMPLATE_SUFFIX)))
        {
            continue;
        }
        let shown = if how == Copy::Secrets {
            "a secret"
        } else {
            &name
        };
        let dst = make_parents(root, src, prefix, &prefix.join(&rel))?;
        if ft.is_symlink() {
            clear(&dst)?;
            let t = fs::read_link(src.join(&rel))?;
            std::os::unix::fs::symlink(&t, &dst).with_context(|| format!("linking {shown}"))?;
        } else if ft.is_file() {
            clear(&dst)?;
            let mode = if how == Copy::Secrets {
                0o600
            } else {
                md.mode() & 0o7777
            };
            // Created with no access, so a secret is never readable by others even briefly.
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o000)
                .open(&dst)
                .with_context(|| format!("creating {shown} in the image"))?;
            let mut input =
                fs::File::open(src.join(&rel)).with_context(|| format!("reading {shown}"))?;
            std::io::copy(&mut input, &mut out).with_context(|| format!("copying {shown}"))?;
            drop(out);
            chown_root(&dst)?;
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode))?;
        } else {
            log::warn!("makeimg: {shown}: not a regular file or symlink; skipped");
            continue;
        }
        if how == Copy::Files {
            log::debug!("makeimg: file {name}");
        }
        n += 1;
    }
    Ok(n)
}

/// The file in the image a patch or template at `rel` (with `suffix`) is for.
fn stem_of(rel: &Path, suffix: &str) -> String {
    let name = rel.to_string_lossy();
    name.strip_suffix(suffix).unwrap_or(&name).to_string()
}

/// Applies every `NAME.makeimg.patch` under `input` to NAME in the image with
/// `patch --batch --forward --no-backup-if-mismatch -r - ROOT/NAME -i PATCH`: the file names in
/// the diff's headers are ignored, no backup or reject file is left in the image, and a
/// patch that does not apply fails the build. Returns the number applied.
pub fn apply_patches(input: &Path, root: &Path) -> Result<usize> {
    let mut n = 0;
    for (rel, md) in entries(input)? {
        if !md.is_file() || !rel.to_string_lossy().ends_with(PATCH_SUFFIX) {
            continue;
        }
        let stem = stem_of(&rel, PATCH_SUFFIX);
        let target = resolve(root, Path::new(&stem), true)?;
        if !target.is_file() {
            bail!(
                "patch {}: /{stem} is not a file in the image",
                input.join(&rel).display()
            );
        }
        crate::cmd::run(
            "patch",
            &[
                "--batch".into(),
                "--forward".into(),
                "--no-backup-if-mismatch".into(),
                "-r".into(),
                "-".into(),
                target.display().to_string(),
                "-i".into(),
                input.join(&rel).display().to_string(),
            ],
        )
        .with_context(|| format!("patching /{stem}"))?;
        n += 1;
    }
    Ok(n)
}

/// Renders a template: `${VAR}` is replaced by VAR's value from `env` (a VAR missing from it
/// is an error naming the template and the variable), `$$` is a literal `$`, and any other `$`
/// is kept as it is (so `$1` or `$HOME` in a script template stay for the script).
pub fn render(text: &str, env: &BTreeMap<String, String>, name: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| anyhow!("template {name}: unterminated ${{ (no closing }})"))?;
            let var = &r[..end];
            let valid = var
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                bail!(
                    "template {name}: ${{{var}}} is not a variable name (write $$ for a literal $)"
                );
            }
            let v = env
                .get(var)
                .ok_or_else(|| anyhow!("template {name}: variable {var} is not set"))?;
            out.push_str(v);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders every `NAME.makeimg.template` under `input` to NAME in the image, with the
/// template's mode, owned by root. Returns the number rendered.
pub fn apply_templates(input: &Path, root: &Path, env: &BTreeMap<String, String>) -> Result<usize> {
    let mut n = 0;
    for (rel, md) in entries(input)? {
        if !md.is_file() || !rel.to_string_lossy().ends_with(TEMPLATE_SUFFIX) {
            continue;
        }
        let src = input.join(&rel);
        let text =
            fs::read_to_string(&src).with_context(|| format!("reading {}", src.display()))?;
        let out = render(&text, env, &src.display().to_string())?;
        let stem = stem_of(&rel, TEMPLATE_SUFFIX);
        let dst = make_parents(root, input, Path::new(""), Path::new(&stem))?;
        clear(&dst)?;
        fs::write(&dst, out).with_context(|| format!("writing /{stem}"))?;
        chown_root(&dst)?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn resolve_stays_in_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(root.join("run/x")).unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        symlink("/run/x", root.join("etc")).unwrap();
        symlink("/etc/passwd", root.join("usr/pw")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("lib/a")).unwrap(),
            root.join("usr/lib/a")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("etc/hosts")).unwrap(),
            root.join("run/x/hosts")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("../../../etc/a")).unwrap(),
            root.join("run/x/a")
        );
        // The last component is not followed.
        assert_eq!(
            resolve_in_root(root, Path::new("usr/pw")).unwrap(),
            root.join("usr/pw")
        );
        symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, Path::new("loop/a")).is_err());
    }

    #[test]
    fn files_keep_modes_and_links() {
        let d = tempfile::tempdir().unwrap();
        let (src, root) = (d.path().join("files"), d.path().join("root"));
        fs::create_dir_all(src.join("etc/ssh")).unwrap();
        fs::create_dir_all(src.join("usr/local/bin")).unwrap();
        fs::set_permissions(src.join("usr/local"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(src.join("usr/local/bin/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(
            src.join("usr/local/bin/tool"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        fs::write(src.join("etc/ssh/sshd_config"), "new\n").unwrap();
        fs::write(src.join("etc/motd.makeimg.template"), "x").unwrap();
        symlink("/usr/local/bin/tool", src.join("etc/tool")).unwrap();
        // The image already has etc/ssh (mode kept) and an old sshd_config (replaced); its
        // /etc is a symlink to /private/etc: files go through it.
        fs::create_dir_all(root.join("private/etc/ssh")).unwrap();
        fs::set_permissions(
            root.join("private/etc/ssh"),
            fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        fs::write(root.join("private/etc/ssh/sshd_config"), "old\n").unwrap();
        symlink("/private/etc", root.join("etc")).unwrap();
        assert_eq!(
            copy_tree(&src, &root, Path::new(""), Copy::Files).unwrap(),
            3
        );
        let r = |p: &str| root.join(p);
        assert_eq!(
            fs::read_to_string(r("private/etc/ssh/sshd_config")).unwrap(),
            "new\n"
        );
        assert_eq!(mode(&r("private/etc/ssh")), 0o700);
        assert_eq!(mode(&r("usr/local")), 0o750);
        assert_eq!(mode(&r("usr/local/bin/tool")), 0o4755);
        assert_eq!(
            fs::read_link(r("private/etc/tool")).unwrap(),
            Path::new("/usr/local/bin/tool")
        );
        assert!(!r("private/etc/motd.makeimg.template").exists());
        if rustix::process::geteuid().is_root() {
            let md = fs::symlink_metadata(r("usr/local/bin/tool")).unwrap();
            assert_eq!((md.uid(), md.gid()), (0, 0));
        }
    }

    #[test]
    fn secrets_are_0600() {
        let d = tempfile::tempdir().unwrap();
        let (src, root) = (d.path().join("secrets"), d.path().join("root"));
        fs::create_dir_all(src.join("etc/ssh")).unwrap();
        fs::write(src.join("etc/ssh/ssh_host_ed25519_key"), "k").unwrap();
        fs::set_permissions(
            src.join("etc/ssh/ssh_host_ed25519_key"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        fs::create_dir_all(&root).unwrap();
        assert_eq!(
            copy_tree(&src, &root, Path::new(""), Copy::Secrets).unwrap(),
            1
        );
        assert_eq!(mode(&root.join("etc/ssh/ssh_host_ed25519_key")), 0o600);
        // A failure does not name the secret.
        fs::remove_file(root.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
        fs::create_dir(root.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
        let e = format!(
            "{:#}",
            copy_tree(&src, &root, Path::new(""), Copy::Secrets).unwrap_err()
        );
        assert!(!e.contains("ssh"), "{e}");
    }

    #[test]
    fn template_rendering() {
        let env: BTreeMap<String, String> = [("HOST", "web1"), ("A_1", "x")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(
            render("h=${HOST} ${A_1}${A_1} $$ $$${HOST} $1 $HOME $", &env, "t").unwrap(),
            "h=web1 xx $ $web1 $1 $HOME $"
        );
        let e = render("a ${NOPE} b", &env, "etc/x.makeimg.template")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "template etc/x.makeimg.template: variable NOPE is not set"
        );
        assert!(render("${HOST", &env, "t")
            .unwrap_err()
            .to_string()
            .contains("unterminated"));
        assert!(render("${HOST:-x}", &env, "t")
            .unwrap_err()
            .to_string()
            .contains("not a variable name"));
    }

    #[test]
    fn templates_land_with_the_template_mode() {
        let d = tempfile::tempdir().unwrap();
        let (src, root) = (d.path().join("files"), d.path().join("root"));
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(src.join("etc/hostname.makeimg.template"), "${HOST}\n").unwrap();
        fs::set_permissions(
            src.join("etc/hostname.makeimg.template"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        let env = [("HOST".to_string(), "web1".to_string())].into();
        assert_eq!(apply_templates(&src, &root, &env).unwrap(), 1);
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "web1\n"
        );
        assert_eq!(mode(&root.join("etc/hostname")), 0o640);
    }

    #[test]
    fn patches_apply_to_the_image_file() {
        if crate::testutil::tool("patch", "patch", "patches_apply_to_the_image_file").is_none() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let (src, root) = (d.path().join("files"), d.path().join("root"));
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/sshd_config"), "a\nPermitRootLogin yes\nc\n").unwrap();
        fs::write(
            src.join("etc/sshd_config.makeimg.patch"),
            "--- a/etc/sshd_config\n+++ b/etc/sshd_config\n@@ -1,3 +1,3 @@\n a\n-PermitRootLogin yes\n+PermitRootLogin no\n c\n",
        )
        .unwrap();
        assert_eq!(apply_patches(&src, &root).unwrap(), 1);
        assert_eq!(
            fs::read_to_string(root.join("etc/sshd_config")).unwrap(),
            "a\nPermitRootLogin no\nc\n"
        );
        let left: Vec<_> = fs::read_dir(root.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // Applied again it no longer applies: the build fails, naming the file.
        let e = format!("{:#}", apply_patches(&src, &root).unwrap_err());
        assert!(e.starts_with("patching /etc/sshd_config"), "{e}");
        fs::write(src.join("etc/missing.makeimg.patch"), "").unwrap();
        fs::remove_file(src.join("etc/sshd_config.makeimg.patch")).unwrap();
        let e = format!("{:#}", apply_patches(&src, &root).unwrap_err());
        assert!(e.contains("/etc/missing is not a file in the image"), "{e}");
    }
}
