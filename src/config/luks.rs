//! `[[luks]]`: LUKS2 containers on a partition of a wiped disk (by label) or on an array (by
//! name). Validated after the disks and arrays, since `device` names one of them. Every problem
//! names its key path (`luks[0].device`).

use super::schema::{Config, LuksConfig};
use super::units::{format_size, parse_guid, parse_size, part_type_guid, MIB};
use super::validate::{check_fs_keys, is_device_name, FsKeys, Problems, Seen};
use crate::config::layout::{DiskSpec, FsKind, LuksOn, LuksSpec};

/// Longest mapping name accepted (device-mapper allows 127; short names read well in crypttab
/// and at the boot prompt).
pub const LUKS_NAME_MAX: usize = 32;

/// Argon2id memory cost when `pbkdf_memory` is not given.
pub const PBKDF_MEMORY_DEFAULT: u64 = 64 * MIB;
/// Bounds of `pbkdf_memory`: below the lower one the passphrase is cheap to guess; above the
/// upper one a small deploy image (and the installed system's initramfs, which must unlock the
/// container again at every boot) risks running out of RAM.
pub const PBKDF_MEMORY_MIN: u64 = 16 * MIB;
pub const PBKDF_MEMORY_MAX: u64 = 1024 * MIB;

/// Why `/boot` and the ESP stay outside LUKS, said once.
const BOOT_OUTSIDE: &str = "the firmware and the boot loader read it before any passphrase is typed (GRUB 2.06 as shipped by Debian cannot unlock an argon2id LUKS2 container); keep /boot and the ESP on plain partitions or arrays";

pub(super) fn validate_luks(
    c: &LuksConfig,
    i: usize,
    cfg: &Config,
    disks: &[DiskSpec],
    seen: &mut Seen,
    p: &mut Problems,
) -> LuksSpec {
    let lk = format!("luks[{i}]");
    let key = |f: &str| format!("{lk}.{f}");
    let all = &cfg.luks;
    let name = c.name.clone().unwrap_or_default();
    let who = format!("LUKS volume {name:?}");
    match c.name.as_deref() {
        None => p.add(
            key("name"),
            "missing: every LUKS volume needs a name, e.g. name = \"cryptroot\" (it becomes /dev/mapper/cryptroot)",
        ),
        Some(n) => {
            if !is_device_name(n, LUKS_NAME_MAX) {
                p.add(
                    key("name"),
                    format!("{n:?}: a LUKS name is 1 to {LUKS_NAME_MAX} lowercase letters, digits, '-' or '_', starting with a letter"),
                );
            } else if let Some(j) = all[..i].iter().position(|o| o.name.as_deref() == Some(n)) {
                p.add(
                    key("name"),
                    format!("duplicate LUKS name {n:?} (already used by luks[{j}].name)"),
                );
            }
        }
    }
    let on = check_device(c, i, cfg, &who, disks, p);

    let passphrase = c.passphrase.clone().unwrap_or_default();
    match c.passphrase.as_deref() {
        None => p.add(
            key("passphrase"),
            "missing: the passphrase file in the payload, e.g. passphrase = \"secrets/luks.pass\"",
        ),
        Some(f) => check_secret_path(f, &key("passphrase"), p),
    }
    if let Some(f) = c.recovery_passphrase.as_deref() {
        check_secret_path(f, &key("recovery_passphrase"), p);
        if c.passphrase.as_deref() == Some(f) {
            p.add(
                key("recovery_passphrase"),
                format!("{f:?} is also the passphrase: a recovery keyslot needs a passphrase of its own"),
            );
        }
    }
    let pbkdf = match c.pbkdf_memory.as_deref() {
        None => PBKDF_MEMORY_DEFAULT,
        Some(t) => match parse_size(t) {
            Err(e) => {
                p.add(key("pbkdf_memory"), e);
                PBKDF_MEMORY_DEFAULT
            }
            Ok(b) if !(PBKDF_MEMORY_MIN..=PBKDF_MEMORY_MAX).contains(&b) => {
                p.add(
                    key("pbkdf_memory"),
                    format!(
                        "{t:?} is outside {} to {}: the argon2id memory cost must stay small enough for the deploy image's and the booting system's RAM",
                        format_size(PBKDF_MEMORY_MIN),
                        format_size(PBKDF_MEMORY_MAX)
                    ),
                );
                PBKDF_MEMORY_DEFAULT
            }
            Ok(b) => b,
        },
    };

    let (format, fs_uuid) = check_fs_keys(
        &FsKeys {
            format: c.format.as_deref(),
            mount: c.mount.as_deref(),
            options: c.options.as_deref(),
            fs_label: c.fs_label.as_deref(),
            fs_uuid: c.fs_uuid.as_deref(),
        },
        "LUKS volume",
        &key,
        seen,
        p,
    );
    if format == Some(FsKind::Vfat) {
        p.add(
            key("format"),
            format!("{who}: \"vfat\" inside LUKS would be an encrypted ESP: {BOOT_OUTSIDE}"),
        );
    }
    if let Some(m) = c.mount.as_deref() {
        if m == "/boot" || m.starts_with("/boot/") {
            p.add(
                key("mount"),
                format!("{who}: {m:?} cannot be encrypted: {BOOT_OUTSIDE}"),
            );
        }
    }
    let uuid = c
        .uuid
        .as_deref()
        .and_then(|u| parse_guid(u).map_err(|e| p.add(key("uuid"), e)).ok());
    LuksSpec {
        name,
        on,
        passphrase,
        recovery: c.recovery_passphrase.clone(),
        pbkdf_kib: pbkdf / 1024,
        format,
        mount: c.mount.clone(),
        mount_options: c.options.clone(),
        fs_label: c.fs_label.clone(),
        fs_uuid,
        uuid,
    }
}

