use super::index::{levenshtein, name_from_path};
use super::sets::{module_set, module_sets};
use super::*;
use crate::module_manifest::{
    parse as parse_manifest, release as manifest_release, render as render_manifest,
};
use std::collections::HashMap;
use std::io::Write;
use std::process::Command;

const RELEASE: &str = "6.1.0-99-test";

/// A synthetic `/lib/modules/<release>` tree in a tempdir.
struct FakeKdir {
    _tmp: tempfile::TempDir,
    kdir: PathBuf,
}

impl FakeKdir {
    /// Creates the tree with the given `modules.dep` and a fake file per module.
    fn new(dep: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let kdir = tmp.path().join("lib/modules").join(RELEASE);
        fs::create_dir_all(&kdir).unwrap();
        let me = Self { _tmp: tmp, kdir };
        me.write("modules.dep", dep.as_bytes());
        for line in dep.lines().filter(|l| !l.trim().is_empty()) {
            let rel = line.split(':').next().unwrap().trim();
            if !me.kdir.join(rel).exists() {
                me.write(rel, format!("fake module {rel}\n").as_bytes());
            }
        }
        me
    }

    fn write(&self, rel: &str, data: &[u8]) {
        let path = self.kdir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    fn resolve(&self, names: &[&str]) -> Result<ModulePlan, ModuleError> {
        resolve_modules(&self.request(names))
    }

    fn request(&self, names: &[&str]) -> ModuleRequest {
        ModuleRequest {
            kdir: self.kdir.clone(),
            names: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }
}

fn names(plan: &ModulePlan) -> Vec<&str> {
    plan.modules.iter().map(|m| m.name.as_str()).collect()
}

/// A minimal ELF file (header, `.modinfo`, `.shstrtab`, section table).
fn elf_with_modinfo(entries: &[&str], is64: bool, little: bool) -> Vec<u8> {
    let put16 = |v: &mut Vec<u8>, x: u16| {
        v.extend(if little {
            x.to_le_bytes()
        } else {
            x.to_be_bytes()
        })
    };
    let put32 = |v: &mut Vec<u8>, x: u32| {
        v.extend(if little {
            x.to_le_bytes()
        } else {
            x.to_be_bytes()
        })
    };
    let put64 = |v: &mut Vec<u8>, x: u64| {
        v.extend(if little {
            x.to_le_bytes()
        } else {
            x.to_be_bytes()
        })
    };
    let putw = |v: &mut Vec<u8>, x: u64| {
        if is64 {
            put64(v, x)
        } else {
            put32(v, x as u32)
        }
    };
    let (ehsize, shentsize) = if is64 { (64u64, 64u16) } else { (52, 40) };
    let modinfo: Vec<u8> = entries.iter().flat_map(|e| e.bytes().chain([0])).collect();
    let shstrtab = b"\0.modinfo\0.shstrtab\0".to_vec();
    let modinfo_off = ehsize;
    let shstrtab_off = modinfo_off + modinfo.len() as u64;
    let shoff = shstrtab_off + shstrtab.len() as u64;

    let mut v = b"\x7fELF".to_vec();
    v.extend([if is64 { 2 } else { 1 }, if little { 1 } else { 2 }, 1, 0]);
    v.resize(16, 0);
    put16(&mut v, 1); // e_type ET_REL
    put16(&mut v, 62); // e_machine
    put32(&mut v, 1); // e_version
    putw(&mut v, 0); // e_entry
    putw(&mut v, 0); // e_phoff
    putw(&mut v, shoff);
    put32(&mut v, 0); // e_flags
    put16(&mut v, ehsize as u16);
    put16(&mut v, 0); // e_phentsize
    put16(&mut v, 0); // e_phnum
    put16(&mut v, shentsize);
    put16(&mut v, 3); // e_shnum
    put16(&mut v, 2); // e_shstrndx
    assert_eq!(v.len() as u64, ehsize);
    v.extend(&modinfo);
    v.extend(&shstrtab);
    // (name, type, offset, size)
    let sections = [
        (0u32, 0u32, 0u64, 0u64),
        (1, 1, modinfo_off, modinfo.len() as u64),
        (10, 3, shstrtab_off, shstrtab.len() as u64),
    ];
    for (name, kind, off, size) in sections {
        put32(&mut v, name);
        put32(&mut v, kind);
        putw(&mut v, 0); // sh_flags
        putw(&mut v, 0); // sh_addr
        putw(&mut v, off);
        putw(&mut v, size);
        put32(&mut v, 0); // sh_link
        put32(&mut v, 0); // sh_info
        putw(&mut v, 1); // sh_addralign
        putw(&mut v, 0); // sh_entsize
    }
    v
}

#[test]
fn dependency_order_puts_deps_first_and_breaks_ties_by_name() {
    let k = FakeKdir::new(
        "kernel/a/top.ko: kernel/a/mid.ko kernel/a/base.ko\n\
         kernel/a/mid.ko: kernel/a/base.ko\n\
         kernel/a/base.ko:\n\
         kernel/b/zeta.ko:\n\
         kernel/b/alpha.ko:\n\
         kernel/b/user.ko: kernel/b/zeta.ko kernel/b/alpha.ko\n\
         kernel/c/unrelated.ko:\n",
    );
    let plan = k.resolve(&["top"]).unwrap();
    assert_eq!(names(&plan), ["base", "mid", "top"]);
    assert_eq!(plan.release, RELEASE);
    assert_eq!(
        plan.modules[0].dest,
        PathBuf::from(format!("/lib/modules/{RELEASE}/kernel/a/base.ko"))
    );
    assert_eq!(plan.modules[0].data, b"fake module kernel/a/base.ko\n");
    let plan = k.resolve(&["user", "top"]).unwrap();
    assert_eq!(
        names(&plan),
        ["alpha", "base", "mid", "top", "zeta", "user"]
    );
}

#[test]
fn dash_and_underscore_are_the_same_name() {
    let k = FakeKdir::new("kernel/drivers/usb/usb-storage.ko:\n");
    let plan = k.resolve(&["usb_storage"]).unwrap();
    assert_eq!(names(&plan), ["usb_storage"]);
    let plan = k.resolve(&["usb-storage"]).unwrap(); // the set, which includes usb_storage
    assert_eq!(names(&plan), ["usb_storage"]);
}

#[test]
fn softdep_pre_loads_before_and_post_after_missing_ignored() {
    let k = FakeKdir::new("kernel/x/main.ko:\nkernel/x/pre1.ko:\nkernel/x/post1.ko:\nkernel/x/zz_early.ko:\nkernel/crypto/crc32c.ko:\n");
    k.write(
        "modules.softdep",
        b"# comment\nsoftdep main pre: zz_early missing_pre crypto-crc32c post: post1 missing_post\nsoftdep main ignored_word\n",
    );
    k.write("modules.alias", b"alias crypto-crc32c crc32c\n");
    let plan = k.resolve(&["main"]).unwrap();
    let order = names(&plan);
    assert_eq!(order, ["crc32c", "zz_early", "main", "post1"]);
    assert!(!order.contains(&"pre1"));
}

#[test]
fn alias_glob_matches_all_modules() {
    let k = FakeKdir::new(
        "kernel/virtio_blk.ko:\nkernel/other_blk.ko:\nkernel/vfat.ko:\nkernel/nomatch.ko:\n",
    );
    k.write(
        "modules.alias",
        b"alias virtio:d00000002v* virtio_blk\n\
          alias virtio:d0000000[0-2]v0000?AF4 other-blk\n\
          alias virtio:d00000003v* nomatch\n\
          alias fs-vfat vfat\n\
          alias pci:v*d*sv*sd*bc01sc[!0]* stale_module_not_in_dep\n",
    );
    let plan = k.resolve(&["virtio:d00000002v00001AF4"]).unwrap();
    assert_eq!(names(&plan), ["other_blk", "virtio_blk"]);
    let plan = k.resolve(&["fs_vfat"]).unwrap(); // `-`/`_` normalized in aliases too
    assert_eq!(names(&plan), ["vfat"]);
    let err = k.resolve(&["pci:v1d2sv3sd4bc01sc05i00"]).unwrap_err();
    assert!(matches!(err, ModuleError::Unknown { .. }), "{err}");
}

#[test]
fn builtin_requests_and_deps_are_skipped() {
    let k = FakeKdir::new("kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\nkernel/drivers/x/needs_builtin.ko: kernel/crypto/crc32c_generic.ko\n");
    k.write(
        "modules.builtin",
        b"kernel/fs/ext4/ext4.ko\nkernel/fs/fat/fat.ko\nkernel/crypto/crc32c_generic.ko\n",
    );
    k.write(
        "modules.builtin.modinfo",
        b"ext4.alias=fs-ext4\0ext4.license=GPL\0",
    );
    let plan = k
        .resolve(&["ext4", "vfat", "needs-builtin", "fs-ext4"])
        .unwrap();
    assert_eq!(names(&plan), ["needs_builtin", "vfat"]);
    assert_eq!(plan.builtin_skipped, ["crc32c_generic", "ext4", "fat"]);
}

#[test]
fn unknown_module_names_closest_matches() {
    let k = FakeKdir::new(
        "kernel/virtio_blk.ko:\nkernel/virtio_pci.ko:\nkernel/virtio_mmio.ko:\nkernel/zzz_far_away.ko:\nkernel/virtio_net.ko:\n",
    );
    let err = k.resolve(&["virtio_blk", "virtio_blkk"]).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        format!(
            "unknown module \"virtio_blkk\" in {} (closest: virtio_blk, virtio_mmio, virtio_net)",
            k.kdir.display()
        )
    );
    assert!(!msg.contains('\n'));
    // Set names are case-sensitive.
    let err = k.resolve(&["Virtio"]).unwrap_err();
    assert!(err.to_string().contains("(closest: virtio"), "{err}");
    assert!(k.resolve(&[""]).is_err());
}

#[test]
fn levenshtein_distances() {
    assert_eq!(levenshtein("", ""), 0);
    assert_eq!(levenshtein("abc", ""), 3);
    assert_eq!(levenshtein("kitten", "sitting"), 3);
    assert_eq!(levenshtein("virtio_blkk", "virtio_blk"), 1);
    assert_eq!(levenshtein("flaw", "lawn"), 2);
}

#[test]
fn dependency_cycle_is_an_error() {
    let k = FakeKdir::new("kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/c.ko\nkernel/c.ko: kernel/a.ko\nkernel/d.ko: kernel/a.ko\n");
    let err = k.resolve(&["d"]).unwrap_err();
    let ModuleError::Cycle { cycle } = &err else {
        panic!("expected cycle, got {err}")
    };
    assert_eq!(cycle.len(), 4);
    assert_eq!(cycle.first(), cycle.last());
    let members: BTreeSet<&str> = cycle.iter().map(String::as_str).collect();
    assert_eq!(members, BTreeSet::from(["a", "b", "c"]));
    assert!(
        err.to_string().starts_with("module dependency cycle: "),
        "{err}"
    );

    // A softdep post that is also a hard dependency is a cycle too.
    let k = FakeKdir::new("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n");
    k.write("modules.softdep", b"softdep a post: b\n");
    assert!(matches!(k.resolve(&["a"]), Err(ModuleError::Cycle { .. })));
}

#[test]
fn compressed_modules_are_decompressed_or_kept() {
    let payload = |n: &str| format!("payload of {n} ").repeat(50).into_bytes();
    let k = FakeKdir::new("kernel/m/x.ko.xz: kernel/m/z.ko.zst\nkernel/m/z.ko.zst: kernel/m/g.ko.gz\nkernel/m/g.ko.gz:\n");
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    xz.write_all(&payload("x")).unwrap();
    k.write("kernel/m/x.ko.xz", &xz.finish().unwrap());
    k.write(
        "kernel/m/z.ko.zst",
        &zstd::encode_all(payload("z").as_slice(), 3).unwrap(),
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&payload("g")).unwrap();
    k.write("kernel/m/g.ko.gz", &gz.finish().unwrap());

    let plan = k.resolve(&["x"]).unwrap();
    assert_eq!(names(&plan), ["g", "z", "x"]);
    for (m, n) in plan.modules.iter().zip(["g", "z", "x"]) {
        assert_eq!(m.data, payload(n), "{n}");
        assert_eq!(
            m.dest,
            PathBuf::from(format!("/lib/modules/{RELEASE}/kernel/m/{n}.ko"))
        );
    }

    let mut req = k.request(&["x"]);
    req.keep_compressed = true;
    let plan = resolve_modules(&req).unwrap();
    let dests: Vec<String> = plan
        .modules
        .iter()
        .map(|m| m.dest.display().to_string())
        .collect();
    let base = format!("/lib/modules/{RELEASE}/kernel/m");
    assert_eq!(
        dests,
        [
            format!("{base}/g.ko.gz"),
            format!("{base}/z.ko.zst"),
            format!("{base}/x.ko.xz")
        ]
    );
    assert_eq!(
        plan.modules[1].data,
        fs::read(k.kdir.join("kernel/m/z.ko.zst")).unwrap()
    );

    k.write("kernel/m/g.ko.gz", b"not gzip at all");
    assert!(matches!(
        k.resolve(&["g"]),
        Err(ModuleError::Decompress { .. })
    ));
}

#[test]
fn modinfo_is_read_from_elf_sections() {
    let entries = [
        "license=GPL",
        "firmware=a/b.bin",
        "description=x=y",
        "firmware=c.fw",
    ];
    for (is64, little) in [(true, true), (true, false), (false, true), (false, false)] {
        let elf = elf_with_modinfo(&entries, is64, little);
        let info = elf::modinfo(&elf).unwrap();
        let got: Vec<(&str, &str)> = info.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("license", "GPL"),
                ("firmware", "a/b.bin"),
                ("description", "x=y"),
                ("firmware", "c.fw")
            ],
            "is64={is64} little={little}"
        );
    }
    assert!(elf::modinfo(b"not an elf").unwrap().is_empty());
    // .modinfo size pointing past the end of the file.
    let mut broken = elf_with_modinfo(&entries, true, true);
    let shoff = u64::from_le_bytes(broken[0x28..0x30].try_into().unwrap()) as usize;
    broken[shoff + 64 + 32..shoff + 64 + 40].copy_from_slice(&1_000_000u64.to_le_bytes());
    assert!(elf::modinfo(&broken)
        .unwrap_err()
        .to_string()
        .contains("past the end"));
    // Section table cut short.
    let mut cut = elf_with_modinfo(&entries, true, true);
    cut.truncate(shoff + 64 + 10);
    assert!(elf::modinfo(&cut).is_err());
}

