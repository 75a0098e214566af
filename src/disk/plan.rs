//! The planner: layout + the disks present → an exact partition plan. Pure: no I/O.
//!
//! The same code runs on the host (`anemos plan`, disk image files standing in for disks) and
//! in the init (disks from sysfs), so both print the same table.
//!
//! GPT geometry (UEFI 2.10 §5.3): LBA 0 protective MBR, LBA 1 header, then 128 entries × 128
//! bytes (32 sectors at 512 B, 4 at 4096 B); the backup array and header mirror that at the end.
//! Partitions start and end on 1 MiB boundaries; `rest` ends at the last whole MiB that fits.

use sha2::{Digest, Sha256};

use crate::config::layout::{DiskSpec, FsKind, Layout, Matcher, SizeSpec};

pub const MIB: u64 = 1 << 20;
const GPT_ENTRIES_BYTES: u64 = 128 * 128;

/// What the planner knows about one disk: the block-device library's identity of it.
pub use crate::blockdev::DiskIdentity;

/// Planning failures; each names the disk entry and, where relevant, the candidates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("disk \"{name}\": match {rule} found no disk; candidates:\n{candidates}")]
    NoMatch {
        name: String,
        rule: String,
        candidates: String,
    },
    #[error("disk \"{name}\": match {rule} is ambiguous, it matches {count} disks:\n{candidates}")]
    Ambiguous {
        name: String,
        rule: String,
        count: usize,
        candidates: String,
    },
    #[error("disks \"{first}\" and \"{second}\" both match {path}; a disk may be claimed by one entry only")]
    Claimed {
        first: String,
        second: String,
        path: String,
    },
    #[error("disk \"{name}\" ({path}): partitions need {need} but the disk has {have} usable")]
    DoesNotFit {
        name: String,
        path: String,
        need: String,
        have: String,
    },
    #[error("array \"{name}\": {problem}")]
    Array { name: String, problem: String },
    #[error("LUKS volume \"{name}\": {problem}")]
    Luks { name: String, problem: String },
    #[error("disk \"{name}\" ({path}): sector size {sector} is not supported (512 or 4096)")]
    SectorSize {
        name: String,
        path: String,
        sector: u64,
    },
    #[error("disk \"{name}\" ({path}): partition \"{label}\" ({}) is too small for FAT32 with the disk's {sector}-byte sectors: it needs at least {} (grow it, or set fat32 = false)", human(*size), human(*min))]
    TooSmallForFat32 {
        name: String,
        path: String,
        label: String,
        size: u64,
        sector: u64,
        min: u64,
    },
}

/// One partition in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPart {
    pub number: u32,
    pub label: String,
    pub type_name: String,
    pub type_guid: [u8; 16],
    pub part_uuid: [u8; 16],
    pub first_lba: u64,
    pub last_lba: u64,
    pub fs: Option<FsKind>,
    pub fs_uuid: Option<[u8; 16]>,
    pub fs_label: Option<String>,
    pub mount: Option<String>,
    pub mount_options: Option<String>,
    pub fat32: bool,
}

impl PlannedPart {
    /// A device that carries a filesystem like a partition but has no place in a GPT (an md
    /// array, an opened LUKS container): what mkfs and the mounts need of it.
    pub fn unpositioned(
        name: &str,
        fs: Option<FsKind>,
        fs_uuid: Option<[u8; 16]>,
        fs_label: Option<String>,
        mount: Option<String>,
        mount_options: Option<String>,
    ) -> PlannedPart {
        PlannedPart {
            number: 0,
            label: name.to_string(),
            type_name: String::new(),
            type_guid: [0; 16],
            part_uuid: [0; 16],
            first_lba: 0,
            last_lba: 0,
            fs,
            fs_uuid,
            fs_label,
            mount,
            mount_options,
            fat32: false,
        }
    }

    pub fn sectors(&self) -> u64 {
        self.last_lba - self.first_lba + 1
    }
}

/// What happens to one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskAction {
    /// Wipe and write a new GPT with these partitions.
    Repartition {
        disk_guid: [u8; 16],
        parts: Vec<PlannedPart>,
        first_usable: u64,
        last_usable: u64,
    },
    /// Never opened for writing.
    Preserve,
}

