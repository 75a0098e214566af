//! UEFI boot entries: the `Boot####` load options and `BootOrder` of the firmware's global
//! variables, encoded and decoded here (pure), written through efivarfs by [`crate::efivar`].
//!
//! Why our own encoder instead of running efibootmgr: the deploy image is one static binary
//! and efibootmgr needs libefivar and libefiboot; an `EFI_LOAD_OPTION` with one hard-drive
//! node and one file-path node is ~40 lines of byte layout (UEFI 2.10, 3.1.3 "Load Options",
//! 10.3.5.1 "Hard Drive Media Device Path", 10.3.5.4 "File Path Media Device Path").
//!
//! An entry anemos writes is recognised later by its description, `anemos (<hostname>)`: a
//! redeploy removes those and leaves every other entry alone.

use anyhow::{bail, Result};

/// The vendor GUID of the firmware's global variables (Boot####, BootOrder, BootCurrent).
pub const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// LOAD_OPTION_ACTIVE: the firmware may boot it.
const LOAD_OPTION_ACTIVE: u32 = 0x1;

/// The description prefix that marks an entry as anemos'.
pub const DESCRIPTION_PREFIX: &str = "anemos (";

/// Where on which disk the loader is: the GPT partition holding it (the ESP) and the loader's
/// path on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOption {
    pub description: String,
    /// 1-based GPT partition number.
    pub partition: u32,
    /// First LBA and size in LBAs, in the disk's logical sectors.
    pub start_lba: u64,
    pub size_lba: u64,
    /// The partition's unique GUID (PARTUUID), in its usual text form.
    pub part_uuid: String,
    /// The loader on the ESP, with backslashes: `\EFI\systemd\systemd-bootx64.efi`.
    pub path: String,
}

/// The description anemos gives its entry for `hostname`.
pub fn description(hostname: &str) -> String {
    format!("{DESCRIPTION_PREFIX}{hostname})")
}

/// A GUID in text form as the 16 bytes UEFI stores: the first three fields little-endian.
pub fn guid_bytes(text: &str) -> Result<[u8; 16]> {
    let u = uuid::Uuid::parse_str(text).map_err(|e| anyhow::anyhow!("GUID {text:?}: {e}"))?;
    Ok(u.to_bytes_le())
}

fn ucs2(s: &str) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(2 * (s.len() + 1));
    for c in s.chars() {
        let n = c as u32;
        if n > 0xffff || n == 0 {
            bail!("{s:?}: character {c:?} has no UCS-2 form");
        }
        v.extend_from_slice(&(n as u16).to_le_bytes());
    }
    v.extend_from_slice(&[0, 0]);
    Ok(v)
}

/// The `EFI_LOAD_OPTION` bytes of `o` (the variable's data, without efivarfs' attribute word).
pub fn encode(o: &LoadOption) -> Result<Vec<u8>> {
    if !o.path.starts_with('\\') || o.path.contains('/') {
        bail!(
            "loader path {:?}: must be absolute with backslashes (\\EFI\\...)",
            o.path
        );
    }
    // Hard Drive Media Device Path: type 4, subtype 1, 42 bytes.
    let mut dp = vec![0x04, 0x01, 42, 0];
    dp.extend_from_slice(&o.partition.to_le_bytes());
    dp.extend_from_slice(&o.start_lba.to_le_bytes());
    dp.extend_from_slice(&o.size_lba.to_le_bytes());
    dp.extend_from_slice(&guid_bytes(&o.part_uuid)?);
    dp.push(0x02); // partition format: GPT
    dp.push(0x02); // signature type: GUID
                   // File Path Media Device Path: type 4, subtype 4.
    let path = ucs2(&o.path)?;
    let len = u16::try_from(4 + path.len())?;
    dp.extend_from_slice(&[0x04, 0x04]);
    dp.extend_from_slice(&len.to_le_bytes());
    dp.extend_from_slice(&path);
    // End of Hardware Device Path: type 0x7f, subtype 0xff.
    dp.extend_from_slice(&[0x7f, 0xff, 4, 0]);

    let mut v = LOAD_OPTION_ACTIVE.to_le_bytes().to_vec();
    v.extend_from_slice(&u16::try_from(dp.len())?.to_le_bytes());
    v.extend_from_slice(&ucs2(&o.description)?);
    v.extend_from_slice(&dp);
    Ok(v)
}

