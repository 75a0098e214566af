use super::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Instant;

/// One entry for [`archive`].
#[derive(Clone)]
struct E {
    name: String,
    mode: u32,
    data: Vec<u8>,
    uid: u32,
    gid: u32,
    mtime: u32,
    ino: u32,
    nlink: u32,
    rdev: (u32, u32),
}

impl E {
    fn new(name: &str, mode: u32, data: &[u8]) -> E {
        E {
            name: name.to_string(),
            mode,
            data: data.to_vec(),
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            ino: 0,
            nlink: 1,
            rdev: (0, 0),
        }
    }
    fn owner(mut self, uid: u32, gid: u32) -> E {
        self.uid = uid;
        self.gid = gid;
        self
    }
    fn link(mut self, ino: u32, nlink: u32) -> E {
        self.ino = ino;
        self.nlink = nlink;
        self
    }
}

fn dir(name: &str) -> E {
    let mut e = E::new(name, 0o040755, b"");
    e.nlink = 2;
    e
}
fn file(name: &str, data: &[u8]) -> E {
    E::new(name, 0o100644, data)
}
fn symlink(name: &str, target: &str) -> E {
    E::new(name, 0o120777, target.as_bytes())
}
fn chardev(name: &str, major: u32, minor: u32) -> E {
    let mut e = E::new(name, 0o020600, b"");
    e.rdev = (major, minor);
    e
}

/// A newc archive of `entries` and a trailer, written with the cpio crate.
fn archive(entries: &[E]) -> Vec<u8> {
    archive_with(entries, false)
}

/// Like [`archive`]; `crc` selects the 070702 format.
fn archive_with(entries: &[E], crc: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (index, e) in entries.iter().enumerate() {
        let ino = if e.ino != 0 {
            e.ino
        } else {
            100 + index as u32
        };
        let builder = cpio::newc::Builder::new(&e.name)
            .ino(ino)
            .mode(e.mode)
            .uid(e.uid)
            .gid(e.gid)
            .mtime(e.mtime)
            .nlink(e.nlink)
            .rdev_major(e.rdev.0)
            .rdev_minor(e.rdev.1);
        let len = e.data.len() as u32;
        let mut writer = if crc {
            let sum = e
                .data
                .iter()
                .map(|&b| u32::from(b))
                .fold(0u32, u32::wrapping_add);
            builder.write_crc(out, len, sum)
        } else {
            builder.write(out, len)
        };
        writer.write_all(&e.data).unwrap();
        out = writer.finish().unwrap();
    }
    cpio::newc::trailer(out).unwrap()
}

fn pad_to(mut bytes: Vec<u8>, align: usize) -> Vec<u8> {
    while !bytes.len().is_multiple_of(align) {
        bytes.push(0);
    }
    bytes
}