#[test]
fn firmware_is_found_in_firmware_dirs() {
    let k = FakeKdir::new("kernel/net/nic.ko.zst: kernel/net/helper.ko\nkernel/net/helper.ko:\n");
    let nic = elf_with_modinfo(
        &[
            "firmware=vendor/nic.bin",
            "firmware=nic-extra.fw",
            "firmware=missing.bin",
            "firmware=../evil",
        ],
        true,
        true,
    );
    k.write(
        "kernel/net/nic.ko.zst",
        &zstd::encode_all(nic.as_slice(), 3).unwrap(),
    );
    k.write(
        "kernel/net/helper.ko",
        &elf_with_modinfo(&["firmware=vendor/nic.bin"], true, true),
    );
    let fw1 = tempfile::tempdir().unwrap();
    let fw2 = tempfile::tempdir().unwrap();
    fs::create_dir_all(fw2.path().join("vendor")).unwrap();
    fs::write(fw2.path().join("vendor/nic.bin"), b"fw").unwrap();
    fs::write(fw1.path().join("nic-extra.fw.xz"), b"fwxz").unwrap();
    fs::write(fw2.path().join("nic-extra.fw"), b"shadowed by fw1's .xz").unwrap();

    for keep_compressed in [false, true] {
        let mut req = k.request(&["nic"]);
        req.firmware_dirs = vec![fw1.path().to_path_buf(), fw2.path().to_path_buf()];
        req.keep_compressed = keep_compressed;
        let plan = resolve_modules(&req).unwrap();
        assert_eq!(
            plan.firmware,
            [
                FirmwareFile {
                    dest: "/lib/firmware/vendor/nic.bin".into(),
                    src: fw2.path().join("vendor/nic.bin")
                },
                FirmwareFile {
                    dest: "/lib/firmware/nic-extra.fw.xz".into(),
                    src: fw1.path().join("nic-extra.fw.xz")
                },
            ]
        );
        assert_eq!(plan.missing_firmware, ["missing.bin"]);
    }
}

