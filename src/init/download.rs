//! The `fetch` stage: a rootfs given by URL is connected to (and, when it fits, downloaded
//! into RAM and verified) before any disk is written; for a makeimg bootstrap, the package
//! mirror is asked for its Release file.

use anyhow::Result;

use super::{install, Ctx};
use crate::fetch;

pub(super) struct UrlInstall {
    pub url: String,
    pub sha256: Option<String>,
    pub insecure: bool,
    pub download: crate::config::Download,
}

pub(super) fn url_install(ctx: &Ctx) -> Option<UrlInstall> {
    match ctx.payload.as_ref().and_then(|p| p.config.install.clone()) {
        Some(crate::config::Install::Rootfs {
            source: crate::config::RootfsSource::Url(url),
            sha256,
            insecure,
            download,
            ..
        }) => Some(UrlInstall {
            url,
            sha256: sha256.map(|h| crate::util::hex(&h)),
            insecure,
            download,
        }),
        _ => None,
    }
}

/// Download attempts after a failure, in a row (reset when bytes arrive).
const FETCH_RETRIES: u32 = 4;

/// The built-in makeimg install, when that is the install.
/// Whether the install downloads (a rootfs URL, or a bootstrap from a package mirror): the
/// network stage then configures DHCP by default.
pub(super) fn install_downloads(ctx: &Ctx) -> bool {
    url_install(ctx).is_some() || ctx.imgbuild.is_some()
}

/// The `fetch` stage.
pub(super) fn stage(ctx: &mut Ctx) -> Result<()> {
    if let (Some(img), Some(p)) = (&ctx.imgbuild, &ctx.payload) {
        let i = install::effective(&p.config.install, std::path::Path::new(install::PAYLOAD));
        if let Some(b) = super::makeimg::builtin(i.as_ref()) {
            return super::makeimg::check_mirror(img, &b);
        }
    }
    let Some(u) = url_install(ctx) else {
        return Ok(());
    };
    if u.sha256.is_none() && !u.insecure {
        anyhow::bail!("[install] url needs sha256 (or insecure = true)");
    }
    // Connecting here, before any disk is touched, means a bad URL, an unreachable server or
    // a 404 never leaves a wiped disk.
    let dl = fetch::Download::open(&u.url, FETCH_RETRIES)?;
    std::fs::create_dir_all("/run/anemos")?;
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| fetch::mem_available(&m))
        .unwrap_or(0);
    let run_free = rustix::fs::statvfs("/run/anemos")
        .map(|v| v.f_bavail * v.f_frsize)
        .unwrap_or(0);
    let (mode, why) = fetch::choose_mode(u.download, dl.total(), mem, run_free)?;
    match mode {
        fetch::Mode::Ram => {
            log::info!("fetch: into RAM before any disk is written: {why}");
            let dest = std::path::PathBuf::from("/run/anemos/rootfs.download");
            fetch::save(dl, &dest, u.sha256.as_deref())?;
            ctx.fetched = Some(install::Fetched::File(dest));
        }
        fetch::Mode::Stream => {
            log::warn!(
                "fetch: {} will be streamed into the unpack ({why}); its sha256 is checked when the \
                 download ends, after the disks were written — a mismatch then fails the deploy",
                u.url
            );
            ctx.fetched = Some(install::Fetched::Stream(Box::new(dl), u.sha256));
        }
    }
    Ok(())
}
