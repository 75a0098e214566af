//! `install.kind = "makeimg"` in the deploy image: the built-in builder (`crate::makeimg`)
//! bootstraps the payload's IMGBUILD straight into the mounted target.
//!
//! Everything that can be checked is checked before the first disk write: the IMGBUILD is
//! read (shell syntax, `target`, `format`) by the payload stage, its bootstrap tool must be in
//! the image's tools root, the input directories must exist, and the fetch stage asks the
//! package mirror for the suite's `Release` file. A bad IMGBUILD or an unreachable mirror
//! therefore leaves every disk as it was.
//!
//! The output is always the target from anemos.toml's disks: an IMGBUILD's `format` of `raw`,
//! `tar` or `dir` is ignored (logged); `custom` keeps its meaning, `setup()` and `cleanup()`
//! run around the build with `$ANEMOS_ROOT` set to the target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::Install;
use crate::makeimg::imgbuild::{self, Format, ImgBuild, Target};
use crate::makeimg::{backend, Options, Output};

/// Upstream Debian, when `[install] mirror` is not given (what mmdebstrap uses by default).
const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The built-in builder's settings when the install is one.
pub struct Builtin<'a> {
    pub args: &'a [String],
    pub mirror: Option<&'a str>,
    pub proxy: Option<&'a str>,
}

/// `Some` when `install` is the built-in builder (makeimg without `command`).
pub fn builtin(install: Option<&Install>) -> Option<Builtin<'_>> {
    match install {
        Some(Install::Makeimg {
            command: None,
            args,
            mirror,
            proxy,
        }) => Some(Builtin {
            args,
            mirror: mirror.as_deref(),
            proxy: proxy.as_deref(),
        }),
        _ => None,
    }
}

/// The input directories: `args` relative to the payload (as makeimg takes them on its
/// command line), or the builder's default (`files/`) when none are given.
fn inputs(payload: &Path, args: &[String]) -> Vec<PathBuf> {
    args.iter().map(|a| payload.join(a)).collect()
}

/// Reads and checks the payload's IMGBUILD and what its build needs from the image, before
/// any disk is written. Returns the IMGBUILD for the log line.
pub fn check(payload: &Path, b: &Builtin) -> Result<ImgBuild> {
    let path = payload.join("IMGBUILD");
    if !path.is_file() {
        bail!("[install] kind = \"makeimg\" builds the payload's IMGBUILD, but the payload has none (add IMGBUILD next to anemos.toml)");
    }
    let img = imgbuild::load(&path)?;
    for d in inputs(payload, b.args) {
        if !d.is_dir() {
            bail!(
                "install.args: input directory {} is not in the payload",
                d.display()
            );
        }
    }
    // The command line is built here only to find out whether the tool exists.
    backend::bootstrap(
        &img,
        &backend::Inputs {
            root: Path::new(super::disks::TARGET),
            project: payload,
            mirror: b.mirror,
            have: &|p| crate::cmd::which(p).is_some(),
        },
    )
    .context("the deploy image's tools root cannot bootstrap this IMGBUILD (pack one that can: scripts/build-builder-root.sh, `anemos pack --rootfs`)")?;
    Ok(img)
}

/// The URL of the `Release` file the bootstrap will read first, for `mirror` (a URL or a
/// `deb [options] URL SUITE ...` line; a SUITE ending in `/` is a flat repository) and the
/// IMGBUILD's suite. `None` when it cannot be checked from the deploy image (https).
pub fn release_url(mirror: Option<&str>, suite: &str) -> Option<String> {
    let m = mirror.unwrap_or(DEFAULT_DEBIAN_MIRROR).trim();
    let (url, dist) = match m.strip_prefix("deb ") {
        Some(line) => {
            let mut words = line.split_whitespace().skip_while(|w| !w.contains("://"));
            let url = words.next()?;
            (url, words.next().unwrap_or(suite).to_string())
        }
        None => (m, suite.to_string()),
    };
    if !url.starts_with("http://") {
        return None;
    }
    let base = url.trim_end_matches('/');
    Some(if dist.ends_with('/') {
        let d = dist.trim_start_matches("./");
        format!("{base}/{d}Release")
    } else {
        format!("{base}/dists/{dist}/Release")
    })
}

/// Asks the mirror for the suite's Release file (the fetch stage, before any disk write).
pub fn check_mirror(img: &ImgBuild, b: &Builtin) -> Result<()> {
    if img.target != Target::Debian {
        log::info!(
            "makeimg: the {} mirror is not checked before the build (its repositories come from the project's files)",
            img.target.name()
        );
        return Ok(());
    }
    if b.proxy.is_some() {
        log::info!(
            "makeimg: the mirror is reached through the proxy; not checked before the build"
        );
        return Ok(());
    }
    let Some(url) = release_url(b.mirror, &img.debian_suite) else {
        log::info!("makeimg: https mirror: not checked before the build (the bootstrap checks it)");
        return Ok(());
    };
    let t = std::time::Instant::now();
    crate::fetch::Download::open(&url, 3).with_context(|| {
        format!("the package mirror does not answer ({url}); nothing was written: check [install] mirror and the network")
    })?;
    log::info!(
        "makeimg: mirror answers: {url} ({} ms)",
        t.elapsed().as_millis()
    );
    Ok(())
}

