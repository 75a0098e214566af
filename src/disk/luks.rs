//! LUKS2 containers in the plan: what each sits on, its identifiers, the cryptsetup commands
//! that create and open it, and the target's /etc/crypttab. Pure.
//!
//! Choices, made once here:
//! - LUKS2 with argon2id and a bounded memory cost (`pbkdf_memory`, 64 MiB by default): the
//!   deploy image and the installed system's initramfs both run the key derivation, and a
//!   small machine must not run out of RAM doing it.
//! - The passphrase is a payload secret read by cryptsetup from the payload in RAM; it never
//!   reaches a disk, an argument list or a log. A trailing newline of the file is not part of
//!   the passphrase (`--keyfile-size`), so the passphrase typed at the boot prompt matches.
//! - crypttab: `NAME UUID=<luks uuid> none luks,discard`. `none`: no key file in the target,
//!   the passphrase is asked for at boot. `discard`: TRIM passes through to SSDs (rented
//!   servers mostly have them), at the price of revealing which blocks are in use.

use super::plan::{derive_uuid, DiskAction, DiskPlan, PlanError, PlannedPart};
use crate::config::layout::{FsKind, LuksOn, LuksSpec};
use crate::util::uuid_string;

/// The crypttab options of every container (see the module comment).
pub const CRYPTTAB_OPTIONS: &str = "luks,discard";

/// One container in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLuks {
    pub name: String,
    pub uuid: [u8; 16],
    /// The device the container is made on: a partition (disk path, number) or an array.
    pub on: Backing,
    /// The passphrase file, relative to the payload.
    pub passphrase: String,
    /// The recovery passphrase file (a second keyslot), relative to the payload.
    pub recovery: Option<String>,
    pub pbkdf_kib: u64,
    pub fs: Option<FsKind>,
    pub fs_uuid: Option<[u8; 16]>,
    pub fs_label: Option<String>,
    pub mount: Option<String>,
    pub mount_options: Option<String>,
}

/// What a planned container sits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    Partition {
        label: String,
        disk_path: String,
        number: u32,
    },
    /// /dev/md/NAME.
    Array(String),
}

impl PlannedLuks {
    /// The opened container: /dev/mapper/NAME.
    pub fn device(&self) -> String {
        format!("/dev/mapper/{}", self.name)
    }

    /// The backing device, for display ("root-a (/dev/vda2 #2)" or "/dev/md/root").
    pub fn backing_text(&self) -> String {
        match &self.on {
            Backing::Partition {
                label,
                disk_path,
                number,
            } => format!("{label} ({disk_path} #{number})"),
            Backing::Array(n) => format!("/dev/md/{n}"),
        }
    }

    /// The container as a partition-like value for mkfs (no position: not a partition).
    pub fn as_part(&self) -> PlannedPart {
        PlannedPart::unpositioned(
            &self.name,
            self.fs,
            self.fs_uuid,
            self.fs_label.clone(),
            self.mount.clone(),
            self.mount_options.clone(),
        )
    }
}

/// The seed component that keeps container identifiers apart from partitions' and arrays'.
const SEED_DISK: &str = "luks/";