#[test]
fn manifest_round_trips_and_reports_bad_lines() {
    let k = FakeKdir::new("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n");
    let plan = k.resolve(&["a"]).unwrap();
    let first = plan.manifest.lines().next().unwrap();
    assert_eq!(
        first,
        format!("# anemos module manifest v1 release={RELEASE}")
    );
    assert_eq!(manifest_release(&plan.manifest), Some(RELEASE));
    let parsed = parse_manifest(&plan.manifest).unwrap();
    let expected: Vec<ManifestEntry> = plan
        .modules
        .iter()
        .map(|m| ManifestEntry {
            name: m.name.clone(),
            path: m.dest.clone(),
            params: None,
        })
        .collect();
    assert_eq!(parsed, expected);
    assert_eq!(
        parsed[0].path,
        PathBuf::from(format!("/lib/modules/{RELEASE}/kernel/b.ko"))
    );

    let with_params = vec![ManifestEntry {
        name: "m".into(),
        path: "/lib/m.ko".into(),
        params: Some("debug=1 x=y".into()),
    }];
    assert_eq!(
        parse_manifest(&render_manifest("r", &with_params)).unwrap(),
        with_params
    );

    let err = parse_manifest("# header\n\nok /lib/ok.ko\nonlyname\n").unwrap_err();
    assert!(err.line == 4, "{err}");
    assert!(
        err.to_string().starts_with("module manifest line 4: "),
        "{err}"
    );
    let err = parse_manifest("m relative/path.ko\n").unwrap_err();
    assert!(
        err.to_string().contains("line 1") && err.to_string().contains("not absolute"),
        "{err}"
    );
}

