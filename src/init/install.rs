//! Install stage: put the OS into the mounted target tree.
//!
//! - `rootfs`: a tar (plain, gzip, zstd, xz) from the payload is unpacked natively: owners,
//!   modes, mtimes, xattrs (incl. file capabilities), hard links, symlinks, device nodes.
//!   Every entry is checked first (a full pass over the archive), so an archive with an
//!   entry escaping the root is refused before anything is written to the target. Then an
//!   optional `provision` script runs chrooted in the target.
//! - `makeimg`: the built-in builder bootstraps the payload's IMGBUILD into the target
//!   (`super::makeimg`); with `command`, an external makeimg runs instead, like a script.
//! - `script`: a builder runs in the image's tools root (the initramfs itself) with the
//!   payload directory as working directory and the documented environment
//!   (docs/install.md). Its output streams to the console, one prefix per line, and to the log.
//!
//! Files under the payload's `secrets/` live only in RAM with mode 0600; they are never
//! printed, and are overwritten and removed when the stage ends ([`wipe_secrets`]).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::blockdev::device::partition_node;
use crate::config::{Install, RootfsSource};
use crate::disk::mkfs::display_uuid;
use crate::disk::plan::{DiskAction, Plan};
use crate::util::uuid_string;

pub const PAYLOAD: &str = "/payload";

// The archive checks live with the packer, which runs them on the workstation too.
pub use crate::pack::tarcheck::{check_tar, check_tar_seeing, TarAudit};

/// The environment every builder gets (documented in docs/install.md).
pub fn builder_env(
    plan: Option<&Plan>,
    target: &str,
    hostname: Option<&str>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("ANEMOS_ROOT".into(), target.to_string());
    env.insert("ANEMOS_PAYLOAD".into(), PAYLOAD.into());
    env.insert(
        "ANEMOS_HOSTNAME".into(),
        hostname.unwrap_or("anemos").to_string(),
    );
    env.insert("ANEMOS_VERSION".into(), env!("CARGO_PKG_VERSION").into());
    if let Some(p) = plan {
        for d in &p.disks {
            let DiskAction::Repartition { parts, .. } = &d.action else {
                continue;
            };
            for part in parts {
                let key = env_key(&part.label);
                env.insert(
                    format!("ANEMOS_PART_{key}_DEVICE"),
                    partition_node(&d.disk.path, part.number),
                );
                env.insert(
                    format!("ANEMOS_PART_{key}_PARTUUID"),
                    uuid_string(&part.part_uuid),
                );
                if let (Some(fs), Some(u)) = (part.fs, part.fs_uuid) {
                    env.insert(format!("ANEMOS_PART_{key}_UUID"), display_uuid(fs, &u));
                }
                if part.type_name == "esp" {
                    if let Some(m) = &part.mount {
                        env.insert(
                            "ANEMOS_ESP".into(),
                            format!("{target}{}", if m == "/" { "" } else { m }),
                        );
                    }
                }
            }
        }
    }
    env
}

/// `ANEMOS_PART_<LABEL>_...`: the label uppercased, non-alphanumerics as `_`.
pub fn env_key(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

struct Progress<R> {
    inner: R,
    done: u64,
    total: u64,
    start: Instant,
    last: Instant,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.last.elapsed().as_secs() >= 2 {
            self.last = Instant::now();
            let secs = self.start.elapsed().as_secs_f64().max(0.001);
            log::info!(
                "unpacking: {} of {} MiB ({}%), {:.1} MB/s",
                self.done >> 20,
                self.total >> 20,
                self.done * 100 / self.total.max(1),
                self.done as f64 / secs / 1e6
            );
        }
        Ok(n)
    }
}