fn zstd_of(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn gzip_of(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn xz_of(data: &[u8]) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn write_image(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn entry<'a>(segment: &'a Segment, path: &str) -> &'a EntryInfo {
    segment
        .entries
        .iter()
        .find(|e| e.path == path)
        .unwrap_or_else(|| panic!("no entry {path}"))
}

/// The four-segment image of the first tests and its parts.
struct Layered {
    image: Vec<u8>,
    plain: Vec<u8>,
    zstd: Vec<u8>,
    gzip: Vec<u8>,
    xz: Vec<u8>,
    inner: [Vec<u8>; 3],
}

fn layered() -> Layered {
    let plain = archive(&[
        dir("."),
        dir("./etc"),
        file("./etc/hostname", b"plain\n"),
        symlink("bin", "usr/bin"),
        chardev("dev/console", 5, 1),
    ]);
    let zstd_inner = archive(&[
        dir("usr"),
        dir("usr/bin"),
        E::new("usr/bin/tool", 0o104755, b"#!/bin/sh\necho tool\n").owner(1000, 100),
        file("etc/hostname", b"zstd\n"),
    ]);
    let gzip_inner = archive(&[file("etc/gz", b"from gzip")]);
    let xz_inner = archive_with(
        &[file("etc/xz", b"from xz"), file("etc/hostname", b"xz\n")],
        true,
    );
    let (zstd, gzip, xz) = (zstd_of(&zstd_inner), gzip_of(&gzip_inner), xz_of(&xz_inner));
    let mut image = pad_to(plain.clone(), 512);
    image.extend_from_slice(&zstd);
    image.extend_from_slice(&[0, 0, 0]);
    image.extend_from_slice(&gzip);
    image.extend_from_slice(&xz);
    image.extend_from_slice(&[0; 8]);
    Layered {
        image,
        plain,
        zstd,
        gzip,
        xz,
        inner: [zstd_inner, gzip_inner, xz_inner],
    }
}

#[test]
fn reads_plain_zstd_gzip_and_xz_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layered();
    let image = write_image(&tmp, "layered.img", &l.image);
    let segments = read_segments(&image).unwrap();

    let zstd_at = l.plain.len().next_multiple_of(512) as u64;
    assert_eq!(zstd_at, 1024);
    let gzip_at = zstd_at + l.zstd.len() as u64 + 3;
    let xz_at = gzip_at + l.gzip.len() as u64;
    let offsets: Vec<u64> = segments.iter().map(|s| s.offset).collect();
    assert_eq!(offsets, [0, zstd_at, gzip_at, xz_at]);
    let kinds: Vec<Compression> = segments.iter().map(|s| s.compression).collect();
    assert_eq!(
        kinds,
        [
            Compression::None,
            Compression::Zstd,
            Compression::Gzip,
            Compression::Xz
        ]
    );
    let counts: Vec<usize> = segments.iter().map(|s| s.entries.len()).collect();
    assert_eq!(counts, [5, 4, 1, 2]);
    let lens: Vec<u64> = segments.iter().map(|s| s.compressed_len).collect();
    assert_eq!(
        lens,
        [l.plain.len(), l.zstd.len(), l.gzip.len(), l.xz.len()].map(|n| n as u64)
    );
    let sizes: Vec<u64> = segments.iter().map(|s| s.uncompressed_size).collect();
    let inner = &l.inner;
    assert_eq!(
        sizes,
        [
            l.plain.len(),
            inner[0].len(),
            inner[1].len(),
            inner[2].len()
        ]
        .map(|n| n as u64)
    );

    let root = &segments[0].entries[0];
    assert_eq!((root.path.as_str(), root.mode), (".", 0o040755));
    assert_eq!(entry(&segments[0], "etc").mode, 0o040755);
    let link = entry(&segments[0], "bin");
    assert_eq!(link.link_target.as_deref(), Some("usr/bin"));
    assert_eq!(link.size, 7);
    let console = entry(&segments[0], "dev/console");
    assert_eq!((console.mode, console.rdev), (0o020600, (5, 1)));
    let tool = entry(&segments[1], "usr/bin/tool");
    assert_eq!((tool.mode, tool.uid, tool.gid), (0o104755, 1000, 100));
    assert_eq!(
        (tool.size, tool.mtime, tool.nlink, tool.ino),
        (20, 1_700_000_000, 1, 102)
    );
    assert_eq!(tool.link_target, None);
    assert_eq!(entry(&segments[3], "etc/xz").size, 7);

    assert_eq!(cat(&image, "etc/hostname").unwrap(), b"xz\n");
    assert_eq!(
        cat(&image, "/usr/bin/tool").unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    assert_eq!(cat(&image, "./etc/gz").unwrap(), b"from gzip");
    assert_eq!(cat(&image, "etc//xz").unwrap(), b"from xz");
}

#[test]
fn listing_has_segment_headers_and_ls_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let l = layered();
    let image = write_image(&tmp, "layered.img", &l.image);
    let listing = format_listing(&read_segments(&image).unwrap());
    let lines: Vec<&str> = listing.lines().collect();
    let n = l.plain.len();
    assert_eq!(
        lines[0],
        format!("segment 0: offset 0x0, uncompressed, 5 entries, {n} bytes uncompressed ({n} bytes in image)")
    );
    assert_eq!(lines[1], "drwxr-xr-x    0    0         0 .");
    assert_eq!(lines[3], "-rw-r--r--    0    0         6 etc/hostname");
    assert_eq!(lines[4], "lrwxrwxrwx    0    0         7 bin -> usr/bin");
    assert_eq!(lines[5], "crw-------    0    0    5,   1 dev/console");
    assert_eq!(
        lines[6],
        format!(
            "segment 1: offset 0x400, zstd, 4 entries, {} bytes uncompressed ({} bytes in image)",
            l.inner[0].len(),
            l.zstd.len()
        )
    );
    assert!(
        lines.contains(&"-rwsr-xr-x 1000  100        20 usr/bin/tool"),
        "{listing}"
    );
    assert_eq!(lines.len(), 4 + 5 + 4 + 1 + 2);
    assert_eq!(mode_string(0o041777), "drwxrwxrwt");
    assert_eq!(mode_string(0o102644), "-rw-r-Sr--");
    assert_eq!(mode_string(0o060660), "brw-rw----");
}