/// The plan for one `[[disk]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskPlan {
    pub name: String,
    pub disk: DiskIdentity,
    pub action: DiskAction,
    pub spec: DiskSpec,
}

/// The whole plan, in config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub disks: Vec<DiskPlan>,
    /// md arrays over partitions of `disks`.
    pub arrays: Vec<super::md::PlannedArray>,
    /// LUKS2 containers on partitions of `disks` or on `arrays`.
    pub luks: Vec<super::luks::PlannedLuks>,
}

use crate::util::human;

/// An ESP of the plan: the disk it is on and its partition.
#[derive(Debug, Clone, Copy)]
pub struct Esp<'a> {
    pub disk: &'a DiskPlan,
    pub part: &'a PlannedPart,
}

/// The ESPs of the plan: the one the bootloader is installed on (the first ESP with a mount
/// point, in disk order) and its mirrors (every other ESP formatted vfat without a mount point,
/// which anemos keeps identical to it). None without a mounted ESP: then nothing is mirrored.
pub fn esps(plan: &Plan) -> Option<(Esp<'_>, Vec<Esp<'_>>)> {
    let all: Vec<Esp> = plan
        .disks
        .iter()
        .filter_map(|d| match &d.action {
            DiskAction::Repartition { parts, .. } => Some(
                parts
                    .iter()
                    .filter(|p| p.type_name == "esp")
                    .map(move |part| Esp { disk: d, part }),
            ),
            DiskAction::Preserve => None,
        })
        .flatten()
        .collect();
    let main = *all.iter().find(|e| e.part.mount.is_some())?;
    let mirrors = all
        .into_iter()
        .filter(|e| e.part.mount.is_none() && e.part.fs == Some(FsKind::Vfat))
        .collect();
    Some((main, mirrors))
}

/// True when `part` of `disk` is a mirror of the mounted ESP (see [`esps`]).
fn is_esp_mirror(plan: &Plan, disk: &DiskPlan, part: &PlannedPart) -> bool {
    esps(plan).is_some_and(|(_, m)| {
        m.iter()
            .any(|e| std::ptr::eq(e.disk, disk) && std::ptr::eq(e.part, part))
    })
}