/// `device`: an array without a filesystem of its own, or a partition of a wiped disk that is
/// no ESP, no array member and has no filesystem of its own; one container per device.
fn check_device(
    c: &LuksConfig,
    i: usize,
    cfg: &Config,
    who: &str,
    disks: &[DiskSpec],
    p: &mut Problems,
) -> LuksOn {
    let key = format!("luks[{i}].device");
    let Some(dev) = c.device.as_deref() else {
        p.add(
            key,
            "missing: the partition label or array name the container is made on, e.g. device = \"root\"",
        );
        return LuksOn::Partition(String::new());
    };
    if let Some(j) = cfg.luks[..i]
        .iter()
        .position(|o| o.device.as_deref() == Some(dev))
    {
        p.add(
            &key,
            format!("{who}: {dev:?} already holds luks[{j}]; a device holds one container"),
        );
    }
    let array = cfg.array.iter().find(|a| a.name.as_deref() == Some(dev));
    let part = disks.iter().find_map(|d| {
        d.partitions
            .iter()
            .find(|p| p.label == dev)
            .map(|p| (d, Some(p)))
            .or_else(|| d.mounts.iter().any(|m| m.label == dev).then_some((d, None)))
    });
    match (array, part) {
        (Some(_), Some(_)) => {
            p.add(
                &key,
                format!("{who}: {dev:?} is both an array name and a partition label; rename one"),
            );
            LuksOn::Array(dev.to_string())
        }
        (Some(a), None) => {
            let own: Vec<&str> = [
                ("format", a.format.is_some()),
                ("mount", a.mount.is_some()),
                ("fs_label", a.fs_label.is_some()),
                ("fs_uuid", a.fs_uuid.is_some()),
            ]
            .iter()
            .filter(|(_, set)| *set)
            .map(|(f, _)| *f)
            .collect();
            if !own.is_empty() {
                p.add(
                    &key,
                    format!("{who}: array {dev:?} has {} of its own; the filesystem goes inside the container (give format and mount to the [[luks]] entry)", own.join(", ")),
                );
            }
            LuksOn::Array(dev.to_string())
        }
        (None, None) => {
            p.add(
                &key,
                format!("{who}: {dev:?} is neither a partition label nor an array name"),
            );
            LuksOn::Partition(dev.to_string())
        }
        (None, Some((d, part))) => {
            let Some(part) = part.filter(|_| !d.preserve) else {
                p.add(
                    &key,
                    format!("{who}: {dev:?} is on the preserved disk {:?}, which is never written; a container is made on a partition of a wiped disk", d.name),
                );
                return LuksOn::Partition(dev.to_string());
            };
            if Some(part.type_guid) == part_type_guid("esp") {
                p.add(
                    &key,
                    format!("{who}: {dev:?} is an ESP (type = \"esp\"): {BOOT_OUTSIDE}"),
                );
            } else if let Some(a) = cfg.array.iter().find(|a| {
                a.members
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|m| m == dev)
            }) {
                p.add(
                    &key,
                    format!("{who}: {dev:?} is a member of array {:?}; make the container on the array (device = {:?})", a.name.as_deref().unwrap_or_default(), a.name.as_deref().unwrap_or_default()),
                );
            } else {
                let own: Vec<&str> = [
                    ("format", part.format.is_some()),
                    ("mount", part.mount.is_some()),
                    ("fs_label", part.fs_label.is_some()),
                    ("fs_uuid", part.fs_uuid.is_some()),
                ]
                .iter()
                .filter(|(_, set)| *set)
                .map(|(f, _)| *f)
                .collect();
                if !own.is_empty() {
                    p.add(
                        &key,
                        format!("{who}: partition {dev:?} has {} of its own; the filesystem goes inside the container (give format and mount to the [[luks]] entry)", own.join(", ")),
                    );
                }
            }
            LuksOn::Partition(dev.to_string())
        }
    }
}