/// Unpacks `archive` into `target` with owners, modes, mtimes, xattrs, after a pre-scan of
/// the whole archive that refuses escaping entries before anything is written. Returns bytes read.
/// The pre-scan is skipped when the `check` stage already read this archive to its end
/// (`checked` = its entry count).
pub fn unpack_rootfs(archive: &Path, target: &Path, checked: Option<u64>) -> Result<u64> {
    // Timed from here, so the figure includes the safety pre-scan of the whole archive.
    let t = Instant::now();
    let entries = match checked {
        Some(n) => n,
        None => {
            check_tar(archive, None)
                .context("refused before unpacking anything into the target")?
                .entries
        }
    };
    let total = fs::metadata(archive)?.len();
    let f = fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let progress = Progress {
        inner: f,
        done: 0,
        total,
        start: t,
        last: Instant::now(),
    };
    unpack_entries(progress, target, &archive.display().to_string(), false)?;
    let secs = t.elapsed().as_secs_f64().max(0.001);
    log::info!(
        "unpacked {entries} entries ({} MiB compressed) into {} in {:.1} s ({:.1} MB/s)",
        total >> 20,
        target.display(),
        secs,
        total as f64 / secs / 1e6
    );
    Ok(total)
}

/// Unpacks a tar stream (any compression) that can be read only once, e.g. a download: each
/// entry is checked (no absolute path, no "..", no escaping hard link) just before it is
/// written, since there is no pre-scan. Returns the number of entries.
pub fn unpack_stream<R: Read>(r: R, target: &Path, label: &str) -> Result<u64> {
    let t = Instant::now();
    let n = unpack_entries(r, target, label, true)?;
    log::info!(
        "unpacked {n} entries from {label} into {} in {:.1} s (streamed)",
        target.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(n)
}

fn unpack_entries<R: Read>(r: R, target: &Path, label: &str, check_each: bool) -> Result<u64> {
    let mut ar = tar::Archive::new(crate::codec::auto_decoder(r)?);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    let mut n = 0u64;
    let mut audit = TarAudit::new(None);
    for e in ar.entries().with_context(|| format!("reading {label}"))? {
        let mut e = e.with_context(|| format!("reading {label}"))?;
        let p = e.path().map(|p| p.into_owned()).unwrap_or_default();
        if check_each {
            if let Err(why) = audit.check(&e, &p) {
                bail!("{label}: {why}; stopped there");
            }
        }
        // unpack_in refuses paths that would leave `target`, also through symlinks unpacked
        // earlier; a false return means it skipped such an entry.
        let ok = e
            .unpack_in(target)
            .with_context(|| format!("unpacking {} from {label}", p.display()))?;
        if !ok {
            bail!("{label}: entry {p:?} would escape the target; stopped");
        }
        n += 1;
    }
    Ok(n)
}

/// The chroot mounts live with the image builder, which uses them too.
use crate::makeimg::ChrootMounts;

/// Restricts payload secrets: mode 0600 on every file under /payload/secrets.
pub fn protect_secrets(payload: &Path) {
    let dir = payload.join("secrets");
    if let Ok(rd) = walk(&dir) {
        for f in rd {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&f, fs::Permissions::from_mode(0o600));
        }
    }
}

