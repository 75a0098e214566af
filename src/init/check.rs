//! The `check` stage, the last before the first write: what the install will read is read
//! now, to its end. A rootfs archive in the payload or downloaded into RAM is decompressed
//! completely and every entry checked (no absolute path, no "..", no escaping hard link), so a
//! truncated or corrupt archive — one built broken on the workstation passes the payload's
//! sha256 manifest — fails here, with the old system intact, instead of in the install stage
//! after the disks were repartitioned. The install then skips its own pre-scan of that archive.
//! Only a streamed download (`download = "stream"`) cannot be read twice: its entries are
//! checked as they are unpacked, after the disks are written, and the stage says so. An
//! external builder (`[install] command`) is looked up in the tools root here too, and so are
//! cryptsetup and the passphrase files when the layout has LUKS volumes. With `[bootloader]
//! kind = "grub"`, the archive read here must hold grub-install, grub-mkconfig and the modules
//! of each firmware named (a warning only when a provision script may still install them).

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::install::{self, Fetched};
use crate::config::{Install, RootfsSource};

/// The `check` stage.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    let Some(payload) = &ctx.payload else {
        return Ok(());
    };
    let dir = Path::new(install::PAYLOAD);
    if let Some(p) = &ctx.plan {
        super::luks::check(dir, &p.luks)?;
    }
    let source = match install::effective(&payload.config.install, dir) {
        Some(Install::Rootfs { source, .. }) => source,
        Some(Install::Makeimg {
            command: Some(c), ..
        }) => {
            // An external builder must be in the tools root; found missing only by the install
            // stage, it would leave freshly formatted disks behind.
            let found = if c.contains('/') {
                std::path::Path::new(&c).is_file()
            } else {
                crate::cmd::which(&c).is_some()
            };
            if !found {
                anyhow::bail!("[install] command = {c:?}: not found in the image's tools root; pack a tools root that has it (--rootfs), or leave command out to use the built-in builder; nothing was written");
            }
            log::info!("check: the builder {c} is in the tools root");
            return Ok(());
        }
        _ => return Ok(()),
    };
    let archive = match (&source, &ctx.fetched) {
        (RootfsSource::Path(p), _) => dir.join(p),
        (RootfsSource::Url(_), Some(Fetched::File(f))) => f.clone(),
        (RootfsSource::Url(u), _) => {
            log::info!("check: {u} is streamed (download = \"stream\"): its entries are checked as they are unpacked, after the disks are written");
            return Ok(());
        }
    };
    let t = Instant::now();
    let grub = match payload.config.bootloader {
        crate::config::Bootloader::Grub { firmware, .. } => Some(firmware),
        _ => None,
    };
    let mut scan = super::grub::ArchiveScan::default();
    let (entries, bytes) = install::check_tar_seeing(&archive, &mut |p| scan.see(p)).map_err(|e| {
        e.context(format!(
            "the rootfs archive {} is damaged, truncated or unsafe (read before any disk is written: nothing was written)",
            archive.display()
        ))
    })?;
    log::info!(
        "check: {} is complete and safe: {entries} entries, {} MiB unpacked, read to its end in {:.1} s",
        archive.display(),
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );
    if let Some(firmware) = grub {
        let provision = matches!(
            install::effective(&payload.config.install, dir),
            Some(Install::Rootfs {
                provision: Some(_),
                ..
            })
        );
        match scan.problem(firmware) {
            None => log::info!(
                "check: the rootfs archive has grub for {}",
                firmware.describe()
            ),
            Some(p) if provision => log::warn!(
                "check: {p}; the provision step must install it, or the bootloader stage fails"
            ),
            Some(p) => anyhow::bail!("{p}; nothing was written"),
        }
    }
    ctx.archive_checked = Some((archive, entries));
    Ok(())
}
