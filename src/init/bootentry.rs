//! The firmware's boot entry for the installed loader: after systemd-boot is on the ESP, a
//! `Boot####` load option pointing at it (the ESP's partition number, start, size and PARTUUID,
//! then `\EFI\systemd\systemd-bootx64.efi`) is written through efivarfs and put first in
//! `BootOrder`, so firmware that would boot the old system's entry (or the network) boots the
//! deployed system. Entries of an earlier anemos deploy are replaced, every other entry kept.
//! Without UEFI (the deploy image was not booted through it) nothing is written and the log
//! says so: the ESP's fallback path `\EFI\BOOT\BOOTX64.EFI` is all there is then.
//!
//! A failure here does not fail the deploy: the system is installed and the fallback path is
//! on the ESP; the log names what did not work.

use anyhow::{anyhow, Result};

use crate::disk::plan::{DiskAction, Plan};
use crate::efiboot::{self, LoadOption, GLOBAL_GUID};
use crate::efivar;

/// The loader path that anemos' entry starts for systemd-boot (installed by
/// [`super::bootloader`]); grub's is [`super::grub::LOADER`].
pub const LOADER: &str = "\\EFI\\systemd\\systemd-bootx64.efi";

/// The load option for `loader` on the ESP mounted at `esp_mount` (the one the loader was
/// installed on).
pub fn load_option(
    plan: &Plan,
    esp_mount: &str,
    hostname: &str,
    loader: &str,
) -> Result<LoadOption> {
    for d in &plan.disks {
        if let DiskAction::Repartition { parts, .. } = &d.action {
            if let Some(p) = parts
                .iter()
                .find(|p| p.type_name == "esp" && p.mount.as_deref() == Some(esp_mount))
            {
                return Ok(LoadOption {
                    description: efiboot::description(hostname),
                    partition: p.number,
                    start_lba: p.first_lba,
                    size_lba: p.sectors(),
                    part_uuid: crate::util::uuid_string(&p.part_uuid),
                    path: loader.into(),
                });
            }
        }
    }
    Err(anyhow!("no planned ESP is mounted at {esp_mount}"))
}

/// Writes the entry and puts it first; logs what it did. Errors are returned for the caller to
/// log (the deploy goes on).
pub fn register(opt: &LoadOption) -> Result<()> {
    if let Err(e) = efivar::ensure_mounted(false) {
        match e {
            efivar::Unavailable::NoEfi => {
                log::info!("boot entry: not booted through UEFI, no Boot#### entry written; the firmware finds the loader at the fallback path \\EFI\\BOOT\\BOOTX64.EFI");
                return Ok(());
            }
            other => return Err(anyhow!("boot entry: {other}")),
        }
    }
    let data = efiboot::encode(opt)?;
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
    let u = efiboot::plan_update(&existing, &order, &[data]);
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
    log::info!(
        "boot entry: wrote {} \"{}\" -> HD({},GPT,{}) {} ; BootOrder {} (was {}){}",
        efiboot::boot_var(u.write[0].0),
        opt.description,
        opt.partition,
        opt.part_uuid,
        opt.path,
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
        let o = load_option(&p, "/boot", "web1", LOADER).unwrap();
        assert_eq!(o.description, "anemos (web1)");
        assert_eq!(o.partition, 1);
        // In the disk's logical sectors: 1 MiB and 300 MiB of 4096-byte sectors.
        assert_eq!((o.start_lba, o.size_lba), (256, 300 * 256));
        let DiskAction::Repartition { parts, .. } = &p.disks[0].action else {
            panic!("not repartitioned")
        };
        assert_eq!(o.part_uuid, crate::util::uuid_string(&parts[0].part_uuid));
        assert_eq!(o.path, LOADER);
        let g = load_option(&p, "/boot", "web1", super::super::grub::LOADER).unwrap();
        assert_eq!(g.path, "\\EFI\\anemos\\grubx64.efi");
        assert_eq!(
            (g.partition, g.part_uuid),
            (o.partition, o.part_uuid.clone())
        );
        assert!(load_option(&p, "/efi", "web1", LOADER)
            .unwrap_err()
            .to_string()
            .contains("no planned ESP is mounted at /efi"));
    }
}
