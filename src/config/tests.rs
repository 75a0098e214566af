//! Config tests: the shipped examples and the documentation's examples load; every rule of
//! docs/config.md is broken once and the problem must name its key path.

use super::units::{GIB, MIB};
use super::*;
use crate::config::layout::{FsKind, SizeSpec};

const TWO_DISKS: &str = include_str!("../../examples/two-disks/anemos.toml");
const MINIMAL: &str = include_str!("../../examples/minimal/anemos.toml");
const DOCS: &str = include_str!("../../docs/config.md");

/// A wiped "system" disk holding `parts` (the inside of `partitions = [ ... ]`).
fn sys(parts: &str) -> String {
    format!("[[disk]]\nname = \"system\"\nmatch = {{ serial = \"s0\" }}\nwipe = true\npartitions = [\n{parts}\n]\n")
}

/// A preserved "data" disk with `mounts`.
fn data(mounts: &str) -> String {
    format!("[[disk]]\nname = \"data\"\nmatch = {{ serial = \"d0\" }}\npreserve = true\nmounts = [ {mounts} ]\n")
}

const ROOT: &str =
    r#"{ label = "root", type = "root", size = "rest", format = "ext4", mount = "/" },"#;
const ESP: &str =
    r#"{ label = "esp", type = "esp", size = "512MiB", format = "vfat", mount = "/boot" },"#;

fn load_err(text: &str) -> ConfigErrors {
    match load(text, "anemos.toml") {
        Ok(v) => panic!("expected problems, got {v:#?}\n--- config:\n{text}"),
        Err(e) => e,
    }
}

/// Loading `text` must report exactly one problem, at `key`, whose message contains `want`.
fn assert_one(case: &str, text: &str, key: &str, want: &str) {
    let errs = load_err(text);
    let shown = errs.to_string();
    assert_eq!(
        errs.errors.len(),
        1,
        "{case}: expected one problem, got:\n{shown}\n--- config:\n{text}"
    );
    let e = &errs.errors[0];
    assert_eq!(e.key, key, "{case}: wrong key path in:\n{shown}");
    assert!(
        e.message.contains(want),
        "{case}: message lacks {want:?}:\n{shown}"
    );
    assert!(
        shown.starts_with("anemos.toml:"),
        "{case}: not prefixed with the file name: {shown}"
    );
    assert!(
        shown.contains(&format!(": {key}: ")),
        "{case}: display lacks the key path: {shown}"
    );
}

#[test]
fn examples_load() {
    let v = load(TWO_DISKS, "two-disks/anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.hostname.as_deref(), Some("web1"));
    assert_eq!(v.layout.seed, "web1");
    let [system, data] = &v.layout.disks[..] else {
        panic!("two disks expected: {:#?}", v.layout)
    };
    assert_eq!(
        (system.name.as_str(), system.wipe, system.preserve),
        ("system", true, false)
    );
    assert_eq!(system.matcher.serial.as_deref(), Some("sys0"));
    assert_eq!(
        (system.matcher.size_min, system.matcher.size_max),
        (Some(16 * GIB), Some(2048 * GIB))
    );
    let labels: Vec<&str> = system.partitions.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["esp", "swap", "root"]);
    let esp = &system.partitions[0];
    assert_eq!(
        (esp.size, esp.format, esp.fat32),
        (SizeSpec::Bytes(512 * MIB), Some(FsKind::Vfat), true)
    );
    assert_eq!(esp.type_guid[..4], [0xc1, 0x2a, 0x73, 0x28]);
    assert_eq!(esp.mount.as_deref(), Some("/boot"));
    let root = &system.partitions[2];
    assert_eq!(
        (
            root.size,
            root.mount.as_deref(),
            root.mount_options.as_deref()
        ),
        (SizeSpec::Rest, Some("/"), Some("noatime"))
    );
    assert!(!root.fat32 && root.part_uuid.is_none() && root.fs_uuid.is_none());
    assert_eq!(
        (data.preserve, data.wipe, data.partitions.len()),
        (true, false, 0)
    );
    assert_eq!(data.mounts[0].label, "home");
    assert_eq!(
        data.mounts[0].mount_options.as_deref(),
        Some("nodev,nosuid")
    );
    assert!(!data.mounts[0].mount_during_install);
    assert!(matches!(
        &v.install,
        Some(Install::Rootfs {
            source: RootfsSource::Url(_),
            sha256: Some(_),
            ..
        })
    ));
    assert!(matches!(
        &v.bootloader,
        Bootloader::SystemdBoot {
            options: Some(_),
            ..
        }
    ));
    assert_eq!(v.deploy.finish, Finish::Kexec);
    assert_eq!(v.network.interfaces.len(), 1);
    assert!(v.network.interfaces[0].dhcp);

    let v = load(MINIMAL, "minimal/anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.layout.seed, "anemos-example");
    assert!(v.layout.disks.is_empty());
    assert_eq!(
        (v.install, v.bootloader, v.deploy.finish),
        (None, Bootloader::None, Finish::Reboot)
    );
}

#[test]
fn empty_file_touches_no_disk() {
    let v = load("# nothing\n", "anemos.toml").unwrap();
    assert_eq!(v.layout.seed, "anemos");
    assert!(v.layout.disks.is_empty() && v.network.interfaces.is_empty());
}

/// Every ```toml block in docs/config.md must parse (syntax and keys); blocks starting with
/// `# complete` must also validate. Error examples in the docs are fenced as ```text.
#[test]
fn docs_examples_parse() {
    let mut blocks = 0;
    let mut complete = 0;
    let mut rest = DOCS;
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body
            .find("```")
            .expect("unterminated toml block in docs/config.md");
        let block = &body[..end];
        blocks += 1;
        if block.starts_with("# complete") {
            complete += 1;
            load(block, "docs/config.md")
                .unwrap_or_else(|e| panic!("docs block {blocks}:\n{e}\n---\n{block}"));
        } else {
            parse(block, "docs/config.md")
                .unwrap_or_else(|e| panic!("docs block {blocks}:\n{e}\n---\n{block}"));
        }
        rest = &body[end + 3..];
    }
    assert!(
        blocks >= 8 && complete >= 2,
        "docs/config.md has {blocks} toml blocks, {complete} complete"
    );
    assert!(
        DOCS.contains(TWO_DISKS.trim()),
        "docs/config.md must embed examples/two-disks/anemos.toml verbatim"
    );
}