#[test]
fn missing_kdir_and_modules_dep_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("lib/modules/nope");
    let err = resolve_modules(&ModuleRequest {
        kdir: missing.clone(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, ModuleError::KdirMissing { .. }));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    fs::create_dir_all(&missing).unwrap();
    let err = resolve_modules(&ModuleRequest {
        kdir: missing.clone(),
        ..Default::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&missing.join("modules.dep").display().to_string()) && msg.contains("depmod"),
        "{msg}"
    );

    let k = FakeKdir::new("kernel/a.ko: kernel/gone.ko\n");
    assert!(matches!(
        k.resolve(&["a"]),
        Err(ModuleError::MissingDep { .. })
    ));
    k.write("modules.dep", b"kernel/a.ko kernel/b.ko\n");
    let err = k.resolve(&["a"]).unwrap_err();
    assert!(err.to_string().contains("modules.dep:1: "), "{err}");
}

#[test]
fn vfat_brings_the_codepages_of_the_init_mount_options() {
    let dep = "kernel/fs/fat/fat.ko:\n\
               kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko\n\
               kernel/fs/nls/nls_cp437.ko:\n\
               kernel/fs/nls/nls_ascii.ko:\n\
               kernel/fs/nls/nls_cp850.ko:\n";
    let k = FakeKdir::new(dep);
    k.write("modules.alias", b"alias fs-vfat vfat\n");
    for request in ["vfat", "fs-vfat"] {
        assert_eq!(
            names(&k.resolve(&[request]).unwrap()),
            ["fat", "nls_ascii", "nls_cp437", "vfat"],
            "{request}"
        );
    }
    assert_eq!(
        names(&k.resolve(&["fat"]).unwrap()),
        ["fat"],
        "only vfat (what the init mounts) brings them"
    );
    // A codepage built into the kernel is skipped like any builtin; one the kernel lacks is
    // not an error (the mount then names it).
    let k = FakeKdir::new("kernel/fs/fat/vfat.ko:\nkernel/fs/nls/nls_cp437.ko:\n");
    k.write("modules.builtin", b"kernel/fs/nls/nls_ascii.ko\n");
    let plan = k.resolve(&["vfat"]).unwrap();
    assert_eq!(names(&plan), ["nls_cp437", "vfat"]);
    assert_eq!(plan.builtin_skipped, ["nls_ascii"]);
    let k = FakeKdir::new("kernel/fs/fat/vfat.ko:\n");
    assert_eq!(names(&k.resolve(&["vfat"]).unwrap()), ["vfat"]);
}

