use super::gpt::*;
use super::links::*;
use super::names::*;
use super::probe::*;
use super::sysfs::*;
use super::vpd::*;
use super::*;
use crate::testutil::tool;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

// ---- helpers -------------------------------------------------------------------------

fn run(cmd: &Path, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{}",
        cmd.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sparse(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// `blkid -p -o udev`: the properties udev's blkid builtin would import.
fn blkid_props(blkid: &Path, img: &Path) -> HashMap<String, String> {
    let out = Command::new(blkid)
        .args(["-p", "-o", "udev"])
        .arg(img)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn probe_path(p: &Path) -> Probe {
    probe_fs(&mut fs::File::open(p).unwrap()).unwrap()
}

fn gpt_path(p: &Path) -> Option<Vec<GptPart>> {
    read_gpt(&mut fs::File::open(p).unwrap()).unwrap()
}

/// Decodes the `\xNN` escapes util-linux uses in `-P` output.
fn unescape_x(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
            out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn names(links: &[(String, String)]) -> Vec<&str> {
    links.iter().map(|(n, _)| n.as_str()).collect()
}

// ---- primitives ----------------------------------------------------------------------

#[test]
fn crc32_matches_the_ieee_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414F_A339
    );
}

#[test]
fn escaping_follows_udev_and_blkid() {
    // (input, blkid_encode_string, udev_replace_chars, udev_replace_whitespace)
    let cases = [
        (
            "plain-Name_1.2:3=@#+",
            "plain-Name_1.2:3=@#+",
            "plain-Name_1.2:3=@#+",
            "plain-Name_1.2:3=@#+",
        ),
        ("my disk", "my\\x20disk", "my_disk", "my_disk"),
        ("a/b", "a\\x2fb", "a_b", "a/b"),
        ("back\\slash", "back\\x5cslash", "back_slash", "back\\slash"),
        (
            "hex\\x20kept",
            "hex\\x5cx20kept",
            "hex\\x20kept",
            "hex\\x20kept",
        ),
        ("dätä", "dätä", "dätä", "dätä"),
        (
            "  lead  and\ttrail  ",
            "\\x20\\x20lead\\x20\\x20and\\x09trail\\x20\\x20",
            "__lead__and_trail__",
            "lead_and_trail",
        ),
        ("a(b)*?", "a\\x28b\\x29\\x2a\\x3f", "a_b___", "a(b)*?"),
    ];
    for (input, enc, rep, ws) in cases {
        assert_eq!(encode_string(input), enc, "encode_string({input:?})");
        assert_eq!(replace_chars(input), rep, "replace_chars({input:?})");
        assert_eq!(
            replace_whitespace(input),
            ws,
            "replace_whitespace({input:?})"
        );
    }
    assert_eq!(attr_escape("QEMU NVMe Ctrl   \n"), "QEMU_NVMe_Ctrl");
}

// ---- superblocks against blkid -------------------------------------------------------

/// Makes an image with `mkfs`, probes it, and checks type, UUID and label (through the
/// by-uuid/by-label names) against `blkid -p` on the same file.
fn check_mkfs(
    test: &str,
    mkfs: (&str, &str),
    size: u64,
    args: &[&str],
    want_type: &str,
) -> Option<Probe> {
    let mkfs_tool = tool(mkfs.0, mkfs.1, test)?;
    let blkid = tool("blkid", "util-linux", test)?;
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "fs.img", size);
    let mut all: Vec<&str> = args.to_vec();
    let img_s = img.to_str().unwrap();
    all.push(img_s);
    run(&mkfs_tool, &all);
    let oracle = blkid_props(&blkid, &img);
    let probe = probe_path(&img);
    assert_eq!(
        oracle.get("ID_FS_TYPE").map(String::as_str),
        Some(want_type),
        "{test}: blkid type"
    );
    assert_eq!(probe.fs_type.as_deref(), Some(want_type), "{test}: type");
    assert_eq!(
        probe.fs_uuid.as_ref(),
        oracle.get("ID_FS_UUID"),
        "{test}: uuid"
    );
    let info = BlockInfo {
        kname: "vdb".into(),
        ..BlockInfo::default()
    };
    let links = link_names(&info, &probe);
    let mut want = Vec::new();
    if let Some(u) = oracle.get("ID_FS_UUID_ENC") {
        want.push(format!("by-uuid/{u}"));
    }
    if let Some(l) = oracle.get("ID_FS_LABEL_ENC") {
        want.push(format!("by-label/{l}"));
    }
    assert_eq!(names(&links), want, "{test}: by-uuid/by-label names");
    Some(probe)
}

const E2: (&str, &str) = ("mkfs.ext4", "e2fsprogs");

#[test]
fn probes_ext4_like_blkid() {
    let u = "01234567-89ab-cdef-0123-456789abcdef";
    let Some(p) = check_mkfs(
        "probes_ext4_like_blkid",
        E2,
        16 << 20,
        &["-q", "-F", "-U", u, "-L", "my disk/x"],
        "ext4",
    ) else {
        return;
    };
    assert_eq!(p.fs_uuid.as_deref(), Some(u));
    assert_eq!(p.fs_label.as_deref(), Some("my disk/x"));
}

#[test]
fn probes_ext3_and_ext2_like_blkid() {
    let u = "fedcba98-7654-3210-fedc-ba9876543210";
    let ext3 = ["-q", "-F", "-t", "ext3", "-U", u, "-L", "old3"];
    if let Some(p) = check_mkfs(
        "probes_ext3_and_ext2_like_blkid",
        E2,
        16 << 20,
        &ext3,
        "ext3",
    ) {
        assert_eq!(p.fs_label.as_deref(), Some("old3"));
    }
    let ext2 = ["-q", "-F", "-t", "ext2", "-U", u];
    if let Some(p) = check_mkfs(
        "probes_ext3_and_ext2_like_blkid",
        E2,
        16 << 20,
        &ext2,
        "ext2",
    ) {
        assert_eq!(p.fs_label, None);
    }
}

#[test]
fn probes_xfs_like_blkid() {
    let u = "11111111-2222-3333-4444-555555555555";
    let args = ["-q", "-f", "-m", &format!("uuid={u}"), "-L", "xfs lbl"].map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(p) = check_mkfs(
        "probes_xfs_like_blkid",
        ("mkfs.xfs", "xfsprogs"),
        300 << 20,
        &args,
        "xfs",
    ) {
        assert_eq!(p.fs_label.as_deref(), Some("xfs lbl"));
        assert_eq!(p.fs_uuid.as_deref(), Some(u));
    }
}

#[test]
fn probes_btrfs_like_blkid() {
    let u = "99999999-8888-7777-6666-555555555555";
    let args = ["-q", "-f", "-U", u, "-L", "dätä böot"];
    if let Some(p) = check_mkfs(
        "probes_btrfs_like_blkid",
        ("mkfs.btrfs", "btrfs-progs"),
        128 << 20,
        &args,
        "btrfs",
    ) {
        assert_eq!(p.fs_label.as_deref(), Some("dätä böot"));
    }
}

const VFAT: (&str, &str) = ("mkfs.vfat", "dosfstools");

#[test]
fn probes_vfat_like_blkid() {
    let test = "probes_vfat_like_blkid";
    if let Some(p) = check_mkfs(
        test,
        VFAT,
        64 << 20,
        &["-F", "32", "-i", "1234ABCD", "-n", "ESP PART"],
        "vfat",
    ) {
        assert_eq!(p.fs_uuid.as_deref(), Some("1234-ABCD"));
        assert_eq!(p.fs_label.as_deref(), Some("ESP PART"));
    }
    if let Some(p) = check_mkfs(
        test,
        VFAT,
        32 << 20,
        &["-F", "16", "-i", "DEADBEEF", "-n", "LBL16"],
        "vfat",
    ) {
        assert_eq!(p.fs_uuid.as_deref(), Some("DEAD-BEEF"));
        assert_eq!(p.fs_label.as_deref(), Some("LBL16"));
    }
    if let Some(p) = check_mkfs(test, VFAT, 8 << 20, &["-F", "12", "-i", "0badf00d"], "vfat") {
        assert_eq!(p.fs_uuid.as_deref(), Some("0BAD-F00D"));
        assert_eq!(p.fs_label, None, "no label: NO NAME / no root entry");
    }
}

/// blkid takes the vfat label from the root directory, not the boot sector: rewrite the
/// root-directory entry, then remove it, and compare with blkid each time.
#[test]
fn vfat_label_comes_from_the_root_directory_like_blkid() {
    let test = "vfat_label_comes_from_the_root_directory_like_blkid";
    let (Some(mkfs), Some(blkid)) = (
        tool("mkfs.vfat", "dosfstools", test),
        tool("blkid", "util-linux", test),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "v.img", 64 << 20);
    run(&mkfs, &["-F", "32", "-n", "BOOTLBL", img.to_str().unwrap()]);
    let head = fs::read(&img).unwrap();
    let boot = fat_boot(&head).unwrap();
    let root = usize::try_from(boot.root_dir.0).unwrap();
    assert_eq!(
        &head[root..root + 11],
        b"BOOTLBL    ",
        "mkfs.vfat writes the label into the root dir"
    );

    let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(root as u64)).unwrap();
    f.write_all(b"ROOT LBL   ").unwrap();
    drop(f);
    let oracle = blkid_props(&blkid, &img);
    assert_eq!(
        oracle.get("ID_FS_LABEL_ENC").map(String::as_str),
        Some("ROOT\\x20LBL")
    );
    assert_eq!(probe_path(&img).fs_label.as_deref(), Some("ROOT LBL"));

    let mut f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(root as u64)).unwrap();
    f.write_all(&[0u8; 32]).unwrap();
    drop(f);
    assert_eq!(blkid_props(&blkid, &img).get("ID_FS_LABEL"), None);
    assert_eq!(
        probe_path(&img).fs_label,
        None,
        "boot-sector label alone is not LABEL"
    );
}