#[test]
fn cat_follows_symlinks_and_names_missing_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let base = archive(&[
        dir("usr"),
        dir("usr/bin"),
        file("usr/bin/tool", b"tool"),
        symlink("bin", "usr/bin"),
        symlink("sh", "/bin/tool"),
        symlink("up", "usr/bin/../../bin/tool"),
        symlink("a", "b"),
        symlink("b", "a"),
        dir("etc"),
        file("later-dir", b"x"),
    ]);
    let overlay = archive(&[dir("later-dir"), symlink("sh", "bin/./tool")]);
    let mut bytes = pad_to(base, 4);
    bytes.extend_from_slice(&gzip_of(&overlay));
    let image = write_image(&tmp, "links.img", &bytes);
    assert_eq!(cat(&image, "bin/tool").unwrap(), b"tool");
    assert_eq!(cat(&image, "/sh").unwrap(), b"tool");
    assert_eq!(cat(&image, "up").unwrap(), b"tool");

    let shown = image.display().to_string();
    let missing = cat(&image, "/etc/missing").unwrap_err().to_string();
    assert_eq!(
        missing,
        format!("{shown}: no such file in image: /etc/missing")
    );
    let is_dir = cat(&image, "etc").unwrap_err().to_string();
    assert_eq!(
        is_dir,
        format!("{shown}: etc is a directory, not a regular file")
    );
    let replaced = cat(&image, "later-dir").unwrap_err().to_string();
    assert!(replaced.contains("is a directory"), "{replaced}");
    let looped = cat(&image, "a").unwrap_err().to_string();
    assert_eq!(
        looped,
        format!("{shown}: a: too many levels of symbolic links")
    );
}

#[test]
fn hard_links_with_data_on_last_or_first_link() {
    let tmp = tempfile::tempdir().unwrap();
    let gnu_style = archive(&[
        file("a", b"").link(7, 2),
        file("b", b"shared").link(7, 2),
        file("solo", b"solo").link(8, 1),
    ]);
    // Inode 7 again, in another archive: not a link to "a" and "b".
    let first_style = archive(&[
        file("c", b"first").link(9, 2),
        file("d", b"").link(9, 2),
        file("e", b"own inode").link(7, 2),
    ]);
    let mut bytes = gnu_style;
    bytes.extend_from_slice(&zstd_of(&first_style));
    let image = write_image(&tmp, "hard.img", &bytes);
    for (path, want) in [
        ("a", "shared"),
        ("b", "shared"),
        ("c", "first"),
        ("d", "first"),
        ("solo", "solo"),
    ] {
        assert_eq!(cat(&image, path).unwrap(), want.as_bytes(), "{path}");
    }

    let dest = tmp.path().join("out");
    let summary = extract(&image, &dest).unwrap();
    assert_eq!((summary.files, summary.hardlinks), (4, 2));
    assert_eq!(fs::read(dest.join("e")).unwrap(), b"own inode");
    assert_eq!(cat(&image, "e").unwrap(), b"own inode");
    let ino = |p: &str| fs::metadata(dest.join(p)).unwrap().ino();
    assert_ne!(ino("e"), ino("a"));
    for (one, other, want) in [("a", "b", "shared"), ("c", "d", "first")] {
        let (m1, m2) = (
            fs::metadata(dest.join(one)).unwrap(),
            fs::metadata(dest.join(other)).unwrap(),
        );
        assert_eq!(m1.ino(), m2.ino(), "{one} and {other} are one inode");
        assert_eq!(m1.nlink(), 2);
        assert_eq!(fs::read(dest.join(one)).unwrap(), want.as_bytes());
    }
}

