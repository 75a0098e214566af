//! The packer: builds deterministic newc initramfs images (`anemos pack`) and payload
//! segments (`anemos pack-payload`).
//!
//! Layering order inside one image (later layers win on the same path): tools root
//! (`--rootfs`), the embedded `init-config/` tree, `--binary` closures, kernel modules and
//! firmware, `--add` entries, and finally `/init` (the running anemos binary).

pub mod archive;
pub mod closure;
pub mod inspect;
pub mod modules;
pub mod payload;
pub mod sources;
pub mod tarcheck;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::codec::{self, Compression};
use archive::{Archive, Data, Kind, Node};

/// Files laid into every image, embedded by build.rs from `init-config/`.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/init_config.rs"));
}
pub use embedded::INIT_CONFIG;

/// Everything `anemos pack` needs; mirrors the CLI flags.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    pub output: PathBuf,
    pub rootfs: Option<PathBuf>,
    pub add: Vec<(PathBuf, String)>,
    /// Symlinks to create: (path in the image, target), after `add`.
    pub links: Vec<(String, String)>,
    pub binaries: Vec<PathBuf>,
    pub kernel_modules: Option<PathBuf>,
    pub modules: Vec<String>,
    pub keep_compressed_modules: bool,
    pub firmware_dirs: Vec<PathBuf>,
    pub compression: Option<Compression>,
    pub level: Option<i32>,
    pub keep_owner: bool,
    pub payload: Option<PathBuf>,
    /// The binary placed at /init; defaults to the running executable.
    pub init: Option<PathBuf>,
    /// Seconds since the epoch for every entry's mtime.
    pub mtime: u32,
}

/// What was packed, for the summary line and tests.
#[derive(Debug, Clone)]
pub struct PackReport {
    pub entries: usize,
    pub uncompressed: u64,
    pub image_size: u64,
    pub modules: usize,
    pub payload_files: Option<usize>,
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org) or 0.
pub fn mtime_from_env() -> Result<u32> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .trim()
            .parse::<u32>()
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds")),
        Err(_) => Ok(0),
    }
}

/// Parses `SRC:DEST` for `--add`.
pub fn parse_add(spec: &str) -> Result<(PathBuf, String)> {
    match spec.split_once(':') {
        Some((s, d)) if !s.is_empty() && !d.is_empty() => Ok((PathBuf::from(s), d.to_string())),
        _ => bail!("--add {spec:?}: expected SRC:DEST, e.g. --add ./motd:/etc/motd"),
    }
}

/// Builds the base image tree (everything except the payload).
pub fn build_tree(o: &PackOptions) -> Result<(Archive, usize)> {
    let mut a = Archive::new();
    if let Some(r) = &o.rootfs {
        let md = fs::metadata(r)
            .map_err(|_| anyhow::anyhow!("--rootfs {}: no such file or directory", r.display()))?;
        if md.is_dir() {
            sources::add_host_path(&mut a, "--rootfs", r, "", o.keep_owner)?;
        } else {
            sources::add_tar(&mut a, "--rootfs", r, "", o.keep_owner)?;
        }
    }
    for d in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "root",
        "etc",
        "lib/modules",
    ] {
        a.mkdir_p("image skeleton", d)?;
    }
    a.insert("image skeleton", "tmp", Node::dir(0o1777))?;
    // The kernel opens /dev/console for init's stdio before devtmpfs exists.
    a.insert("image skeleton", "dev/console", Node::char_dev(5, 1, 0o600))?;
    for (path, mode, bytes) in INIT_CONFIG {
        a.insert(
            "init-config",
            path,
            Node::file(Data::Bytes(bytes.to_vec()), *mode),
        )?;
    }
    if !o.binaries.is_empty() {
        let files = closure::resolve_closure(Path::new("/"), &o.binaries)?;
        for f in files {
            let md = fs::metadata(&f.src)
                .with_context(|| format!("--binary: reading {}", f.src.display()))?;
            let perm = fs::symlink_metadata(&f.src)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                .unwrap_or(0o755);
            a.insert(
                "--binary",
                &f.dest.to_string_lossy(),
                Node::file(
                    Data::Path {
                        path: f.src.clone(),
                        len: md.len(),
                    },
                    perm,
                ),
            )?;
        }
    }
    let mut nmods = 0;
    if let Some(kdir) = &o.kernel_modules {
        let plan = modules::resolve_modules(&modules::ModuleRequest {
            kdir: kdir.clone(),
            names: o.modules.clone(),
            keep_compressed: o.keep_compressed_modules,
            firmware_dirs: firmware_dirs(kdir, &o.firmware_dirs),
        })?;
        nmods = plan.modules.len();
        for m in plan.modules {
            a.insert(
                "--module",
                &m.dest.to_string_lossy(),
                Node::file(Data::Bytes(m.data), 0o644),
            )?;
        }
        for fw in plan.firmware {
            let len = fs::metadata(&fw.src)
                .with_context(|| format!("firmware {}", fw.src.display()))?
                .len();
            a.insert(
                "firmware",
                &fw.dest.to_string_lossy(),
                Node::file(Data::Path { path: fw.src, len }, 0o644),
            )?;
        }
        // modules.alias lets the init name the module a driverless device needs;
        // modules.builtin lets it tell built-ins from missing modules.
        for f in ["modules.alias", "modules.builtin"] {
            let src = kdir.join(f);
            if let Ok(md) = fs::metadata(&src) {
                let dest = format!("lib/modules/{}/{f}", plan.release);
                a.insert(
                    "--kernel-modules",
                    &dest,
                    Node::file(
                        Data::Path {
                            path: src,
                            len: md.len(),
                        },
                        0o644,
                    ),
                )?;
            }
        }
        let mpath = format!(
            "lib/modules/{}/{}",
            plan.release,
            crate::module_manifest::FILE_NAME
        );
        a.insert(
            "--module",
            &mpath,
            Node::file(Data::Bytes(plan.manifest.into_bytes()), 0o644),
        )?;
        // The init finds the manifest without knowing the release.
        a.insert(
            "--module",
            crate::module_manifest::LINK.trim_start_matches('/'),
            Node::symlink(&format!("/{mpath}")),
        )?;
    } else if !o.modules.is_empty() {
        bail!("--module given without --kernel-modules DIR (or --host-modules)");
    }
    for (src, dest) in &o.add {
        sources::add_host_path(
            &mut a,
            &format!("--add {}", src.display()),
            src,
            dest,
            o.keep_owner,
        )?;
    }
    for (path, target) in &o.links {
        a.insert("link", path.trim_start_matches('/'), Node::symlink(target))?;
    }
    let init = match &o.init {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("finding the running anemos binary for /init")?,
    };
    let len = fs::metadata(&init)
        .with_context(|| format!("--init {}: cannot read", init.display()))?
        .len();
    a.insert(
        "/init",
        "init",
        Node::file(Data::Path { path: init, len }, 0o755),
    )?;
    Ok((a, nmods))
}

