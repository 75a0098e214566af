//! The firmware's boot entry for the installed loader: after systemd-boot is on the ESP, a
//! `Boot####` load option pointing at it (the ESP's partition number, start, size and PARTUUID,
//! then `\EFI\systemd\systemd-bootx64.efi`) is written through efivarfs and put first in
//! `BootOrder`, so firmware that would boot the old system's entry (or the network) boots the
//! deployed system. Entries of an earlier anemos deploy are replaced, every other entry kept.
//! With mirrored ESPs (see [`super::espmirror`]) there is one entry per ESP, the mounted ESP's
//! first, so the firmware falls through to the next disk's copy when a disk is gone. The
//! loader path is a parameter: another loader (grub) passes its own.
//! Without UEFI (the deploy image was not booted through it) nothing is written and the log
//! says so: the ESP's fallback path `\EFI\BOOT\BOOTX64.EFI` is all there is then.
//!
//! A failure here does not fail the deploy: the system is installed and the fallback path is
//! on the ESP; the log names what did not work.

use anyhow::{anyhow, Result};

use crate::disk::plan::{self, Plan};
use crate::efiboot::{self, LoadOption, GLOBAL_GUID};
use crate::efivar;

/// The loader path systemd-boot's entry starts (installed by [`super::bootloader`]).
pub const SYSTEMD_BOOT: &str = "\\EFI\\systemd\\systemd-bootx64.efi";

fn option(esp: plan::Esp<'_>, description: String, loader: &str) -> LoadOption {
    LoadOption {
        description,
        partition: esp.part.number,
        start_lba: esp.part.first_lba,
        size_lba: esp.part.sectors(),
        part_uuid: crate::util::uuid_string(&esp.part.part_uuid),
        path: loader.into(),
    }
}

/// The load options for `loader` (a path on the ESP with backslashes, e.g. [`SYSTEMD_BOOT`]):
/// one for the mounted ESP and, when ESPs are mirrored, one more per mirror after it. With
/// mirrors each description names its disk (`anemos (web1) disk a`), so the firmware's menu
/// tells them apart; alone it is `anemos (web1)`.
pub fn load_options(plan: &Plan, hostname: &str, loader: &str) -> Result<Vec<LoadOption>> {
    let (main, mirrors) = plan::esps(plan)
        .ok_or_else(|| anyhow!("no planned ESP (type = \"esp\") has a mount point"))?;
    if mirrors.is_empty() {
        return Ok(vec![option(main, efiboot::description(hostname), loader)]);
    }
    Ok(std::iter::once(main)
        .chain(mirrors)
        .map(|e| {
            option(
                e,
                format!("{} disk {}", efiboot::description(hostname), e.disk.name),
                loader,
            )
        })
        .collect())
}

/// The bootloader stage's call: writes the entries for `loader` and logs why when it could
/// not (the deploy goes on; the fallback path is on every ESP).
pub fn write_entries(plan: &Plan, hostname: &str, loader: &str) {
    if let Err(e) = load_options(plan, hostname, loader).and_then(|o| register(&o)) {
        log::warn!("boot entry not written: {e:#}; the firmware can still find the loader at the fallback path \\EFI\\BOOT\\BOOTX64.EFI");
    }
}