#[test]
fn extract_writes_tree_and_later_segments_win() {
    let tmp = tempfile::tempdir().unwrap();
    let first = archive(&[
        dir("etc"),
        file("etc/conf", b"old"),
        E::new("etc/secret", 0o100600, b"s"),
        E::new("ro", 0o040555, b""),
        file("ro/inside", b"in a read-only dir"),
        symlink("lib", "usr/lib"),
        file("becomes-dir", b"f"),
        symlink("becomes-file", "etc/conf"),
        chardev("dev/null", 1, 3),
    ]);
    let second = archive(&[
        file("etc/conf", b"new"),
        dir("becomes-dir"),
        file("becomes-file", b"now a file"),
        file("lib/libc.so", b"elf"),
    ]);
    let mut bytes = pad_to(first, 512);
    bytes.extend_from_slice(&xz_of(&second));
    let image = write_image(&tmp, "tree.img", &bytes);
    let dest = tmp.path().join("out");
    let summary = extract(&image, &dest).unwrap();
    assert_eq!(
        (
            summary.files,
            summary.dirs,
            summary.symlinks,
            summary.skipped_devices
        ),
        (7, 3, 2, 1)
    );
    assert_eq!(summary.warnings, ["skipped character device 1,3: dev/null"]);
    assert_eq!(fs::read(dest.join("etc/conf")).unwrap(), b"new");
    assert_eq!(fs::read(dest.join("becomes-file")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(dest.join("becomes-file"))
        .unwrap()
        .is_file());
    assert!(fs::metadata(dest.join("becomes-dir")).unwrap().is_dir());
    assert_eq!(fs::read(dest.join("usr/lib/libc.so")).unwrap(), b"elf");
    assert_eq!(
        fs::read_link(dest.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    let secret = fs::metadata(dest.join("etc/secret")).unwrap();
    assert_eq!(secret.mode() & 0o7777, 0o600);
    assert_eq!(secret.mtime(), 1_700_000_000);
    assert_eq!(
        fs::metadata(dest.join("ro")).unwrap().mode() & 0o7777,
        0o555
    );
    assert_eq!(
        fs::read(dest.join("ro/inside")).unwrap(),
        b"in a read-only dir"
    );
    assert!(!dest.join("dev/null").exists());
    fs::set_permissions(dest.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every path under `root`, relative to it.
fn tree_paths(root: &Path) -> BTreeSet<PathBuf> {
    fn visit(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for item in fs::read_dir(dir).unwrap() {
            let path = item.unwrap().path();
            out.insert(path.strip_prefix(root).unwrap().to_path_buf());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                visit(root, &path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    visit(root, root, &mut out);
    out
}

#[test]
fn extract_refuses_parent_dir_escape() {
    let tmp = tempfile::tempdir().unwrap();
    let image = write_image(
        &tmp,
        "evil.img",
        &archive(&[file("ok", b"ok"), file("../evil", b"x")]),
    );
    let dest = tmp.path().join("dest");
    let err = extract(&image, &dest).unwrap_err().to_string();
    assert!(
        err.contains("refusing to extract entry \"../evil\""),
        "{err}"
    );
    assert!(
        err.contains("segment at offset 0x0") && err.contains("\"..\""),
        "{err}"
    );
    assert!(!tmp.path().join("evil").exists());
    assert_eq!(
        tree_paths(tmp.path()),
        BTreeSet::from(["dest".into(), "dest/ok".into(), "evil.img".into()])
    );
}

#[test]
fn extract_refuses_absolute_names_and_keeps_single_slash_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    // "/abs" is stored relative to the root by the kernel and GNU cpio: it lands in dest.
    let image = write_image(&tmp, "slash.img", &archive(&[file("/abs", b"in")]));
    let dest = tmp.path().join("dest");
    extract(&image, &dest).unwrap();
    assert_eq!(fs::read(dest.join("abs")).unwrap(), b"in");
    // A name still absolute after stripping one "/" is refused.
    let name = format!("/{}/evil", outside.display());
    let image = write_image(&tmp, "abs.img", &archive(&[file(&name, b"x")]));
    let err = extract(&image, &tmp.path().join("dest2"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refusing") && err.contains("absolute"),
        "{err}"
    );
    assert!(!outside.exists());
}

#[test]
fn extract_refuses_writing_through_escaping_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("a/dest");
    fs::create_dir_all(&dest).unwrap();
    let bytes = archive(&[symlink("up", "../../outside"), file("up/evil", b"x")]);
    let image = write_image(&tmp, "up.img", &bytes);
    let err = extract(&image, &dest).unwrap_err().to_string();
    assert!(
        err.contains("\"up/evil\"") && err.contains("outside the destination"),
        "{err}"
    );
    assert!(!tmp.path().join("outside").exists());
    assert!(!tmp.path().join("a/outside").exists());

    // An absolute target is resolved inside dest, never on the host.
    let outside = tmp.path().join("host");
    fs::create_dir(&outside).unwrap();
    let target = outside.display().to_string();
    let bytes = archive(&[
        dir("sub"),
        symlink("sub/abs", &target),
        file("sub/abs/inside", b"kept in dest"),
    ]);
    let image = write_image(&tmp, "abs.img", &bytes);
    let dest = tmp.path().join("dest2");
    extract(&image, &dest).unwrap();
    assert!(!outside.join("inside").exists());
    let landed = dest.join(target.trim_start_matches('/')).join("inside");
    assert_eq!(fs::read(landed).unwrap(), b"kept in dest");
}

#[test]
fn garbage_is_reported_with_its_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = pad_to(archive(&[file("a", b"a")]), 512);
    bytes.extend_from_slice(&[0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x11]);
    let image = write_image(&tmp, "junk.img", &bytes);
    let err = read_segments(&image).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}: unknown data at offset 0x200 (bytes 12 34 56 78 9a bc de f0): not cpio, gzip, zstd or xz",
            image.display()
        )
    );
    let image = write_image(&tmp, "text.img", b"hello, world");
    let err = read_segments(&image).unwrap_err().to_string();
    assert!(
        err.contains("offset 0x0 (bytes 68 65 6c 6c 6f 2c 20 77)"),
        "{err}"
    );
    let image = write_image(&tmp, "zjunk.img", &zstd_of(b"not a cpio archive"));
    let err = read_segments(&image).unwrap_err().to_string();
    assert!(
        err.contains("zstd segment at offset 0x0") && err.contains("uncompressed offset 0x0"),
        "{err}"
    );
}

#[test]
fn unsupported_compressions_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let head = pad_to(archive(&[file("a", b"a")]), 512);
    for (magic, name) in [
        (&b"BZh91AY&SY"[..], "bzip2"),
        (&[0x5d, 0, 0, 0x80, 0][..], "lzma"),
        (&[0x02, 0x21, 0x4c, 0x18, 0][..], "lz4"),
        (&[0x89, b'L', b'Z', b'O', 0][..], "lzo"),
    ] {
        let mut bytes = head.clone();
        bytes.extend_from_slice(magic);
        let image = write_image(&tmp, "u.img", &bytes);
        let err = read_segments(&image).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}: segment at offset 0x200 uses {name} compression, which anemos cannot read",
                image.display()
            )
        );
    }
}

