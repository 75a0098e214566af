//! The fuzz target bodies: one function per target, each feeding arbitrary bytes to the parsers
//! anemos runs on outside data, through the same entry points the binary uses. Errors are
//! fine; a panic, a hang, a runaway allocation or a write outside the scratch directory is a
//! bug.
//!
//! Shared by the libFuzzer targets (fuzz/fuzz_targets/*.rs, built with `cargo +nightly fuzz`)
//! and by `cargo test` (tests/fuzz_regressions.rs runs every committed corpus and regression
//! input through [`TARGETS`] on stable Rust).
#![allow(dead_code)]

use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

/// A target body: one input.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its fuzz/fuzz_targets/NAME.rs and fuzz/corpus/NAME/).
pub const TARGETS: &[(&str, Target)] = &[
    ("config", config),
    ("dhcp", dhcp),
    ("elf", elf),
    ("bzimage", bzimage),
    ("cmdline", cmdline),
    ("module_manifest", module_manifest),
    ("modules_index", modules_index),
    ("inspect", inspect),
    ("tar", tar),
    ("gpt", gpt),
    ("netlink", netlink),
    ("http_head", http_head),
    ("imgbuild", imgbuild),
];

/// Decompressed bytes above which the harness does not let an archive be extracted or
/// unpacked (a few KB of zstd can declare gigabytes; the real code streams them, but writing
/// them to the scratch directory would only slow the fuzzer down).
const MAX_WRITTEN: u64 = 8 << 20;

/// The fixed disk set the config target plans against, as `anemos plan --disk` specs with
/// their sizes: virtio disks with serials, a SCSI disk with a WWN, 4Kn NVMe-like disks, a
/// small disk. The serials and ids are those the examples and QEMU payloads match on.
pub const DISKS: &[(&str, u64)] = &[
    ("/dev/vda:serial=sys0", 8 << 30),
    ("/dev/vdb:serial=sys1", 6 << 30),
    ("/dev/vdc:serial=data0", 2 << 30),
    ("/dev/vdd:serial=home0", 1 << 30),
    (
        "/dev/sda:bus=scsi:serial=scsisys0:wwn=0x5000c50015ea71ac",
        4 << 30,
    ),
    (
        "/dev/nvme0n1:sector=4096:id=nvme-QEMU_NVMe_Ctrl_nv4k0",
        2 << 30,
    ),
    (
        "/dev/nvme1n1:sector=4096:id=nvme-QEMU_NVMe_Ctrl_nv4ka",
        3 << 30,
    ),
    (
        "/dev/nvme2n1:sector=4096:id=nvme-QEMU_NVMe_Ctrl_nv4kb",
        3 << 30,
    ),
    ("/dev/vde:serial=tiny0", 96 << 20),
];

/// anemos.toml: parse and validate (`anemos validate`), then plan against the fixed disk set
/// and render the plan, its fstab and its JSON view (`anemos plan --disk ... [--json]`).
/// Also read as a `--network keep` file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = anemos::config::load_network(text, "network.toml");
    let Ok(v) = anemos::config::load(text, "anemos.toml") else {
        return;
    };
    let disks: Vec<_> = DISKS
        .iter()
        .map(|(spec, size)| {
            anemos::blockdev::identity::from_image_spec_sized(spec, *size)
                .expect("the fixed disk specs are valid")
        })
        .collect();
    // All disks, then only the first two (a layout naming more disks fails to match).
    for set in [&disks[..], &disks[..2]] {
        if let Ok(plan) = anemos::disk::plan::plan(&v.layout, set) {
            let _ = anemos::disk::plan::render(&plan);
            let fstab = anemos::disk::fstab::render(&plan);
            let view = anemos::disk::plan_json::view(&plan, fstab);
            let _ = serde_json::to_string(&view).expect("a plan serializes");
        }
    }
}

/// DHCP replies from the network and the domain search list option (RFC 3397 compression).
pub fn dhcp(data: &[u8]) {
    let _ = anemos::net::dhcp::parse_reply(data, 0x1234_5678);
    let _ = anemos::net::dhcp::parse_search_list(data);
}

/// The ELF reader behind `anemos pack --binary` and module metadata.
pub fn elf(data: &[u8]) {
    let _ = anemos::elf::parse_elf(data);
    let _ = anemos::elf::modinfo(data);
    let _ = anemos::elf::section(data, ".modinfo");
}