/// Derives a stable UUID (RFC 9562 v8-style bits set as v4 for compatibility) from the seed,
/// like systemd-repart: the same config gives the same identifiers on every deploy.
pub fn derive_uuid(purpose: &str, seed: &str, disk: &str, label: &str) -> [u8; 16] {
    let h = Sha256::digest(format!("anemos\0{purpose}\0{seed}\0{disk}\0{label}").as_bytes());
    let mut u = [0u8; 16];
    u.copy_from_slice(&h[..16]);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

use crate::util::uuid_string;

fn rule_text(m: &Matcher) -> String {
    let mut parts = Vec::new();
    if let Some(v) = &m.by_id {
        parts.push(format!("by_id = {v:?}"));
    }
    if let Some(v) = &m.serial {
        parts.push(format!("serial = {v:?}"));
    }
    if let Some(v) = &m.wwn {
        parts.push(format!("wwn = {v:?}"));
    }
    if let Some(v) = &m.model {
        parts.push(format!("model = {v:?}"));
    }
    if let Some(v) = &m.path {
        parts.push(format!("path = {v:?}"));
    }
    if m.size_min.is_some() || m.size_max.is_some() {
        parts.push(format!(
            "size = \"{}..{}\"",
            m.size_min.map(human).unwrap_or_default(),
            m.size_max.map(human).unwrap_or_default()
        ));
    }
    format!("{{ {} }}", parts.join(", "))
}

/// True when every set field of `m` matches `d`.
pub fn disk_matches(m: &Matcher, d: &DiskIdentity) -> bool {
    let opt_eq = |want: &Option<String>, have: &Option<String>| match want {
        None => true,
        Some(w) => have.as_deref().map(|h| h.trim() == w).unwrap_or(false),
    };
    let by_id = match &m.by_id {
        None => true,
        Some(w) => d.by_id.iter().any(|b| b == w),
    };
    let model = match &m.model {
        None => true,
        Some(w) => d
            .model
            .as_deref()
            .map(|h| h.contains(w.as_str()))
            .unwrap_or(false),
    };
    let path = match &m.path {
        None => true,
        Some(w) => d.path == *w || d.aliases.iter().any(|a| a == w),
    };
    let size = m.size_min.map(|min| d.size_bytes >= min).unwrap_or(true)
        && m.size_max.map(|max| d.size_bytes <= max).unwrap_or(true);
    by_id && model && path && size && opt_eq(&m.serial, &d.serial) && opt_eq(&m.wwn, &d.wwn)
}

fn candidates(disks: &[&DiskIdentity]) -> String {
    if disks.is_empty() {
        return "  (no disks found)".into();
    }
    disks
        .iter()
        .map(|d| format!("  {}", d.describe()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Resolves every disk entry to exactly one disk. Removable and USB disks are only
/// candidates for entries with `removable = true`.
pub fn match_disks<'a>(
    layout: &Layout,
    disks: &'a [DiskIdentity],
) -> Result<Vec<&'a DiskIdentity>, PlanError> {
    let mut out: Vec<&DiskIdentity> = Vec::new();
    for spec in &layout.disks {
        let pool: Vec<&DiskIdentity> = disks
            .iter()
            .filter(|d| spec.removable || !(d.removable || d.usb))
            .collect();
        let hits: Vec<&DiskIdentity> = pool
            .iter()
            .copied()
            .filter(|d| disk_matches(&spec.matcher, d))
            .collect();
        match hits.len() {
            0 => {
                return Err(PlanError::NoMatch {
                    name: spec.name.clone(),
                    rule: rule_text(&spec.matcher),
                    candidates: candidates(&disks.iter().collect::<Vec<_>>()),
                })
            }
            1 => {}
            n => {
                return Err(PlanError::Ambiguous {
                    name: spec.name.clone(),
                    rule: rule_text(&spec.matcher),
                    count: n,
                    candidates: candidates(&hits),
                })
            }
        }
        let d = hits[0];
        if let Some(i) = out.iter().position(|o| o.path == d.path) {
            return Err(PlanError::Claimed {
                first: layout.disks[i].name.clone(),
                second: spec.name.clone(),
                path: d.path.clone(),
            });
        }
        out.push(d);
    }
    Ok(out)
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Computes partition positions for one disk. Pure sector math.
pub fn layout_disk(
    seed: &str,
    spec: &DiskSpec,
    disk: &DiskIdentity,
) -> Result<DiskAction, PlanError> {
    layout_disk_capped(seed, spec, disk, None)
}

/// [`layout_disk`] with the `rest` partition at most `rest_cap` bytes (a multiple of 1 MiB):
/// an array member sized from the smallest of its disks.
fn layout_disk_capped(
    seed: &str,
    spec: &DiskSpec,
    disk: &DiskIdentity,
    rest_cap: Option<u64>,
) -> Result<DiskAction, PlanError> {
    if spec.preserve || spec.partitions.is_empty() {
        return Ok(DiskAction::Preserve);
    }
    let ss = disk.sector_size;
    if ss != 512 && ss != 4096 {
        return Err(PlanError::SectorSize {
            name: spec.name.clone(),
            path: disk.path.clone(),
            sector: ss,
        });
    }
    let entry_sectors = GPT_ENTRIES_BYTES / ss;
    let total = disk.sectors();
    let first_usable = 2 + entry_sectors;
    let last_usable = total.saturating_sub(2 + entry_sectors);
    let align = MIB / ss;
    let fixed: u64 = spec
        .partitions
        .iter()
        .map(|p| match p.size {
            SizeSpec::Bytes(b) => align_up(b, MIB),
            SizeSpec::Rest => MIB,
        })
        .sum();
    let start0 = align_up(first_usable, align);
    // The usable area, trimmed to whole MiB.
    let end_excl = if last_usable + 1 > start0 {
        start0 + (last_usable + 1 - start0) / align * align
    } else {
        start0
    };
    let have = (end_excl - start0) * ss;
    if fixed > have {
        return Err(PlanError::DoesNotFit {
            name: spec.name.clone(),
            path: disk.path.clone(),
            need: human(fixed),
            have: human(have),
        });
    }
    let rest_bytes = have
        - (fixed
            - spec
                .partitions
                .iter()
                .filter(|p| p.size == SizeSpec::Rest)
                .count() as u64
                * MIB);
    let rest_bytes = rest_cap.map_or(rest_bytes, |c| rest_bytes.min(c));
    let mut cur = start0;
    let mut parts = Vec::new();
    for (i, p) in spec.partitions.iter().enumerate() {
        let bytes = match p.size {
            SizeSpec::Bytes(b) => align_up(b, MIB),
            SizeSpec::Rest => rest_bytes,
        };
        let sectors = bytes / ss;
        let number = i as u32 + 1;
        let fat32_min = super::vfat::fat32_min_bytes(ss as u32);
        if p.format == Some(FsKind::Vfat) && p.fat32 && bytes < fat32_min {
            return Err(PlanError::TooSmallForFat32 {
                name: spec.name.clone(),
                path: disk.path.clone(),
                label: p.label.clone(),
                size: bytes,
                sector: ss,
                min: fat32_min,
            });
        }
        parts.push(PlannedPart {
            number,
            label: p.label.clone(),
            type_name: p.type_name.clone(),
            type_guid: p.type_guid,
            part_uuid: p
                .part_uuid
                .unwrap_or_else(|| derive_uuid("partuuid", seed, &spec.name, &p.label)),
            first_lba: cur,
            last_lba: cur + sectors - 1,
            fs: p.format,
            fs_uuid: p.format.map(|_| {
                p.fs_uuid
                    .unwrap_or_else(|| derive_uuid("fsuuid", seed, &spec.name, &p.label))
            }),
            fs_label: p
                .format
                .map(|_| p.fs_label.clone().unwrap_or_else(|| p.label.clone())),
            mount: p.mount.clone(),
            mount_options: p.mount_options.clone(),
            fat32: p.fat32,
        });
        cur += sectors;
    }
    Ok(DiskAction::Repartition {
        disk_guid: derive_uuid("diskguid", seed, &spec.name, ""),
        parts,
        first_usable,
        last_usable,
    })
}

/// Matches disks and lays out every entry, then the arrays over them. An array whose members
/// are `rest` partitions gets members of the size the smallest of its disks allows.
pub fn plan(layout: &Layout, disks: &[DiskIdentity]) -> Result<Plan, PlanError> {
    let matched = match_disks(layout, disks).map_err(|e| member_disk_missing(layout, e))?;
    let mut out = Vec::new();
    for (spec, d) in layout.disks.iter().zip(&matched) {
        out.push(DiskPlan {
            name: spec.name.clone(),
            disk: (*d).clone(),
            action: layout_disk(&layout.seed, spec, d)?,
            spec: spec.clone(),
        });
    }
    let caps = rest_caps(layout, &out);
    for (i, cap) in caps.into_iter().enumerate() {
        if cap.is_some() {
            out[i].action = layout_disk_capped(&layout.seed, &out[i].spec, matched[i], cap)?;
        }
    }
    let arrays = super::md::plan_arrays(&layout.seed, &layout.arrays, &out)?;
    let luks = super::luks::plan_luks(&layout.seed, &layout.luks, &out)?;
    Ok(Plan {
        disks: out,
        arrays,
        luks,
    })
}

/// Per disk: the cap for its `rest` partition when that partition is an array member, the
/// smallest size any member of that array got.
fn rest_caps(layout: &Layout, disks: &[DiskPlan]) -> Vec<Option<u64>> {
    let mut caps = vec![None; disks.len()];
    for a in &layout.arrays {
        // (disk index, bytes) of the members that are `rest` partitions.
        let rest: Vec<(usize, u64)> = a
            .members
            .iter()
            .filter_map(|label| {
                disks.iter().enumerate().find_map(|(i, d)| {
                    let spec = d.spec.partitions.iter().find(|p| &p.label == label)?;
                    let DiskAction::Repartition { parts, .. } = &d.action else {
                        return None;
                    };
                    let part = parts.iter().find(|p| &p.label == label)?;
                    (spec.size == SizeSpec::Rest)
                        .then_some((i, part.sectors() * d.disk.sector_size))
                })
            })
            .collect();
        if let Some(min) = rest.iter().map(|(_, b)| *b).min() {
            for (i, b) in rest {
                if b > min {
                    caps[i] = Some(min);
                }
            }
        }
    }
    caps
}

/// A disk that holds array members and matched nothing: say which array loses a member.
fn member_disk_missing(layout: &Layout, e: PlanError) -> PlanError {
    let PlanError::NoMatch { name, .. } = &e else {
        return e;
    };
    let Some(spec) = layout.disks.iter().find(|d| &d.name == name) else {
        return e;
    };
    let hit = layout.arrays.iter().find_map(|a| {
        a.members
            .iter()
            .find(|m| spec.partitions.iter().any(|p| &p.label == *m))
            .map(|m| (a, m))
    });
    match hit {
        Some((a, m)) => PlanError::Array {
            name: a.name.clone(),
            problem: format!("the disk of member {m:?} is missing: {e}"),
        },
        None => e,
    }
}

/// Renders the plan table and, in words, what will be destroyed.
pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    for d in &plan.disks {
        s.push_str(&format!("disk \"{}\" = {}\n", d.name, d.disk.describe()));
        match &d.action {
            DiskAction::Preserve => {
                s.push_str("  PRESERVED: never opened for writing\n");
                for m in &d.spec.mounts {
                    s.push_str(&format!(
                        "  fstab: {} on {}{}\n",
                        m.label,
                        m.mount,
                        if m.mount_during_install {
                            " (mounted read-only during install)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            DiskAction::Repartition {
                parts, disk_guid, ..
            } => {
                s.push_str(&format!(
                    "  DESTROYED: every partition and all data on {} ({}) is erased; new GPT, disk GUID {}, {}-byte sectors\n",
                    d.disk.path,
                    human(d.disk.size_bytes),
                    uuid_string(disk_guid),
                    d.disk.sector_size
                ));
                s.push_str(&format!(
                    "  {:>2}  {:>10}  {:>10}  {:>9}  {:<8}  {:<12}  {:<6}  {:<10}  {:<36}  {}\n",
                    "#",
                    "start",
                    "end",
                    "size",
                    "type",
                    "label",
                    "fs",
                    "mount",
                    "partuuid",
                    "fs-uuid"
                ));
                for p in parts {
                    s.push_str(&format!(
                        "  {:>2}  {:>10}  {:>10}  {:>9}  {:<8}  {:<12}  {:<6}  {:<10}  {:<36}  {}\n",
                        p.number,
                        p.first_lba,
                        p.last_lba,
                        human(p.sectors() * d.disk.sector_size),
                        p.type_name,
                        p.label,
                        p.fs.map(|f| f.name()).unwrap_or("-"),
                        match p.mount.as_deref() {
                            Some(m) => m,
                            None if is_esp_mirror(plan, d, p) => "ESP mirror",
                            None => "-",
                        },
                        uuid_string(&p.part_uuid),
                        match (p.fs, p.fs_uuid) {
                            (Some(fs), Some(u)) => super::mkfs::display_uuid(fs, &u),
                            _ => "-".into(),
                        }
                    ));
                }
            }
        }
    }
    s.push_str(&super::md::render(&plan.arrays));
    s.push_str(&super::luks::render(&plan.luks));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layout::PartSpec;

    pub(crate) fn part(
        label: &str,
        size: SizeSpec,
        fs: Option<FsKind>,
        mount: Option<&str>,
    ) -> PartSpec {
        PartSpec {
            label: label.into(),
            type_name: "linux".into(),
            type_guid: [0x0f; 16],
            size,
            format: fs,
            mount: mount.map(String::from),
            mount_options: None,
            fs_label: None,
            part_uuid: None,
            fs_uuid: None,
            fat32: false,
        }
    }

    pub(crate) fn spec(name: &str, m: Matcher, parts: Vec<PartSpec>) -> DiskSpec {
        DiskSpec {
            name: name.into(),
            matcher: m,
            wipe: true,
            preserve: false,
            removable: false,
            partitions: parts,
            mounts: vec![],
        }
    }

    fn disk(path: &str, serial: &str, size: u64, ss: u64) -> DiskIdentity {
        DiskIdentity {
            path: path.into(),
            size_bytes: size,
            sector_size: ss,
            serial: Some(serial.into()),
            by_id: vec![format!("virtio-{serial}")],
            ..Default::default()
        }
    }

    fn by_serial(s: &str) -> Matcher {
        Matcher {
            serial: Some(s.into()),
            ..Default::default()
        }
    }

    #[test]
    fn standard_layout_512_and_4k() {
        for ss in [512u64, 4096] {
            let d = disk("/dev/vda", "sys0", 1 << 30, ss);
            let s = spec(
                "system",
                by_serial("sys0"),
                vec![
                    part(
                        "esp",
                        SizeSpec::Bytes(100 * MIB),
                        Some(FsKind::Vfat),
                        Some("/boot"),
                    ),
                    part("swap", SizeSpec::Bytes(64 * MIB), Some(FsKind::Swap), None),
                    part("root", SizeSpec::Rest, Some(FsKind::Ext4), Some("/")),
                ],
            );
            let DiskAction::Repartition {
                parts,
                first_usable,
                last_usable,
                ..
            } = layout_disk("h", &s, &d).unwrap()
            else {
                panic!()
            };
            let align = MIB / ss;
            assert_eq!(first_usable, 2 + 16384 / ss, "ss {ss}");
            assert_eq!(last_usable, d.sectors() - 2 - 16384 / ss);
            assert_eq!(parts[0].first_lba, align, "first partition at 1 MiB");
            assert_eq!(parts[0].sectors() * ss, 100 * MIB);
            assert_eq!(parts[1].first_lba, parts[0].last_lba + 1);
            assert_eq!(parts[2].first_lba % align, 0);
            assert_eq!(
                (parts[2].last_lba + 1) % align,
                0,
                "rest ends on a MiB boundary"
            );
            assert!(parts[2].last_lba <= last_usable);
            assert!(
                parts[2].last_lba + align > last_usable,
                "rest uses the disk up to the last whole MiB"
            );
        }
    }

    #[test]
    fn fat32_esp_on_4096_byte_sectors_needs_257_mib() {
        let esp = |mib: u64, fat32: bool| {
            let mut p = part(
                "esp",
                SizeSpec::Bytes(mib * MIB),
                Some(FsKind::Vfat),
                Some("/boot"),
            );
            p.fat32 = fat32;
            spec("system", by_serial("nv0"), vec![p])
        };
        let d4k = disk("/dev/nvme0n1", "nv0", 1 << 30, 4096);
        let e = layout_disk("h", &esp(100, true), &d4k).unwrap_err();
        assert_eq!(
            e.to_string(),
            "disk \"system\" (/dev/nvme0n1): partition \"esp\" (100 MiB) is too small for FAT32 with the disk's 4096-byte sectors: it needs at least 257 MiB (grow it, or set fat32 = false)"
        );
        assert!(layout_disk("h", &esp(257, true), &d4k).is_ok());
        assert!(
            layout_disk("h", &esp(100, false), &d4k).is_ok(),
            "FAT16 fits"
        );
        let d512 = disk("/dev/vda", "nv0", 1 << 30, 512);
        assert!(layout_disk("h", &esp(100, true), &d512).is_ok());
    }

    #[test]
    fn sizes_round_up_to_mib_and_too_small_disk_is_named() {
        let d = disk("/dev/vdb", "s", 64 * MIB, 512);
        let s = spec(
            "small",
            by_serial("s"),
            vec![
                part("a", SizeSpec::Bytes(MIB + 1), None, None),
                part("b", SizeSpec::Bytes(70 * MIB), None, None),
            ],
        );
        let e = layout_disk("h", &s, &d).unwrap_err();
        assert_eq!(
            e.to_string(),
            "disk \"small\" (/dev/vdb): partitions need 72 MiB but the disk has 62 MiB usable"
        );
        let s = spec(
            "small",
            by_serial("s"),
            vec![part("a", SizeSpec::Bytes(MIB + 1), None, None)],
        );
        let DiskAction::Repartition { parts, .. } = layout_disk("h", &s, &d).unwrap() else {
            panic!()
        };
        assert_eq!(parts[0].sectors() * 512, 2 * MIB);
    }

    #[test]
    fn identifiers_are_stable_and_distinct() {
        let a = derive_uuid("partuuid", "host", "system", "root");
        assert_eq!(a, derive_uuid("partuuid", "host", "system", "root"));
        assert_ne!(a, derive_uuid("partuuid", "host2", "system", "root"));
        assert_ne!(a, derive_uuid("fsuuid", "host", "system", "root"));
        assert_eq!(a[6] >> 4, 4, "version nibble");
        assert_eq!(a[8] >> 6, 2, "variant bits");
        assert_eq!(
            uuid_string(&[0xab; 16]),
            "abababab-abab-abab-abab-abababababab"
        );
    }

    #[test]
    fn matching_rules() {
        let disks = vec![
            disk("/dev/vda", "sys0", 10 << 30, 512),
            disk("/dev/vdb", "data0", 20 << 30, 512),
            {
                let mut u = disk("/dev/sda", "usb0", 10 << 30, 512);
                u.usb = true;
                u
            },
        ];
        let layout = |specs: Vec<DiskSpec>| Layout {
            seed: "h".into(),
            disks: specs,
            arrays: vec![],
            luks: vec![],
        };
        let m = match_disks(&layout(vec![spec("s", by_serial("sys0"), vec![])]), &disks).unwrap();
        assert_eq!(m[0].path, "/dev/vda");
        let by_id = Matcher {
            by_id: Some("virtio-data0".into()),
            ..Default::default()
        };
        assert_eq!(
            match_disks(&layout(vec![spec("d", by_id, vec![])]), &disks).unwrap()[0].path,
            "/dev/vdb"
        );
        // Size range matching two disks is ambiguous; the error lists both candidates.
        let range = Matcher {
            size_min: Some(5 << 30),
            size_max: Some(30 << 30),
            ..Default::default()
        };
        let e = match_disks(&layout(vec![spec("any", range.clone(), vec![])]), &disks).unwrap_err();
        let t = e.to_string();
        assert!(
            t.contains("ambiguous, it matches 2 disks")
                && t.contains("/dev/vda")
                && t.contains("/dev/vdb")
                && !t.contains("/dev/sda"),
            "{t}"
        );
        // USB disks only with removable = true.
        let e =
            match_disks(&layout(vec![spec("u", by_serial("usb0"), vec![])]), &disks).unwrap_err();
        assert!(matches!(e, PlanError::NoMatch { .. }));
        let mut s = spec("u", by_serial("usb0"), vec![]);
        s.removable = true;
        assert_eq!(
            match_disks(&layout(vec![s]), &disks).unwrap()[0].path,
            "/dev/sda"
        );
        // Two entries claiming one disk.
        let e = match_disks(
            &layout(vec![
                spec("a", by_serial("sys0"), vec![]),
                spec(
                    "b",
                    Matcher {
                        path: Some("/dev/vda".into()),
                        ..Default::default()
                    },
                    vec![],
                ),
            ]),
            &disks,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "disks \"a\" and \"b\" both match /dev/vda; a disk may be claimed by one entry only"
        );
        let e =
            match_disks(&layout(vec![spec("x", by_serial("nope"), vec![])]), &disks).unwrap_err();
        assert!(e.to_string().starts_with("disk \"x\": match { serial = \"nope\" } found no disk; candidates:\n  /dev/vda (by-id virtio-sys0, serial sys0"), "{e}");
    }

    #[test]
    fn render_says_what_is_destroyed() {
        let disks = vec![
            disk("/dev/vda", "sys0", 1 << 30, 512),
            disk("/dev/vdb", "data0", 1 << 30, 512),
        ];
        let mut keep = spec("data", by_serial("data0"), vec![]);
        keep.preserve = true;
        let l = Layout {
            seed: "h".into(),
            arrays: vec![],
            luks: vec![],
            disks: vec![
                spec(
                    "system",
                    by_serial("sys0"),
                    vec![part("root", SizeSpec::Rest, Some(FsKind::Ext4), Some("/"))],
                ),
                keep,
            ],
        };
        let r = render(&plan(&l, &disks).unwrap());
        assert!(
            r.contains("DESTROYED: every partition and all data on /dev/vda (1 GiB) is erased"),
            "{r}"
        );
        assert!(
            r.contains("disk \"data\" = /dev/vdb")
                && r.contains("PRESERVED: never opened for writing"),
            "{r}"
        );
        assert!(r.contains("root") && r.contains("ext4"), "{r}");
    }

    #[test]
    fn unmounted_vfat_esps_mirror_the_mounted_one() {
        let esp = |label: &str, fs: Option<FsKind>, mount: Option<&str>| {
            let mut p = part(label, SizeSpec::Bytes(100 * MIB), fs, mount);
            p.type_name = "esp".into();
            p
        };
        let disks = vec![
            disk("/dev/vda", "s0", 1 << 30, 512),
            disk("/dev/vdb", "s1", 1 << 30, 512),
            disk("/dev/vdc", "s2", 1 << 30, 512),
        ];
        let l = Layout {
            seed: "h".into(),
            arrays: vec![],
            luks: vec![],
            disks: vec![
                spec(
                    "a",
                    by_serial("s0"),
                    vec![
                        esp("esp-a", Some(FsKind::Vfat), Some("/boot/efi")),
                        part("root", SizeSpec::Rest, Some(FsKind::Ext4), Some("/")),
                    ],
                ),
                spec(
                    "b",
                    by_serial("s1"),
                    vec![esp("esp-b", Some(FsKind::Vfat), None)],
                ),
                // Not formatted: nothing to copy onto, so not a mirror.
                spec("c", by_serial("s2"), vec![esp("esp-c", None, None)]),
            ],
        };
        let p = plan(&l, &disks).unwrap();
        let (main, mirrors) = esps(&p).unwrap();
        assert_eq!(
            (main.disk.name.as_str(), main.part.label.as_str()),
            ("a", "esp-a")
        );
        let m: Vec<_> = mirrors.iter().map(|e| e.part.label.as_str()).collect();
        assert_eq!(m, ["esp-b"]);
        let r = render(&p);
        let line = |label: &str| r.lines().find(|l| l.contains(label)).unwrap().to_string();
        assert!(line("esp-b").contains("ESP mirror"), "{r}");
        assert!(!line("esp-c").contains("ESP mirror"), "{r}");
        assert!(line("esp-a").contains("/boot/efi"), "{r}");
        // Without a mounted ESP nothing is a mirror.
        let mut l2 = l.clone();
        l2.disks[0].partitions[0].mount = None;
        let p2 = plan(&l2, &disks).unwrap();
        assert!(esps(&p2).is_none());
        assert!(!render(&p2).contains("ESP mirror"));
    }

    /// Property test (hand-rolled, deterministic xorshift): random layouts on random disks
    /// never overlap, stay aligned and inside the usable LBAs, or fail with DoesNotFit.
    #[test]
    fn random_layouts_never_overlap_and_stay_aligned() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut fitted = 0;
        for _ in 0..5000 {
            let ss = if rnd(2) == 0 { 512 } else { 4096 };
            let size = (rnd(4096) + 3) * MIB + rnd(MIB / ss) * ss;
            let n = rnd(8) + 1;
            let rest_at = if rnd(2) == 0 { Some(rnd(n)) } else { None };
            let parts: Vec<PartSpec> = (0..n)
                .map(|i| {
                    let sz = if Some(i) == rest_at {
                        SizeSpec::Rest
                    } else {
                        SizeSpec::Bytes(rnd(600 * MIB) + 1)
                    };
                    part(&format!("p{i}"), sz, None, None)
                })
                .collect();
            let d = disk("/dev/x", "s", size, ss);
            let s = spec("d", by_serial("s"), parts);
            match layout_disk("h", &s, &d) {
                Ok(DiskAction::Repartition {
                    parts,
                    first_usable,
                    last_usable,
                    ..
                }) => {
                    fitted += 1;
                    let align = MIB / ss;
                    for (i, p) in parts.iter().enumerate() {
                        assert!(
                            p.first_lba >= first_usable && p.last_lba <= last_usable,
                            "inside usable: {p:?}"
                        );
                        assert_eq!(p.first_lba % align, 0, "aligned start");
                        assert_eq!((p.last_lba + 1) % align, 0, "aligned end");
                        assert!(p.last_lba >= p.first_lba);
                        if i > 0 {
                            assert!(p.first_lba > parts[i - 1].last_lba, "no overlap");
                        }
                    }
                }
                Ok(DiskAction::Preserve) => panic!("partitions given"),
                Err(PlanError::DoesNotFit { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            fitted > 1000,
            "the generator must produce fitting layouts too ({fitted})"
        );
    }
}