#[test]
fn old_cpio_format_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let image = write_image(&tmp, "odc.img", b"070707000000000000000000000000");
    let err = read_segments(&image).unwrap_err().to_string();
    assert!(
        err.contains("offset 0x0 is an old-format (odc, 070707) cpio archive"),
        "{err}"
    );
}

#[test]
fn empty_and_zero_images_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for bytes in [&[][..], &[0u8; 1000][..]] {
        let image = write_image(&tmp, "e.img", bytes);
        let err = read_segments(&image).unwrap_err().to_string();
        assert!(err.contains("no initramfs segments"), "{err}");
    }
    let err = read_segments(&tmp.path().join("missing.img"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.img: cannot open image"), "{err}");
}

#[test]
fn truncated_images_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = archive(&[
        dir("d"),
        file("d/f", b"some data here"),
        symlink("l", "d/f"),
        file("g", b"12345678"),
    ]);
    for cut in 1..plain.len() {
        let image = write_image(&tmp, "cut.img", &plain[..cut]);
        let err = read_segments(&image)
            .expect_err(&format!("cut at {cut}"))
            .to_string();
        assert!(err.starts_with(&image.display().to_string()), "{err}");
        assert!(extract(&image, &tmp.path().join("x")).is_err());
    }
    for compressed in [
        zstd_of(&plain),
        gzip_of(&plain),
        xz_of(&plain),
        zstd_of(&plain[..plain.len() - 20]),
    ] {
        for cut in [
            compressed.len() / 3,
            compressed.len() / 2,
            compressed.len() - 1,
        ] {
            let image = write_image(&tmp, "cut.img", &compressed[..cut]);
            let err = read_segments(&image)
                .expect_err(&format!("cut at {cut}"))
                .to_string();
            assert!(err.contains("segment at offset 0x0"), "{err}");
        }
    }
    // A complete zstd stream whose cpio content is cut short is an error too.
    let short = zstd_of(&plain[..plain.len() - 20]);
    let image = write_image(&tmp, "short.img", &short);
    assert!(read_segments(&image).is_err());
}

#[test]
fn bogus_sizes_and_names_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = archive(&[file("f", b"data"), file("g", b"more")]);
    // c_filesize of the first entry claims 2 GiB.
    bytes[54..62].copy_from_slice(b"7fffffff");
    let image = write_image(&tmp, "size.img", &bytes);
    let err = read_segments(&image).unwrap_err().to_string();
    assert!(err.contains("data of f"), "{err}");

    // c_namesize of 4 GiB, followed by 1 MiB of name bytes: refused, not collected.
    let mut bytes = archive(&[file("f", b"")]);
    bytes.truncate(110);
    bytes[94..102].copy_from_slice(b"ffffffff");
    bytes.extend(std::iter::repeat_n(b'a', 1 << 20));
    let image = write_image(&tmp, "name.img", &zstd_of(&bytes));
    let err = read_segments(&image).unwrap_err().to_string();
    assert!(
        err.contains("header is too long") && err.contains("uncompressed offset 0x0"),
        "{err}"
    );

    // A name that is not UTF-8.
    let mut bytes = pad_to(archive(&[file("ok", b"")]), 512);
    let bad_at = bytes.len();
    bytes.extend_from_slice(&archive(&[file("XY", b"")]));
    bytes[bad_at + 110] = 0xff;
    let image = write_image(&tmp, "utf8.img", &bytes);
    let err = read_segments(&image).unwrap_err().to_string();
    assert!(
        err.contains("segment at offset 0x200") && err.contains("(at offset 0x200)"),
        "{err}"
    );
    assert!(err.contains("UTF-8"), "{err}");

    // A symlink with a 1 MiB target.
    let image = write_image(
        &tmp,
        "link.img",
        &archive(&[symlink("l", &"x".repeat(1 << 20))]),
    );
    let err = read_segments(&image).unwrap_err().to_string();
    assert!(err.contains("symlink target of l"), "{err}");
}