/// The kernel release read from a bzImage header before a kexec.
pub fn bzimage(data: &[u8]) {
    let _ = anemos::kver::bzimage_version(data);
}

/// The kernel command line: the init's parameters (`anemos.*`, `ip=`, ...) and `ip=` on its
/// own.
pub fn cmdline(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = anemos::init::cmdline::parse(text);
        for w in anemos::kcmdline::split_words(text) {
            if let Some(v) = w.strip_prefix("ip=") {
                let _ = anemos::net::ipparam::parse_ip_param(v);
            }
        }
        let _ = anemos::net::ipparam::parse_ip_param(text);
    }
}

/// The module manifest a base image carries.
pub fn module_manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = anemos::module_manifest::parse(text);
        let _ = anemos::module_manifest::release(text);
    }
}

/// A modules tree's index files and module requests resolved against them, dependency order
/// included (`anemos pack --kernel-modules DIR --module ...` before any module file is read).
/// The input is split at 0xff bytes (never in UTF-8) into `modules.dep`, `modules.builtin`,
/// `modules.builtin.modinfo`, `modules.alias`, `modules.softdep` and the requests, one a line.
pub fn modules_index(data: &[u8]) {
    use anemos::pack::modules::index::{IndexFiles, KernelIndex};
    let mut parts = data.split(|&b| b == 0xff);
    let mut text = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (dep, builtin) = (text(), text());
    let modinfo = text().into_bytes();
    let (alias, softdep, requests) = (text(), text(), text());
    let files = IndexFiles {
        dep: &dep,
        builtin: &builtin,
        builtin_modinfo: &modinfo,
        alias: &alias,
        softdep: &softdep,
    };
    let kdir = Path::new("/lib/modules/6.1.0-fuzz");
    let Ok(idx) = KernelIndex::parse(kdir, "6.1.0-fuzz", &files) else {
        return;
    };
    let names: Vec<String> = requests.lines().take(16).map(str::to_string).collect();
    let _ = anemos::pack::modules::load_order(&idx, &names);
    for n in &names {
        let _ = idx.resolve_request(n);
    }
}

/// `anemos inspect IMAGE`, `--cat PATH` and `--extract DIR` on an arbitrary image: cpio
/// segments, compressed or not. Extraction must stay inside its directory.
pub fn inspect(data: &[u8]) {
    use anemos::pack::inspect;
    let scratch = Scratch::new("inspect");
    let image = scratch.file("image", data);
    let Ok(segments) = inspect::read_segments(&image) else {
        return;
    };
    let _ = inspect::format_listing(&segments);
    let _ = inspect::cat(&image, "/init");
    if let Some(e) = segments.iter().flat_map(|s| &s.entries).next() {
        let _ = inspect::cat(&image, &e.path);
    }
    let total: u64 = segments
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.size)
        .sum();
    if total <= MAX_WRITTEN {
        let _ = inspect::extract(&image, &scratch.dir("x"));
    }
    scratch.assert_only(&["image", "x"]);
}

/// A rootfs tar archive (any compression): the pre-scan (`install::check_tar`), then the
/// unpack of a checked archive, and the streamed unpack that checks each entry just before
/// writing it. Nothing may land outside the target directory.
pub fn tar(data: &[u8]) {
    use anemos::init::install;
    let scratch = Scratch::new("tar");
    let archive = scratch.file("rootfs.tar", data);
    // With a capacity, so the size rule runs too (64 MiB, far above what an input may unpack).
    let checked = install::check_tar(&archive, Some(64 << 20));
    if decompressed_len(data).is_some_and(|n| n <= MAX_WRITTEN) {
        if let Ok(audit) = checked {
            let _ = install::unpack_rootfs(&archive, &scratch.dir("checked"), Some(audit.entries));
        }
        let _ = install::unpack_stream(Cursor::new(data), &scratch.dir("streamed"), "fuzz");
    }
    scratch.assert_only(&["rootfs.tar", "checked", "streamed"]);
}

/// Decompressed length of `data` as the unpack would decode it, up to just above
/// [`MAX_WRITTEN`]; `None` when it does not decode.
fn decompressed_len(data: &[u8]) -> Option<u64> {
    let r = anemos::codec::auto_decoder(Cursor::new(data)).ok()?;
    std::io::copy(&mut r.take(MAX_WRITTEN + 1), &mut std::io::sink()).ok()
}