#[test]
fn disk_rules_name_their_key() {
    let two_systems = format!("{}{}", sys(ROOT), sys(ESP).replace("\"s0\"", "\"s1\""));
    let second_disk = |parts: &str| {
        sys(parts)
            .replace("\"system\"", "\"other\"")
            .replace("\"s0\"", "\"s1\"")
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("duplicate disk name", two_systems, "disk[1].name", "duplicate disk name \"system\" (already used by disk[0].name)"),
        (
            "duplicate label across disks",
            format!("{}{}", sys(ROOT), second_disk(r#"{ label = "root", type = "linux", size = "1GiB" },"#)),
            "disk[1].partitions[0].label",
            "duplicate label \"root\" (already used by disk[0].partitions[0].label)",
        ),
        (
            "preserved label clashes with a partition label",
            format!("{}{}", sys(ROOT), data(r#"{ label = "root", mount = "/srv" }"#)),
            "disk[1].mounts[0].label",
            "duplicate label",
        ),
        (
            "duplicate mount point",
            sys(&format!("{ROOT}\n{{ label = \"r2\", type = \"linux\", size = \"1GiB\", format = \"xfs\", mount = \"/\" }},")),
            "disk[0].partitions[1].mount",
            "duplicate mount point \"/\" (already used by disk[0].partitions[0].mount)",
        ),
        (
            "preserved mount clashes with a partition mount",
            format!("{}{}", sys(&format!("{ROOT}{ESP}")), data(r#"{ label = "home", mount = "/boot" }"#)),
            "disk[1].mounts[0].mount",
            "duplicate mount point \"/boot\"",
        ),
        (
            "two rest",
            sys(&format!("{ROOT}\n{{ label = \"var\", type = \"var\", size = \"rest\" }},")),
            "disk[0].partitions[1].size",
            "a second \"rest\" on this disk (disk[0].partitions[0].size already takes the rest)",
        ),
        ("neither wipe nor preserve", "[[disk]]\nname = \"x\"\nmatch = { serial = \"a\" }\n".into(), "disk[0].wipe", "set wipe = true"),
        (
            "partitions without wipe",
            sys(ROOT).replace("wipe = true", "wipe = false"),
            "disk[0].wipe",
            "disk \"system\": partitions given but wipe = false: anemos only writes a new table when wipe = true",
        ),
        (
            "preserved disk with partitions",
            sys(ROOT).replace("wipe = true", "preserve = true"),
            "disk[0].partitions",
            "a preserved disk (preserve = true) cannot have partitions to create",
        ),
        ("preserve and wipe", data("").replace("preserve = true", "preserve = true\nwipe = true"), "disk[0].wipe", "contradicts"),
        ("mounts on a wiped disk", sys(ROOT).replace("partitions = [", "mounts = [ { label = \"h\", mount = \"/home\" } ]\npartitions = ["), "disk[0].mounts", "preserved disk"),
        ("mounts without preserve", data(r#"{ label = "h", mount = "/home" }"#).replace("preserve = true", ""), "disk[0].preserve", "mounts given but preserve = false"),
        ("no match", sys(ROOT).replace("match = { serial = \"s0\" }", ""), "disk[0].match", "missing"),
        ("empty match", sys(ROOT).replace("serial = \"s0\"", ""), "disk[0].match", "no matcher given"),
        ("by_id with directory", sys(ROOT).replace("serial = \"s0\"", "by_id = \"/dev/disk/by-id/x\""), "disk[0].match.by_id", "without the directory"),
        ("path outside /dev", sys(ROOT).replace("serial = \"s0\"", "path = \"vda\""), "disk[0].match.path", "not a device path"),
        ("empty serial", sys(ROOT).replace("\"s0\"", "\"\""), "disk[0].match.serial", "must not be empty"),
        ("size range without ..", sys(ROOT).replace("serial = \"s0\"", "size = \"100GiB\""), "disk[0].match.size", "not a size range"),
        ("size range reversed", sys(ROOT).replace("serial = \"s0\"", "size = \"2TiB..1TiB\""), "disk[0].match.size", "lower bound is above"),
        ("size range decimal", sys(ROOT).replace("serial = \"s0\"", "size = \"100GB..\""), "disk[0].match.size", "decimal"),
        (
            "cannot fit",
            sys(&format!("{ESP}{ROOT}")).replace("serial = \"s0\"", "serial = \"s0\", size = \"..512MiB\""),
            "disk[0].partitions",
            "cannot fit: these partitions need at least 515MiB",
        ),
        (
            "cannot fit by one MiB",
            sys(r#"{ label = "a", type = "linux", size = "1GiB" },"#).replace("serial = \"s0\"", "serial = \"s0\", size = \"..1025MiB\""),
            "disk[0].partitions",
            "need at least 1026MiB",
        ),
        ("bad disk name", sys(ROOT).replace("\"system\"", "\"System Disk\""), "disk[0].name", "lowercase"),
        ("missing disk name", sys(ROOT).replace("name = \"system\"", ""), "disk[0].name", "missing"),
        ("bad hostname", format!("hostname = \"web_1\"\n{}", sys(ROOT)), "hostname", "only letters, digits"),
        ("hostname label too long", format!("hostname = \"{}\"\n", "a".repeat(64)), "hostname", "longer than 63"),
        ("hostname too long", format!("hostname = \"{}\"\n", vec!["a".repeat(30); 3].join(".")), "hostname", "at most 64"),
    ];
    for (case, text, key, want) in &cases {
        assert_one(case, text, key, want);
    }
}

#[test]
fn partition_rules_name_their_key() {
    let one = |p: &str| sys(p);
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "not a size",
            one(r#"{ label = "a", type = "linux", size = "12Q" },"#),
            "disk[0].partitions[0].size",
            "\"12Q\" is not a size (use KiB, MiB, GiB, TiB, e.g. \"512MiB\", or \"rest\")",
        ),
        ("decimal size", one(r#"{ label = "a", type = "linux", size = "500MB" },"#), "disk[0].partitions[0].size", "write MiB, e.g. \"500MiB\""),
        ("no unit", one(r#"{ label = "a", type = "linux", size = "512" },"#), "disk[0].partitions[0].size", "has no unit"),
        ("zero size", one(r#"{ label = "a", type = "linux", size = "0GiB" },"#), "disk[0].partitions[0].size", "greater than zero"),
        ("missing size", one(r#"{ label = "a", type = "linux" },"#), "disk[0].partitions[0].size", "missing"),
        ("empty label", one(r#"{ label = "", type = "linux", size = "1G" },"#), "disk[0].partitions[0].label", "must not be empty"),
        ("missing label", one(r#"{ type = "linux", size = "1G" },"#), "disk[0].partitions[0].label", "missing"),
        (
            "label too long",
            one(&format!("{{ label = \"{}\", type = \"linux\", size = \"1G\" }},", "x".repeat(37))),
            "disk[0].partitions[0].label",
            "at most 36",
        ),
        ("label with control char", one(r#"{ label = "a\u0007b", type = "linux", size = "1G" },"#), "disk[0].partitions[0].label", "control character"),
        (
            "unknown type",
            one(r#"{ label = "a", type = "roo", size = "1G" },"#),
            "disk[0].partitions[0].type",
            "unknown partition type \"roo\" (use one of: esp, xbootldr, root, usr, home, srv, var, tmp, swap, linux, raid, bios-boot, or a type GUID)",
        ),
        ("bad type GUID", one(r#"{ label = "a", type = "0fc63daf-8483-4772-8e79-3d69d8477dzz", size = "1G" },"#), "disk[0].partitions[0].type", "not a GUID"),
        ("missing type", one(r#"{ label = "a", size = "1G" },"#), "disk[0].partitions[0].type", "missing"),
        ("unknown format", one(r#"{ label = "a", type = "linux", size = "1G", format = "ext3" },"#), "disk[0].partitions[0].format", "use one of: vfat, ext4, xfs, btrfs, swap"),
        ("swap type, ext4 format", one(r#"{ label = "a", type = "swap", size = "1G", format = "ext4" },"#), "disk[0].partitions[0].format", "type \"swap\""),
        ("swap with a mount", one(r#"{ label = "a", type = "linux", size = "1G", format = "swap", mount = "/swap" },"#), "disk[0].partitions[0].mount", "swap is not mounted"),
        ("mount without format", one(r#"{ label = "a", type = "linux", size = "1G", mount = "/srv" },"#), "disk[0].partitions[0].mount", "a mount needs a format"),
        ("relative mount", one(r#"{ label = "a", type = "linux", size = "1G", format = "ext4", mount = "srv" },"#), "disk[0].partitions[0].mount", "not absolute"),
        ("mount with ..", one(r#"{ label = "a", type = "linux", size = "1G", format = "ext4", mount = "/srv/../etc" },"#), "disk[0].partitions[0].mount", "not normalized"),
        ("mount with trailing slash", one(r#"{ label = "a", type = "linux", size = "1G", format = "ext4", mount = "/srv/" },"#), "disk[0].partitions[0].mount", "not normalized"),
        ("esp not vfat", one(r#"{ label = "a", type = "esp", size = "1G", format = "ext4" },"#), "disk[0].partitions[0].format", "UEFI firmware reads only FAT"),
        (
            "esp too small for FAT32",
            one(r#"{ label = "a", type = "esp", size = "32MiB", format = "vfat" },"#),
            "disk[0].partitions[0].size",
            "32MiB is too small for FAT32: FAT32 needs at least 64MiB here",
        ),
        (
            "explicit fat32 too small",
            one(r#"{ label = "a", type = "linux", size = "63MiB", format = "vfat", fat32 = true },"#),
            "disk[0].partitions[0].size",
            "FAT32 needs at least 64MiB",
        ),
        ("fat32 on ext4", one(r#"{ label = "a", type = "linux", size = "1G", format = "ext4", fat32 = true },"#), "disk[0].partitions[0].fat32", "only to format = \"vfat\""),
        ("options without mount", one(r#"{ label = "a", type = "linux", size = "1G", format = "ext4", options = "noatime" },"#), "disk[0].partitions[0].options", "no mount"),
        ("options with spaces", one(r#"{ label = "a", type = "linux", size = "1G", format = "ext4", mount = "/a", options = "a, b" },"#), "disk[0].partitions[0].options", "whitespace"),
        ("fs_label too long for vfat", one(r#"{ label = "a", type = "linux", size = "1G", format = "vfat", fs_label = "ABCDEFGHIJKL" },"#), "disk[0].partitions[0].fs_label", "at most 11"),
        ("fs_label too long for ext4", one(r#"{ label = "a", type = "linux", size = "1G", format = "ext4", fs_label = "abcdefghijklmnopq" },"#), "disk[0].partitions[0].fs_label", "at most 16"),
        ("fs_label without format", one(r#"{ label = "a", type = "linux", size = "1G", fs_label = "x" },"#), "disk[0].partitions[0].fs_label", "needs a format"),
        ("bad guid", one(r#"{ label = "a", type = "linux", size = "1G", guid = "1234" },"#), "disk[0].partitions[0].guid", "not a GUID"),
        ("zero guid", one(r#"{ label = "a", type = "linux", size = "1G", guid = "00000000-0000-0000-0000-000000000000" },"#), "disk[0].partitions[0].guid", "all-zero"),
        (
            "duplicate guid",
            one(concat!(
                r#"{ label = "a", type = "linux", size = "1G", guid = "11111111-2222-3333-4444-555555555555" },"#,
                r#"{ label = "b", type = "linux", size = "1G", guid = "11111111-2222-3333-4444-555555555555" },"#
            )),
            "disk[0].partitions[1].guid",
            "duplicate GUID",
        ),
        (
            "duplicate fs_uuid",
            one(concat!(
                r#"{ label = "a", type = "linux", size = "1G", format = "ext4", fs_uuid = "11111111-2222-3333-4444-555555555555" },"#,
                r#"{ label = "b", type = "linux", size = "1G", format = "xfs", fs_uuid = "11111111-2222-3333-4444-555555555555" },"#
            )),
            "disk[0].partitions[1].fs_uuid",
            "duplicate GUID",
        ),
        ("fs_uuid on vfat", one(r#"{ label = "a", type = "linux", size = "1G", format = "vfat", fs_uuid = "11111111-2222-3333-4444-555555555555" },"#), "disk[0].partitions[0].fs_uuid", "volume ID"),
    ];
    for (case, text, key, want) in &cases {
        assert_one(case, text, key, want);
    }
}

#[test]
fn partitions_accept_what_the_docs_promise() {
    let text = sys(concat!(
        r#"{ label = "esp", type = "esp", size = "64MiB", format = "vfat", mount = "/efi" },"#,
        r#"{ label = "small", type = "linux", size = "16M", format = "vfat", fs_label = "SMALL" },"#,
        r#"{ label = "raw", type = "0FC63DAF-8483-4772-8E79-3D69D8477DE4", size = "100KiB" },"#,
        r#"{ label = "sw", type = "swap", size = "1G", format = "swap", options = "pri=10" },"#,
        r#"{ label = "data", type = "srv", size = "1T", format = "btrfs", mount = "/srv", guid = "11111111-2222-3333-4444-555555555555", fs_uuid = "11111111-2222-3333-4444-555555555555" },"#,
        r#"{ label = "root", type = "root", size = "rest", format = "xfs", mount = "/", fs_label = "root" },"#,
    ));
    // No "/" is needed when nothing is installed; a layout without "/" is fine too.
    let v = load(&text, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    let parts = &v.layout.disks[0].partitions;
    assert!(parts[0].fat32, "ESP defaults to FAT32");
    assert!(!parts[1].fat32, "other vfat defaults to FAT12/16");
    assert_eq!(
        parts[2].type_guid,
        super::units::part_type_guid("linux").unwrap()
    );
    assert_eq!(parts[2].size, SizeSpec::Bytes(100 * 1024));
    assert_eq!(parts[4].part_uuid, parts[4].fs_uuid);
    assert_eq!(parts[4].part_uuid.unwrap()[0], 0x11);
    load(
        &sys(r#"{ label = "a", type = "linux", size = "1G", format = "ext4", mount = "/srv" },"#),
        "x",
    )
    .unwrap();
    // An empty wiped disk: a new, empty table.
    load(&sys(""), "x").unwrap();
    // Fits exactly: 1GiB + 2MiB of tables.
    load(
        &sys(r#"{ label = "a", type = "linux", size = "1GiB" },"#)
            .replace("serial = \"s0\"", "serial = \"s0\", size = \"..1026MiB\""),
        "x",
    )
    .unwrap();
}

#[test]
fn section_rules_name_their_key() {
    let base = sys(&format!("{ESP}{ROOT}"));
    let with = |extra: &str| format!("{base}\n{extra}\n");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("install without kind", with("[install]\npath = \"x.tar\""), "install.kind", "missing: use one of makeimg, script, rootfs"),
        ("unknown install kind", with("[install]\nkind = \"debootstrap\""), "install.kind", "unknown kind \"debootstrap\""),
        ("makeimg with path", with("[install]\nkind = \"makeimg\"\npath = \"x\""), "install.path", "not used with kind = \"makeimg\""),
        ("makeimg command with args inside", with("[install]\nkind = \"makeimg\"\ncommand = \"makeimg -v\""), "install.command", "args"),
        ("makeimg mirror not a URL", with("[install]\nkind = \"makeimg\"\nmirror = \"deb.debian.org/debian\""), "install.mirror", "http://"),
        ("makeimg source line without URL", with("[install]\nkind = \"makeimg\"\nmirror = \"deb ./\""), "install.mirror", "needs a URL"),
        ("makeimg proxy not http", with("[install]\nkind = \"makeimg\"\nproxy = \"socks5://h:1080\""), "install.proxy", "http://HOST"),
        ("rootfs with mirror", with("[install]\nkind = \"rootfs\"\npath = \"a.tar\"\nmirror = \"http://h/debian\""), "install.mirror", "not used with kind = \"rootfs\""),
        ("script without path", with("[install]\nkind = \"script\""), "install.path", "missing"),
        ("script path absolute", with("[install]\nkind = \"script\"\npath = \"/bin/sh\""), "install.path", "relative to the payload"),
        ("rootfs path escaping", with("[install]\nkind = \"rootfs\"\npath = \"../x.tar\""), "install.path", "not normalized"),
        ("rootfs without source", with("[install]\nkind = \"rootfs\""), "install.path", "give path"),
        ("rootfs path and url", with("[install]\nkind = \"rootfs\"\npath = \"a.tar\"\nurl = \"http://h/a.tar\""), "install.url", "not both"),
        ("rootfs url without sha256", with("[install]\nkind = \"rootfs\"\nurl = \"http://h/a.tar\""), "install.sha256", "required with url"),
        ("rootfs bad url", with("[install]\nkind = \"rootfs\"\nurl = \"ftp://h/a.tar\"\ninsecure = true"), "install.url", "http://"),
        ("rootfs bad sha256", with("[install]\nkind = \"rootfs\"\nurl = \"http://h/a.tar\"\nsha256 = \"abc\""), "install.sha256", "64 hex digits"),
        ("insecure with path", with("[install]\nkind = \"rootfs\"\npath = \"a.tar\"\ninsecure = true"), "install.insecure", "only to url"),
        (
            "rootfs without a root partition",
            format!("{}\n[install]\nkind = \"rootfs\"\npath = \"a.tar\"\n", sys(ESP)),
            "install.kind",
            "no partition, array or LUKS volume has mount = \"/\"",
        ),
        ("bootloader without kind", with("[bootloader]\noptions = \"quiet\""), "bootloader.kind", "missing"),
        ("unknown bootloader", with("[bootloader]\nkind = \"lilo\""), "bootloader.kind", "use one of: systemd-boot, grub, command, none"),
        ("command without command", with("[bootloader]\nkind = \"command\""), "bootloader.command", "missing"),
        ("none with options", with("[bootloader]\nkind = \"none\"\noptions = \"quiet\""), "bootloader.options", "not used with kind = \"none\""),
        ("relative kernel", with("[bootloader]\nkind = \"systemd-boot\"\nkernel = \"vmlinuz\""), "bootloader.kernel", "not absolute"),
        ("relative initrd", with("[bootloader]\nkind = \"systemd-boot\"\ninitrd = [\"/boot/a.img\", \"b.img\"]"), "bootloader.initrd[1]", "not absolute"),
        (
            "systemd-boot without ESP",
            format!("{}\n[bootloader]\nkind = \"systemd-boot\"\n", sys(ROOT)),
            "bootloader.kind",
            "no partition has type = \"esp\"",
        ),
        (
            "systemd-boot with an unmounted ESP",
            format!(
                "{}\n[bootloader]\nkind = \"systemd-boot\"\n",
                sys(&format!("{}\n{ROOT}", ESP.replace(", mount = \"/boot\"", "")))
            ),
            "bootloader.kind",
            "and a mount",
        ),
        ("unknown finish", with("[deploy]\nfinish = \"halt\""), "deploy.finish", "use one of: reboot, kexec, poweroff"),
        ("kexec without a bootloader", with("[deploy]\nfinish = \"kexec\""), "deploy.finish", "needs [bootloader] kind = \"systemd-boot\" or \"grub\""),
        ("interface without match", with("[[network.interface]]\ndhcp = true"), "network.interface[0].match", "missing"),
        ("interface with empty match", with("[[network.interface]]\nmatch = {}\ndhcp = true"), "network.interface[0].match", "no matcher given"),
        ("bad mac", with("[[network.interface]]\nmatch = { mac = \"52:54:00:zz:00:01\" }\ndhcp = true"), "network.interface[0].match.mac", "not a MAC"),
        ("long interface name", with("[[network.interface]]\nmatch = { name = \"averyveryverylongname\" }\ndhcp = true"), "network.interface[0].match.name", "15"),
        ("no address at all", with("[[network.interface]]\nmatch = { name = \"eth0\" }"), "network.interface[0].dhcp", "no address"),
        ("address without prefix", with("[[network.interface]]\nmatch = { name = \"eth0\" }\naddresses = [\"192.0.2.1\"]"), "network.interface[0].addresses[0]", "prefix length"),
        ("prefix too long", with("[[network.interface]]\nmatch = { name = \"eth0\" }\naddresses = [\"192.0.2.1/33\"]"), "network.interface[0].addresses[0]", "0..=32"),
        ("bad gateway", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\ngateways = [\"gw\"]"), "network.interface[0].gateways[0]", "not an IP"),
        ("bad dns", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\ndns = [\"1.1.1\"]"), "network.interface[0].dns[0]", "not an IP"),
        (
            "mtu too small for IPv6",
            with("[[network.interface]]\nmatch = { name = \"eth0\" }\naddresses = [\"2001:db8::1/64\"]\nmtu = 1000"),
            "network.interface[0].mtu",
            "1280",
        ),
        ("download with path", with("[install]\nkind = \"rootfs\"\npath = \"a.tar\"\ndownload = \"ram\""), "install.download", "only to url"),
        ("unknown download", with("[install]\nkind = \"rootfs\"\nurl = \"http://h/a.tar\"\ninsecure = true\ndownload = \"disk\""), "install.download", "\"stream\""),
        ("download with script", with("[install]\nkind = \"script\"\npath = \"x\"\ndownload = \"ram\""), "install.download", "not used"),
        ("two IPv4 gateways", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\ngateways = [\"10.0.0.1\", \"10.0.0.2\"]"), "network.interface[0].gateways", "at most one per address family"),
        ("IPv4 gateway without IPv4", with("[[network.interface]]\nmatch = { name = \"eth0\" }\nslaac = true\ngateways = [\"10.0.0.1\"]"), "network.interface[0].gateways[0]", "no IPv4 address"),
        ("bad search domain", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\nsearch = [\"ex ample.com\"]"), "network.interface[0].search[0]", "not a domain name"),
        ("route without via", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\nroutes = [{ to = \"10.1.0.0/16\" }]"), "network.interface[0].routes[0].via", "missing"),
        ("route with host bits", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\nroutes = [{ to = \"10.1.2.3/16\", via = \"10.0.2.1\" }]"), "network.interface[0].routes[0].to", "host bits"),
        ("route mixing families", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\nroutes = [{ to = \"2001:db8::/32\", via = \"10.0.2.1\" }]"), "network.interface[0].routes[0].via", "different address families"),
        ("default route in routes", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\nroutes = [{ to = \"0.0.0.0/0\", via = \"10.0.2.1\" }]"), "network.interface[0].routes[0].to", "put the gateway in gateways"),
        ("link timeout zero", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\nlink_timeout = 0"), "network.interface[0].link_timeout", "1..=3600"),
        ("unknown route key", with("[[network.interface]]\nmatch = { name = \"eth0\" }\ndhcp = true\nroutes = [{ to = \"10.1.0.0/16\", via = \"10.0.2.1\", metric = 5 }]"), "network.interface[0].routes[0].metric", "unknown"),
    ];
    for (case, text, key, want) in &cases {
        assert_one(case, text, key, want);
    }
}

#[test]
fn sections_accept_what_the_docs_promise() {
    let base = sys(&format!("{ESP}{ROOT}"));
    let v = load(
        &format!(
            "{base}\n[install]\nkind = \"makeimg\"\nargs = [\"--verbose\"]\nmirror = \"deb [trusted=yes] http://10.0.2.100/ ./\"\nproxy = \"http://10.0.2.2:3128\"\n[bootloader]\nkind = \"command\"\n\
             command = \"grub-install /dev/vda\"\n[deploy]\nfinish = \"poweroff\"\n[[network.interface]]\n\
             match = {{ mac = \"52:54:00:AB:cd:01\", driver = \"virtio_net\" }}\naddresses = [\"192.0.2.10/24\", \"2001:db8::10/64\"]\n\
             gateways = [\"192.0.2.1\", \"fe80::1\"]\ndns = [\"192.0.2.53\"]\nmtu = 9000\nslaac = true\n\
             search = [\"lab.example.org\"]\nroutes = [{{ to = \"198.51.100.0/24\", via = \"192.0.2.254\" }}]\n"
        ),
        "x",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        v.install,
        Some(Install::Makeimg {
            command: None,
            args: vec!["--verbose".into()],
            mirror: Some("deb [trusted=yes] http://10.0.2.100/ ./".into()),
            proxy: Some("http://10.0.2.2:3128".into()),
        })
    );
    assert_eq!(
        v.bootloader,
        Bootloader::Command {
            command: "grub-install /dev/vda".into()
        }
    );
    assert_eq!(v.deploy.finish, Finish::Poweroff);
    let i = &v.network.interfaces[0];
    assert_eq!(i.matcher.mac, Some([0x52, 0x54, 0, 0xab, 0xcd, 1]));
    assert_eq!(i.addresses[1], ("2001:db8::10".parse().unwrap(), 64));
    assert_eq!((i.dhcp, i.mtu, i.slaac), (false, Some(9000), true));
    assert_eq!(i.search, ["lab.example.org"]);
    assert_eq!(
        i.routes,
        [crate::config::Route {
            to: ("198.51.100.0".parse().unwrap(), 24),
            via: "192.0.2.254".parse().unwrap()
        }]
    );

    let v = load(&format!("{base}\n[install]\nkind = \"rootfs\"\nurl = \"https://h/r.tar\"\ninsecure = true\nprovision = \"setup.sh\"\n"), "x")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        v.install,
        Some(Install::Rootfs {
            sha256: None,
            insecure: true,
            provision: Some(_),
            ..
        })
    ));
    let v = load(&format!("{base}\n[install]\nkind = \"rootfs\"\nurl = \"http://h/r.tar\"\ninsecure = true\ndownload = \"stream\"\n"), "x")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        v.install,
        Some(Install::Rootfs {
            download: crate::config::Download::Stream,
            ..
        })
    ));
    // script needs no "/" partition: it may do anything.
    let v = load("[install]\nkind = \"script\"\npath = \"bin/flash\"\n", "x")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(v.install, Some(Install::Script { .. })));
}

#[test]
fn kept_network_file() {
    let text = "[[network.interface]]\nmatch = { mac = \"52:54:00:12:34:56\" }\naddresses = [\"10.0.2.77/24\"]\ngateways = [\"10.0.2.2\"]\n";
    let n = crate::config::load_network(text, "kept.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        n.interfaces[0].addresses,
        [("10.0.2.77".parse().unwrap(), 24)]
    );
    let e = crate::config::load_network("hostname = \"x\"\n", "kept.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("only [[network.interface]]"), "{e}");
    let e = crate::config::load_network(
        "[[network.interface]]\nmatch = { mac = \"zz\" }\ndhcp = true\n",
        "kept.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("kept.toml:2") && e.contains("match.mac"), "{e}");
}

#[test]
fn all_problems_are_reported_in_file_order() {
    let text = format!(
        "hostname = \"bad_name\"\n{}",
        sys(concat!(
            r#"{ label = "a", type = "linux", size = "12Q" },"#,
            "\n",
            r#"{ label = "a", type = "roo", size = "1G" },"#
        ))
    );
    let errs = load_err(&text);
    let keys: Vec<&str> = errs.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "hostname",
            "disk[0].partitions[0].size",
            "disk[0].partitions[1].label",
            "disk[0].partitions[1].type"
        ],
        "{errs}"
    );
    let shown = errs.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 4, "{shown}");
    assert!(
        lines[0].starts_with("anemos.toml:1:1: hostname: \"bad_name\""),
        "{shown}"
    );
    assert_eq!(
        lines[1],
        "anemos.toml:7:32: disk[0].partitions[0].size: \"12Q\" is not a size (use KiB, MiB, GiB, TiB, e.g. \"512MiB\", or \"rest\")"
    );
}

#[test]
fn unknown_keys_are_all_named_with_their_table() {
    let text = "hostnme = \"x\"\n[[disk]]\nname = \"s\"\nmatch = { serial = \"a\", colour = \"red\" }\nwipe = true\n\
                partitions = [ { label = \"r\", type = \"root\", sise = \"1G\" } ]\n[bootloader]\nkind = \"none\"\ntimeout = 3\n";
    let errs = parse(text, "anemos.toml").expect_err("unknown keys");
    let shown = errs.to_string();
    let keys: Vec<&str> = errs.errors.iter().map(|e| e.key.as_str()).collect();
    for want in [
        "hostnme",
        "disk[0].match.colour",
        "disk[0].partitions[0].sise",
        "bootloader.timeout",
    ] {
        assert!(keys.contains(&want), "{want} not reported:\n{shown}");
    }
    assert_eq!(errs.errors.len(), 4, "{shown}");
    assert_eq!(
        keys,
        [
            "hostnme",
            "disk[0].match.colour",
            "disk[0].partitions[0].sise",
            "bootloader.timeout"
        ],
        "file order"
    );
    assert!(shown.contains("anemos.toml:6:46: disk[0].partitions[0].sise: unknown key; expected one of `label`, `type`, `size`"), "{shown}");
    assert!(
        shown.contains("anemos.toml:1:1: hostnme: unknown key"),
        "{shown}"
    );
    assert!(
        shown.lines().all(|l| l.starts_with("anemos.toml:")),
        "{shown}"
    );
}

#[test]
fn wrong_types_and_syntax_errors_have_positions() {
    let errs = parse(
        &sys(r#"{ label = "a", type = "linux", size = 512 },"#),
        "anemos.toml",
    )
    .unwrap_err();
    assert_eq!(errs.errors.len(), 1, "{errs}");
    assert_eq!(errs.errors[0].key, "disk[0].partitions[0].size");
    assert!(
        errs.to_string().starts_with(
            "anemos.toml:6:39: disk[0].partitions[0].size: invalid type: integer `512`"
        ),
        "{errs}"
    );

    let errs = parse("[disk]\nname = \"x\"\n", "anemos.toml").unwrap_err();
    assert!(errs.to_string().contains("write [[disk]]"), "{errs}");

    let errs = parse("hostname = \"x\"\nwipe = = true\n", "anemos.toml").unwrap_err();
    let shown = errs.to_string();
    assert!(shown.starts_with("anemos.toml:2:"), "{shown}");
    assert_eq!(errs.errors[0].key, "");

    let errs = parse("hostname = \"a\"\nhostname = \"b\"\n", "anemos.toml").unwrap_err();
    assert!(errs.to_string().starts_with("anemos.toml:2:1:"), "{errs}");
}

#[test]
fn an_invalid_format_is_reported_once() {
    // Not also "a mount needs a format": the format was given, it is just wrong.
    assert_one(
        "invalid format with mount",
        &sys(
            r#"{ label = "a", type = "linux", size = "1G", format = "ext5", mount = "/a", fs_label = "x" },"#,
        ),
        "disk[0].partitions[0].format",
        "unknown format \"ext5\"",
    );
}

const RAID1: &str = include_str!("../../examples/raid1/anemos.toml");

/// Two wiped disks "a" and "b" whose partitions are `pa` and `pb`, then `arrays`.
fn two(pa: &str, pb: &str, arrays: &str) -> String {
    format!(
        "[[disk]]\nname = \"a\"\nmatch = {{ serial = \"a0\" }}\nwipe = true\npartitions = [\n{pa}\n]\n\
         [[disk]]\nname = \"b\"\nmatch = {{ serial = \"b0\" }}\nwipe = true\npartitions = [\n{pb}\n]\n{arrays}"
    )
}

const MEMBERS_OK: (&str, &str) = (
    r#"{ label = "root-a", type = "raid", size = "rest" },"#,
    r#"{ label = "root-b", type = "raid", size = "rest" },"#,
);

fn root_array(extra: &str) -> String {
    format!("[[array]]\nname = \"root\"\nlevel = 1\nmembers = [\"root-a\", \"root-b\"]\nformat = \"ext4\"\nmount = \"/\"\n{extra}")
}

#[test]
fn raid1_example_loads() {
    let v = load(RAID1, "raid1/anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = v.layout.arrays.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["boot", "root"]);
    let root = &v.layout.arrays[1];
    assert_eq!(root.members, ["root-a", "root-b"]);
    assert_eq!(
        (root.level, root.format, root.mount.as_deref()),
        (1, Some(FsKind::Ext4), Some("/"))
    );
    assert_eq!(root.mount_options.as_deref(), Some("noatime"));
}

#[test]
fn arrays_load_and_carry_a_filesystem() {
    let text = two(
        MEMBERS_OK.0,
        MEMBERS_OK.1,
        &root_array("fs_label = \"r\"\n"),
    );
    let v = load(&text, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v.layout.arrays.len(), 1);
    assert_eq!(v.layout.arrays[0].fs_label.as_deref(), Some("r"));
    // An install needs "/" on a partition or an array: the array counts.
    let text = format!("{text}[install]\nkind = \"rootfs\"\npath = \"r.tar\"\n");
    load(&text, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn array_rules_name_their_key() {
    let (a, b) = MEMBERS_OK;
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "unknown member",
            two(a, b, &root_array("").replace("\"root-b\"]", "\"root-c\"]")),
            "array[0].members[1]",
            "array \"root\": member \"root-c\" is not a partition label",
        ),
        (
            "ESP member",
            two(
                r#"{ label = "esp-a", type = "esp", size = "512MiB" },"#,
                r#"{ label = "esp-b", type = "raid", size = "512MiB" },"#,
                "[[array]]\nname = \"esp\"\nlevel = 1\nmembers = [\"esp-a\", \"esp-b\"]\n",
            ),
            "array[0].members[0]",
            "one ESP per disk",
        ),
        (
            "vfat array",
            two(a, b, &root_array("").replace("\"ext4\"", "\"vfat\"")),
            "array[0].format",
            "one ESP per disk",
        ),
        (
            "different sizes",
            two(
                r#"{ label = "root-a", type = "raid", size = "1GiB" },"#,
                r#"{ label = "root-b", type = "raid", size = "2GiB" },"#,
                &root_array(""),
            ),
            "array[0].members",
            "members have different sizes (root-a: 1GiB, root-b: 2GiB)",
        ),
        (
            "rest and a size",
            two(
                a,
                r#"{ label = "root-b", type = "raid", size = "2GiB" },"#,
                &root_array(""),
            ),
            "array[0].members",
            "root-a: rest, root-b: 2GiB",
        ),
        (
            "same disk",
            format!(
                "{}{}",
                sys(r#"{ label = "root-a", type = "raid", size = "1GiB" },
{ label = "root-b", type = "raid", size = "1GiB" },"#),
                root_array("")
            ),
            "array[0].members[1]",
            "members \"root-a\" and \"root-b\" are both on disk \"system\"",
        ),
        (
            "preserved disk member",
            format!(
                "{}{}{}",
                sys(a),
                data(r#"{ label = "root-b", mount = "/data" }"#),
                root_array("")
            ),
            "array[0].members[1]",
            "member \"root-b\" is on the preserved disk \"data\"",
        ),
        (
            "member with a filesystem",
            two(
                a,
                r#"{ label = "root-b", type = "raid", size = "rest", format = "ext4" },"#,
                &root_array(""),
            ),
            "array[0].members[1]",
            "has format of its own",
        ),
        (
            "one member",
            two(a, b, &root_array("").replace(", \"root-b\"", "")),
            "array[0].members",
            "at least 2 members",
        ),
        (
            "level 5",
            two(a, b, &root_array("").replace("level = 1", "level = 5")),
            "array[0].level",
            "level 5 is not supported",
        ),
        (
            "bad name",
            two(a, b, &root_array("").replace("\"root\"", "\"Root\"")),
            "array[0].name",
            "an array name is 1 to 27",
        ),
        (
            "mount without format",
            two(a, b, &root_array("").replace("format = \"ext4\"\n", "")),
            "array[0].mount",
            "a mount needs a format",
        ),
        (
            "mount point used twice",
            two(
                r#"{ label = "root-a", type = "raid", size = "rest" }, { label = "x", type = "linux", size = "1GiB", format = "ext4", mount = "/" },"#,
                b,
                &root_array(""),
            ),
            "array[0].mount",
            "duplicate mount point \"/\"",
        ),
    ];
    for (case, text, key, want) in cases {
        assert_one(case, &text, key, want);
    }
    // A member in two arrays.
    let text = two(
        a,
        b,
        &format!(
            "{}[[array]]\nname = \"other\"\nlevel = 1\nmembers = [\"root-a\", \"root-b\"]\n",
            root_array("")
        ),
    );
    let errs = load_err(&text);
    assert_eq!(errs.errors.len(), 2, "{errs}");
    assert_eq!(errs.errors[0].key, "array[1].members[0]");
    assert!(errs.errors[0]
        .message
        .contains("already a member of array[0]"));
    // Unknown keys are refused by the parser.
    let text = two(a, b, &root_array("chunk = \"64K\"\n"));
    let e = load_err(&text).to_string();
    assert!(e.contains("chunk"), "{e}");
}

#[test]
fn mirrored_esps_must_have_the_mounted_esps_size() {
    let esp_b = |size: &str| {
        format!(r#"{{ label = "esp-b", type = "esp", size = "{size}", format = "vfat" }},"#)
    };
    let text = two(&format!("{ESP}\n{ROOT}"), &esp_b("256MiB"), "");
    assert_one(
        "mirror smaller",
        &text,
        "disk[1].partitions[0].size",
        "mirrors the one mounted at /boot (disk[0].partitions[0], size 512 MiB) but its size is 256 MiB: mirrored ESPs must be the same size",
    );
    load(
        &two(&format!("{ESP}\n{ROOT}"), &esp_b("512MiB"), ""),
        "anemos.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // An ESP without a format is not a mirror: no size rule.
    let raw = r#"{ label = "esp-b", type = "esp", size = "64MiB" },"#;
    load(&two(&format!("{ESP}\n{ROOT}"), raw, ""), "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
}

const BIOS_BOOT: &str = r#"{ label = "bios", type = "bios-boot", size = "1MiB" },"#;
const ESP_EFI: &str =
    r#"{ label = "esp", type = "esp", size = "128MiB", format = "vfat", mount = "/boot/efi" },"#;

#[test]
fn grub_loads_for_bios_and_uefi() {
    let text = format!(
        "{}\n[bootloader]\nkind = \"grub\"\nfirmware = [\"bios\", \"uefi\"]\noptions = \"console=ttyS0 quiet\"\n[deploy]\nfinish = \"kexec\"\n",
        sys(&format!("{BIOS_BOOT}{ESP_EFI}{ROOT}"))
    );
    let v = load(&text, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        v.bootloader,
        Bootloader::Grub {
            firmware: Firmware {
                bios: true,
                uefi: true
            },
            options: Some("console=ttyS0 quiet".into()),
        }
    );
    assert_eq!(v.deploy.finish, Finish::Kexec);
    let bios = &v.layout.disks[0].partitions[0];
    assert_eq!(
        crate::util::uuid_string(&bios.type_guid),
        "21686148-6449-6e6f-744e-656564454649"
    );
    assert_eq!((bios.format, bios.mount.as_deref()), (None, None));
    // BIOS alone needs no ESP; UEFI alone no BIOS boot partition.
    let bios_only = format!(
        "{}\n[bootloader]\nkind = \"grub\"\nfirmware = [\"bios\"]\n",
        sys(&format!("{BIOS_BOOT}{ROOT}"))
    );
    let v = load(&bios_only, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(v.bootloader, Bootloader::Grub { firmware, options: None } if firmware.describe() == "BIOS")
    );
    let uefi_only = format!(
        "{}\n[bootloader]\nkind = \"grub\"\nfirmware = [\"uefi\"]\n",
        sys(&format!("{ESP_EFI}{ROOT}"))
    );
    let v = load(&uefi_only, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(v.bootloader, Bootloader::Grub { firmware, .. } if firmware.describe() == "UEFI")
    );
    // systemd-boot takes firmware = ["uefi"] (what it always is).
    let sd = format!(
        "{}\n[bootloader]\nkind = \"systemd-boot\"\nfirmware = [\"uefi\"]\n",
        sys(&format!("{ESP}{ROOT}"))
    );
    load(&sd, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn grub_rules_name_their_key() {
    let grub = |parts: &str, fw: &str| {
        format!(
            "{}\n[bootloader]\nkind = \"grub\"\nfirmware = {fw}\n",
            sys(parts)
        )
    };
    let all = format!("{BIOS_BOOT}{ESP_EFI}{ROOT}");
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "BIOS on GPT without a BIOS boot partition",
            grub(&format!("{ESP_EFI}{ROOT}"), "[\"bios\", \"uefi\"]"),
            "bootloader.firmware",
            "\"bios\" on GPT (anemos writes GPT) needs a BIOS boot partition",
        ),
        (
            "UEFI without an ESP",
            grub(&format!("{BIOS_BOOT}{ROOT}"), "[\"uefi\"]"),
            "bootloader.firmware",
            "\"uefi\": grub's EFI program goes onto the ESP",
        ),
        (
            "firmware missing",
            format!("{}\n[bootloader]\nkind = \"grub\"\n", sys(&all)),
            "bootloader.firmware",
            "missing: say which firmware",
        ),
        (
            "firmware empty",
            grub(&all, "[]"),
            "bootloader.firmware",
            "empty",
        ),
        (
            "unknown firmware",
            grub(&all, "[\"bios\", \"coreboot\"]"),
            "bootloader.firmware[1]",
            "unknown firmware \"coreboot\"",
        ),
        (
            "firmware twice",
            grub(&all, "[\"uefi\", \"uefi\"]"),
            "bootloader.firmware[1]",
            "listed twice",
        ),
        (
            "grub with kernel",
            format!("{}kernel = \"/boot/vmlinuz\"\n", grub(&all, "[\"bios\"]")),
            "bootloader.kernel",
            "not used with kind = \"grub\" (it takes: firmware, options)",
        ),
        (
            "grub options a shell would expand",
            format!("{}options = \"console=$TTY\"\n", grub(&all, "[\"bios\"]")),
            "bootloader.options",
            "the grub defaults file (a shell script) would interpret",
        ),
        (
            "grub without a root",
            grub(&format!("{BIOS_BOOT}{ESP_EFI}"), "[\"bios\"]"),
            "bootloader.kind",
            "no partition, array or LUKS volume has mount = \"/\"",
        ),
        (
            "a filesystem on the BIOS boot partition",
            grub(
                &format!(
                    "{}{ROOT}",
                    BIOS_BOOT.replace("size = \"1MiB\"", "size = \"1MiB\", format = \"ext4\"")
                ),
                "[\"bios\"]",
            ),
            "disk[0].partitions[0].format",
            "holds grub's core image, not a filesystem",
        ),
        (
            "systemd-boot for BIOS",
            format!(
                "{}\n[bootloader]\nkind = \"systemd-boot\"\nfirmware = [\"bios\"]\n",
                sys(&format!("{ESP}{ROOT}"))
            ),
            "bootloader.firmware",
            "systemd-boot is a UEFI program",
        ),
        (
            "firmware with command",
            format!(
                "{}\n[bootloader]\nkind = \"command\"\ncommand = \"true\"\nfirmware = [\"bios\"]\n",
                sys(&all)
            ),
            "bootloader.firmware",
            "not used with kind = \"command\"",
        ),
    ];
    for (case, text, key, want) in &cases {
        assert_one(case, text, key, want);
    }
}

#[test]
fn grub_refuses_a_boot_on_luks() {
    let text = format!(
        "{}\n[[luks]]\nname = \"croot\"\ndevice = \"root\"\npassphrase = \"secrets/root.key\"\nformat = \"ext4\"\nmount = \"/\"\n[bootloader]\nkind = \"grub\"\nfirmware = [\"bios\"]\n",
        sys(&format!("{BIOS_BOOT}{{ label = \"root\", type = \"linux\", size = \"rest\" }},"))
    );
    assert_one(
        "/ on LUKS without a /boot",
        &text,
        "bootloader.kind",
        "on the LUKS volume \"croot\"",
    );
    // A /boot of its own makes it fine.
    let ok = format!(
        "{}\n[[luks]]\nname = \"croot\"\ndevice = \"root\"\npassphrase = \"secrets/root.key\"\nformat = \"ext4\"\nmount = \"/\"\n[bootloader]\nkind = \"grub\"\nfirmware = [\"bios\"]\n",
        sys(&format!("{BIOS_BOOT}{{ label = \"boot\", type = \"linux\", size = \"512MiB\", format = \"ext4\", mount = \"/boot\" }},\n{{ label = \"root\", type = \"linux\", size = \"rest\" }},"))
    );
    load(&ok, "anemos.toml").unwrap_or_else(|e| panic!("{e}"));
}