/// Overwrites and removes every file under /payload/secrets.
pub fn wipe_secrets(payload: &Path) -> usize {
    let dir = payload.join("secrets");
    let mut n = 0;
    if let Ok(files) = walk(&dir) {
        for f in files {
            if let Ok(md) = fs::metadata(&f) {
                let _ = fs::write(&f, vec![0u8; md.len() as usize]);
            }
            if fs::remove_file(&f).is_ok() {
                n += 1;
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
    n
}

fn walk(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

/// The install as configured, or makeimg when the payload has an IMGBUILD.
pub fn effective(install: &Option<Install>, payload: &Path) -> Option<Install> {
    match install {
        Some(i) => Some(i.clone()),
        None if payload.join("IMGBUILD").exists() => Some(Install::Makeimg {
            command: None,
            args: vec![],
            mirror: None,
            proxy: None,
        }),
        None => None,
    }
}

/// A URL rootfs as the fetch stage left it.
pub enum Fetched {
    /// Downloaded into RAM and verified.
    File(PathBuf),
    /// Connected, to be streamed into the unpack; verified against the sha256 at the end.
    Stream(Box<crate::fetch::Download>, Option<String>),
}

/// Runs the install. `target` is the mounted target root; `fetched` is the fetch stage's
/// result for a URL rootfs; `imgbuild` the payload stage's reading of the IMGBUILD.
pub fn run(
    install: &Install,
    env: &BTreeMap<String, String>,
    target: &Path,
    fetched: Option<Fetched>,
    imgbuild: Option<&crate::makeimg::imgbuild::ImgBuild>,
    checked: Option<&(PathBuf, u64)>,
    configure: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let checked_entries = |a: &Path| checked.filter(|(p, _)| p == a).map(|(_, n)| *n);
    let payload = Path::new(PAYLOAD);
    match install {
        Install::Rootfs {
            source, provision, ..
        } => {
            match (source, fetched) {
                (RootfsSource::Path(p), _) => {
                    let a = payload.join(p);
                    unpack_rootfs(&a, target, checked_entries(&a))?;
                }
                (RootfsSource::Url(_), Some(Fetched::File(f))) => {
                    unpack_rootfs(&f, target, checked_entries(&f))?;
                }
                (RootfsSource::Url(u), Some(Fetched::Stream(mut dl, sha))) => {
                    unpack_stream(&mut dl, target, u)?;
                    dl.finish(
                        sha.as_deref(),
                        "it was streamed onto the disk, which must not be booted: failing the deploy",
                    )?;
                }
                (RootfsSource::Url(u), None) => {
                    bail!("rootfs from {u}: no download to install (a streamed download can be read only once: reboot to start the deploy again)")
                }
            }
            // fstab, mdadm.conf and crypttab go in before the provision script runs: it may
            // build an initramfs that has to know the arrays and the encrypted root.
            configure()?;
            if let Some(script) = provision {
                let dst = target.join("tmp/anemos-provision");
                fs::create_dir_all(target.join("tmp"))?;
                fs::copy(payload.join(script), &dst).with_context(|| {
                    format!("copying provision script {script} into the target")
                })?;
                let _mounts = ChrootMounts::new(target)?;
                let mut env2 = env.clone();
                env2.insert("ANEMOS_ROOT".into(), "/".into());
                let r = crate::cmd::run_streamed(
                    "/tmp/anemos-provision",
                    &[],
                    &crate::cmd::Builder {
                        cwd: Path::new("/"),
                        env: &env2,
                        chroot: Some(target),
                        prefix: "provision",
                    },
                );
                let _ = fs::remove_file(&dst);
                r?;
            }
            Ok(())
        }
        Install::Script { path, args } => {
            let prog = payload.join(path);
            if !prog.is_file() {
                bail!(
                    "install script {} is missing from the payload",
                    prog.display()
                );
            }
            crate::cmd::run_streamed(
                &prog.to_string_lossy(),
                args,
                &crate::cmd::Builder {
                    cwd: payload,
                    env,
                    chroot: None,
                    prefix: "install",
                },
            )
        }
        Install::Makeimg { command: None, .. } => {
            let b = super::makeimg::builtin(Some(install)).expect("makeimg without command");
            let Some(img) = imgbuild else {
                bail!("the payload's IMGBUILD was not read by the payload stage");
            };
            super::makeimg::run(payload, &b, img.clone(), env, target)
        }
        Install::Makeimg {
            command: Some(command),
            args,
            mirror,
            proxy,
        } => {
            let prog = if command.contains('/') {
                Some(command.clone())
            } else {
                crate::cmd::which(command)
            };
            let Some(prog) = prog else {
                bail!("{command} not found in the image's tools root; pack a tools root that has it (--rootfs), or leave [install] command out to use the built-in builder");
            };
            let mut env = env.clone();
            if let Some(m) = mirror {
                env.insert("ANEMOS_MIRROR".into(), m.clone());
            }
            if let Some(p) = proxy {
                env.insert("http_proxy".into(), p.clone());
                env.insert("https_proxy".into(), p.clone());
            }
            crate::cmd::run_streamed(
                &prog,
                args,
                &crate::cmd::Builder {
                    cwd: payload,
                    env: &env,
                    chroot: None,
                    prefix: "makeimg",
                },
            )
        }
    }
}

/// The `install` stage.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    let Some(payload) = &ctx.payload else {
        return Ok(());
    };
    let payload_dir = Path::new(PAYLOAD);
    protect_secrets(payload_dir);
    let Some(inst) = effective(&payload.config.install, payload_dir) else {
        log::info!(
            "no [install] in anemos.toml and no IMGBUILD in the payload: nothing to install"
        );
        return Ok(());
    };
    if ctx.plan.is_none() {
        anyhow::bail!("[install] needs a target: anemos.toml has no [[disk]] with a partition mounted at \"/\"");
    }
    let hostname = payload.config.hostname.clone();
    let hostname = hostname.as_deref();
    let env = builder_env(ctx.plan.as_ref(), super::disks::TARGET, hostname);
    // A file in RAM stays for a retry of this stage; a stream can be read only once.
    let fetched = match &ctx.fetched {
        Some(Fetched::File(p)) => Some(Fetched::File(p.clone())),
        _ => ctx.fetched.take(),
    };
    let r = run(
        &inst,
        &env,
        Path::new(super::disks::TARGET),
        fetched,
        ctx.imgbuild.as_ref(),
        ctx.archive_checked.as_ref(),
        &|| write_target_config(ctx.plan.as_ref(), hostname),
    );
    let n = wipe_secrets(payload_dir);
    if n > 0 {
        log::info!("wiped {n} secret file(s) from RAM");
    }
    r?;
    write_target_config(ctx.plan.as_ref(), hostname)
}

/// Writes the target's configuration after the install put its files in: /etc/hostname from
/// anemos.toml's `hostname` (an archive built for several machines carries some other name),
/// fstab unless the installed system brought a non-empty one, and the arrays' and containers'
/// lines merged into its mdadm.conf and crypttab. Runs again after a provision script
/// (idempotent).
fn write_target_config(plan: Option<&Plan>, hostname: Option<&str>) -> Result<()> {
    if let Some(h) = hostname {
        let f = format!("{}/etc/hostname", super::disks::TARGET);
        let want = format!("{h}\n");
        if std::fs::read_to_string(&f).ok().as_deref() != Some(want.as_str()) {
            let _ = std::fs::create_dir_all(format!("{}/etc", super::disks::TARGET));
            std::fs::write(&f, &want).with_context(|| format!("writing {f}"))?;
            log::info!("wrote {f}: {h}");
        }
    }
    // A rootfs may ship its own /etc/fstab; otherwise (or if the archive replaced ours with an
    // empty one) keep the generated one.
    if let Some(p) = plan {
        let f = format!("{}/etc/fstab", super::disks::TARGET);
        let keep = std::fs::read_to_string(&f)
            .map(|t| {
                t.lines()
                    .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
            })
            .unwrap_or(false);
        if !keep {
            let _ = std::fs::create_dir_all(format!("{}/etc", super::disks::TARGET));
            std::fs::write(&f, crate::disk::fstab::render(p))
                .with_context(|| format!("writing {f}"))?;
        }
        // An installed mdadm package brings its own mdadm.conf: give it the ARRAY lines.
        super::arrays::write_conf(super::disks::TARGET, &p.arrays)?;
        super::luks::write_crypttab(super::disks::TARGET, &p.luks)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::Command;

    #[test]
    fn env_keys() {
        assert_eq!(env_key("root"), "ROOT");
        assert_eq!(env_key("esp-0.a"), "ESP_0_A");
    }

    #[test]
    fn tar_escape_refused_before_writing() {
        let d = tempfile::tempdir().unwrap();
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        let mut ok = tar::Header::new_gnu();
        ok.set_size(1);
        ok.set_mode(0o644);
        b.append_data(&mut ok, "fine", &b"x"[..]).unwrap();
        b.append(&h, &b"x"[..]).unwrap();
        let p = d.path().join("bad.tar");
        fs::write(&p, b.into_inner().unwrap()).unwrap();
        let target = d.path().join("t");
        fs::create_dir(&target).unwrap();
        let e = format!("{:#}", unpack_rootfs(&p, &target, None).unwrap_err());
        assert!(
            e.contains("escapes the target root") && e.contains("before unpacking anything"),
            "{e}"
        );
        assert_eq!(
            fs::read_dir(&target).unwrap().count(),
            0,
            "the good entry before it must not be written either"
        );
    }

    /// A compressed archive cut short (built broken: the payload manifest's sha256 still
    /// matches) fails the full read the `check` stage does, and a whole one passes it.
    #[test]
    fn truncated_archive_fails_the_full_read() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..64 {
            let mut h = tar::Header::new_gnu();
            // Incompressible data, so the cut lands inside an entry's data.
            let data: Vec<u8> = (0..4096u32)
                .map(|k| (k.wrapping_mul(2654435761).wrapping_add(i) >> 13) as u8)
                .collect();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("f{i}"), &data[..]).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let whole = d.path().join("whole.tar.zst");
        fs::write(&whole, &zst).unwrap();
        assert_eq!(check_tar(&whole, None).unwrap().entries, 64);
        let cut = d.path().join("cut.tar.zst");
        fs::write(&cut, &zst[..zst.len() / 2]).unwrap();
        assert!(
            check_tar(&cut, None).is_err(),
            "a truncated archive passed the full read"
        );
    }

    /// One tar entry for the hostile archives below: `name` is written into the header
    /// as is (the tar crate's builder refuses "..", absolute paths and the like).
    fn raw(kind: tar::EntryType, name: &str, link: &str, data: &[u8], claim: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(claim);
        h.set_mode(0o644);
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(8).unwrap();
            h.set_device_minor(0).unwrap();
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn file(name: &str) -> Vec<u8> {
        raw(tar::EntryType::Regular, name, "", b"x\n", 2)
    }

    fn write_tar(dir: &Path, name: &str, entries: &[Vec<u8>]) -> PathBuf {
        let mut t: Vec<u8> = entries.concat();
        t.extend_from_slice(&[0u8; 1024]);
        let p = dir.join(name);
        fs::write(&p, t).unwrap();
        p
    }

    /// Every hostile archive is refused by the full read before anything is written, with a
    /// message naming the entry; the legitimate look-alikes pass.
    #[test]
    fn hostile_archives_are_refused_by_the_check() {
        use tar::EntryType as T;
        let d = tempfile::tempdir().unwrap();
        let sym = |n: &str, to: &str| raw(T::Symlink, n, to, b"", 0);
        let hard = |n: &str, to: &str| raw(T::Link, n, to, b"", 0);
        let dev = |k: T, n: &str| raw(k, n, "", b"", 0);
        let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
            (
                "absolute",
                vec![file("ok"), file("/etc/passwd")],
                "entry \"/etc/passwd\" escapes the target root",
            ),
            (
                "dotdot",
                vec![file("a/../../x")],
                "entry \"a/../../x\" escapes the target root",
            ),
            (
                "symlink-root",
                vec![sym("etc", "/"), file("etc/passwd")],
                "entry \"etc/passwd\" is written through the symlink \"etc\" -> \"/\"",
            ),
            (
                "symlink-up",
                vec![sym("a", "../.."), file("a/x")],
                "entry \"a/x\" is written through the symlink \"a\" -> \"../..\"",
            ),
            (
                "symlink-deep",
                vec![sym("./usr/lib", "/"), file("usr/lib/sub/dir/f")],
                "is written through the symlink \"usr/lib\"",
            ),
            (
                "symlink-by-hardlink",
                vec![sym("s", "/"), hard("t", "s"), file("t/passwd")],
                "entry \"t/passwd\" is written through the symlink \"t\" -> \"/\"",
            ),
            (
                "hardlink-up",
                vec![hard("x", "../../etc/shadow")],
                "hard link \"x\" -> \"../../etc/shadow\" escapes the target root",
            ),
            (
                "hardlink-absolute",
                vec![hard("x", "/etc/shadow")],
                "hard link \"x\" -> \"/etc/shadow\" escapes the target root",
            ),
            (
                "hardlink-through-symlink",
                vec![sym("etc", "/"), hard("x", "etc/shadow")],
                "hard link \"x\" -> \"etc/shadow\": the target is not an earlier entry",
            ),
            (
                "hardlink-dangling",
                vec![hard("x", "etc/shadow"), file("etc/shadow")],
                "hard link \"x\" -> \"etc/shadow\": the target is not an earlier entry",
            ),
            (
                "device-outside-dev",
                vec![dev(T::Block, "etc/disk")],
                "block device \"etc/disk\" (8:0) outside dev/",
            ),
            (
                "char-outside-dev",
                vec![dev(T::Char, "home/mem")],
                "character device \"home/mem\" (8:0) outside dev/",
            ),
        ];
        for (name, entries, want) in cases {
            let p = write_tar(d.path(), &format!("{name}.tar"), &entries);
            let e = format!(
                "{:#}",
                check_tar(&p, None)
                    .err()
                    .unwrap_or_else(|| panic!("{name} passed"))
            );
            assert!(e.contains(want), "{name}: {e}");
            // The unpack's own pre-scan refuses it too, and writes nothing.
            let target = d.path().join(format!("t-{name}"));
            fs::create_dir(&target).unwrap();
            assert!(unpack_rootfs(&p, &target, None).is_err());
            assert_eq!(fs::read_dir(&target).unwrap().count(), 0, "{name}");
        }
        // Look-alikes a real rootfs has: relative and absolute symlinks not written through,
        // hard links to earlier files, device nodes under dev/, a file replacing a symlink.
        let fine = write_tar(
            d.path(),
            "fine.tar",
            &[
                sym("bin", "usr/bin"),
                sym("etc-link", "/etc"),
                file("usr/bin/ls"),
                hard("usr/bin/dir", "usr/bin/ls"),
                hard("./usr/bin/vdir", "./usr/bin/ls"),
                dev(T::Char, "dev/console"),
                dev(T::Block, "./dev/sda"),
                sym("x", "/"),
                file("x"),
            ],
        );
        let a = check_tar(&fine, None).unwrap();
        assert_eq!(a.entries, 9);
        assert!(a.has(Path::new("usr/bin/ls")) && !a.has(Path::new("usr/bin")));
    }

    /// A small archive claiming files bigger than the planned partitions is refused at the
    /// header, before its data (absent here) is read; the entry count is bounded.
    #[test]
    fn absurd_sizes_and_counts_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let claim = 1u64 << 40;
        let p = write_tar(
            d.path(),
            "huge.tar",
            &[
                file("ok"),
                raw(tar::EntryType::Regular, "big", "", b"x", claim),
            ],
        );
        assert!(fs::metadata(&p).unwrap().len() < 4096);
        let e = format!("{:#}", check_tar(&p, Some(512 << 20)).unwrap_err());
        assert!(
            e.contains("its files add up to more than the 512 MiB the planned partitions hold (at entry \"big\", 1048576 MiB)"),
            "{e}"
        );
        // Without a plan the claim still fails: the data is not there.
        assert!(check_tar(&p, None).is_err());

        let mut a = TarAudit::new(None);
        let mut err = None;
        use crate::pack::tarcheck::MAX_TAR_ENTRIES;
        for i in 0..=MAX_TAR_ENTRIES {
            if let Err(e) = a.entry(
                tar::EntryType::Directory,
                Path::new(&format!("d{i}")),
                None,
                0,
                None,
            ) {
                err = Some((i, e));
                break;
            }
        }
        let (i, e) = err.expect("no entry limit");
        assert_eq!(i, MAX_TAR_ENTRIES);
        assert_eq!(
            e,
            "more than 2000000 entries (the most a rootfs archive may have)"
        );
    }

    /// Truncated and corrupt gzip, xz and zstd streams fail the full read, including damage
    /// after the tar's end-of-archive blocks (the stream's own checksum).
    #[test]
    fn corrupt_streams_fail_the_full_read() {
        use crate::codec::Compression as C;
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..16u32 {
            let data: Vec<u8> = (0..8192u32)
                .map(|k| (k.wrapping_mul(2654435761) >> (i % 7 + 9)) as u8)
                .collect();
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("f{i}"), &data[..]).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let zstd_sum = {
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            enc.include_checksum(true).unwrap();
            std::io::Write::write_all(&mut enc, &tar).unwrap();
            enc.finish().unwrap()
        };
        let pack = |c: C| {
            crate::codec::compress_with(c, None, Vec::new(), |w| w.write_all(&tar))
                .map(|((), v)| v)
                .unwrap()
        };
        for (name, whole) in [
            ("gz", pack(C::Gzip)),
            ("xz", pack(C::Xz)),
            ("zst", pack(C::Zstd)),
            ("sum.zst", zstd_sum),
        ] {
            let ok = d.path().join(format!("ok.tar.{name}"));
            fs::write(&ok, &whole).unwrap();
            assert_eq!(check_tar(&ok, None).unwrap().entries, 16, "{name}");
            let cut = d.path().join(format!("cut.tar.{name}"));
            fs::write(&cut, &whole[..whole.len() * 2 / 3]).unwrap();
            assert!(check_tar(&cut, None).is_err(), "{name}: truncated passed");
            let tail = d.path().join(format!("tail.tar.{name}"));
            fs::write(&tail, &whole[..whole.len() - 3]).unwrap();
            assert!(
                check_tar(&tail, None).is_err(),
                "{name}: the last 3 bytes cut passed"
            );
            if name != "zst" {
                // A flipped byte in the middle: gzip's CRC, xz's check or zstd's checksum
                // (plain zstd frames carry none).
                let mut bad = whole.clone();
                let mid = bad.len() / 2;
                bad[mid] ^= 0x55;
                let flip = d.path().join(format!("flip.tar.{name}"));
                fs::write(&flip, &bad).unwrap();
                assert!(check_tar(&flip, None).is_err(), "{name}: corrupt passed");
            }
        }
    }

    /// Streaming has no pre-scan: entries before the bad one land, the bad one stops the
    /// unpack with an error naming it, nothing is written outside the target.
    #[test]
    fn stream_unpack_checks_each_entry() {
        let d = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut ok = tar::Header::new_gnu();
        ok.set_size(2);
        ok.set_mode(0o640);
        ok.set_uid(0);
        ok.set_gid(0);
        ok.set_mtime(1_700_000_000);
        b.append_data(&mut ok, "etc/fine", &b"ok"[..]).unwrap();
        let good = b.into_inner().unwrap();
        let zst = zstd::encode_all(&good[..], 3).unwrap();
        let target = d.path().join("t");
        fs::create_dir(&target).unwrap();
        assert_eq!(
            unpack_stream(&zst[..], &target, "http://h/r.tar.zst").unwrap(),
            1
        );
        assert_eq!(fs::read(target.join("etc/fine")).unwrap(), b"ok");
        assert_eq!(
            fs::metadata(target.join("etc/fine"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );

        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..12].copy_from_slice(b"../../escape");
        h.set_size(1);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut ok, "first", &b"ok"[..]).unwrap();
        b.append(&h, &b"x"[..]).unwrap();
        let bad = b.into_inner().unwrap();
        let t2 = d.path().join("t2");
        fs::create_dir(&t2).unwrap();
        let e = unpack_stream(&bad[..], &t2, "http://h/bad.tar")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("http://h/bad.tar")
                && e.contains("../../escape")
                && e.contains("escapes the target root"),
            "{e}"
        );
        assert!(t2.join("first").exists());
        assert!(
            !d.path().join("escape").exists()
                && !d.path().parent().unwrap().join("escape").exists()
        );
    }

    #[test]
    fn unpack_keeps_modes_links_and_mtimes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("usr/bin")).unwrap();
        fs::write(src.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(src.join("usr/bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(src.join("usr/bin/tool"), src.join("usr/bin/tool2")).unwrap();
        std::os::unix::fs::symlink("usr/bin", src.join("bin")).unwrap();
        let tarf = d.path().join("r.tar.gz");
        let st = Command::new("tar")
            .args(["-czf"])
            .arg(&tarf)
            .args(["--mtime=@1700000000", "-C"])
            .arg(&src)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let target = d.path().join("t");
        fs::create_dir(&target).unwrap();
        unpack_rootfs(&tarf, &target, None).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(target.join("usr/bin/tool")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!(m.mtime(), 1700000000);
        assert_eq!(
            m.ino(),
            fs::metadata(target.join("usr/bin/tool2")).unwrap().ino()
        );
        assert_eq!(
            fs::read_link(target.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
    }

    #[test]
    fn builder_failure_carries_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let env = BTreeMap::new();
        let e = crate::cmd::run_streamed(
            "sh",
            &[
                "-c".into(),
                "for i in $(seq 1 30); do echo line$i; done; exit 1".into(),
            ],
            &crate::cmd::Builder {
                cwd: d.path(),
                env: &env,
                chroot: None,
                prefix: "t",
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("failed (exit status: 1)")
                && e.contains("line30")
                && !e.contains("line10\n"),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_wiped() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("secrets/sub")).unwrap();
        fs::write(d.path().join("secrets/key"), "k").unwrap();
        fs::write(d.path().join("secrets/sub/b"), "b").unwrap();
        protect_secrets(d.path());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(d.path().join("secrets/key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(wipe_secrets(d.path()), 2);
        assert!(!d.path().join("secrets").exists());
    }
}