/// Removes `dir` even if extraction left unreadable or read-only directories in it.
fn force_remove(dir: &Path) {
    fn open_up(dir: &Path) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        for item in fs::read_dir(dir).unwrap() {
            let path = item.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                open_up(&path);
            }
        }
    }
    if fs::symlink_metadata(dir).is_ok() {
        open_up(dir);
        fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = archive(&[
        dir("d"),
        file("d/f", b"some data"),
        symlink("l", "d"),
        file("l/g", b"through the link").link(5, 2),
        file("h", b"").link(5, 2),
        chardev("c", 1, 1),
    ]);
    let mut images = vec![plain.clone()];
    images.push(zstd_of(&plain));
    images.push(gzip_of(&plain));
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut failures = 0;
    for original in &images {
        for round in 0..150 {
            let mut bytes = original.clone();
            let at = (next() as usize) % bytes.len();
            bytes[at] = if round % 2 == 0 {
                next() as u8
            } else {
                b"0123456789abcdef"[at % 16]
            };
            let image = write_image(&tmp, "fuzz.img", &bytes);
            let listed = read_segments(&image);
            failures += usize::from(listed.is_err());
            let _ = cat(&image, "d/f");
            let dest = tmp.path().join("x");
            let _ = extract(&image, &dest);
            force_remove(&dest);
            let left: Vec<PathBuf> = tree_paths(tmp.path()).into_iter().collect();
            assert_eq!(left, [PathBuf::from("fuzz.img")], "byte {at} of {bytes:?}");
        }
    }
    assert!(failures > 0, "some corruptions must be detected");
}

#[test]
fn concatenated_members_are_separate_segments() {
    // A base image and a payload of the same compression, back to back with no padding:
    // each member/frame/stream is its own segment, as the kernel unpacks them.
    let tmp = tempfile::tempdir().unwrap();
    let first = archive(&[dir("d"), file("d/one", &[7u8; 3000])]);
    let second = archive(&[file("d/two", b"two")]);
    let tail = archive(&[file("tail", b"plain after compressed")]);
    type Codec = fn(&[u8]) -> Vec<u8>;
    let codecs: [(Compression, Codec); 3] = [
        (Compression::Gzip, gzip_of),
        (Compression::Zstd, zstd_of),
        (Compression::Xz, xz_of),
    ];
    for (kind, codec) in codecs {
        let a = codec(&first);
        let b = codec(&second);
        let mut bytes = a.clone();
        bytes.extend_from_slice(&b);
        bytes.extend_from_slice(&[0; 4]);
        let tail_at = bytes.len() as u64;
        bytes.extend_from_slice(&tail);
        let image = write_image(&tmp, "members.img", &bytes);
        let segments = read_segments(&image).unwrap();
        assert_eq!(segments.len(), 3, "{kind}");
        assert_eq!(
            (segments[0].compression, segments[0].compressed_len),
            (kind, a.len() as u64)
        );
        assert_eq!(
            (segments[1].offset, segments[1].compressed_len),
            (a.len() as u64, b.len() as u64),
            "{kind}"
        );
        assert_eq!(segments[0].uncompressed_size, first.len() as u64);
        assert_eq!(
            (segments[0].entries.len(), segments[1].entries.len()),
            (2, 1)
        );
        assert_eq!(
            (segments[2].offset, segments[2].compression),
            (tail_at, Compression::None)
        );
        assert_eq!(cat(&image, "d/one").unwrap(), vec![7u8; 3000]);
        assert_eq!(cat(&image, "d/two").unwrap(), b"two");
        assert_eq!(cat(&image, "tail").unwrap(), b"plain after compressed");
    }
}