/// Finds every container's backing device in the laid-out disks and arrays.
pub fn plan_luks(
    seed: &str,
    specs: &[LuksSpec],
    disks: &[DiskPlan],
) -> Result<Vec<PlannedLuks>, PlanError> {
    let mut out = Vec::new();
    for l in specs {
        let on = match &l.on {
            LuksOn::Array(a) => Backing::Array(a.clone()),
            LuksOn::Partition(label) => {
                let found = disks.iter().find_map(|d| match &d.action {
                    DiskAction::Repartition { parts, .. } => parts
                        .iter()
                        .find(|p| &p.label == label)
                        .map(|p| (d.disk.path.clone(), p.number)),
                    DiskAction::Preserve => None,
                });
                let Some((disk_path, number)) = found else {
                    return Err(PlanError::Luks {
                        name: l.name.clone(),
                        problem: format!("{label:?} is not a partition of a wiped disk"),
                    });
                };
                Backing::Partition {
                    label: label.clone(),
                    disk_path,
                    number,
                }
            }
        };
        out.push(PlannedLuks {
            name: l.name.clone(),
            uuid: l
                .uuid
                .unwrap_or_else(|| derive_uuid("luksuuid", seed, SEED_DISK, &l.name)),
            on,
            passphrase: l.passphrase.clone(),
            recovery: l.recovery.clone(),
            pbkdf_kib: l.pbkdf_kib,
            fs: l.format,
            fs_uuid: l.format.map(|_| {
                l.fs_uuid
                    .unwrap_or_else(|| derive_uuid("fsuuid", seed, SEED_DISK, &l.name))
            }),
            fs_label: l
                .format
                .map(|_| l.fs_label.clone().unwrap_or_else(|| l.name.clone())),
            mount: l.mount.clone(),
            mount_options: l.mount_options.clone(),
        });
    }
    Ok(out)
}

/// The key-file arguments: the passphrase file, without its trailing newline when it has one
/// (`len` is the file's size).
pub fn key_args(key_file: &str, text_ends_in_newline: bool, len: u64) -> Vec<String> {
    let mut v = vec!["--key-file".to_string(), key_file.to_string()];
    if text_ends_in_newline {
        v.push(format!("--keyfile-size={}", len - 1));
    }
    v
}

/// The `cryptsetup luksFormat` arguments for `l` on `node`.
pub fn format_args(l: &PlannedLuks, node: &str, key: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "luksFormat".into(),
        "--type".into(),
        "luks2".into(),
        // No questions: the device was just written, there is nobody to answer.
        "--batch-mode".into(),
        "--uuid".into(),
        uuid_string(&l.uuid),
        "--pbkdf".into(),
        "argon2id".into(),
        "--pbkdf-memory".into(),
        l.pbkdf_kib.to_string(),
        "--label".into(),
        l.name.clone(),
    ];
    v.extend(key.iter().cloned());
    v.push(node.into());
    v
}

/// The `cryptsetup luksAddKey` arguments adding the recovery keyslot to `l` on `node`:
/// unlocked with `key` (from [`key_args`]), the new passphrase read from `new_file`, without
/// its trailing newline when it has one, with the same argon2id cost as the first keyslot.
pub fn add_key_args(
    l: &PlannedLuks,
    node: &str,
    key: &[String],
    new_file: &str,
    new_ends_in_newline: bool,
    new_len: u64,
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "luksAddKey".into(),
        "--batch-mode".into(),
        "--pbkdf".into(),
        "argon2id".into(),
        "--pbkdf-memory".into(),
        l.pbkdf_kib.to_string(),
    ];
    v.extend(key.iter().cloned());
    if new_ends_in_newline {
        v.push(format!("--new-keyfile-size={}", new_len - 1));
    }
    v.push(node.into());
    v.push(new_file.into());
    v
}

/// The `cryptsetup open` arguments for `l` on `node`.
pub fn open_args(l: &PlannedLuks, node: &str, key: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec!["open".into(), "--type".into(), "luks2".into()];
    v.extend(key.iter().cloned());
    v.push(node.into());
    v.push(l.name.clone());
    v
}

/// The crypttab line of `l`.
pub fn crypttab_line(l: &PlannedLuks) -> String {
    format!(
        "{} UUID={} none {CRYPTTAB_OPTIONS}",
        l.name,
        uuid_string(&l.uuid)
    )
}

/// The target's /etc/crypttab; empty when there is no container.
pub fn render_crypttab(luks: &[PlannedLuks]) -> String {
    if luks.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "# /etc/crypttab written by anemos from anemos.toml\n\
         # <target name> <source device> <key file> <options>\n",
    );
    for l in luks {
        s.push_str(&crypttab_line(l));
        s.push('\n');
    }
    s
}