/// A disk's GPT as device naming reads it at boot (512 then 4096-byte sectors, backup header)
/// and as the disk stages read it back. The input is read as is, then once more with the
/// CRCs of a header at LBA 1 (512-byte sectors) and of its entry array recomputed, so that
/// mutations reach the code behind the checksum checks.
pub fn gpt(data: &[u8]) {
    read_gpts(data);
    let mut fixed = data.to_vec();
    if fix_gpt_crcs(&mut fixed, 512) {
        read_gpts(&fixed);
    }
}

fn read_gpts(data: &[u8]) {
    let _ = anemos::blockdev::gpt::read_gpt(&mut Cursor::new(data));
    let _ = anemos::blockdev::gpt::read_table(&mut Cursor::new(data), None);
    for ss in [512, 4096] {
        let _ = anemos::disk::gpt::read_table(Cursor::new(data), ss);
    }
}

/// Recomputes the entry array CRC and the header CRC of the GPT header at LBA 1.
fn fix_gpt_crcs(d: &mut [u8], ss: usize) -> bool {
    let le32 = |d: &[u8], o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
    if d.len() < 2 * ss || &d[ss..ss + 8] != b"EFI PART" {
        return false;
    }
    let hdr_size = le32(d, ss + 12) as usize;
    if !(92..=ss).contains(&hdr_size) {
        return false;
    }
    let lba = u64::from_le_bytes(d[ss + 72..ss + 80].try_into().unwrap());
    let len = le32(d, ss + 80) as usize * le32(d, ss + 84) as usize;
    let start = usize::try_from(lba).ok().and_then(|l| l.checked_mul(ss));
    if let Some(array) = start.and_then(|s| d.get(s..s.checked_add(len)?)) {
        let crc = anemos::blockdev::gpt::crc32(array);
        d[ss + 88..ss + 92].copy_from_slice(&crc.to_le_bytes());
    }
    d[ss + 16..ss + 20].fill(0);
    let crc = anemos::blockdev::gpt::crc32(&d[ss..ss + hdr_size]);
    d[ss + 16..ss + 20].copy_from_slice(&crc.to_le_bytes());
    true
}

/// Netlink replies: the ACK search over a buffer of messages. The first four bytes are the
/// sequence number looked for.
pub fn netlink(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let seq = u32::from_ne_bytes(data[..4].try_into().unwrap());
    let _ = anemos::net::netlink::parse_ack(&data[4..], seq);
    let _ = anemos::net::netlink::parse_ack(data, seq);
}

/// The downloader's HTTP response head: read up to its empty line (bounded), status,
/// Content-Length, Content-Range, chunked; and URL parsing.
pub fn http_head(data: &[u8]) {
    let mut r = Cursor::new(data);
    if let Ok(head) = anemos::fetch::read_head(&mut r) {
        assert!(head.len() <= anemos::fetch::MAX_HEAD);
        let _ = anemos::fetch::parse_head(&head);
        let _ = anemos::fetch::is_chunked(&head);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = anemos::fetch::parse_url(text);
        let _ = anemos::fetch::parse_head(text);
    }
}

/// An IMGBUILD's variables and functions as the probe shell prints them (NUL-separated
/// `v:NAME=VALUE` and `f:NAME` records), then their validation (`format`, `hostconf`, ...).
pub fn imgbuild(data: &[u8]) {
    use anemos::makeimg::imgbuild;
    if let Ok((vars, functions)) = imgbuild::parse_probe(data) {
        let _ = imgbuild::validate(Path::new("IMGBUILD"), &vars, functions);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = imgbuild::parse_format(text);
        let _ = imgbuild::values(text);
    }
}

/// A fresh directory for one run of a target, removed when dropped.
struct Scratch {
    root: PathBuf,
}

impl Scratch {
    fn new(target: &str) -> Self {
        let root = std::env::temp_dir().join(format!(
            "anemos-fuzz-{target}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("creating the scratch directory");
        Scratch { root }
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.root.join(name);
        fs::write(&p, data).expect("writing the scratch file");
        p
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Fails when the scratch directory holds anything but `names`: something was written
    /// outside the directory it was meant for.
    fn assert_only(&self, names: &[&str]) {
        for e in fs::read_dir(&self.root).expect("listing the scratch directory") {
            let name = e.expect("listing the scratch directory").file_name();
            assert!(
                names.iter().any(|n| name == *n),
                "{name:?} was written outside the target directory"
            );
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}