#[test]
fn early_microcode_then_zstd_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let ucode: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let early = archive(&[
        dir("kernel"),
        dir("kernel/x86"),
        dir("kernel/x86/microcode"),
        file("kernel/x86/microcode/GenuineIntel.bin", &ucode),
    ]);
    let main = archive(&[
        dir("."),
        E::new("init", 0o100755, b"#!/bin/sh\nexec /sbin/init\n"),
        dir("usr"),
        symlink("bin", "usr/bin"),
    ]);
    let mut bytes = pad_to(early.clone(), 512);
    let main_at = bytes.len() as u64;
    bytes.extend_from_slice(&zstd_of(&main));
    let image = write_image(&tmp, "initrd.img", &bytes);
    let segments = read_segments(&image).unwrap();
    assert_eq!(segments.len(), 2);
    assert_eq!(
        (segments[0].offset, segments[0].compression),
        (0, Compression::None)
    );
    assert_eq!(segments[0].compressed_len, early.len() as u64);
    assert_eq!(segments[0].entries.len(), 4);
    assert_eq!(
        (segments[1].offset, segments[1].compression),
        (main_at, Compression::Zstd)
    );
    assert_eq!(segments[1].entries.len(), 4);
    assert_eq!(
        cat(&image, "kernel/x86/microcode/GenuineIntel.bin").unwrap(),
        ucode
    );
    assert_eq!(
        cat(&image, "/init").unwrap(),
        b"#!/bin/sh\nexec /sbin/init\n"
    );
    let listing = format_listing(&segments);
    assert!(
        listing.contains(&format!("segment 1: offset 0x{main_at:x}, zstd, 4 entries")),
        "{listing}"
    );
}

fn run_sh(dir: &Path, script: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn reads_and_extracts_gnu_cpio_archives() {
    if crate::testutil::tool("cpio", "cpio", "reads_and_extracts_gnu_cpio_archives").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    fs::write(tree.join("a/one"), b"one\n").unwrap();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(tree.join("a/b/big"), &big).unwrap();
    fs::write(tree.join("empty"), b"").unwrap();
    fs::write(tree.join("with space"), b"spaced").unwrap();
    std::os::unix::fs::symlink("a/one", tree.join("link")).unwrap();
    fs::hard_link(tree.join("a/one"), tree.join("a/hard")).unwrap();
    fs::set_permissions(tree.join("a/b/big"), fs::Permissions::from_mode(0o750)).unwrap();

    let image = tmp.path().join("gnu.cpio");
    run_sh(
        &tree,
        &format!("find . | cpio -o -H newc --quiet > '{}'", image.display()),
    );
    let found: BTreeSet<String> = String::from_utf8(run_sh(&tree, "find ."))
        .unwrap()
        .lines()
        .map(display_name)
        .collect();
    let segments = read_segments(&image).unwrap();
    assert_eq!(segments.len(), 1);
    let listed: BTreeSet<String> = segments[0].entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(listed, found);
    assert_eq!(segments[0].entries.len(), found.len());
    assert_eq!(entry(&segments[0], "a/b/big").mode, 0o100750);
    assert_eq!(cat(&image, "a/b/big").unwrap(), big);
    assert_eq!(cat(&image, "a/hard").unwrap(), b"one\n");
    assert_eq!(cat(&image, "link").unwrap(), b"one\n");

    let dest = tmp.path().join("ours");
    let summary = extract(&image, &dest).unwrap();
    assert_eq!(summary.hardlinks, 1);
    for rel in ["a/one", "a/hard", "a/b/big", "empty", "with space"] {
        assert_eq!(
            fs::read(dest.join(rel)).unwrap(),
            fs::read(tree.join(rel)).unwrap(),
            "{rel}"
        );
    }
    let ino = |p: &str| fs::metadata(dest.join(p)).unwrap().ino();
    assert_eq!(ino("a/one"), ino("a/hard"));
    assert_eq!(
        fs::read_link(dest.join("link")).unwrap(),
        Path::new("a/one")
    );
    assert_eq!(
        fs::metadata(dest.join("a/b/big")).unwrap().mode() & 0o777,
        0o750
    );
}

#[test]
fn gnu_cpio_extracts_our_archive_like_we_do() {
    if crate::testutil::tool("cpio", "cpio", "gnu_cpio_extracts_our_archive_like_we_do").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files: [(&str, u32, &[u8]); 4] = [
        ("etc/hostname", 0o100644, b"anemos\n"),
        ("usr/bin/tool", 0o100755, b"\x7fELF pretend"),
        ("usr/share/empty", 0o100600, b""),
        ("root/.profile", 0o100640, b"export PS1='# '\n"),
    ];
    let mut entries = vec![
        dir("."),
        dir("etc"),
        dir("usr"),
        dir("usr/bin"),
        dir("usr/share"),
        dir("root"),
    ];
    entries.extend(files.iter().map(|(p, m, d)| E::new(p, *m, d)));
    entries.push(symlink("bin", "usr/bin"));
    let image = write_image(&tmp, "ours.cpio", &archive(&entries));

    let gnu = tmp.path().join("gnu");
    fs::create_dir(&gnu).unwrap();
    run_sh(&gnu, &format!("cpio -idm --quiet < '{}'", image.display()));
    let ours = tmp.path().join("ours");
    extract(&image, &ours).unwrap();
    assert_eq!(tree_paths(&gnu), tree_paths(&ours));
    for (path, mode, data) in files {
        for root in [&gnu, &ours] {
            let meta = fs::metadata(root.join(path)).unwrap();
            assert_eq!(
                fs::read(root.join(path)).unwrap(),
                data,
                "{}",
                root.join(path).display()
            );
            assert_eq!(meta.mode() & 0o777, mode & 0o777, "{path}");
            assert_eq!(meta.mtime(), 1_700_000_000, "{path}");
        }
    }
    assert_eq!(
        fs::read_link(gnu.join("bin")).unwrap(),
        fs::read_link(ours.join("bin")).unwrap()
    );
}

/// A Debian initrd on this machine: /boot/initrd.img-*, or one built with mkinitramfs
/// for an installed kernel.
fn debian_initrd(tmp: &Path) -> Option<PathBuf> {
    let mut boot: Vec<PathBuf> = fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("initrd.img-"))
        })
        .collect();
    boot.sort();
    if let Some(found) = boot.pop() {
        return Some(found);
    }
    let out = tmp.join("built.img");
    let version = fs::read_dir("/lib/modules").ok().and_then(|rd| {
        rd.filter_map(|e| e.ok()).find_map(|e| {
            let v = e.file_name().to_string_lossy().into_owned();
            Path::new(&format!("/boot/config-{v}"))
                .exists()
                .then_some(v)
        })
    });
    if let (true, Some(version)) = (have("mkinitramfs"), version) {
        let status = Command::new("mkinitramfs")
            .arg("-o")
            .arg(&out)
            .arg(version)
            .status()
            .ok()?;
        return status.success().then_some(out);
    }
    // A machine without an installed kernel (a CI container): Debian's dracut builds a real
    // distribution initramfs without kernel modules.
    if !have("dracut") {
        return None;
    }
    let status = Command::new("dracut")
        .args([
            "--no-kernel",
            "--no-hostonly",
            "--quiet",
            "--kver",
            "anemos-test",
            "-f",
        ])
        .arg(&out)
        .status()
        .ok()?;
    status.success().then_some(out)
}