#[test]
fn named_sets_expand_to_existing_members() {
    let k = FakeKdir::new(
        "kernel/drivers/virtio/virtio.ko:\n\
         kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko\n\
         kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n\
         kernel/drivers/block/loop.ko:\n\
         kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko\n\
         kernel/drivers/net/ethernet/intel/e1000e.ko:\n\
         kernel/fs/fat/vfat.ko:\n\
         kernel/drivers/scsi/sd_mod.ko:\n\
         kernel/drivers/usb/storage/uas.ko:\n",
    );
    assert_eq!(
        names(&k.resolve(&["virtio"]).unwrap()),
        ["virtio", "virtio_blk", "virtio_net", "virtio_pci"]
    );
    assert_eq!(
        names(&k.resolve(&["storage"]).unwrap()),
        ["loop", "sd_mod", "virtio", "virtio_blk"]
    );
    assert_eq!(
        names(&k.resolve(&["net"]).unwrap()),
        ["e1000e", "virtio", "virtio_net"]
    );
    assert_eq!(names(&k.resolve(&["fs"]).unwrap()), ["vfat"]);
    assert_eq!(
        names(&k.resolve(&["usb-storage"]).unwrap()),
        ["sd_mod", "uas"]
    );
    assert!(k.resolve(&["nvme"]).unwrap().modules.is_empty());
    assert!(module_set("usb-storage").is_some());
    assert!(module_set("USB-storage").is_none());
    assert_eq!(module_sets().len(), 9);
    assert!(module_set("luks").is_some());
}