/// A passphrase file must be a payload secret: a plain relative path under `secrets/`.
fn check_secret_path(f: &str, key: &str, p: &mut Problems) {
    let safe = f.starts_with("secrets/")
        && !f.ends_with('/')
        && f.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if !safe {
        p.add(
            key,
            format!("{f:?}: a passphrase must be a file under the payload's secrets/ (e.g. \"secrets/luks.pass\"): payload secrets live only in RAM, are never logged and are wiped after the install"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::layout::{FsKind, LuksOn};
    use crate::config::load;

    const DISK: &str = "[[disk]]\nname = \"system\"\nmatch = { serial = \"s0\" }\nwipe = true\npartitions = [\n\
        { label = \"esp\", type = \"esp\", size = \"512MiB\", format = \"vfat\", mount = \"/boot/efi\" },\n\
        { label = \"boot\", type = \"linux\", size = \"512MiB\", format = \"ext4\", mount = \"/boot\" },\n\
        { label = \"root\", type = \"root\", size = \"rest\" },\n]\n";

    fn luks(extra: &str) -> String {
        format!("{DISK}[[luks]]\nname = \"cryptroot\"\ndevice = \"root\"\npassphrase = \"secrets/luks.pass\"\nformat = \"ext4\"\nmount = \"/\"\n{extra}")
    }

    /// Exactly one problem, at `key`, whose message contains `want`.
    fn one(text: &str, key: &str, want: &str) {
        let e = load(text, "anemos.toml").expect_err(text);
        assert_eq!(e.errors.len(), 1, "{e}");
        assert_eq!(e.errors[0].key, key, "{e}");
        assert!(e.errors[0].message.contains(want), "{want:?} not in {e}");
    }

    #[test]
    fn luks_loads_with_defaults() {
        let v = load(&luks(""), "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
        let l = &v.layout.luks[0];
        assert_eq!(l.on, LuksOn::Partition("root".into()));
        assert_eq!(l.pbkdf_kib, 64 * 1024);
        assert_eq!(
            (l.format, l.mount.as_deref()),
            (Some(FsKind::Ext4), Some("/"))
        );
        let v = load(&luks("pbkdf_memory = \"128MiB\"\n"), "anemos.toml").unwrap();
        assert_eq!(v.layout.luks[0].pbkdf_kib, 128 * 1024);
        // "/" inside LUKS counts as the root an install needs.
        let text = format!(
            "{}[install]\nkind = \"rootfs\"\npath = \"r.tar\"\n",
            luks("")
        );
        load(&text, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn luks_on_an_array() {
        let text = "[[disk]]\nname = \"a\"\nmatch = { serial = \"a0\" }\nwipe = true\npartitions = [ { label = \"r-a\", type = \"raid\", size = \"rest\" } ]\n\
            [[disk]]\nname = \"b\"\nmatch = { serial = \"b0\" }\nwipe = true\npartitions = [ { label = \"r-b\", type = \"raid\", size = \"rest\" } ]\n\
            [[array]]\nname = \"root\"\nlevel = 1\nmembers = [\"r-a\", \"r-b\"]\n\
            [[luks]]\nname = \"cryptroot\"\ndevice = \"root\"\npassphrase = \"secrets/k\"\nformat = \"ext4\"\nmount = \"/\"\n";
        let v = load(text, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.layout.luks[0].on, LuksOn::Array("root".into()));
        one(
            &text.replace(
                "members = [\"r-a\", \"r-b\"]\n",
                "members = [\"r-a\", \"r-b\"]\nformat = \"xfs\"\n",
            ),
            "luks[0].device",
            "array \"root\" has format of its own",
        );
        one(
            &text.replace("device = \"root\"", "device = \"r-a\""),
            "luks[0].device",
            "is a member of array \"root\"",
        );
    }

    #[test]
    fn luks_rules_name_their_key() {
        let cases: Vec<(String, &str, &str)> = vec![
            (
                luks("").replace("name = \"cryptroot\"\n", ""),
                "luks[0].name",
                "missing",
            ),
            (
                luks("").replace("\"cryptroot\"", "\"Crypt Root\""),
                "luks[0].name",
                "lowercase",
            ),
            (
                luks("").replace("device = \"root\"\n", ""),
                "luks[0].device",
                "missing",
            ),
            (
                luks("").replace("device = \"root\"", "device = \"nope\""),
                "luks[0].device",
                "neither a partition label nor an array name",
            ),
            (
                luks("").replace("device = \"root\"", "device = \"esp\""),
                "luks[0].device",
                "is an ESP",
            ),
            (
                luks("").replace("passphrase = \"secrets/luks.pass\"\n", ""),
                "luks[0].passphrase",
                "missing",
            ),
            (
                luks("").replace("secrets/luks.pass", "luks.pass"),
                "luks[0].passphrase",
                "under the payload's secrets/",
            ),
            (
                luks("recovery_passphrase = \"recovery.pass\"\n"),
                "luks[0].recovery_passphrase",
                "under the payload's secrets/",
            ),
            (
                luks("recovery_passphrase = \"secrets/luks.pass\"\n"),
                "luks[0].recovery_passphrase",
                "a recovery keyslot needs a passphrase of its own",
            ),
            (
                luks("").replace("secrets/luks.pass", "secrets/../x"),
                "luks[0].passphrase",
                "under the payload's secrets/",
            ),
            (
                luks("pbkdf_memory = \"4GiB\"\n"),
                "luks[0].pbkdf_memory",
                "outside 16MiB to 1GiB",
            ),
            (
                luks("pbkdf_memory = \"1MiB\"\n"),
                "luks[0].pbkdf_memory",
                "outside",
            ),
            (
                luks("pbkdf_memory = \"lots\"\n"),
                "luks[0].pbkdf_memory",
                "lots",
            ),
            (
                luks("")
                    .replace("format = \"ext4\"", "format = \"vfat\"")
                    .replace("mount = \"/\"", "mount = \"/srv\""),
                "luks[0].format",
                "encrypted ESP",
            ),
            (
                luks("").replace("mount = \"/\"", "mount = \"/boot/x\""),
                "luks[0].mount",
                "GRUB 2.06",
            ),
            (
                luks("").replace("format = \"ext4\"\n", ""),
                "luks[0].mount",
                "needs a format",
            ),
            (
                luks("fs_label = \"this-label-is-far-too-long\"\n"),
                "luks[0].fs_label",
                "at most 16",
            ),
            (
                luks("")
                    .replace(
                        "{ label = \"root\", type = \"root\", size = \"rest\" }",
                        "{ label = \"root\", type = \"root\", size = \"rest\", format = \"ext4\" }",
                    )
                    .replace("mount = \"/\"\n", "mount = \"/srv\"\n"),
                "luks[0].device",
                "has format of its own",
            ),
        ];
        for (text, key, want) in cases {
            one(&text, key, want);
        }
        // The /boot of the partition entry is a plain partition; a second container on the
        // same device is refused.
        let two = format!(
            "{}[[luks]]\nname = \"other\"\ndevice = \"root\"\npassphrase = \"secrets/k\"\n",
            luks("")
        );
        one(&two, "luks[1].device", "already holds luks[0]");
    }
}