/// Firmware search path: explicit dirs, else `<kdir>/../../firmware` (an extracted kernel
/// package tree) when it exists. The build host's /lib/firmware is never used implicitly.
fn firmware_dirs(kdir: &Path, explicit: &[PathBuf]) -> Vec<PathBuf> {
    if !explicit.is_empty() {
        return explicit.to_vec();
    }
    let sib = kdir.join("../../firmware");
    if sib.is_dir() {
        vec![sib]
    } else {
        Vec::new()
    }
}

/// Writes `a` compressed into `w`, returning the uncompressed byte count.
pub fn write_segment<W: Write>(
    a: &Archive,
    kind: Compression,
    level: Option<i32>,
    mtime: u32,
    w: W,
) -> Result<(u64, W)> {
    let (stats, w) = codec::compress_with(kind, level, w, |out| -> Result<archive::WriteStats> {
        Ok(a.write(out, mtime)?)
    })?;
    Ok((stats.bytes, w))
}

/// Writes `path` atomically: `fill` writes into a temp file beside it, which is fsynced and
/// renamed over `path` only on success. On error the temp file is removed.
pub fn write_atomically<T>(
    path: &Path,
    fill: impl FnOnce(&mut io::BufWriter<fs::File>) -> Result<T>,
) -> Result<T> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "output {}: directory {} does not exist",
            path.display(),
            dir.display()
        );
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut bw = io::BufWriter::with_capacity(1 << 20, f);
        let t = fill(&mut bw)?;
        let f = bw
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(t)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Pads to a 4-byte boundary: the kernel only recognises an uncompressed cpio header at a
/// 4-aligned offset, and it skips zero bytes between segments.
fn pad4(w: &mut impl Write, written: u64) -> io::Result<u64> {
    let pad = (4 - (written % 4)) % 4;
    w.write_all(&[0u8; 3][..pad as usize])?;
    Ok(pad)
}

/// Packs a payload source (dir or tar) into a standalone compressed segment, in memory.
pub fn payload_segment(
    src: &Path,
    kind: Compression,
    level: Option<i32>,
    mtime: u32,
) -> Result<(Vec<u8>, usize)> {
    let mut a = Archive::new();
    let n = payload::add_payload(&mut a, src)?;
    let install = validate_payload_config(&a)?;
    validate_payload_imgbuild(src, install.as_ref())?;
    validate_payload_rootfs(src, install.as_ref())?;
    let (_, bytes) = write_segment(&a, kind, level, mtime, Vec::new())?;
    Ok((bytes, n))
}