// -----------------------------------------------------------------------
// Debian's cloud kernel, fetched by qemu-tests/fetch-kernel.sh
// -----------------------------------------------------------------------

/// The real modules tree, or `None` (`test` skipped) when not fetched.
fn real_kdir(test: &str) -> Option<PathBuf> {
    let kdir = std::env::var_os("ANEMOS_KERNEL_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/cache/kernel/modules")
        });
    if kdir.join("modules.dep").is_file() {
        Some(kdir)
    } else {
        crate::testutil::skip(
            test,
            &format!(
                "no kernel modules at {} (run qemu-tests/fetch-kernel.sh)",
                kdir.display()
            ),
        );
        None
    }
}

/// modules.dep parsed independently: name -> dependency names.
fn independent_deps(kdir: &Path) -> HashMap<String, Vec<String>> {
    let base = |p: &str| {
        p.rsplit('/')
            .next()
            .unwrap()
            .split(".ko")
            .next()
            .unwrap()
            .replace('-', "_")
    };
    fs::read_to_string(kdir.join("modules.dep"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (base(m), d.split_whitespace().map(base).collect()))
        .collect()
}

/// `modprobe --show-depends` for the tree, when kmod is installed.
fn modprobe_show_depends(kdir: &Path, name: &str) -> Option<BTreeSet<String>> {
    let canonical = fs::canonicalize(kdir).ok()?;
    let release = canonical.file_name()?.to_str()?.to_string();
    let root = canonical.parent()?.parent()?.parent()?;
    let empty_conf = tempfile::tempdir().ok()?;
    let modprobe = ["/usr/sbin/modprobe", "/sbin/modprobe"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let out = Command::new(modprobe)
        .args(["--show-depends", "-d"])
        .arg(root)
        .args(["-S", &release, "-C"])
        .arg(empty_conf.path())
        .arg(name)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "modprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("insmod "))
            .map(|p| name_from_path(p.split_whitespace().next().unwrap()))
            .collect(),
    )
}

/// Asserts every module comes after all its modules.dep deps.
fn assert_deps_first(plan: &ModulePlan, deps: &HashMap<String, Vec<String>>) {
    let pos: HashMap<&str, usize> = plan
        .modules
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    for (i, m) in plan.modules.iter().enumerate() {
        for d in &deps[&m.name] {
            let dp = pos
                .get(d.as_str())
                .unwrap_or_else(|| panic!("{} needs {d}, missing from plan", m.name));
            assert!(
                *dp < i,
                "{} at {i} comes before its dep {d} at {dp}",
                m.name
            );
        }
    }
}

#[test]
fn real_kernel_closures_match_modules_dep_and_modprobe() {
    let test = "real_kernel_closures_match_modules_dep_and_modprobe";
    let Some(kdir) = real_kdir(test) else { return };
    // Without kmod the closures are checked against modules.dep only (a skip under
    // ANEMOS_REQUIRE_TOOLS=1 fails the test).
    let have_kmod = crate::testutil::tool("modprobe", "kmod", test).is_some();
    let deps = independent_deps(&kdir);
    for name in ["virtio_blk", "vfat", "virtio_net", "xfs", "dm_crypt"] {
        let plan = resolve_modules(&ModuleRequest {
            kdir: kdir.clone(),
            names: vec![name.into()],
            ..Default::default()
        })
        .unwrap();
        let got: BTreeSet<String> = plan.modules.iter().map(|m| m.name.clone()).collect();
        let mut expected: BTreeSet<String> = deps[name].iter().cloned().collect();
        expected.insert(name.to_string());
        if let Some(modprobe) = have_kmod
            .then(|| modprobe_show_depends(&kdir, name))
            .flatten()
        {
            // modprobe also follows softdeps; so do we. vfat also brings the codepages the
            // init's explicit vfat mount options need (which modprobe cannot know).
            let mut modprobe = modprobe;
            if name == "vfat" {
                modprobe.extend(["nls_cp437".to_string(), "nls_ascii".to_string()]);
            }
            assert_eq!(got, modprobe, "{name} vs modprobe --show-depends");
            assert!(
                expected.is_subset(&got),
                "{name}: {expected:?} not in {got:?}"
            );
        } else {
            assert!(
                expected.is_subset(&got),
                "{name}: {expected:?} not in {got:?}"
            );
        }
        if !plan.modules.is_empty() && !plan.release.is_empty() {
            assert!(plan.modules.iter().all(|m| m
                .dest
                .starts_with(format!("/lib/modules/{}/kernel/", plan.release))));
            assert!(plan.modules.iter().all(|m| m.data.starts_with(b"\x7fELF")));
        }
        assert_deps_first(&plan, &deps);
        println!(
            "{name} -> {} modules: {}",
            plan.modules.len(),
            names(&plan).join(" ")
        );
    }
    let plan = resolve_modules(&ModuleRequest {
        kdir: kdir.clone(),
        names: vec!["virtio_blk".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(names(&plan).last(), Some(&"virtio_blk"));
    let mut exact: BTreeSet<String> = deps["virtio_blk"].iter().cloned().collect();
    exact.insert("virtio_blk".into());
    assert_eq!(
        plan.modules
            .iter()
            .map(|m| m.name.clone())
            .collect::<BTreeSet<_>>(),
        exact
    );
}

#[test]
fn real_kernel_builtins_sets_and_errors() {
    let Some(kdir) = real_kdir("real_kernel_builtins_sets_and_errors") else {
        return;
    };
    let deps = independent_deps(&kdir);
    let builtin = fs::read_to_string(kdir.join("modules.builtin")).unwrap();
    let req = |names: &[&str]| ModuleRequest {
        kdir: kdir.clone(),
        names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };

    // ext4 is built into Debian's cloud kernel; vfat is a module.
    let plan = resolve_modules(&req(&["ext4", "fs-vfat", "virtio_blk"])).unwrap();
    if builtin.lines().any(|l| l.ends_with("/ext4.ko")) {
        assert!(
            plan.builtin_skipped.contains(&"ext4".to_string()),
            "{:?}",
            plan.builtin_skipped
        );
    }
    assert!(names(&plan).contains(&"vfat") && names(&plan).contains(&"virtio_blk"));
    assert_deps_first(&plan, &deps);
    println!(
        "ext4+fs-vfat+virtio_blk -> {} modules, builtin skipped {:?}",
        plan.modules.len(),
        plan.builtin_skipped
    );

    for set in module_sets() {
        let plan = resolve_modules(&req(&[set.name])).unwrap();
        assert_deps_first(&plan, &deps);
        let bytes: usize = plan.modules.iter().map(|m| m.data.len()).sum();
        println!(
            "set {} -> {} modules ({} KiB), builtin skipped {:?}",
            set.name,
            plan.modules.len(),
            bytes / 1024,
            plan.builtin_skipped
        );
    }

    let err = resolve_modules(&req(&["virtio_blkk"]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("unknown module \"virtio_blkk\" in ")
            && err.contains("(closest: virtio_blk"),
        "{err}"
    );
    println!("{err}");
}

#[test]
fn real_kernel_firmware_from_modinfo() {
    let Some(kdir) = real_kdir("real_kernel_firmware_from_modinfo") else {
        return;
    };
    let Some(rel) = fs::read_to_string(kdir.join("modules.dep"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, _)| m.to_string())
        .find(|m| m.ends_with("/ni_pcidio.ko"))
    else {
        crate::testutil::skip(
            "real_kernel_firmware_from_modinfo",
            &format!("no ni_pcidio module in {}", kdir.display()),
        );
        return;
    };
    let fw = tempfile::tempdir().unwrap();
    fs::write(fw.path().join("ni6534a.bin"), b"fw").unwrap();
    let req = ModuleRequest {
        kdir: kdir.clone(),
        names: vec!["ni_pcidio".into()],
        firmware_dirs: vec![fw.path().to_path_buf()],
        ..Default::default()
    };
    let plan = resolve_modules(&req).unwrap();
    let info = elf::modinfo(&fs::read(kdir.join(&rel)).unwrap()).unwrap();
    assert!(
        info.iter()
            .any(|(k, v)| k == "license" && v.contains("GPL")),
        "{info:?}"
    );
    assert_eq!(
        plan.firmware,
        [FirmwareFile {
            dest: "/lib/firmware/ni6534a.bin".into(),
            src: fw.path().join("ni6534a.bin")
        }]
    );
    assert_eq!(plan.missing_firmware, ["niscrb01.bin", "niscrb02.bin"]);
}

#[test]
fn partition_known_splits_names_the_tree_knows() {
    let k = FakeKdir::new("kernel/drivers/block/virtio_blk.ko:\nkernel/drivers/net/e1000.ko:\n");
    let req: Vec<String> = [
        "storage",
        "virtio-blk",
        "e1000",
        "out_of_tree",
        "e1000",
        "nope",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (known, unknown) = partition_known(&k.kdir, &req).unwrap();
    assert_eq!(known, ["storage", "virtio-blk", "e1000"]);
    assert_eq!(unknown, ["out_of_tree", "nope"]);
    assert!(partition_known(Path::new("/nonexistent/lib/modules/x"), &req).is_err());
}