/// The description of a load option (its data), None when the bytes are not one.
pub fn decode_description(data: &[u8]) -> Option<String> {
    let rest = data.get(6..)?;
    let mut units = Vec::new();
    for ch in rest.chunks(2) {
        let u = u16::from_le_bytes([ch[0], *ch.get(1)?]);
        if u == 0 {
            return String::from_utf16(&units).ok();
        }
        units.push(u);
    }
    None
}

/// `BootOrder` data as entry numbers.
pub fn decode_order(data: &[u8]) -> Vec<u16> {
    data.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

pub fn encode_order(order: &[u16]) -> Vec<u8> {
    order.iter().flat_map(|n| n.to_le_bytes()).collect()
}

/// The variable name of entry `n`: `Boot0003`.
pub fn boot_var(n: u16) -> String {
    format!("Boot{n:04X}")
}

/// The entry number of a `Boot####` variable name (four uppercase hex digits).
pub fn parse_boot_var(name: &str) -> Option<u16> {
    let hex = name.strip_prefix("Boot")?;
    (hex.len() == 4
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
    .then(|| u16::from_str_radix(hex, 16).ok())
    .flatten()
}

/// What to change in the firmware's variables to make `new` (one load option per ESP, in boot
/// preference order) the first entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Entries of an earlier anemos deploy, removed.
    pub delete: Vec<u16>,
    /// (entry number, load option data) to write.
    pub write: Vec<(u16, Vec<u8>)>,
    /// The new BootOrder: ours first, then the others in their old order.
    pub order: Vec<u16>,
}

/// Pure: the update, given the existing entries (number, data) and the current BootOrder. Our
/// earlier entries (description starting with [`DESCRIPTION_PREFIX`]) are removed and their
/// numbers reused first; new numbers are the lowest free ones.
pub fn plan_update(existing: &[(u16, Vec<u8>)], order: &[u16], new: &[Vec<u8>]) -> Update {
    let ours: Vec<u16> = existing
        .iter()
        .filter(|(_, d)| decode_description(d).is_some_and(|s| s.starts_with(DESCRIPTION_PREFIX)))
        .map(|(n, _)| *n)
        .collect();
    let taken: Vec<u16> = existing
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !ours.contains(n))
        .collect();
    let mut free = ours.clone();
    free.sort_unstable();
    let mut next = 0u16;
    let mut write = Vec::new();
    for d in new {
        let n = if !free.is_empty() {
            free.remove(0)
        } else {
            while taken.contains(&next) || write.iter().any(|(w, _)| *w == next) {
                next += 1;
            }
            next
        };
        write.push((n, d.clone()));
    }
    let delete: Vec<u16> = ours
        .iter()
        .copied()
        .filter(|n| !write.iter().any(|(w, _)| w == n))
        .collect();
    let first: Vec<u16> = write.iter().map(|(n, _)| *n).collect();
    let rest = order
        .iter()
        .copied()
        .filter(|n| !ours.contains(n) && !first.contains(n));
    let new_order: Vec<u16> = first.iter().copied().chain(rest).collect();
    Update {
        delete,
        write,
        order: new_order,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt() -> LoadOption {
        LoadOption {
            description: description("web1"),
            partition: 1,
            start_lba: 2048,
            size_lba: 1048576,
            part_uuid: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".into(),
            path: "\\EFI\\systemd\\systemd-bootx64.efi".into(),
        }
    }

    #[test]
    fn load_option_layout() {
        let v = encode(&opt()).unwrap();
        // Attributes, then the device path length: HD (42) + file path (4 + 2 * 34) + end (4).
        assert_eq!(&v[..4], &[1, 0, 0, 0]);
        let path_len = 4 + 2 * ("\\EFI\\systemd\\systemd-bootx64.efi".len() + 1);
        assert_eq!(u16::from_le_bytes([v[4], v[5]]) as usize, 42 + path_len + 4);
        assert_eq!(decode_description(&v).as_deref(), Some("anemos (web1)"));
        let desc_end = 6 + 2 * ("anemos (web1)".len() + 1);
        let hd = &v[desc_end..desc_end + 42];
        assert_eq!(&hd[..4], &[4, 1, 42, 0]);
        assert_eq!(u32::from_le_bytes(hd[4..8].try_into().unwrap()), 1);
        assert_eq!(u64::from_le_bytes(hd[8..16].try_into().unwrap()), 2048);
        assert_eq!(u64::from_le_bytes(hd[16..24].try_into().unwrap()), 1048576);
        // The ESP type GUID's well-known mixed-endian bytes.
        assert_eq!(
            &hd[24..40],
            &[
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(&hd[40..], &[2, 2]);
        let fp = &v[desc_end + 42..];
        assert_eq!(&fp[..2], &[4, 4]);
        assert_eq!(u16::from_le_bytes([fp[2], fp[3]]) as usize, path_len);
        assert_eq!(&fp[4..6], &[b'\\', 0]);
        assert_eq!(&v[v.len() - 4..], &[0x7f, 0xff, 4, 0]);
        assert_eq!(v.len(), desc_end + 42 + path_len + 4);
    }

    /// Known-good bytes from an independent tool: `efibootmgr` 18 (Debian 12) run once in a QEMU
    /// VM on OVMF (anemos' own image, packed with `--binary /usr/bin/efibootmgr` and started
    /// with `anemos.break=payload`), on a 64 MiB virtio disk whose GPT had one partition made by
    /// `sgdisk -o -n 1:2048:0`:
    ///
    /// ```text
    /// efibootmgr -c -d /dev/vda -p 1 -L 'anemos (web1)' -l '\EFI\systemd\systemd-bootx64.efi'
    /// efibootmgr -v  ->  Boot0001* anemos (web1)  HD(1,GPT,a3e5b3d2-4527-4124-8854-0932046e5108,
    ///                    0x800,0x1f7df)/File(\EFI\systemd\systemd-bootx64.efi)
    /// od -An -tx1 -v /sys/firmware/efi/efivars/Boot0001-8be4df61-93ca-11d2-aa0d-00e098032b8c
    /// ```
    ///
    /// The hex below is that file without its 4-byte attribute word (07 00 00 00); `virt-fw-vars`
    /// (virt-firmware 26.10) read the same bytes back from the VM's variable store.
    const EFIBOOTMGR_BOOT0001: &str = "01000000740061006e0065006d006f007300200028007700\
        6500620031002900000004012a00010000000008000000000000dff7010000000000d2b3e5a3274524418854\
        0932046e51080202040446005c004500460049005c00730079007300740065006d0064005c00730079007300\
        740065006d0064002d0062006f006f0074007800360034002e0065006600690000007fff0400";

    fn unhex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        s.chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn encoding_matches_efibootmgr_byte_for_byte() {
        let want = unhex(EFIBOOTMGR_BOOT0001);
        assert_eq!(want.len(), 150);
        let ours = encode(&LoadOption {
            description: "anemos (web1)".into(),
            partition: 1,
            start_lba: 0x800,
            size_lba: 0x1f7df,
            part_uuid: "a3e5b3d2-4527-4124-8854-0932046e5108".into(),
            path: "\\EFI\\systemd\\systemd-bootx64.efi".into(),
        })
        .unwrap();
        assert_eq!(ours, want);
        assert_eq!(decode_description(&want).as_deref(), Some("anemos (web1)"));
    }

    #[test]
    fn bad_paths_and_text_are_refused() {
        let mut o = opt();
        o.path = "/EFI/BOOT/BOOTX64.EFI".into();
        assert!(encode(&o).unwrap_err().to_string().contains("backslashes"));
        let mut o = opt();
        o.description = "anemos (\u{1F600})".into();
        assert!(encode(&o).unwrap_err().to_string().contains("UCS-2"));
        assert_eq!(decode_description(&[1, 0, 0, 0, 0]), None);
        assert_eq!(
            decode_description(&[1, 0, 0, 0, 0, 0, b'a', 0]),
            None,
            "no NUL"
        );
    }

    #[test]
    fn variable_names() {
        assert_eq!(boot_var(3), "Boot0003");
        assert_eq!(boot_var(0xbeef), "BootBEEF");
        assert_eq!(parse_boot_var("Boot000A"), Some(10));
        assert_eq!(parse_boot_var("BootOrder"), None);
        assert_eq!(parse_boot_var("Boot000a"), None);
        assert_eq!(parse_boot_var("BootCurrent"), None);
        assert_eq!(decode_order(&encode_order(&[3, 0, 1])), [3, 0, 1]);
    }

    #[test]
    fn update_replaces_ours_keeps_others_and_puts_new_first() {
        let other = |d: &str| {
            let mut o = opt();
            o.description = d.into();
            encode(&o).unwrap()
        };
        let existing = vec![
            (0, other("UEFI QEMU HARDDISK")),
            (1, other("debian")),
            (4, other("anemos (old-name)")),
            (5, other("anemos (web1)")),
        ];
        let new = vec![encode(&opt()).unwrap(), encode(&opt()).unwrap()];
        let u = plan_update(&existing, &[1, 4, 0, 5], &new);
        assert_eq!(u.write.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [4, 5]);
        assert!(u.delete.is_empty());
        assert_eq!(u.order, [4, 5, 1, 0]);
        // One new entry: the second old one goes; no old entries: the lowest free number.
        let u = plan_update(&existing, &[1, 4, 0, 5], &new[..1]);
        assert_eq!(u.delete, [5]);
        assert_eq!(u.order, [4, 1, 0]);
        let u = plan_update(&existing[..2], &[1, 0], &new);
        assert_eq!(u.write.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(u.order, [2, 3, 1, 0]);
        assert!(u.delete.is_empty());
    }

    #[test]
    fn mirrored_redeploy_replaces_all_earlier_entries_and_puts_ours_first() {
        let named = |d: &str| {
            let mut o = opt();
            o.description = d.into();
            encode(&o).unwrap()
        };
        // An earlier mirrored deploy left three entries (one disk since replaced); the firmware
        // and an old OS have their own, the old OS first.
        let existing = vec![
            (0, named("UiApp")),
            (1, named("anemos (web1) disk a")),
            (2, named("debian")),
            (3, named("anemos (web1) disk b")),
            (7, named("anemos (web1) disk c")),
            (8, named("UEFI Shell")),
        ];
        let new = vec![named("anemos (web1) disk a"), named("anemos (web1) disk b")];
        let u = plan_update(&existing, &[2, 8, 1, 3, 7, 0], &new);
        // Our old numbers are reused in order; the third old one is deleted.
        assert_eq!(u.write.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(u.write[0].1, new[0], "the mounted ESP's entry first");
        assert_eq!(u.write[1].1, new[1]);
        assert_eq!(u.delete, [7]);
        assert_eq!(u.order, [1, 3, 2, 8, 0]);
        // A first mirrored deploy on that machine: lowest free numbers, kept entries untouched.
        let others: Vec<_> = existing
            .iter()
            .filter(|(n, _)| [0, 2, 8].contains(n))
            .cloned()
            .collect();
        let u = plan_update(&others, &[2, 8, 0], &new);
        assert_eq!(u.write.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 3]);
        assert!(u.delete.is_empty());
        assert_eq!(u.order, [1, 3, 2, 8, 0]);
        // A BootOrder naming an entry that no longer exists keeps it (not ours to judge).
        let u = plan_update(&others, &[5, 2], &new);
        assert_eq!(u.order, [1, 3, 5, 2]);
    }
}
