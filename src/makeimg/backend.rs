//! The bootstrap step's command line per target, as pure functions returning the argv (so
//! that what runs is testable without running it). Proxy variables (`http_proxy`,
//! `https_proxy`, `no_proxy`, in either case) reach every tool through the inherited
//! environment.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::imgbuild::{ImgBuild, Target};

/// One command to run: program and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argv {
    pub prog: String,
    pub args: Vec<String>,
}

/// What the bootstrap command line depends on besides the IMGBUILD.
pub struct Inputs<'a> {
    /// The image root being built.
    pub root: &'a Path,
    /// The project directory (the IMGBUILD's), where pacman.conf, repositories and keys/ live.
    pub project: &'a Path,
    /// A package mirror URL overriding the tool's default.
    pub mirror: Option<&'a str>,
    /// Tells whether a program is installed (PATH lookup; a parameter for the tests).
    pub have: &'a dyn Fn(&str) -> bool,
}

/// The bootstrap command for `b`, or a clear error when its tool is missing.
pub fn bootstrap(b: &ImgBuild, i: &Inputs) -> Result<Argv> {
    let root = i.root.display().to_string();
    match b.target {
        Target::Debian if (i.have)("mmdebstrap") => Ok(Argv {
            prog: "mmdebstrap".into(),
            args: mmdebstrap(&b.debian_suite, &root, &b.packages, i.mirror),
        }),
        Target::Debian if (i.have)("debootstrap") => Ok(Argv {
            prog: "debootstrap".into(),
            args: debootstrap(&b.debian_suite, &root, &b.packages, i.mirror),
        }),
        Target::Debian => bail!(
            "target debian needs mmdebstrap or debootstrap on the build host (apt-get install mmdebstrap)"
        ),
        Target::Arch if i.mirror.is_some() => bail!(
            "--mirror does not apply to target arch: set Server in the project's pacman.conf"
        ),
        Target::Arch if (i.have)("pacstrap") => {
            let conf = i.project.join("pacman.conf");
            Ok(Argv {
                prog: "pacstrap".into(),
                args: pacstrap(
                    &root,
                    conf.is_file().then_some(conf.as_path()),
                    b.host_keyring,
                    &b.packages,
                ),
            })
        }
        Target::Arch => {
            bail!("target arch needs pacstrap on the build host (the arch-install-scripts package)")
        }
        Target::Alpine if (i.have)("apk") => {
            let repos = i.project.join("repositories");
            let keys = i.project.join("keys");
            let repos = if repos.is_file() {
                Repos::File(repos)
            } else if let Some(m) = i.mirror {
                Repos::Mirror(m.trim_end_matches('/').to_string())
            } else {
                bail!(
                    "target alpine needs a `repositories` file next to the IMGBUILD, or --mirror"
                );
            };
            Ok(Argv {
                prog: "apk".into(),
                args: apk(&root, &repos, keys.is_dir().then_some(keys.as_path()), &b.packages),
            })
        }
        Target::Alpine => bail!("target alpine needs apk (apk-tools, static) on the build host"),
    }
}

/// mmdebstrap: the minbase variant (Essential: yes packages and apt) plus exactly the listed
/// packages; `check/empty` skipped because the target may be a mounted, non-empty file system;
/// dpkg without fsync (the image is synced once when it is written out).
pub fn mmdebstrap(
    suite: &str,
    root: &str,
    packages: &[String],
    mirror: Option<&str>,
) -> Vec<String> {
    let mut a = vec![
        "--variant=minbase".to_string(),
        "--skip=check/empty".into(),
        "--dpkgopt=force-unsafe-io".into(),
    ];
    if !packages.is_empty() {
        a.push(format!("--include={}", packages.join(",")));
    }
    a.push(suite.into());
    a.push(root.into());
    a.extend(mirror.map(str::to_string));
    a
}

/// debootstrap, the fallback: the same variant and packages.
pub fn debootstrap(
    suite: &str,
    root: &str,
    packages: &[String],
    mirror: Option<&str>,
) -> Vec<String> {
    let mut a = vec!["--variant=minbase".to_string()];
    if !packages.is_empty() {
        a.push(format!("--include={}", packages.join(",")));
    }
    a.push(suite.into());
    a.push(root.into());
    a.extend(mirror.map(str::to_string));
    a
}

/// pacstrap: `-C` the project's pacman.conf when there is one; the host's keyring is copied
/// only with `hostconf=keyring` (pacstrap copies it unless `-G`). Without packages, `base`.
pub fn pacstrap(
    root: &str,
    conf: Option<&Path>,
    keyring: bool,
    packages: &[String],
) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(c) = conf {
        a.push("-C".to_string());
        a.push(c.display().to_string());
    }
    if !keyring {
        a.push("-G".into());
    }
    a.push(root.into());
    if packages.is_empty() {
        a.push("base".into());
    } else {
        a.extend(packages.iter().cloned());
    }
    a
}

/// Where apk finds its repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repos {
    /// The project's `repositories` file.
    File(PathBuf),
    /// A mirror's latest-stable main and community.
    Mirror(String),
}