#[test]
fn probes_swap_like_blkid() {
    let u = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    let args = ["-U", u, "-L", "swap space"];
    if let Some(p) = check_mkfs(
        "probes_swap_like_blkid",
        ("mkswap", "util-linux"),
        16 << 20,
        &args,
        "swap",
    ) {
        assert_eq!(p.fs_label.as_deref(), Some("swap space"));
        assert_eq!(p.fs_uuid.as_deref(), Some(u));
    }
}

#[test]
fn empty_and_tiny_inputs_have_no_filesystem() {
    for len in [0usize, 1, 511, 512, 1100, 4096, 70000] {
        let p = probe_fs(&mut Cursor::new(vec![0u8; len])).unwrap();
        assert_eq!(p, Probe::default(), "{len} zero bytes");
        assert_eq!(
            read_gpt(&mut Cursor::new(vec![0u8; len])).unwrap(),
            None,
            "{len} zero bytes"
        );
    }
}

// ---- GPT -----------------------------------------------------------------------------

/// One GPT partition for the hand-built images: (type GUID bytes, unique GUID bytes, name).
type RawPart = ([u8; 16], [u8; 16], &'static str);

/// Builds a disk image with a protective MBR and primary + backup GPT for sector size
/// `ss`, with 128 entries of 128 bytes.
fn build_gpt(ss: usize, sectors: usize, parts: &[RawPart]) -> Vec<u8> {
    let mut img = vec![0u8; ss * sectors];
    img[446 + 4] = 0xEE;
    img[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
    img[446 + 12..446 + 16].copy_from_slice(&u32::try_from(sectors - 1).unwrap().to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    let mut array = vec![0u8; 128 * 128];
    for (i, (ty, id, name)) in parts.iter().enumerate() {
        let e = &mut array[i * 128..(i + 1) * 128];
        e[0..16].copy_from_slice(ty);
        e[16..32].copy_from_slice(id);
        e[32..40].copy_from_slice(&(64 + 16 * i as u64).to_le_bytes());
        e[40..48].copy_from_slice(&(64 + 16 * i as u64 + 15).to_le_bytes());
        for (k, u) in name.encode_utf16().enumerate() {
            e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
        }
    }
    let array_sectors = array.len().div_ceil(ss);
    let last = sectors as u64 - 1;
    let header = |my: u64, alt: u64, entries: u64| {
        let mut h = vec![0u8; 92];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + array_sectors as u64).to_le_bytes());
        h[48..56].copy_from_slice(&(last - 1 - array_sectors as u64).to_le_bytes());
        h[56..72].copy_from_slice(&[0x42; 16]);
        h[72..80].copy_from_slice(&entries.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&array).to_le_bytes());
        let crc = crc32(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let backup_entries = last - array_sectors as u64;
    let primary = header(1, last, 2);
    let backup = header(last, 1, backup_entries);
    img[ss..ss + 92].copy_from_slice(&primary);
    img[2 * ss..2 * ss + array.len()].copy_from_slice(&array);
    let b = usize::try_from(backup_entries).unwrap() * ss;
    img[b..b + array.len()].copy_from_slice(&array);
    img[usize::try_from(last).unwrap() * ss..][..92].copy_from_slice(&backup);
    img
}

const LINUX_FS: [u8; 16] = [
    0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4,
];
/// 01234567-89ab-cdef-0011-223344556677 in the on-disk (mixed-endian) layout.
const GUID_A: [u8; 16] = [
    0x67, 0x45, 0x23, 0x01, 0xAB, 0x89, 0xEF, 0xCD, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
];

#[test]
fn reads_a_sgdisk_gpt_like_partx_and_sgdisk() {
    let test = "reads_a_sgdisk_gpt_like_partx_and_sgdisk";
    let (Some(sgdisk), Some(partx)) = (
        tool("sgdisk", "gdisk", test),
        tool("partx", "util-linux", test),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "disk.img", 64 << 20);
    let guids = [
        "AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE",
        "0FC63DAF-8483-4772-8E79-3D69D8477DE5",
        "12345678-9ABC-DEF0-1234-56789ABCDEF0",
    ];
    let labels = ["EFI System", "a/b c  ", "ünï\\code"];
    let mut args = Vec::new();
    for (i, (g, l)) in guids.iter().zip(labels).enumerate() {
        let n = i + 1;
        let end = if n == 3 {
            "0".to_string()
        } else {
            "+8M".to_string()
        };
        args.extend([
            format!("-n={n}:0:{end}"),
            format!("-c={n}:{l}"),
            format!("-u={n}:{g}"),
        ]);
    }
    args.push(img.to_str().unwrap().to_string());
    run(
        &sgdisk,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    let parts = gpt_path(&img).expect("a GPT");
    assert_eq!(parts.len(), 3);
    // libblkid (through partx) as the oracle: number, lowercase GUID, name right-trimmed.
    let out = run(&partx, &["-o", "NR,UUID,NAME", "-P", img.to_str().unwrap()]);
    let mut oracle = Vec::new();
    for line in out.lines() {
        let field = |k: &str| {
            let start = line.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
            let rest = &line[start..];
            unescape_x(&rest[..rest.find('"').unwrap()])
        };
        oracle.push(GptPart {
            number: field("NR").parse().unwrap(),
            part_uuid: field("UUID"),
            part_label: field("NAME"),
        });
    }
    assert_eq!(parts, oracle, "read_gpt vs partx");
    // sgdisk's own view: unique GUID and untrimmed name.
    for p in &parts {
        let info = run(
            &sgdisk,
            &["-i", &p.number.to_string(), img.to_str().unwrap()],
        );
        let guid = info
            .lines()
            .find_map(|l| l.strip_prefix("Partition unique GUID: "))
            .unwrap();
        let name = info
            .lines()
            .find_map(|l| l.strip_prefix("Partition name: '"))
            .unwrap();
        assert_eq!(p.part_uuid, guid.to_lowercase(), "partition {}", p.number);
        assert_eq!(
            p.part_label,
            name.trim_end_matches('\'').trim_end(),
            "partition {}",
            p.number
        );
    }
    assert_eq!(parts[1].part_label, "a/b c");

    // The names those partitions get.
    let probe = Probe {
        part_uuid: Some(parts[1].part_uuid.clone()),
        part_label: Some(parts[1].part_label.clone()),
        ..Probe::default()
    };
    let info = BlockInfo {
        kname: "vda2".into(),
        parent: Some("vda".into()),
        partnum: Some(2),
        ..BlockInfo::default()
    };
    assert_eq!(
        names(&link_names(&info, &probe)),
        [
            "by-partuuid/0fc63daf-8483-4772-8e79-3d69d8477de5",
            "by-partlabel/a\\x2fb\\x20c"
        ]
    );
    let p3 = Probe {
        part_label: Some(parts[2].part_label.clone()),
        ..Probe::default()
    };
    let info3 = BlockInfo {
        kname: "vda3".into(),
        partnum: Some(3),
        ..BlockInfo::default()
    };
    assert_eq!(
        names(&link_names(&info3, &p3)),
        ["by-partlabel/ünï\\x5ccode"]
    );

    // Damaged primary header or primary array: the backup GPT gives the same answer.
    let good = fs::read(&img).unwrap();
    let mut bad = good.clone();
    bad[512 + 40] ^= 0xFF;
    assert_eq!(
        read_gpt(&mut Cursor::new(&bad)).unwrap().as_ref(),
        Some(&parts),
        "bad primary header"
    );
    let mut bad = good.clone();
    bad[1024 + 56] ^= 0xFF;
    assert_eq!(
        read_gpt(&mut Cursor::new(&bad)).unwrap().as_ref(),
        Some(&parts),
        "bad primary array"
    );
    // Both copies damaged: no GPT.
    let last = good.len() - 512;
    bad[last + 40] ^= 0xFF;
    assert_eq!(
        read_gpt(&mut Cursor::new(&bad)).unwrap(),
        None,
        "both headers bad"
    );
    // No protective MBR: not a GPT disk for the kernel either.
    let mut bad = good.clone();
    bad[446 + 4] = 0x83;
    assert_eq!(
        read_gpt(&mut Cursor::new(&bad)).unwrap(),
        None,
        "no protective MBR"
    );
}

/// 4096-byte sectors: `fdisk -b 4096` writes a 4Kn GPT into a plain file; compare with
/// what fdisk lists.
#[test]
fn reads_a_4k_sector_gpt_made_by_fdisk() {
    let test = "reads_a_4k_sector_gpt_made_by_fdisk";
    let Some(fdisk) = tool("fdisk", "fdisk", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let img = sparse(dir.path(), "4k.img", 64 << 20);
    let script = "g\nn\n1\n\n+8M\nn\n2\n\n\nx\nn\n1\nroot fs\nu\n1\n11111111-2222-3333-4444-555555555555\nn\n2\ndata\nr\nw\n";
    let mut child = Command::new(&fdisk)
        .args(["-b", "4096"])
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let bytes = fs::read(&img).unwrap();
    assert_eq!(
        &bytes[4096..4104],
        b"EFI PART",
        "fdisk wrote the header at LBA 1 of 4 KiB"
    );

    let parts = gpt_path(&img).expect("a 4K GPT");
    let listing = run(
        &fdisk,
        &[
            "-b",
            "4096",
            "-l",
            "-o",
            "Device,UUID,Name",
            img.to_str().unwrap(),
        ],
    );
    let img_s = img.to_str().unwrap();
    let oracle: Vec<GptPart> = listing
        .lines()
        .filter_map(|l| l.strip_prefix(img_s))
        .map(|rest| {
            let mut f = rest.split_whitespace();
            let number = f.next().unwrap().parse().unwrap();
            let part_uuid = f.next().unwrap().to_lowercase();
            GptPart {
                number,
                part_uuid,
                part_label: f.collect::<Vec<_>>().join(" "),
            }
        })
        .collect();
    assert_eq!(oracle.len(), 2, "fdisk listing: {listing}");
    assert_eq!(parts, oracle);
    assert_eq!(parts[0].part_uuid, "11111111-2222-3333-4444-555555555555");
    assert_eq!(parts[0].part_label, "root fs");
}

/// Hand-built GPTs (no tools needed): 512 and 4096-byte sectors, backup fallback, and
/// headers that must be refused.
#[test]
fn reads_hand_built_gpts_and_refuses_bad_ones() {
    let parts: [RawPart; 2] = [(LINUX_FS, GUID_A, "root"), (LINUX_FS, [0x11; 16], "swap  ")];
    for ss in [512usize, 4096] {
        let img = build_gpt(ss, 256, &parts);
        let got = read_gpt(&mut Cursor::new(&img))
            .unwrap()
            .unwrap_or_else(|| panic!("{ss}: no GPT"));
        assert_eq!(
            got,
            [
                GptPart {
                    number: 1,
                    part_uuid: "01234567-89ab-cdef-0011-223344556677".into(),
                    part_label: "root".into()
                },
                GptPart {
                    number: 2,
                    part_uuid: "11111111-1111-1111-1111-111111111111".into(),
                    part_label: "swap".into()
                },
            ],
            "{ss}-byte sectors"
        );
        let mut bad = img.clone();
        bad[ss + 8] ^= 1; // header CRC no longer matches: the backup is used
        assert_eq!(
            read_gpt(&mut Cursor::new(&bad)).unwrap().as_ref(),
            Some(&got),
            "{ss}: backup"
        );
    }
    // An unused slot between used ones keeps the numbering (entry index + 1).
    let img = build_gpt(
        512,
        256,
        &[
            (LINUX_FS, GUID_A, "a"),
            ([0; 16], [0; 16], ""),
            (LINUX_FS, [0x22; 16], "c"),
        ],
    );
    let numbers: Vec<u32> = read_gpt(&mut Cursor::new(&img))
        .unwrap()
        .unwrap()
        .iter()
        .map(|p| p.number)
        .collect();
    assert_eq!(numbers, [1, 3]);

    // Headers that lie: re-sign them so only the checked field is wrong.
    let resign = |img: &mut Vec<u8>, ss: usize| {
        img[ss + 16..ss + 20].fill(0);
        let crc = crc32(&img[ss..ss + 92]);
        img[ss + 16..ss + 20].copy_from_slice(&crc.to_le_bytes());
    };
    let base = build_gpt(512, 256, &parts);
    let last = base.len() - 512;
    let cases: [(&str, usize, &[u8]); 5] = [
        ("entry size below 128", 84, &64u32.to_le_bytes()),
        ("huge entry count", 80, &u32::MAX.to_le_bytes()),
        ("my_lba wrong", 24, &7u64.to_le_bytes()),
        ("header size too big", 12, &4096u32.to_le_bytes()),
        ("entries past the end", 72, &(1u64 << 60).to_le_bytes()),
    ];
    for (what, off, value) in cases {
        let mut img = base.clone();
        img[512 + off..512 + off + value.len()].copy_from_slice(value);
        resign(&mut img, 512);
        img[last..last + 8].copy_from_slice(b"NOT PART"); // no backup to fall back on
        assert_eq!(read_gpt(&mut Cursor::new(&img)).unwrap(), None, "{what}");
    }
}

/// Random damage to images carrying every signature must never panic.
#[test]
fn malformed_input_never_panics() {
    let mut base = build_gpt(512, 160, &[(LINUX_FS, GUID_A, "x")]);
    // FAT-looking boot sector fields with extreme values, plus every other magic.
    base[0x0B..0x0D].copy_from_slice(&4096u16.to_le_bytes());
    base[0x0D] = 128;
    base[0x0E..0x10].copy_from_slice(&0xFFFFu16.to_le_bytes());
    base[0x10] = 255;
    base[0x11..0x13].copy_from_slice(&0xFFFFu16.to_le_bytes());
    base[0x15] = 0xF8;
    base[0x16..0x18].copy_from_slice(&0xFFFFu16.to_le_bytes());
    base[0x36..0x3E].copy_from_slice(b"FAT16   ");
    base[1024 + 0x38..1024 + 0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
    base[4086..4096].copy_from_slice(b"SWAPSPACE2");
    base[0x10040..0x10048].copy_from_slice(b"_BHRfS_M");
    let mut fat32 = base.clone();
    fat32[0x52..0x5A].copy_from_slice(b"FAT32   ");
    fat32[0x24..0x28].copy_from_slice(&u32::MAX.to_le_bytes());
    fat32[0x2C..0x30].copy_from_slice(&1u32.to_le_bytes()); // cluster below 2
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let src = if round % 2 == 0 { &base } else { &fat32 };
        let mut img = src.clone();
        for _ in 0..(next() % 16) {
            let at = usize::try_from(next() % img.len() as u64).unwrap();
            img[at] = u8::try_from(next() & 0xFF).unwrap();
        }
        img.truncate(usize::try_from(next() % (img.len() as u64 + 1)).unwrap());
        let _ = probe_fs(&mut Cursor::new(&img)).unwrap();
        let _ = read_gpt(&mut Cursor::new(&img)).unwrap();
    }
    // The structured parsers on junk.
    for len in 0..700 {
        let junk: Vec<u8> = (0..len)
            .map(|_| u8::try_from(next() & 0xFF).unwrap())
            .collect();
        let mut page = junk.clone();
        if page.len() > 1 {
            page[1] = 0x83;
        }
        let _ = scsi_id_from_vpd83(&page, "V", "M");
        if page.len() > 1 {
            page[1] = 0x89;
        }
        let _ = ata_identify_from_vpd89(&page);
        if page.len() > 1 {
            page[1] = 0x80;
        }
        let _ = vpd80_serial(&page);
        let _ = fat_volume_label(&junk);
    }
}

// ---- link names ----------------------------------------------------------------------

fn virtio_disk() -> BlockInfo {
    BlockInfo {
        kname: "vda".into(),
        serial: Some("sys0".into()),
        devpath: "/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda".into(),
        diskseq: Some(9),
        ..BlockInfo::default()
    }
}

#[test]
fn names_a_virtio_disk_and_partition() {
    let disk = virtio_disk();
    assert_eq!(
        names(&link_names(&disk, &Probe::default())),
        [
            "by-id/virtio-sys0",
            "by-path/pci-0000:00:03.0",
            "by-path/virtio-pci-0000:00:03.0",
            "by-diskseq/9"
        ]
    );
    let part = BlockInfo {
        kname: "vda1".into(),
        parent: Some("vda".into()),
        partnum: Some(1),
        devpath: format!("{}/vda1", disk.devpath),
        ..disk.clone()
    };
    let probe = Probe {
        fs_type: Some("vfat".into()),
        fs_uuid: Some("1234-ABCD".into()),
        fs_label: Some("EFI SYS".into()),
        part_uuid: Some("01234567-89ab-cdef-0011-223344556677".into()),
        part_label: Some("EFI System".into()),
    };
    let links = link_names(&part, &probe);
    assert!(links.iter().all(|(_, t)| t == "vda1"));
    assert_eq!(
        names(&links),
        [
            "by-id/virtio-sys0-part1",
            "by-path/pci-0000:00:03.0-part1",
            "by-path/virtio-pci-0000:00:03.0-part1",
            "by-uuid/1234-ABCD",
            "by-label/EFI\\x20SYS",
            "by-partuuid/01234567-89ab-cdef-0011-223344556677",
            "by-partlabel/EFI\\x20System",
            "by-path/pci-0000:00:03.0-part/by-partnum/1",
            "by-path/pci-0000:00:03.0-part/by-uuid/1234-ABCD",
            "by-path/pci-0000:00:03.0-part/by-label/EFI\\x20SYS",
            "by-path/pci-0000:00:03.0-part/by-partuuid/01234567-89ab-cdef-0011-223344556677",
            "by-path/pci-0000:00:03.0-part/by-partlabel/EFI\\x20System",
            "by-diskseq/9-part1",
        ]
    );
    // Serials longer than virtio's 20 bytes are cut; spaces and slashes do not survive.
    let long = BlockInfo {
        serial: Some("0123456789abcdefghijKLMN".into()),
        diskseq: None,
        ..virtio_disk()
    };
    assert_eq!(
        names(&link_names(&long, &Probe::default()))[0],
        "by-id/virtio-0123456789abcdefghij"
    );
    let odd = BlockInfo {
        serial: Some("a b/c".into()),
        ..virtio_disk()
    };
    assert_eq!(
        names(&link_names(&odd, &Probe::default()))[0],
        "by-id/virtio-a_b_c"
    );
    // virtio-mmio on a platform bus (no PCI, so no legacy virtio-pci name).
    let mmio = BlockInfo {
        serial: None,
        diskseq: None,
        devpath: "/sys/devices/platform/a003e00.virtio_mmio/virtio0/block/vda".into(),
        ..virtio_disk()
    };
    assert_eq!(
        names(&link_names(&mmio, &Probe::default())),
        ["by-path/platform-a003e00.virtio_mmio"]
    );
}

fn nvme_disk() -> BlockInfo {
    BlockInfo {
        kname: "nvme0n1".into(),
        model: Some("QEMU NVMe Ctrl".into()),
        serial: Some("deadbeef".into()),
        wwid: Some("nvme.1b36-6465616462656566-51454d55204e564d65204374726c-00000001".into()),
        nsid: Some(1),
        devpath: "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1".into(),
        ..BlockInfo::default()
    }
}

#[test]
fn names_nvme_namespaces_and_partitions() {
    let want = [
        "by-id/nvme-nvme.1b36-6465616462656566-51454d55204e564d65204374726c-00000001",
        "by-id/nvme-QEMU_NVMe_Ctrl_deadbeef",
        "by-id/nvme-QEMU_NVMe_Ctrl_deadbeef_1",
        "by-path/pci-0000:00:04.0-nvme-1",
    ];
    assert_eq!(names(&link_names(&nvme_disk(), &Probe::default())), want);
    let part = BlockInfo {
        kname: "nvme0n1p2".into(),
        parent: Some("nvme0n1".into()),
        partnum: Some(2),
        devpath: "/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2".into(),
        ..nvme_disk()
    };
    let want_part: Vec<String> = want.iter().map(|w| format!("{w}-part2")).collect();
    let mut want_part: Vec<&str> = want_part.iter().map(String::as_str).collect();
    want_part.push("by-path/pci-0000:00:04.0-nvme-1-part/by-partnum/2");
    assert_eq!(names(&link_names(&part, &Probe::default())), want_part);

    // Native multipath: the namespace lives under nvme-subsystem; by-path comes from the
    // controller, or is not made when the controller is unknown.
    let mp = BlockInfo {
        devpath: "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1".into(),
        nvme_ctrl_path: Some("/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0".into()),
        ..nvme_disk()
    };
    assert_eq!(names(&link_names(&mp, &Probe::default())), want);
    let mp_unknown = BlockInfo {
        nvme_ctrl_path: None,
        ..mp
    };
    assert_eq!(
        names(&link_names(&mp_unknown, &Probe::default())),
        &want[..3]
    );
    // No nsid attribute: udev names no NVMe path.
    let no_nsid = BlockInfo {
        nsid: None,
        ..nvme_disk()
    };
    assert!(!names(&link_names(&no_nsid, &Probe::default()))
        .iter()
        .any(|n| n.starts_with("by-path/")));
    // A real drive: EUI wwid, model with spaces, controller behind a PCIe bridge.
    let samsung = BlockInfo {
        model: Some("Samsung SSD 970 EVO Plus 1TB            ".into()),
        serial: Some("S4EWNX0R123456A     ".into()),
        wwid: Some("eui.0025388b91b1f0a1".into()),
        devpath: "/sys/devices/pci0000:00/0000:00:1c.4/0000:3c:00.0/nvme/nvme0/nvme0n1".into(),
        ..nvme_disk()
    };
    assert_eq!(
        names(&link_names(&samsung, &Probe::default())),
        [
            "by-id/nvme-eui.0025388b91b1f0a1",
            "by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456A",
            "by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456A_1",
            "by-path/pci-0000:3c:00.0-nvme-1",
        ]
    );
}

fn sata_disk() -> BlockInfo {
    BlockInfo {
        kname: "sda".into(),
        vendor: Some("ATA     ".into()),
        model: Some("Samsung SSD 860 EVO 500GB".into()),
        serial: Some("  S3Z2NB0K123456X".into()),
        wwn: Some("0x5002538e40a1b2c3".into()),
        ata_port_no: Some(1),
        devpath: "/sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda"
            .into(),
        ..BlockInfo::default()
    }
}

#[test]
fn names_sata_and_scsi_disks() {
    let want = [
        "by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z2NB0K123456X",
        "by-id/wwn-0x5002538e40a1b2c3",
        "by-path/pci-0000:00:1f.2-ata-1.0",
        "by-path/pci-0000:00:1f.2-ata-1",
    ];
    assert_eq!(names(&link_names(&sata_disk(), &Probe::default())), want);
    let part = BlockInfo {
        kname: "sda3".into(),
        parent: Some("sda".into()),
        partnum: Some(3),
        devpath: format!("{}/sda3", sata_disk().devpath),
        ..sata_disk()
    };
    let got = link_names(&part, &Probe::default());
    assert_eq!(
        names(&got)[..4],
        want.map(|w| format!("{w}-part3"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()[..]
    );
    // Port multiplier: bus != 0 gives ata-<port>.<bus>.0.
    let pmp = BlockInfo {
        devpath: "/sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:1:0/2:1:0:0/block/sda"
            .into(),
        ..sata_disk()
    };
    assert!(
        names(&link_names(&pmp, &Probe::default())).contains(&"by-path/pci-0000:00:1f.2-ata-1.1.0")
    );
    // Unknown port number: no by-path rather than a wrong one.
    let no_port = BlockInfo {
        ata_port_no: None,
        ..sata_disk()
    };
    assert_eq!(names(&link_names(&no_port, &Probe::default())), &want[..2]);
    // No wwn from IDENTIFY: the kernel's naa. wwid gives the same wwn- name.
    let naa = BlockInfo {
        wwn: None,
        wwid: Some("naa.5002538E40A1B2C3".into()),
        ..sata_disk()
    };
    assert_eq!(
        names(&link_names(&naa, &Probe::default()))[1],
        "by-id/wwn-0x5002538e40a1b2c3"
    );

    // virtio-scsi with QEMU's vendor-specific designator (scsi_id ID_SERIAL from VPD 0x83).
    let scsi = BlockInfo {
        kname: "sdb".into(),
        vendor: Some("QEMU    ".into()),
        model: Some("QEMU HARDDISK   ".into()),
        id_serial: Some("0QEMU    QEMU HARDDISK   drive-scsi0-0-1-0".into()),
        scsi_host_base: Some(2),
        devpath: "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host2/target2:0:1/2:0:1:0/block/sdb"
            .into(),
        ..BlockInfo::default()
    };
    assert_eq!(
        names(&link_names(&scsi, &Probe::default())),
        [
            "by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-1-0",
            "by-path/pci-0000:00:05.0-scsi-0:0:1:0"
        ]
    );
    // Without VPD data: the NAA wwid (scsi_id's "3" + NAA) and its wwn- name.
    let naa_scsi = BlockInfo {
        id_serial: None,
        wwid: Some("naa.6001405abcdef0123456789abcdef012".into()),
        ..scsi.clone()
    };
    assert_eq!(
        names(&link_names(&naa_scsi, &Probe::default()))[..2],
        [
            "by-id/scsi-36001405abcdef0123456789abcdef012",
            "by-id/wwn-0x6001405abcdef0123456789abcdef012"
        ]
    );
    // USB mass storage: by-path through the USB interface, no scsi- by-id (udev uses usb_id).
    let usb = BlockInfo {
        kname: "sdc".into(),
        vendor: Some("SanDisk ".into()),
        model: Some("Cruzer Blade    ".into()),
        serial: Some("4C530001234".into()),
        scsi_host_base: Some(6),
        devpath: "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdc".into(),
        ..BlockInfo::default()
    };
    assert_eq!(
        names(&link_names(&usb, &Probe::default())),
        ["by-path/pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0"]
    );
    // iSCSI: path_id needs session attributes we do not read, so no by-path.
    let iscsi = BlockInfo {
        devpath: "/sys/devices/platform/host3/session1/target3:0:0/3:0:0:1/block/sdd".into(),
        ..scsi
    };
    assert!(!names(&link_names(&iscsi, &Probe::default()))
        .iter()
        .any(|n| n.starts_with("by-path/")));
}

#[test]
fn labels_are_escaped_like_udev() {
    let info = BlockInfo {
        kname: "vdb".into(),
        ..BlockInfo::default()
    };
    let cases = [
        ("my disk/x", "by-label/my\\x20disk\\x2fx"),
        ("trail   ", "by-label/trail"),
        ("back\\slash", "by-label/back\\x5cslash"),
        ("über", "by-label/über"),
        ("a\"b'c", "by-label/a\\x22b\\x27c"),
    ];
    for (label, want) in cases {
        let probe = Probe {
            fs_label: Some(label.into()),
            ..Probe::default()
        };
        assert_eq!(names(&link_names(&info, &probe)), [want], "label {label:?}");
        let probe = Probe {
            part_label: Some(label.into()),
            ..Probe::default()
        };
        let want = want.replace("by-label/", "by-partlabel/");
        assert_eq!(
            names(&link_names(&info, &probe)),
            [want.as_str()],
            "partlabel {label:?}"
        );
    }
    let blank = Probe {
        fs_label: Some("   ".into()),
        part_label: Some(String::new()),
        ..Probe::default()
    };
    assert!(link_names(&info, &blank).is_empty());
}

#[test]
fn only_devices_udev_handles_get_names() {
    let probe = Probe {
        fs_type: Some("ext4".into()),
        fs_uuid: Some("u-1".into()),
        ..Probe::default()
    };
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "loop0",
            "/sys/devices/virtual/block/loop0",
            &["by-uuid/u-1"],
        ),
        ("dm-0", "/sys/devices/virtual/block/dm-0", &["by-uuid/u-1"]),
        (
            "md127",
            "/sys/devices/virtual/block/md127",
            &["by-uuid/u-1"],
        ),
        ("zram0", "/sys/devices/virtual/block/zram0", &[]),
        ("ram0", "/sys/devices/virtual/block/ram0", &[]),
        (
            "mmcblk0boot0",
            "/sys/devices/platform/soc/fe340000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0boot0",
            &["by-path/platform-fe340000.mmc-boot0"],
        ),
    ];
    for (kname, devpath, want) in cases {
        let info = BlockInfo {
            kname: kname.into(),
            devpath: devpath.into(),
            ..BlockInfo::default()
        };
        assert_eq!(names(&link_names(&info, &probe)), want, "{kname}");
    }
    let emmc = BlockInfo {
        kname: "mmcblk0".into(),
        model: Some("DG4016".into()),
        serial: Some("0x12345678".into()),
        devpath: "/sys/devices/platform/soc/fe340000.mmc/mmc_host/mmc0/mmc0:0001/block/mmcblk0"
            .into(),
        ..BlockInfo::default()
    };
    assert_eq!(
        names(&link_names(&emmc, &Probe::default())),
        [
            "by-id/mmc-DG4016_0x12345678",
            "by-path/platform-fe340000.mmc"
        ]
    );
}

// ---- VPD parsing ---------------------------------------------------------------------

/// VPD page 0x89 with IDENTIFY data: strings byte-swapped per word, WWN in words 108-111.
fn vpd89(model: &str, serial: &str, wwn: Option<u64>) -> Vec<u8> {
    let mut page = vec![0u8; 572];
    page[1] = 0x89;
    page[2..4].copy_from_slice(&568u16.to_be_bytes());
    page[56] = 0xEC;
    let id = &mut page[60..];
    let mut put = |word: usize, s: &str, words: usize| {
        let padded = format!("{s:<width$}", width = words * 2);
        for (k, pair) in padded.as_bytes().chunks(2).enumerate() {
            id[(word + k) * 2] = pair[1];
            id[(word + k) * 2 + 1] = pair[0];
        }
    };
    put(10, serial, 10);
    put(27, model, 20);
    if let Some(w) = wwn {
        id[87 * 2..87 * 2 + 2].copy_from_slice(&0x4100u16.to_le_bytes());
        for k in 0..4 {
            let v = u16::try_from((w >> (48 - 16 * k)) & 0xFFFF).unwrap();
            id[(108 + k) * 2..(108 + k) * 2 + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    page
}

/// VPD page 0x83 from (code set, designator type, body) descriptors.
fn vpd83(descriptors: &[(u8, u8, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (code_set, ty, id) in descriptors {
        body.extend([*code_set, *ty, 0, u8::try_from(id.len()).unwrap()]);
        body.extend_from_slice(id);
    }
    let mut page = vec![0, 0x83];
    page.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
    page.extend(body);
    page
}

#[test]
fn parses_ata_identify_and_scsi_vpd_pages() {
    let id = ata_identify_from_vpd89(&vpd89(
        "Samsung SSD 860 EVO 500GB",
        "S3Z2NB0K123456X",
        Some(0x5002538e40a1b2c3),
    ));
    assert_eq!(
        id,
        Some(AtaIdent {
            model: "Samsung SSD 860 EVO 500GB".into(),
            serial: "S3Z2NB0K123456X".into(),
            wwn: Some("0x5002538e40a1b2c3".into()),
        })
    );
    assert_eq!(
        ata_identify_from_vpd89(&vpd89("QEMU HARDDISK", "QM00001", None))
            .unwrap()
            .wwn,
        None
    );
    assert_eq!(
        ata_identify_from_vpd89(&vpd89("x", "y", None)[..300]),
        None,
        "short page"
    );

    // QEMU scsi-hd: only a vendor-specific ASCII designator.
    let qemu = vpd83(&[(2, 0, b"drive-scsi0-0-1-0")]);
    assert_eq!(
        scsi_id_from_vpd83(&qemu, "QEMU", "QEMU HARDDISK"),
        Some(("0QEMU    QEMU HARDDISK   drive-scsi0-0-1-0".into(), None))
    );
    // NAA beats T10 and vendor-specific whatever the order; binary is printed in hex.
    let naa: &[u8] = &[
        0x60, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
        0x12,
    ];
    let lio = vpd83(&[
        (2, 0, b"vendor-thing"),
        (2, 1, b"LIO-ORG block1"),
        (1, 3, naa),
    ]);
    assert_eq!(
        scsi_id_from_vpd83(&lio, "LIO-ORG", "block1"),
        Some((
            "36001405abcdef0123456789abcdef012".into(),
            Some("0x6001405abcdef0123456789abcdef012".into())
        ))
    );
    // A target-port (association 1) NAA is not the device's id.
    let port_only = vpd83(&[(1, 0x13, naa), (2, 1, b"ATA     QEMU HARDDISK   QM00003")]);
    assert_eq!(
        scsi_id_from_vpd83(&port_only, "ATA", "QEMU HARDDISK")
            .unwrap()
            .0,
        "1ATA     QEMU HARDDISK   QM00003"
    );
    assert_eq!(
        vpd80_serial(&[0, 0x80, 0, 4, b'1', b'2', b'3', b'4']).as_deref(),
        Some("1234")
    );
    assert_eq!(vpd80_serial(&[0, 0x80, 0, 4, b' ', b' ']), None);
}

// ---- sysfs ---------------------------------------------------------------------------

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// A fake sysfs: a virtio disk with two partitions, a multipath NVMe namespace with a
/// partition (plus its hidden per-path device), a SATA disk on the second port of an AHCI
/// controller, a virtio-scsi disk, and a loop device.
fn fake_sysfs(sys: &Path) {
    let dev = sys.join("devices");
    let class = sys.join("class/block");
    fs::create_dir_all(&class).unwrap();
    let link = |name: &str, target: &Path| symlink(target, class.join(name)).unwrap();

    let vda = dev.join("pci0000:00/0000:00:03.0/virtio1/block/vda");
    write(&vda.join("serial"), b"sys0\n");
    write(&vda.join("diskseq"), b"7\n");
    write(&vda.join("vda1/partition"), b"1\n");
    write(&vda.join("vda2/partition"), b"2\n");
    link("vda", &vda);
    link("vda1", &vda.join("vda1"));
    link("vda2", &vda.join("vda2"));

    let subsys = dev.join("virtual/nvme-subsystem/nvme-subsys0");
    write(
        &subsys.join("model"),
        b"QEMU NVMe Ctrl                          \n",
    );
    write(&subsys.join("serial"), b"deadbeef            \n");
    let ns = subsys.join("nvme0n1");
    write(&ns.join("wwid"), b"eui.0025388b91b1f0a1\n");
    write(&ns.join("nsid"), b"1\n");
    symlink(&subsys, ns.join("device")).unwrap();
    write(&ns.join("nvme0n1p1/partition"), b"1\n");
    link("nvme0n1", &ns);
    link("nvme0n1p1", &ns.join("nvme0n1p1"));
    let ctrl = dev.join("pci0000:00/0000:00:04.0/nvme/nvme0");
    write(&ctrl.join("nvme0c0n1/hidden"), b"1\n");
    link("nvme0c0n1", &ctrl.join("nvme0c0n1"));
    fs::create_dir_all(sys.join("class/nvme")).unwrap();
    symlink(&ctrl, sys.join("class/nvme/nvme0")).unwrap();

    let ata = dev.join("pci0000:00/0000:00:1f.2/ata3");
    write(&ata.join("ata_port/ata3/port_no"), b"2\n");
    let sdev = ata.join("host2/target2:0:0/2:0:0:0");
    write(&sdev.join("vendor"), b"ATA     \n");
    write(&sdev.join("model"), b"Samsung SSD 860 \n");
    write(&sdev.join("wwid"), b"naa.5002538e40a1b2c3\n");
    write(
        &sdev.join("vpd_pg89"),
        &vpd89(
            "Samsung SSD 860 EVO 500GB",
            "S3Z2NB0K123456X",
            Some(0x5002538e40a1b2c3),
        ),
    );
    let sda = sdev.join("block/sda");
    fs::create_dir_all(&sda).unwrap();
    symlink(&sdev, sda.join("device")).unwrap();
    write(&sda.join("sda1/partition"), b"1\n");
    link("sda", &sda);
    link("sda1", &sda.join("sda1"));

    let virtio_scsi = dev.join("pci0000:00/0000:00:05.0/virtio2");
    fs::create_dir_all(virtio_scsi.join("host0")).unwrap();
    let sdev = virtio_scsi.join("host1/target1:0:1/1:0:1:0");
    write(&sdev.join("vendor"), b"QEMU    \n");
    write(&sdev.join("model"), b"QEMU HARDDISK   \n");
    write(
        &sdev.join("vpd_pg83"),
        &vpd83(&[(2, 0, b"drive-scsi0-0-1-0")]),
    );
    write(
        &sdev.join("vpd_pg80"),
        &[0, 0x80, 0, 4, b'1', b'2', b'3', b'4'],
    );
    let sdb = sdev.join("block/sdb");
    fs::create_dir_all(&sdb).unwrap();
    symlink(&sdev, sdb.join("device")).unwrap();
    link("sdb", &sdb);

    let loop0 = dev.join("virtual/block/loop0");
    fs::create_dir_all(&loop0).unwrap();
    link("loop0", &loop0);
}

#[test]
fn reads_block_infos_from_a_fake_sysfs() {
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    fake_sysfs(&sys);
    let infos = read_block_infos(&sys).unwrap();
    let knames: Vec<&str> = infos.iter().map(|i| i.kname.as_str()).collect();
    assert_eq!(
        knames,
        [
            "loop0",
            "nvme0n1",
            "nvme0n1p1",
            "sda",
            "sda1",
            "sdb",
            "vda",
            "vda1",
            "vda2"
        ],
        "hidden nvme0c0n1 left out"
    );
    let by = |k: &str| infos.iter().find(|i| i.kname == k).unwrap().clone();

    assert_eq!(
        by("vda2"),
        BlockInfo {
            kname: "vda2".into(),
            parent: Some("vda".into()),
            partnum: Some(2),
            serial: Some("sys0".into()),
            devpath: "/sys/devices/pci0000:00/0000:00:03.0/virtio1/block/vda/vda2".into(),
            subsystem_hint: Some("virtio".into()),
            diskseq: Some(7),
            ..BlockInfo::default()
        }
    );
    assert_eq!(
        by("nvme0n1"),
        BlockInfo {
            kname: "nvme0n1".into(),
            model: Some("QEMU NVMe Ctrl                          ".into()),
            serial: Some("deadbeef            ".into()),
            wwid: Some("eui.0025388b91b1f0a1".into()),
            nsid: Some(1),
            devpath: "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1".into(),
            subsystem_hint: Some("nvme".into()),
            nvme_ctrl_path: Some("/sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0".into()),
            ..BlockInfo::default()
        }
    );
    let sda = by("sda");
    assert_eq!(
        sda.model.as_deref().map(str::trim_end),
        Some("Samsung SSD 860 EVO 500GB"),
        "full model from IDENTIFY"
    );
    assert_eq!(sda.ata_port_no, Some(2));
    assert_eq!(sda.subsystem_hint.as_deref(), Some("ata"));
    let sdb = by("sdb");
    assert_eq!(sdb.scsi_host_base, Some(0), "host1 beside host0");
    assert_eq!(sdb.serial.as_deref(), Some("1234"));
    assert_eq!(by("loop0").devpath, "/sys/devices/virtual/block/loop0");

    let all: BTreeMap<String, Vec<String>> = infos
        .iter()
        .map(|i| {
            (
                i.kname.clone(),
                link_names(i, &Probe::default())
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect(),
            )
        })
        .collect();
    let has = |k: &str, n: &str| {
        assert!(
            all[k].iter().any(|x| x == n),
            "{k}: {n} missing from {:?}",
            all[k]
        )
    };
    has("vda", "by-id/virtio-sys0");
    has("vda2", "by-id/virtio-sys0-part2");
    has("vda2", "by-path/pci-0000:00:03.0-part2");
    has("vda", "by-diskseq/7");
    has("nvme0n1", "by-id/nvme-eui.0025388b91b1f0a1");
    has("nvme0n1", "by-id/nvme-QEMU_NVMe_Ctrl_deadbeef_1");
    has("nvme0n1p1", "by-id/nvme-QEMU_NVMe_Ctrl_deadbeef-part1");
    has("nvme0n1p1", "by-path/pci-0000:00:04.0-nvme-1-part1");
    has("sda", "by-id/ata-Samsung_SSD_860_EVO_500GB_S3Z2NB0K123456X");
    has("sda", "by-id/wwn-0x5002538e40a1b2c3");
    has("sda", "by-path/pci-0000:00:1f.2-ata-2.0");
    has("sda1", "by-path/pci-0000:00:1f.2-ata-2-part1");
    has("sdb", "by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-1-0");
    has("sdb", "by-path/pci-0000:00:05.0-scsi-1:0:1:0");
    assert!(all["loop0"].is_empty());
}

#[test]
fn missing_class_block_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_block_infos(dir.path()).unwrap_err();
    assert!(err.to_string().contains("class/block"), "{err}");
}

// ---- creating links ------------------------------------------------------------------

/// Every symlink under `root` with its target, relative paths.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_symlink() {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(
                    rel,
                    fs::read_link(e.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn creates_relative_links_and_replaces_stale_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    for node in ["vda", "vda1", "vdb", "other"] {
        write(&dev.join(node), b"");
    }
    let disk = dev.join("disk");
    fs::create_dir_all(disk.join("by-id")).unwrap();
    fs::create_dir_all(disk.join("by-uuid")).unwrap();
    fs::create_dir_all(disk.join("by-label/gone")).unwrap();
    symlink("../../vdb", disk.join("by-id/virtio-sys0")).unwrap(); // wrong target: replaced
    symlink("../../vda1", disk.join("by-uuid/old-uuid")).unwrap(); // our device, old name: removed
    symlink("../../sdz", disk.join("by-id/dangling")).unwrap(); // device gone: removed
    symlink("../../other", disk.join("by-id/someone-else")).unwrap(); // live, not ours: kept

    let links = pairs(&[
        ("by-id/virtio-sys0", "vda"),
        ("by-id/virtio-sys0-part1", "vda1"),
        ("by-uuid/new-uuid", "vda1"),
        ("by-path/pci-0000:00:03.0-part/by-uuid/new-uuid", "vda1"),
    ]);
    assert_eq!(create_links(&dev, &links).unwrap(), 4);
    let want: BTreeMap<String, String> = [
        ("by-id/someone-else", "../../other"),
        ("by-id/virtio-sys0", "../../vda"),
        ("by-id/virtio-sys0-part1", "../../vda1"),
        (
            "by-path/pci-0000:00:03.0-part/by-uuid/new-uuid",
            "../../../../vda1",
        ),
        ("by-uuid/new-uuid", "../../vda1"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(snapshot(&disk), want);
    assert!(
        !disk.join("by-label").exists(),
        "empty directories are removed"
    );
    // The links resolve to the nodes.
    for (rel, node) in [
        ("by-id/virtio-sys0", "vda"),
        ("by-path/pci-0000:00:03.0-part/by-uuid/new-uuid", "vda1"),
    ] {
        assert_eq!(
            fs::canonicalize(disk.join(rel)).unwrap(),
            fs::canonicalize(dev.join(node)).unwrap()
        );
    }
    // Idempotent: same count, same links, no temporary files left.
    assert_eq!(create_links(&dev, &links).unwrap(), 4);
    assert_eq!(snapshot(&disk), want);
    let leftovers: Vec<_> = fs::read_dir(disk.join("by-id"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn refuses_unsafe_names_and_keeps_the_first_claimant() {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("dev");
    let links = pairs(&[
        ("by-label/..", "vda1"),
        ("../escape", "vda1"),
        ("by-id//x", "vda1"),
        ("by-id/ok", "../etc/passwd"),
        ("by-id/dup", "vda"),
        ("by-id/dup", "vdb"),
        ("by-id/dup", "vda"),
        ("by-id/cciss-disk", "cciss!c0d0"),
    ]);
    assert_eq!(create_links(&dev, &links).unwrap(), 2);
    let got = snapshot(&dev.join("disk"));
    let want: BTreeMap<String, String> = [
        ("by-id/dup", "../../vda"),
        ("by-id/cciss-disk", "../../cciss/c0d0"),
    ]
    .into_iter()
    .map(|(a, b)| (a.into(), b.into()))
    .collect();
    assert_eq!(got, want);
    assert!(!dir.path().join("escape").exists() && !dev.join("escape").exists());
}

/// The whole chain on files: a GPT disk image as `vda` and a filesystem image as `vda1`,
/// named from a fake sysfs and linked under a fake /dev.
#[test]
fn names_images_end_to_end() {
    let test = "names_images_end_to_end";
    let (Some(sgdisk), Some(mkfs)) = (
        tool("sgdisk", "gdisk", test),
        tool("mkfs.ext4", "e2fsprogs", test),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sys = dir.path().join("sys");
    fake_sysfs(&sys);
    let dev = dir.path().join("dev");
    fs::create_dir_all(&dev).unwrap();
    let vda = sparse(&dev, "vda", 32 << 20);
    run(
        &sgdisk,
        &[
            "-n=1:0:0",
            "-c=1:root fs",
            "-u=1:5B8A5D2E-0B9A-4F6B-9D43-1C0E2A8B7F10",
            vda.to_str().unwrap(),
        ],
    );
    let vda1 = sparse(&dev, "vda1", 16 << 20);
    run(
        &mkfs,
        &[
            "-q",
            "-F",
            "-U",
            "c0ffee00-1234-4321-abcd-0123456789ab",
            "-L",
            "rootfs",
            vda1.to_str().unwrap(),
        ],
    );

    let mut all = Vec::new();
    for info in read_block_infos(&sys)
        .unwrap()
        .iter()
        .filter(|i| i.kname.starts_with("vda"))
    {
        let node = dev.join(&info.kname);
        let mut probe = if node.exists() {
            probe_path(&node)
        } else {
            Probe::default()
        };
        if let (Some(parent), Some(n)) = (&info.parent, info.partnum) {
            if let Some(p) =
                gpt_path(&dev.join(parent)).and_then(|ps| ps.into_iter().find(|p| p.number == n))
            {
                probe.part_uuid = Some(p.part_uuid);
                probe.part_label = Some(p.part_label);
            }
        }
        all.extend(link_names(info, &probe));
    }
    create_links(&dev, &all).unwrap();
    for (rel, node) in [
        ("by-uuid/c0ffee00-1234-4321-abcd-0123456789ab", "vda1"),
        ("by-label/rootfs", "vda1"),
        ("by-partuuid/5b8a5d2e-0b9a-4f6b-9d43-1c0e2a8b7f10", "vda1"),
        ("by-partlabel/root\\x20fs", "vda1"),
        ("by-id/virtio-sys0", "vda"),
        ("by-path/pci-0000:00:03.0-part1", "vda1"),
    ] {
        let link = dev.join("disk").join(rel);
        assert_eq!(
            fs::canonicalize(&link).unwrap(),
            fs::canonicalize(dev.join(node)).unwrap(),
            "{rel}"
        );
    }
}