#[test]
fn debian_initrd_matches_lsinitramfs() {
    let tmp = tempfile::tempdir().unwrap();
    let test = "debian_initrd_matches_lsinitramfs";
    if crate::testutil::tool("lsinitramfs", "initramfs-tools-core", test).is_none() {
        return;
    }
    let Some(initrd) = debian_initrd(tmp.path()) else {
        crate::testutil::skip(
            test,
            "no /boot/initrd.img-*, no installed kernel for mkinitramfs and no dracut (apt-get install dracut-core)",
        );
        return;
    };
    let started = Instant::now();
    let segments = read_segments(&initrd).unwrap();
    let ours_ms = started.elapsed().as_millis();
    let started = Instant::now();
    let listed = run_sh(tmp.path(), &format!("lsinitramfs '{}'", initrd.display()));
    let theirs_ms = started.elapsed().as_millis();
    let mut theirs: Vec<String> = String::from_utf8_lossy(&listed)
        .lines()
        .map(display_name)
        .collect();
    let mut ours: Vec<String> = segments
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.path.clone())
        .collect();
    theirs.sort();
    ours.sort();
    let size = fs::metadata(&initrd).unwrap().len();
    let uncompressed: u64 = segments.iter().map(|s| s.uncompressed_size).sum();
    eprintln!(
        "{}: {size} bytes, {} segments ({:?}), {} entries, {uncompressed} bytes uncompressed; \
         read_segments {ours_ms} ms, lsinitramfs {theirs_ms} ms",
        initrd.display(),
        segments.len(),
        segments.iter().map(|s| s.compression).collect::<Vec<_>>(),
        ours.len()
    );
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours, theirs);
    let last = segments.last().unwrap();
    let bytes = fs::read(&initrd).unwrap();
    let end = (last.offset + last.compressed_len) as usize;
    assert!(
        bytes[end..].iter().all(|&b| b == 0),
        "only padding after the last segment"
    );

    let dest = tmp.path().join("x");
    let started = Instant::now();
    let summary = extract(&initrd, &dest).unwrap();
    eprintln!("extract: {summary} in {} ms", started.elapsed().as_millis());
    for e in segments
        .iter()
        .flat_map(|s| &s.entries)
        .filter(|e| e.is_file() && e.nlink < 2)
    {
        let on_disk = fs::symlink_metadata(dest.join(&e.path)).unwrap();
        assert_eq!(on_disk.len(), e.size, "{}", e.path);
    }
    if let Some(init) = last
        .entries
        .iter()
        .find(|e| e.path == "init" && e.is_file())
    {
        assert_eq!(cat(&initrd, "/init").unwrap().len() as u64, init.size);
    }
}