/// Builds the payload's IMGBUILD (`img`, as the payload stage read it) into `target` with the
/// built-in builder. `env` is the
/// builders' environment (`ANEMOS_*`), which is also what `${VAR}` in templates can name.
pub fn run(
    payload: &Path,
    b: &Builtin,
    img: ImgBuild,
    env: &BTreeMap<String, String>,
    target: &Path,
) -> Result<()> {
    match &img.format {
        Format::Dir | Format::Custom => {}
        f => log::info!(
            "makeimg: format {f} is ignored in the deploy image: the system is built into the target from anemos.toml's disks"
        ),
    }
    let mut tool_env = BTreeMap::new();
    if let Some(p) = b.proxy {
        for k in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"] {
            tool_env.insert(k.to_string(), p.to_string());
        }
    }
    // apt and dpkg ask no questions in the deploy image.
    tool_env.insert("DEBIAN_FRONTEND".into(), "noninteractive".into());
    let o = Options {
        imgbuild: img,
        project: payload.to_path_buf(),
        inputs: inputs(payload, b.args),
        output: Output::Dir(target.to_path_buf()),
        mirror: b.mirror.map(str::to_string),
        env: env.clone(),
        tool_env,
    };
    let low = LowestMem::start();
    let r = crate::makeimg::build(&o);
    if let Some(bytes) = low.stop() {
        log::info!(
            "makeimg: lowest MemAvailable during the build: {} MiB",
            bytes >> 20
        );
    }
    r
}

/// Samples MemAvailable twice a second in a thread and keeps the lowest value, so a deploy
/// reports how close the build came to running out of RAM.
struct LowestMem {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<u64>>>,
}

impl LowestMem {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("memwatch".into())
            .spawn(move || {
                let mut low: Option<u64> = None;
                loop {
                    if let Some(b) = std::fs::read_to_string("/proc/meminfo")
                        .ok()
                        .and_then(|m| crate::fetch::mem_available(&m))
                    {
                        low = Some(low.map_or(b, |l| l.min(b)));
                    }
                    if s.load(Ordering::Relaxed) {
                        return low;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
            .ok();
        LowestMem { stop, thread }
    }

    /// The lowest MemAvailable seen, in bytes.
    fn stop(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_url_for_each_mirror_form() {
        assert_eq!(
            release_url(None, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian/dists/bookworm/Release")
        );
        assert_eq!(
            release_url(Some("http://10.0.2.100/debian/"), "stable").as_deref(),
            Some("http://10.0.2.100/debian/dists/stable/Release")
        );
        assert_eq!(
            release_url(Some("deb [trusted=yes] http://10.0.2.100/ ./"), "bookworm").as_deref(),
            Some("http://10.0.2.100/Release")
        );
        assert_eq!(
            release_url(Some("deb http://m/debian bookworm main"), "stable").as_deref(),
            Some("http://m/debian/dists/bookworm/Release")
        );
        assert_eq!(
            release_url(Some("deb http://m/flat sub/"), "x").as_deref(),
            Some("http://m/flat/sub/Release")
        );
        assert_eq!(release_url(Some("https://m/debian"), "bookworm"), None);
    }

    #[test]
    fn only_makeimg_without_command_is_builtin() {
        let m = |command: Option<&str>| Install::Makeimg {
            command: command.map(str::to_string),
            args: vec![],
            mirror: Some("http://m/d".into()),
            proxy: None,
        };
        assert_eq!(builtin(Some(&m(None))).unwrap().mirror, Some("http://m/d"));
        assert!(builtin(Some(&m(Some("makeimg")))).is_none());
        assert!(builtin(None).is_none());
    }

    #[test]
    fn check_names_a_missing_imgbuild_and_input_dir() {
        let d = tempfile::tempdir().unwrap();
        let b = Builtin {
            args: &[],
            mirror: None,
            proxy: None,
        };
        let e = check(d.path(), &b).unwrap_err().to_string();
        assert!(e.contains("has none"), "{e}");
        std::fs::write(
            d.path().join("IMGBUILD"),
            "imgname=x\ntarget=debian\nformat=dir\n",
        )
        .unwrap();
        let args = ["extra".to_string()];
        let b = Builtin {
            args: &args,
            mirror: None,
            proxy: None,
        };
        let e = format!("{:#}", check(d.path(), &b).unwrap_err());
        assert!(e.contains("install.args") && e.contains("extra"), "{e}");
    }

    #[test]
    fn lowest_mem_samples_meminfo() {
        let l = LowestMem::start();
        std::thread::sleep(Duration::from_millis(50));
        let bytes = l.stop().expect("a MemAvailable sample");
        let want = std::fs::read_to_string("/proc/meminfo").unwrap();
        let total = crate::fetch::mem_available(&want).unwrap();
        // Within a factor of two of what is available now (and in bytes, not KiB).
        assert!(bytes > total / 2 && bytes < total * 2, "{bytes} vs {total}");
    }
}
