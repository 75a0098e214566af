//! Payload stage: find /payload, verify its sha256 manifest, load anemos.toml.
//! A missing or corrupt payload fails here, before anything destructive.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::pack::payload;

/// The verified payload as the later stages see it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub files: usize,
    pub config: crate::config::Validated,
}

/// Verifies the payload unpacked at `root` (normally "/") and parses its anemos.toml.
pub fn load(root: &Path) -> Result<Loaded> {
    let dir = root.join(payload::PAYLOAD_DIR);
    if !dir.is_dir() {
        bail!(
            "no payload in this image ({} is missing): append one with `anemos pack --payload DIR` or `cat base.img payload.img`",
            dir.display()
        );
    }
    let files = payload::verify(root).context("verifying the payload's sha256 manifest")?;
    let cfg_path = dir.join("anemos.toml");
    let text =
        fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
    let config = crate::config::load(&text, "payload/anemos.toml")?;
    Ok(Loaded { files, config })
}

/// The `payload` stage.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    if let Some(id) = &ctx.params.deploy_id {
        log::info!("deploy id {id}");
    }
    let p = load(Path::new("/"))?;
    log::info!(
        "payload: {} files verified against the sha256 manifest; anemos.toml loaded",
        p.files
    );
    if let Some(h) = &p.config.hostname {
        super::early::set_hostname(h);
    }
    // An IMGBUILD is read now, before the network and the disks: a syntax error or a bad
    // field is reported with nothing written.
    let inst = super::install::effective(&p.config.install, Path::new(super::install::PAYLOAD));
    if let Some(b) = super::makeimg::builtin(inst.as_ref()) {
        let img = super::makeimg::check(Path::new(super::install::PAYLOAD), &b)?;
        log::info!(
            "payload: IMGBUILD {}: target {}, format {}, {} package(s)",
            img.imgname,
            img.target.name(),
            img.format,
            img.packages.len()
        );
        ctx.imgbuild = Some(img);
    }
    ctx.payload = Some(p);
    Ok(())
}