/// crypttab after the install: one the installed system brought keeps its lines and gets the
/// containers it does not name yet; none at all gets [`render_crypttab`].
pub fn merge_crypttab(existing: Option<&str>, luks: &[PlannedLuks]) -> String {
    let Some(text) = existing.filter(|t| {
        t.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    }) else {
        return render_crypttab(luks);
    };
    let mut s = text.to_string();
    let missing: Vec<String> = luks
        .iter()
        .filter(|l| {
            !text
                .lines()
                .any(|line| line.split_whitespace().next() == Some(l.name.as_str()))
        })
        .map(crypttab_line)
        .collect();
    if missing.is_empty() {
        return s;
    }
    if !s.ends_with('\n') {
        s.push('\n');
    }
    for l in missing {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

/// Plan table lines for the containers.
pub fn render(luks: &[PlannedLuks]) -> String {
    let mut s = String::new();
    for l in luks {
        s.push_str(&format!(
            "luks \"{}\" = {}: LUKS2 on {}, uuid {}, argon2id {} KiB{}\n",
            l.name,
            l.device(),
            l.backing_text(),
            uuid_string(&l.uuid),
            l.pbkdf_kib,
            if l.recovery.is_some() {
                ", recovery keyslot"
            } else {
                ""
            }
        ));
        s.push_str(&super::mkfs::plan_fs_line(
            l.fs,
            l.fs_label.as_deref(),
            l.mount.as_deref(),
            l.fs_uuid,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;
    use crate::disk::plan::{plan, DiskIdentity};
    use crate::disk::{fstab, plan_json};

    const CFG: &str = "hostname = \"h\"\n[[disk]]\nname = \"system\"\nmatch = { serial = \"s0\" }\nwipe = true\npartitions = [\n\
        { label = \"esp\", type = \"esp\", size = \"100MiB\", format = \"vfat\", mount = \"/boot/efi\" },\n\
        { label = \"root\", type = \"root\", size = \"rest\" },\n]\n\
        [[luks]]\nname = \"cryptroot\"\ndevice = \"root\"\npassphrase = \"secrets/luks.pass\"\nformat = \"ext4\"\nmount = \"/\"\noptions = \"noatime\"\n";

    fn planned(text: &str) -> crate::disk::plan::Plan {
        let v = load(text, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
        let d = DiskIdentity {
            path: "/dev/vda".into(),
            size_bytes: 1 << 30,
            sector_size: 512,
            serial: Some("s0".into()),
            ..Default::default()
        };
        plan(&v.layout, &[d]).unwrap()
    }

    #[test]
    fn uuids_come_from_the_seed() {
        let p = planned(CFG);
        let l = &p.luks[0];
        assert_eq!(l.uuid, derive_uuid("luksuuid", "h", "luks/", "cryptroot"));
        assert_eq!(
            l.fs_uuid,
            Some(derive_uuid("fsuuid", "h", "luks/", "cryptroot"))
        );
        assert_ne!(Some(l.uuid), l.fs_uuid);
        assert_eq!(
            planned(CFG).luks,
            p.luks,
            "the same config plans the same volume"
        );
        let other = planned(&CFG.replace("hostname = \"h\"", "hostname = \"g\""));
        assert_ne!(other.luks[0].uuid, l.uuid);
        assert_eq!(
            l.on,
            Backing::Partition {
                label: "root".into(),
                disk_path: "/dev/vda".into(),
                number: 2
            }
        );
        assert_eq!(l.pbkdf_kib, 65536);
    }

    #[test]
    fn crypttab_fstab_and_json() {
        let p = planned(CFG);
        let l = &p.luks[0];
        let u = uuid_string(&l.uuid);
        let tab = render_crypttab(&p.luks);
        assert!(tab.starts_with("# /etc/crypttab written by anemos"));
        assert!(
            tab.contains(&format!("\ncryptroot UUID={u} none luks,discard\n")),
            "{tab}"
        );
        assert_eq!(render_crypttab(&[]), "");
        // An installed crypttab keeps its lines and gets the missing one once.
        let merged = merge_crypttab(Some("# x\nswap /dev/sdb1 /dev/urandom swap\n"), &p.luks);
        assert!(merged.starts_with("# x\nswap /dev/sdb1"));
        assert!(merged.ends_with(&format!("cryptroot UUID={u} none luks,discard\n")));
        assert_eq!(merge_crypttab(Some(&merged), &p.luks), merged);
        assert_eq!(merge_crypttab(Some("# only comments\n"), &p.luks), tab);

        let fs_uuid = crate::disk::mkfs::display_uuid(FsKind::Ext4, &l.fs_uuid.unwrap());
        let f = fstab::render(&p);
        assert!(
            f.contains(&format!("UUID={fs_uuid} / ext4 noatime 0 1")),
            "{f}"
        );
        let m = fstab::target_mounts(&p);
        assert_eq!(m[0].device.as_deref(), Some("/dev/mapper/cryptroot"));
        assert_eq!(m[0].mount, "/");

        let j = serde_json::to_value(plan_json::view(&p, f)).unwrap();
        assert_eq!(j["luks"][0]["device"], "/dev/mapper/cryptroot");
        assert_eq!(j["luks"][0]["uuid"], u.as_str());
        assert_eq!(j["luks"][0]["on_device"], "/dev/vda2");
        assert_eq!(j["luks"][0]["pbkdf_memory_kib"], 65536);
        assert_eq!(j["crypttab"], tab.as_str());
        let text = crate::disk::plan::render(&p);
        assert!(
            text.contains(
                "luks \"cryptroot\" = /dev/mapper/cryptroot: LUKS2 on root (/dev/vda #2)"
            ),
            "{text}"
        );
    }

    #[test]
    fn commands_never_carry_the_passphrase() {
        let p = planned(CFG);
        let l = &p.luks[0];
        let key = key_args("/payload/secrets/luks.pass", true, 12);
        assert_eq!(
            key,
            [
                "--key-file",
                "/payload/secrets/luks.pass",
                "--keyfile-size=11"
            ]
        );
        assert_eq!(key_args("/k", false, 12), ["--key-file", "/k"]);
        let f = format_args(l, "/dev/vda2", &key).join(" ");
        assert!(
            f.starts_with("luksFormat --type luks2 --batch-mode --uuid "),
            "{f}"
        );
        assert!(f.contains("--pbkdf argon2id --pbkdf-memory 65536"), "{f}");
        assert!(f.ends_with("--keyfile-size=11 /dev/vda2"), "{f}");
        let o = open_args(l, "/dev/vda2", &key).join(" ");
        assert!(o.ends_with("--keyfile-size=11 /dev/vda2 cryptroot"), "{o}");
        // The recovery keyslot: unlocked with the first passphrase, the new one from its file
        // without the newline, the same argon2id cost.
        let a = add_key_args(l, "/dev/vda2", &key, "/payload/secrets/rec.pass", true, 20).join(" ");
        assert_eq!(
            a,
            "luksAddKey --batch-mode --pbkdf argon2id --pbkdf-memory 65536 --key-file /payload/secrets/luks.pass --keyfile-size=11 --new-keyfile-size=19 /dev/vda2 /payload/secrets/rec.pass"
        );
        let a = add_key_args(l, "/dev/vda2", &key, "/r", false, 20);
        assert!(!a.join(" ").contains("--new-keyfile-size"), "{a:?}");
    }

    #[test]
    fn recovery_keyslot_is_planned_and_shown() {
        let p = planned(CFG);
        assert_eq!(p.luks[0].recovery, None);
        assert!(!render(&p.luks).contains("recovery"));
        let p = planned(&CFG.replace(
            "passphrase = \"secrets/luks.pass\"\n",
            "passphrase = \"secrets/luks.pass\"\nrecovery_passphrase = \"secrets/rec.pass\"\n",
        ));
        assert_eq!(p.luks[0].recovery.as_deref(), Some("secrets/rec.pass"));
        assert!(
            render(&p.luks).contains("argon2id 65536 KiB, recovery keyslot"),
            "{}",
            render(&p.luks)
        );
    }
}