/// Writes the entries and puts them first, in the order given; logs what it did. Errors are
/// returned for the caller to log (the deploy goes on).
pub fn register(opts: &[LoadOption]) -> Result<()> {
    if let Err(e) = efivar::ensure_mounted(false) {
        match e {
            efivar::Unavailable::NoEfi => {
                log::info!("boot entry: not booted through UEFI, no Boot#### entry written; the firmware finds the loader at the fallback path \\EFI\\BOOT\\BOOTX64.EFI");
                return Ok(());
            }
            other => return Err(anyhow!("{other}")),
        }
    }
    let data: Vec<Vec<u8>> = opts.iter().map(efiboot::encode).collect::<Result<_>>()?;
    let names = efivar::list_in(GLOBAL_GUID)?;
    let mut existing = Vec::new();
    for n in names {
        if let Some(num) = efiboot::parse_boot_var(&n) {
            if let Some(c) = efivar::read_in(GLOBAL_GUID, &n)? {
                if let Some((_, d)) = efivar::strip_attributes(&c) {
                    existing.push((num, d.to_vec()));
                }
            }
        }
    }
    let order = efivar::read_in(GLOBAL_GUID, "BootOrder")?
        .and_then(|c| efivar::strip_attributes(&c).map(|(_, d)| efiboot::decode_order(d)))
        .unwrap_or_default();
    let u = efiboot::plan_update(&existing, &order, &data);
    // New entries first, then the order that names them, then the stale ones: an interrupted
    // update leaves at worst an extra entry, never an order naming a missing one.
    for (n, d) in &u.write {
        efivar::write_in(GLOBAL_GUID, &efiboot::boot_var(*n), d)
            .map_err(|e| anyhow!("writing {}: {e}", efiboot::boot_var(*n)))?;
    }
    efivar::write_in(GLOBAL_GUID, "BootOrder", &efiboot::encode_order(&u.order))
        .map_err(|e| anyhow!("writing BootOrder: {e}"))?;
    for n in &u.delete {
        efivar::delete_in(GLOBAL_GUID, &efiboot::boot_var(*n))?;
    }
    let show = |v: &[u16]| {
        v.iter()
            .map(|n| format!("{n:04X}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    for ((n, _), opt) in u.write.iter().zip(opts) {
        log::info!(
            "boot entry: wrote {} \"{}\" -> HD({},GPT,{}) {}",
            efiboot::boot_var(*n),
            opt.description,
            opt.partition,
            opt.part_uuid,
            opt.path,
        );
    }
    log::info!(
        "boot entry: BootOrder {} (was {}){}",
        show(&u.order),
        show(&order),
        if u.delete.is_empty() {
            String::new()
        } else {
            format!("; removed earlier anemos entries {}", show(&u.delete))
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockdev::identity::DiskIdentity;
    use crate::disk::plan::DiskAction;

    #[test]
    fn the_load_option_points_at_the_planned_esp() {
        let cfg = "hostname = \"web1\"\n\
            [[disk]]\nname = \"a\"\nmatch = { serial = \"s0\" }\nwipe = true\npartitions = [\n\
            { label = \"esp\", type = \"esp\", size = \"300MiB\", format = \"vfat\", mount = \"/boot\" },\n\
            { label = \"root\", type = \"root\", size = \"rest\", format = \"ext4\", mount = \"/\" },\n]\n";
        let v = crate::config::load(cfg, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
        let d = DiskIdentity {
            path: "/dev/vda".into(),
            size_bytes: 4 << 30,
            sector_size: 4096,
            serial: Some("s0".into()),
            ..Default::default()
        };
        let p = crate::disk::plan::plan(&v.layout, &[d]).unwrap();
        let o = load_options(&p, "web1", SYSTEMD_BOOT).unwrap();
        assert_eq!(o.len(), 1);
        let o = &o[0];
        assert_eq!(o.description, "anemos (web1)");
        assert_eq!(o.partition, 1);
        // In the disk's logical sectors: 1 MiB and 300 MiB of 4096-byte sectors.
        assert_eq!((o.start_lba, o.size_lba), (256, 300 * 256));
        let DiskAction::Repartition { parts, .. } = &p.disks[0].action else {
            panic!("not repartitioned")
        };
        assert_eq!(o.part_uuid, crate::util::uuid_string(&parts[0].part_uuid));
        assert_eq!(o.path, SYSTEMD_BOOT);
        let grub = load_options(&p, "web1", super::super::grub::LOADER).unwrap();
        assert_eq!(grub[0].path, "\\EFI\\anemos\\grubx64.efi");
        assert_eq!(grub[0].part_uuid, o.part_uuid);
    }

    #[test]
    fn mirrored_esps_get_one_entry_each_the_mounted_one_first() {
        // Disk "b" comes first in the config but its ESP is the mirror.
        let cfg = "hostname = \"web1\"\n\
            [[disk]]\nname = \"b\"\nmatch = { serial = \"s1\" }\nwipe = true\npartitions = [\n\
            { label = \"esp-b\", type = \"esp\", size = \"100MiB\", format = \"vfat\" },\n]\n\
            [[disk]]\nname = \"a\"\nmatch = { serial = \"s0\" }\nwipe = true\npartitions = [\n\
            { label = \"esp-a\", type = \"esp\", size = \"100MiB\", format = \"vfat\", mount = \"/boot\" },\n\
            { label = \"root\", type = \"root\", size = \"rest\", format = \"ext4\", mount = \"/\" },\n]\n";
        let v = crate::config::load(cfg, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
        let disk = |path: &str, serial: &str| DiskIdentity {
            path: path.into(),
            size_bytes: 1 << 30,
            sector_size: 512,
            serial: Some(serial.into()),
            ..Default::default()
        };
        let p =
            crate::disk::plan::plan(&v.layout, &[disk("/dev/vda", "s0"), disk("/dev/vdb", "s1")])
                .unwrap();
        let o = load_options(&p, "web1", SYSTEMD_BOOT).unwrap();
        let d: Vec<&str> = o.iter().map(|o| o.description.as_str()).collect();
        assert_eq!(d, ["anemos (web1) disk a", "anemos (web1) disk b"]);
        assert_ne!(o[0].part_uuid, o[1].part_uuid);
        assert_eq!((o[0].partition, o[1].partition), (1, 1));
        assert!(d.iter().all(|d| d.starts_with(efiboot::DESCRIPTION_PREFIX)));
    }
}