/// apk into a fresh root: its database initialised, the project's keys trusted, then
/// `alpine-base` and the listed packages.
pub fn apk(root: &str, repos: &Repos, keys: Option<&Path>, packages: &[String]) -> Vec<String> {
    let mut a = vec![
        "--root".to_string(),
        root.into(),
        "--initdb".into(),
        "--update-cache".into(),
    ];
    match repos {
        Repos::File(f) => {
            a.push("--repositories-file".into());
            a.push(f.display().to_string());
        }
        Repos::Mirror(m) => {
            for r in ["main", "community"] {
                a.push("--repository".into());
                a.push(format!("{m}/latest-stable/{r}"));
            }
        }
    }
    if let Some(k) = keys {
        a.push("--keys-dir".into());
        a.push(k.display().to_string());
    }
    a.push("add".into());
    a.push("alpine-base".into());
    a.extend(packages.iter().cloned());
    a
}

/// Host paths holding the package keyring, copied into the image with `hostconf=keyring`
/// (for arch, pacstrap does it itself).
pub fn host_keyring_paths(t: Target) -> &'static [&'static str] {
    match t {
        Target::Debian => &["etc/apt/trusted.gpg.d"],
        Target::Arch => &[],
        Target::Alpine => &["etc/apk/keys"],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::makeimg::imgbuild::{parse_probe, validate};

    fn img(target: &str, packages: &str, hostconf: &str) -> ImgBuild {
        let out = format!("v:target={target}\0v:packages={packages}\0v:hostconf={hostconf}\0");
        let (v, f) = parse_probe(out.as_bytes()).unwrap();
        validate(Path::new("IMGBUILD"), &v, f).unwrap()
    }

    fn argv(b: &ImgBuild, project: &Path, mirror: Option<&str>, tools: &[&str]) -> Result<String> {
        let have = |p: &str| tools.contains(&p);
        let a = bootstrap(
            b,
            &Inputs {
                root: Path::new("/mnt/root"),
                project,
                mirror,
                have: &have,
            },
        )?;
        Ok(crate::cmd::render(&a.prog, &a.args))
    }

    #[test]
    fn debian() {
        let b = img("debian", "openssh-server\nlinux-image-amd64", "");
        let p = Path::new("/nonexistent");
        assert_eq!(
            argv(&b, p, None, &["mmdebstrap", "debootstrap"]).unwrap(),
            "mmdebstrap --variant=minbase --skip=check/empty --dpkgopt=force-unsafe-io \
             --include=openssh-server,linux-image-amd64 stable /mnt/root"
        );
        assert_eq!(
            argv(
                &b,
                p,
                Some("http://mirror.example/debian"),
                &["debootstrap"]
            )
            .unwrap(),
            "debootstrap --variant=minbase --include=openssh-server,linux-image-amd64 stable \
             /mnt/root http://mirror.example/debian"
        );
        let e = argv(&b, p, None, &[]).unwrap_err().to_string();
        assert!(e.contains("mmdebstrap or debootstrap"), "{e}");
        assert_eq!(
            mmdebstrap("trixie", "/r", &[], Some("http://m/debian")).join(" "),
            "--variant=minbase --skip=check/empty --dpkgopt=force-unsafe-io trixie /r http://m/debian"
        );
    }

    #[test]
    fn arch() {
        let d = tempfile::tempdir().unwrap();
        let b = img("arch", "", "");
        assert_eq!(
            argv(&b, d.path(), None, &["pacstrap"]).unwrap(),
            "pacstrap -G /mnt/root base"
        );
        std::fs::write(d.path().join("pacman.conf"), "").unwrap();
        let b = img("arch", "base linux", "keyring");
        assert_eq!(
            argv(&b, d.path(), None, &["pacstrap"]).unwrap(),
            format!(
                "pacstrap -C {}/pacman.conf /mnt/root base linux",
                d.path().display()
            )
        );
        assert!(argv(&b, d.path(), None, &[]).is_err());
        let e = argv(&b, d.path(), Some("http://m"), &["pacstrap"]).unwrap_err();
        assert!(e.to_string().contains("pacman.conf"), "{e}");
    }

    #[test]
    fn alpine() {
        let d = tempfile::tempdir().unwrap();
        let b = img("alpine", "openssh", "");
        let e = argv(&b, d.path(), None, &["apk"]).unwrap_err().to_string();
        assert!(e.contains("repositories"), "{e}");
        assert_eq!(
            argv(&b, d.path(), Some("https://dl.example/alpine/"), &["apk"]).unwrap(),
            "apk --root /mnt/root --initdb --update-cache \
             --repository https://dl.example/alpine/latest-stable/main \
             --repository https://dl.example/alpine/latest-stable/community add alpine-base openssh"
        );
        std::fs::write(d.path().join("repositories"), "").unwrap();
        std::fs::create_dir(d.path().join("keys")).unwrap();
        let p = d.path().display();
        assert_eq!(
            argv(&b, d.path(), None, &["apk"]).unwrap(),
            format!(
                "apk --root /mnt/root --initdb --update-cache --repositories-file {p}/repositories \
                 --keys-dir {p}/keys add alpine-base openssh"
            )
        );
    }
}