/// Validates the payload's `anemos.toml` (if present) exactly as the init will, and returns
/// its `[install]`.
fn validate_payload_config(a: &Archive) -> Result<Option<crate::config::Install>> {
    if std::env::var_os("ANEMOS_NO_VALIDATE").is_some() {
        return Ok(None);
    }
    let key = format!("{}/anemos.toml", payload::PAYLOAD_DIR);
    let Some(node) = a.get(&key) else {
        return Ok(None);
    };
    let text = match &node.kind {
        Kind::File(Data::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Kind::File(Data::Path { path, .. }) => {
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        _ => bail!("payload anemos.toml is not a regular file"),
    };
    let c =
        crate::config::load(&text, "payload anemos.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(c.install)
}

/// Reads the payload directory's IMGBUILD as the deploy image's built-in makeimg will (shell
/// syntax, `target`, `format`), so a mistake shows up on the workstation rather than on the
/// server. Skipped when an external makeimg (`[install] command`) or another install kind
/// will run instead.
fn validate_payload_imgbuild(src: &Path, install: Option<&crate::config::Install>) -> Result<()> {
    let f = src.join("IMGBUILD");
    if std::env::var_os("ANEMOS_NO_VALIDATE").is_some() || !src.is_dir() || !f.is_file() {
        return Ok(());
    }
    if matches!(
        install,
        None | Some(crate::config::Install::Makeimg { command: None, .. })
    ) {
        crate::makeimg::imgbuild::load(&f).context(
            "payload IMGBUILD, read as the deploy image's makeimg will read it (--no-validate skips this)",
        )?;
    }
    Ok(())
}

/// Reads the payload directory's rootfs archive (`[install] kind = "rootfs"` with `path`) to
/// its end with the checks the deploy image's `check` stage runs before the first write
/// (truncation, corrupt compression, hostile entries), so a broken or hostile archive is
/// refused on the workstation.
fn validate_payload_rootfs(src: &Path, install: Option<&crate::config::Install>) -> Result<()> {
    if std::env::var_os("ANEMOS_NO_VALIDATE").is_some() || !src.is_dir() {
        return Ok(());
    }
    if let Some(crate::config::Install::Rootfs {
        source: crate::config::RootfsSource::Path(p),
        ..
    }) = install
    {
        tarcheck::check_tar(&src.join(p), None).with_context(|| {
            format!("payload rootfs archive {p}, read as the deploy image's check stage will read it (--no-validate skips this)")
        })?;
    }
    Ok(())
}

/// Reads an existing payload file, or packs a payload dir/tar on the fly.
fn payload_bytes(
    p: &Path,
    kind: Compression,
    level: Option<i32>,
    mtime: u32,
) -> Result<(Vec<u8>, Option<usize>)> {
    let md = fs::metadata(p)
        .map_err(|_| anyhow::anyhow!("--payload {}: no such file or directory", p.display()))?;
    if md.is_file() {
        let bytes = fs::read(p).with_context(|| format!("--payload {}", p.display()))?;
        if is_packed_segment(&bytes) {
            return Ok((bytes, None));
        }
    }
    let (b, n) = payload_segment(p, kind, level, mtime)?;
    Ok((b, Some(n)))
}

/// Whether a `--payload` file is an already packed segment (passed through as it is) rather
/// than a tar to pack: plain cpio, or compressed data that decodes to cpio. A compressed file
/// whose start cannot be decoded is passed through too; a compressed tar decodes to no cpio.
fn is_packed_segment(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"07070") {
        return true;
    }
    if Compression::of(bytes) == Compression::None {
        return false;
    }
    let mut head = [0u8; 512];
    let Ok(mut d) = codec::auto_decoder(bytes) else {
        return true;
    };
    let n = io::Read::read(&mut d, &mut head).unwrap_or(0);
    n >= 5 && head.starts_with(b"07070")
}

/// `anemos pack`.
pub fn pack(o: &PackOptions) -> Result<PackReport> {
    let kind = o.compression.unwrap_or(Compression::Zstd);
    let (tree, nmods) = build_tree(o)?;
    let payload = match &o.payload {
        Some(p) => Some(payload_bytes(p, kind, o.level, o.mtime)?),
        None => None,
    };
    let (uncompressed, image_size) = write_atomically(&o.output, |w| {
        let mut counter = archive::CountingWriter { inner: w, count: 0 };
        let (unc, mut counter) = write_segment(&tree, kind, o.level, o.mtime, &mut counter)?;
        if let Some((bytes, _)) = &payload {
            let n = counter.count;
            pad4(&mut counter, n)?;
            counter.write_all(bytes)?;
        }
        Ok((unc, counter.count))
    })?;
    Ok(PackReport {
        entries: tree.len(),
        uncompressed,
        image_size,
        modules: nmods,
        payload_files: payload.and_then(|p| p.1),
    })
}

/// `anemos pack-payload`.
pub fn pack_payload(
    src: &Path,
    out: &Path,
    kind: Compression,
    level: Option<i32>,
    mtime: u32,
) -> Result<(usize, u64)> {
    let (bytes, n) = payload_segment(src, kind, level, mtime)?;
    write_atomically(out, |w| Ok(w.write_all(&bytes)?))?;
    Ok((n, bytes.len() as u64))
}
