//! Tests of the built `anemos` binary on temp files: no root, no VM.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// The crate's skip-or-fail helpers (a missing prerequisite fails under ANEMOS_REQUIRE_TOOLS=1).
#[path = "../src/testutil.rs"]
#[allow(dead_code)]
mod testutil;

fn anemos() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_anemos"));
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

fn run(mut c: Command) -> Output {
    c.output().expect("spawn anemos")
}

fn ok(c: Command) -> Output {
    let o = run(c);
    assert!(
        o.status.success(),
        "anemos failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Runs a failing command and returns its single stderr line.
fn err_line(c: Command) -> String {
    let o = run(c);
    assert!(!o.status.success(), "expected failure, got success");
    let e = String::from_utf8_lossy(&o.stderr).trim().to_string();
    assert_eq!(e.lines().count(), 1, "error should be one line: {e}");
    e
}

fn sha256(p: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn sample_tree(dir: &Path) -> PathBuf {
    let t = dir.join("tree");
    fs::create_dir_all(t.join("etc/conf.d")).unwrap();
    fs::write(t.join("etc/motd"), "hello\n").unwrap();
    fs::write(t.join("etc/conf.d/a"), "a\n").unwrap();
    fs::hard_link(t.join("etc/conf.d/a"), t.join("etc/conf.d/b")).unwrap();
    std::os::unix::fs::symlink("motd", t.join("etc/motd.link")).unwrap();
    t
}

fn pack_cmd(out: &Path, extra: &[&str]) -> Command {
    let mut c = anemos();
    c.args(["pack", "-o"]).arg(out).args(extra);
    c
}

#[test]
fn pack_is_reproducible_and_honours_source_date_epoch() {
    let d = tempfile::tempdir().unwrap();
    let tree = sample_tree(d.path());
    let add = format!("{}:/srv/tree", tree.display());
    // A small stand-in for /init keeps this test fast (the debug binary is ~15 MB).
    let fake_init = d.path().join("fake-init");
    fs::write(&fake_init, vec![7u8; 100_000]).unwrap();
    let pack_cmd = |out: &Path, extra: &[&str]| {
        let mut c = pack_cmd(out, extra);
        c.arg("--init").arg(&fake_init);
        c
    };
    for comp in ["none", "gzip", "zstd", "xz"] {
        let a = d.path().join(format!("a-{comp}.img"));
        let b = d.path().join(format!("b-{comp}.img"));
        ok(pack_cmd(&a, &["--compress", comp, "--add", &add]));
        // Touch the sources between the two packs: mtimes must not leak into the image.
        fs::write(tree.join("etc/motd"), "hello\n").unwrap();
        ok(pack_cmd(&b, &["--compress", comp, "--add", &add]));
        assert_eq!(sha256(&a), sha256(&b), "{comp}: two packs differ");
    }
    let c = d.path().join("c.img");
    let mut cmd = pack_cmd(&c, &["--compress", "none", "--add", &add]);
    cmd.env("SOURCE_DATE_EPOCH", "1700000000");
    ok(cmd);
    assert_ne!(
        sha256(&c),
        sha256(&d.path().join("a-none.img")),
        "SOURCE_DATE_EPOCH must change mtimes"
    );
    let listing = Command::new("cpio")
        .args(["-itv", "--quiet"])
        .stdin(fs::File::open(&c).unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.contains("Nov 14  2023"),
        "mtime 1700000000 not shown by cpio -tv:\n{text}"
    );
}

#[test]
fn gnu_cpio_reads_our_archive() {
    let d = tempfile::tempdir().unwrap();
    let tree = sample_tree(d.path());
    let img = d.path().join("x.img");
    ok(pack_cmd(
        &img,
        &[
            "--compress",
            "none",
            "--add",
            &format!("{}:/srv/tree", tree.display()),
        ],
    ));
    let list = Command::new("cpio")
        .args(["-it", "--quiet"])
        .stdin(fs::File::open(&img).unwrap())
        .output()
        .unwrap();
    assert!(list.status.success());
    let names: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(String::from)
        .collect();
    for want in [
        "init",
        "dev/console",
        "etc/initrd-release",
        "srv/tree/etc/motd",
        "srv/tree/etc/motd.link",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from cpio -t: {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries must be sorted (parents first)");
    let x = d.path().join("x");
    fs::create_dir(&x).unwrap();
    let st = Command::new("cpio")
        .args(["-idm", "--quiet", "--no-absolute-filenames"])
        .current_dir(&x)
        .stdin(fs::File::open(&img).unwrap())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        fs::read_to_string(x.join("srv/tree/etc/motd")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        fs::read_link(x.join("srv/tree/etc/motd.link")).unwrap(),
        Path::new("motd")
    );
    use std::os::unix::fs::MetadataExt;
    let a = fs::metadata(x.join("srv/tree/etc/conf.d/a")).unwrap();
    let b = fs::metadata(x.join("srv/tree/etc/conf.d/b")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link not preserved through GNU cpio");
    assert_eq!(
        fs::read_to_string(x.join("srv/tree/etc/conf.d/a")).unwrap(),
        "a\n"
    );
    assert_eq!(
        fs::read(x.join("init")).unwrap(),
        fs::read(env!("CARGO_BIN_EXE_anemos")).unwrap(),
        "/init is this binary"
    );
}

#[test]
fn failed_pack_leaves_no_file() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("img");
    let e = err_line(pack_cmd(&out, &["--add", "/nonexistent/file:/x"]));
    assert_eq!(
        e,
        "anemos: error: --add /nonexistent/file: /nonexistent/file: no such file or directory"
    );
    assert_eq!(
        fs::read_dir(d.path()).unwrap().count(),
        0,
        "partial output left behind"
    );
}

#[test]
fn error_missing_rootfs_and_payload() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("img");
    let e = err_line(pack_cmd(&out, &["--rootfs", "/nonexistent/root"]));
    assert!(
        e.contains("--rootfs /nonexistent/root: no such file or directory"),
        "{e}"
    );
    let e = err_line(pack_cmd(&out, &["--payload", "/nonexistent/p"]));
    assert!(
        e.contains("--payload /nonexistent/p: no such file or directory"),
        "{e}"
    );
    let e = err_line(pack_cmd(&out, &["--add", "nocolon"]));
    assert!(e.contains("expected SRC:DEST"), "{e}");
}

#[test]
fn error_tar_entry_escaping_root() {
    let d = tempfile::tempdir().unwrap();
    // GNU tar keeps a leading "../" only with -P; build the archive that way.
    fs::create_dir(d.path().join("a")).unwrap();
    fs::write(d.path().join("evil"), "x").unwrap();
    let tar = d.path().join("bad.tar");
    let st = Command::new("tar")
        .args(["-cPf"])
        .arg(&tar)
        .arg("a/../evil")
        .current_dir(d.path())
        .status()
        .unwrap();
    assert!(st.success());
    let out = d.path().join("img");
    let e = err_line(pack_cmd(&out, &["--rootfs", tar.to_str().unwrap()]));
    assert!(
        e.contains("--rootfs: entry \"a/../evil\" escapes the archive root"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn error_file_over_4gib() {
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big");
    let f = fs::File::create(&big).unwrap();
    f.set_len((4u64 << 30) + 1).unwrap(); // sparse: no disk used
    let out = d.path().join("img");
    let e = err_line(pack_cmd(
        &out,
        &["--add", &format!("{}:/big", big.display())],
    ));
    assert!(
        e.contains("big is 4294967297 bytes, over the newc format's 4 GiB per-file limit"),
        "{e}"
    );
    assert!(!out.exists());
}

#[test]
fn error_dest_escaping_root() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("f");
    fs::write(&f, "x").unwrap();
    let e = err_line(pack_cmd(
        &d.path().join("img"),
        &["--add", &format!("{}:../../etc/x", f.display())],
    ));
    assert!(e.contains("escapes the image root"), "{e}");
}

#[test]
fn payload_segment_appends_and_manifest_lists_files() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("p");
    fs::create_dir(&p).unwrap();
    fs::write(p.join("anemos.toml"), "# example\n").unwrap();
    fs::write(p.join("IMGBUILD"), "imgname=x\ntarget=debian\n").unwrap();
    let payload = d.path().join("payload.img");
    let mut c = anemos();
    c.args(["pack-payload"])
        .arg(&p)
        .arg("-o")
        .arg(&payload)
        .args(["--compress", "none"]);
    ok(c);
    let list = Command::new("cpio")
        .args(["-it", "--quiet"])
        .stdin(fs::File::open(&payload).unwrap())
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(
        names.contains("payload/anemos.toml") && names.contains("payload.manifest"),
        "{names}"
    );
    let x = d.path().join("x");
    fs::create_dir(&x).unwrap();
    Command::new("cpio")
        .args(["-id", "--quiet"])
        .current_dir(&x)
        .stdin(fs::File::open(&payload).unwrap())
        .status()
        .unwrap();
    let manifest = fs::read_to_string(x.join("payload.manifest")).unwrap();
    let sum = sha256(&p.join("anemos.toml"));
    assert!(
        manifest.contains(&format!("{sum}  10  anemos.toml")),
        "{manifest}"
    );

    // Appending the payload to a base image gives a second segment.
    let img = d.path().join("full.img");
    ok(pack_cmd(
        &img,
        &["--compress", "zstd", "--payload", payload.to_str().unwrap()],
    ));
    let base = d.path().join("base.img");
    ok(pack_cmd(&base, &["--compress", "zstd"]));
    let full = fs::read(&img).unwrap();
    let b = fs::read(&base).unwrap();
    assert!(full.starts_with(&b), "base image must be a prefix");
    let pad = (4 - b.len() % 4) % 4;
    assert_eq!(&full[b.len() + pad..], &fs::read(&payload).unwrap()[..]);
}

#[test]
fn payload_with_invalid_toml_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("p");
    fs::create_dir(&p).unwrap();
    fs::write(p.join("anemos.toml"), "[disk\nname = 1\n").unwrap();
    let mut c = anemos();
    c.args(["pack-payload"])
        .arg(&p)
        .arg("-o")
        .arg(d.path().join("out"));
    let e = err_line_multi(c);
    assert!(e.starts_with("anemos: error: payload anemos.toml:"), "{e}");
    assert!(!d.path().join("out").exists());
}

/// Like err_line but TOML errors span lines (they quote the offending line).
fn err_line_multi(c: Command) -> String {
    let o = run(c);
    assert!(!o.status.success());
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn release_binary_is_static() {
    let bin = env!("CARGO_BIN_EXE_anemos");
    let o = Command::new("file")
        .arg("-L")
        .arg(bin)
        .output()
        .expect("file(1) installed");
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("statically linked") || s.contains("static-pie linked"),
        "{s}"
    );
    // No ELF interpreter means it runs without musl (or any libc) installed.
    let o = Command::new("readelf")
        .args(["-l", bin])
        .output()
        .expect("readelf");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("Requesting program interpreter"));
}

#[test]
fn help_and_completions() {
    let o = ok({
        let mut c = anemos();
        c.arg("--help");
        c
    });
    let h = String::from_utf8_lossy(&o.stdout);
    for sub in ["pack", "pack-payload", "inspect", "completions"] {
        assert!(h.contains(sub), "--help lacks {sub}");
    }
    let o = ok({
        let mut c = anemos();
        c.args(["completions", "bash"]);
        c
    });
    assert!(String::from_utf8_lossy(&o.stdout).contains("pack-payload"));
    // What happens without --image, and the kernel release check, are in the help.
    let o = ok({
        let mut c = anemos();
        c.args(["deploy", "--help"]);
        c
    });
    let h = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        h.contains(
            "Without it the server builds the base image itself for the kernel it will boot"
        ),
        "{h}"
    );
    let o = ok({
        let mut c = anemos();
        c.args(["kexec", "--help"]);
        c
    });
    let h = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        h.contains("or `auto`: build it here") && h.contains("is refused with both releases named"),
        "{h}"
    );
}

/// The QEMU tests' cached kernel modules tree ($ANEMOS_CACHE or qemu-tests/cache, filled by
/// qemu-tests/fetch-kernel.sh, which scripts/setup.sh runs).
fn kernel_modules(test: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("ANEMOS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/cache"));
    let p = cache.join("kernel/modules");
    if p.join("modules.dep").exists() {
        Some(p)
    } else {
        testutil::skip(
            test,
            &format!(
                "no kernel modules cache at {} (run qemu-tests/fetch-kernel.sh)",
                p.display()
            ),
        );
        None
    }
}

#[test]
fn error_unknown_module_names_closest() {
    let Some(k) = kernel_modules("error_unknown_module_names_closest") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let e = err_line(pack_cmd(
        &d.path().join("img"),
        &[
            "--kernel-modules",
            k.to_str().unwrap(),
            "--module",
            "virtio_blkk",
        ],
    ));
    assert!(
        e.contains("unknown module \"virtio_blkk\"") && e.contains("closest: virtio_blk"),
        "{e}"
    );
}

#[test]
fn error_binary_library_not_found_and_not_elf() {
    let d = tempfile::tempdir().unwrap();
    let e = err_line(pack_cmd(
        &d.path().join("img"),
        &["--binary", "/etc/passwd"],
    ));
    assert!(e.contains("--binary /etc/passwd: not an ELF file"), "{e}");
    let e = err_line(pack_cmd(
        &d.path().join("img"),
        &["--binary", "/nonexistent/tool"],
    ));
    assert!(
        e.contains("--binary /nonexistent/tool: no such file"),
        "{e}"
    );
}

#[test]
fn binary_closure_and_modules_land_in_the_image() {
    let Some(k) = kernel_modules("binary_closure_and_modules_land_in_the_image") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("img");
    ok(pack_cmd(
        &img,
        &[
            "--compress",
            "gzip",
            "--binary",
            "/sbin/mke2fs",
            "--kernel-modules",
            k.to_str().unwrap(),
            "--module",
            "virtio_blk",
            "vfat",
        ],
    ));
    let o = ok({
        let mut c = anemos();
        c.arg("inspect").arg(&img);
        c
    });
    let listing = String::from_utf8_lossy(&o.stdout);
    for want in [
        "sbin/mke2fs",
        "libext2fs.so.2",
        "ld-linux-x86-64.so.2",
        "virtio_blk.ko",
        "virtio_ring.ko",
        "vfat.ko",
        "fat.ko",
        "anemos.modules",
        "etc/anemos/modules ->",
    ] {
        assert!(listing.contains(want), "{want} missing from inspect output");
    }
    let o = ok({
        let mut c = anemos();
        c.arg("inspect")
            .arg(&img)
            .args(["--cat", "/etc/anemos/modules"]);
        c
    });
    let manifest = String::from_utf8_lossy(&o.stdout);
    let pos = |m: &str| {
        manifest
            .lines()
            .position(|l| l.starts_with(&format!("{m} ")))
            .unwrap_or_else(|| panic!("{m} not in manifest:\n{manifest}"))
    };
    assert!(pos("virtio_ring") < pos("virtio") || pos("virtio") < pos("virtio_blk"));
    assert!(
        pos("virtio") < pos("virtio_blk") && pos("fat") < pos("vfat"),
        "load order:\n{manifest}"
    );
}

#[test]
fn inspect_shows_base_and_payload_segments() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("p");
    fs::create_dir(&p).unwrap();
    fs::write(p.join("anemos.toml"), "hostname = \"x\"\n").unwrap();
    let img = d.path().join("img");
    ok(pack_cmd(
        &img,
        &["--compress", "xz", "--payload", p.to_str().unwrap()],
    ));
    let o = ok({
        let mut c = anemos();
        c.arg("inspect").arg(&img);
        c
    });
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("segment 0: offset 0x0, xz"), "{s}");
    assert!(s.contains("segment 1: offset 0x"), "{s}");
    let o = ok({
        let mut c = anemos();
        c.arg("inspect")
            .arg(&img)
            .args(["--cat", "payload/anemos.toml"]);
        c
    });
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hostname = \"x\"\n");
}

/// The disks-basic QEMU payload's config, with blank image files for its two disks
/// (system: 512 MiB, serial sys0; data: 64 MiB, serial data0).
fn disks_basic(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let cfg =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/payloads/disks-basic/anemos.toml");
    let d0 = dir.join("d0.img");
    let d1 = dir.join("d1.img");
    fs::File::create(&d0).unwrap().set_len(512 << 20).unwrap();
    fs::File::create(&d1).unwrap().set_len(64 << 20).unwrap();
    (cfg, d0, d1)
}

#[test]
fn plan_on_image_files_and_validate_errors() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, d0, d1) = disks_basic(d.path());
    let before = sha256(&d0);
    let o = ok({
        let mut c = anemos();
        c.arg("plan")
            .arg(&cfg)
            .arg("--disk")
            .arg(format!("{}:serial=sys0", d0.display()))
            .arg("--disk")
            .arg(format!("{}:serial=data0", d1.display()));
        c
    });
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("DESTROYED: every partition and all data on")
            && out.contains("PRESERVED: never opened for writing"),
        "{out}"
    );
    assert!(
        out.contains("   1        2048      206847    100 MiB  esp"),
        "{out}"
    );
    assert!(
        out.contains("UUID=A3D8-E229 /boot vfat"),
        "derived ids are stable across runs:\n{out}"
    );
    assert_eq!(sha256(&d0), before, "plan must not write");
    // One disk only: the data rule matches nothing, and the error lists the candidates.
    let e = err_line_multi({
        let mut c = anemos();
        c.arg("plan")
            .arg(&cfg)
            .arg("--disk")
            .arg(format!("{}:serial=sys0", d0.display()));
        c
    });
    assert!(
        e.contains("disk \"data\": match { serial = \"data0\" } found no disk; candidates:"),
        "{e}"
    );
    let bad = d.path().join("bad.toml");
    fs::write(&bad, "[[disk]]\nname = \"x\"\nmatch = { serial = \"a\" }\nwipe = true\npartitions = [ { label = \"r\", type = \"root\", size = \"12Q\", format = \"ext4\", mount = \"/\" } ]\n").unwrap();
    let e = err_line({
        let mut c = anemos();
        c.arg("validate").arg(&bad);
        c
    });
    assert!(
        e.contains("disk[0].partitions[0].size: \"12Q\" is not a size"),
        "{e}"
    );
}

fn plan_json(cfg: &Path, disks: &[String]) -> serde_json::Value {
    let o = ok({
        let mut c = anemos();
        c.arg("plan").arg(cfg).arg("--json");
        for d in disks {
            c.arg("--disk").arg(d);
        }
        c
    });
    serde_json::from_slice(&o.stdout).expect("plan --json prints one JSON document")
}

#[test]
fn plan_json_has_the_planned_values() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, d0, d1) = disks_basic(d.path());
    let disks = [
        format!("{}:serial=sys0", d0.display()),
        format!("{}:serial=data0", d1.display()),
    ];
    let j = plan_json(&cfg, &disks);
    let sys = &j["disks"][0];
    assert_eq!(sys["name"], "system");
    assert_eq!(sys["path"], d0.display().to_string());
    assert_eq!(sys["serial"], "sys0");
    assert_eq!(sys["by_id"], serde_json::json!(["virtio-sys0"]));
    assert_eq!(sys["wwn"], serde_json::Value::Null);
    assert_eq!(sys["size_bytes"], 512u64 << 20);
    assert_eq!(sys["logical_sector_size"], 512);
    assert_eq!(sys["action"], "repartition");
    assert_eq!(sys["first_usable_lba"], 34);
    let parts = sys["partitions"].as_array().unwrap();
    let labels: Vec<&str> = parts.iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["esp", "swap", "root"]);
    let esp = &parts[0];
    assert_eq!(esp["number"], 1);
    assert_eq!(esp["type"], "esp");
    assert_eq!(esp["type_guid"], "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    assert_eq!(esp["first_lba"], 2048);
    assert_eq!(esp["last_lba"], 206847);
    assert_eq!(esp["start_bytes"], 1u64 << 20);
    assert_eq!(esp["size_bytes"], 100u64 << 20);
    assert_eq!(esp["filesystem"], "vfat");
    assert_eq!(esp["fs_uuid"], "A3D8-E229");
    assert_eq!(esp["fs_label"], "ESP");
    assert_eq!(esp["mount"], "/boot");
    // Partitions are contiguous and `rest` ends on the last whole MiB before the backup GPT.
    for w in parts.windows(2) {
        assert_eq!(
            w[1]["first_lba"].as_u64().unwrap(),
            w[0]["last_lba"].as_u64().unwrap() + 1
        );
    }
    let root = &parts[2];
    assert_eq!(root["filesystem"], "ext4");
    assert_eq!(root["mount"], "/");
    assert_eq!(root["last_lba"], (511u64 << 20) / 512 - 1);
    // The same identifiers as the text plan, and fstab mounts by them.
    let text = String::from_utf8_lossy(
        &ok({
            let mut c = anemos();
            c.arg("plan").arg(&cfg);
            for d in &disks {
                c.arg("--disk").arg(d);
            }
            c
        })
        .stdout,
    )
    .to_string();
    let fstab = j["fstab"].as_str().unwrap();
    for p in parts {
        assert!(text.contains(p["partuuid"].as_str().unwrap()), "{text}");
        let u = p["fs_uuid"].as_str().unwrap();
        assert!(text.contains(u) && fstab.contains(u), "{u}: {fstab}");
    }
    assert_eq!(sys["disk_guid"].as_str().unwrap().len(), 36);
    let data = &j["disks"][1];
    assert_eq!(data["name"], "data");
    assert_eq!(data["action"], "preserve");
    assert_eq!(data["partitions"], serde_json::json!([]));
    assert_eq!(data["disk_guid"], serde_json::Value::Null);
    assert_eq!(data["preserved_mounts"][0]["label"], "data");
    assert_eq!(data["preserved_mounts"][0]["mount"], "/home");
    assert!(fstab.contains("LABEL=data /home"), "{fstab}");

    // 4096-byte sectors: a 100 MiB ESP cannot be FAT32 there, and the plan says so before
    // anything is written.
    let mut c = anemos();
    c.arg("plan").arg(&cfg).arg("--json");
    c.arg("--disk")
        .arg(format!("{}:serial=sys0:sector=4096", d0.display()));
    c.arg("--disk")
        .arg(format!("{}:serial=data0", d1.display()));
    let e = err_line(c);
    assert!(
        e.contains("partition \"esp\" (100 MiB) is too small for FAT32 with the disk's 4096-byte sectors: it needs at least 257 MiB"),
        "{e}"
    );
    // A 300 MiB ESP on a 4Kn disk: the same byte positions, in bigger sectors.
    let cfg4k =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/payloads/nvme-4kn/anemos.toml");
    let j = plan_json(
        &cfg4k,
        &[format!(
            "{}:id=nvme-QEMU_NVMe_Ctrl_nv4k0:sector=4096",
            d0.display()
        )],
    );
    let esp = &j["disks"][0]["partitions"][0];
    assert_eq!(j["disks"][0]["logical_sector_size"], 4096);
    assert_eq!(esp["first_lba"], 256);
    assert_eq!(esp["last_lba"], 256 + (300 << 20) / 4096 - 1);
    assert_eq!(esp["start_bytes"], 1u64 << 20);
    assert_eq!(esp["size_bytes"], 300u64 << 20);
}

#[test]
fn validate_json_reports_both_verdicts() {
    let cfg =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/payloads/disks-basic/anemos.toml");
    let o = ok({
        let mut c = anemos();
        c.arg("validate").arg(&cfg).arg("--json");
        c
    });
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["valid"], true);
    assert_eq!(j["disks"], 2);
    assert_eq!(j["partitions"], 3);
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.toml");
    fs::write(&bad, "hostname = \n").unwrap();
    let o = run({
        let mut c = anemos();
        c.arg("validate").arg(&bad).arg("--json");
        c
    });
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["valid"], false);
    assert!(j["error"].as_str().unwrap().contains("bad.toml"), "{j}");
}

/// `anemos plan --disk IMG:bus=scsi:...` describes the disk exactly as the init does for the
/// same QEMU scsi-hd (the devices stage line and the plan): the QEMU scenarios
/// disks-scsi-serial and disks-scsi-wwn expect these very strings on the console.
#[test]
fn plan_shows_the_identity_the_init_shows() {
    let d = tempfile::tempdir().unwrap();
    let payloads = Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/payloads");
    let d0 = d.path().join("d0.img");
    let d1 = d.path().join("d1.img");
    fs::File::create(&d0).unwrap().set_len(512 << 20).unwrap();
    fs::File::create(&d1).unwrap().set_len(64 << 20).unwrap();
    let cases = [
        (
            "disks-scsi-serial",
            "bus=scsi:serial=scsisys0",
            "(by-id scsi-0QEMU_QEMU_HARDDISK_scsisys0, serial scsisys0, wwn -, model QEMU HARDDISK, 512 MiB)",
        ),
        (
            "disks-scsi-wwn",
            "bus=scsi:serial=scsiwwn0:wwn=0x5000c50015ea71ac:model=ANEMOS DISK",
            "(by-id scsi-35000c50015ea71ac,wwn-0x5000c50015ea71ac, serial scsiwwn0, wwn 0x5000c50015ea71ac, model ANEMOS DISK, 512 MiB)",
        ),
    ];
    for (payload, keys, want) in cases {
        let o = ok({
            let mut c = anemos();
            c.arg("plan")
                .arg(payloads.join(payload).join("anemos.toml"))
                .arg("--disk")
                .arg(format!("{}:{keys}", d0.display()))
                .arg("--disk")
                .arg(format!("{}:serial=data0", d1.display()));
            c
        });
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!("disk \"system\" = {} {want}", d0.display())),
            "{payload}:\n{out}"
        );
        assert!(
            out.contains("(by-id virtio-data0, serial data0, wwn -, model -, 64 MiB)"),
            "{out}"
        );
    }
}

#[test]
fn makeimg_check_reads_and_validates_imgbuild() {
    let d = tempfile::tempdir().unwrap();
    let check = || {
        let mut c = anemos();
        c.args(["makeimg", "--check"]).current_dir(d.path());
        c
    };
    fs::write(
        d.path().join("IMGBUILD"),
        "imgname=web\ntarget=debian\ndebian_suite=trixie\nformat='tar zstd'\n\
         packages=\"\n  openssh-server\n  systemd-sysv\n\"\nprovision() {\n  true\n}\n",
    )
    .unwrap();
    let o = ok(check());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("imgname web, target debian (trixie)")
            && e.contains("format tar zstd, 2 package(s)")
            && e.contains("functions: provision"),
        "{e}"
    );
    // The same through the multi-call name.
    let link = d.path().join("makeimg");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_anemos"), &link).unwrap();
    let o = Command::new(&link)
        .arg("--check")
        .current_dir(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    fs::write(
        d.path().join("IMGBUILD"),
        "target=debian\nprovision() {\n  true\n",
    )
    .unwrap();
    let e = err_line(check());
    assert!(
        e.contains("IMGBUILD: shell syntax error: IMGBUILD: ")
            && (e.contains("IMGBUILD: 4:") || e.contains("line 4")),
        "{e}"
    );
    fs::write(d.path().join("IMGBUILD"), "target=gentoo\n").unwrap();
    let e = err_line(check());
    assert!(
        e.contains("IMGBUILD: target: unknown target \"gentoo\""),
        "{e}"
    );
    fs::remove_file(d.path().join("IMGBUILD")).unwrap();
    assert!(err_line(check()).contains("IMGBUILD: no such file"));
}

#[test]
fn pack_payload_reads_the_imgbuild_as_the_deploy_image_will() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("p");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("anemos.toml"), "hostname = \"x\"\n").unwrap();
    fs::write(
        src.join("IMGBUILD"),
        "imgname=x\ntarget=debian\nprovision() {\n  if true; then :\n}\n",
    )
    .unwrap();
    let out = d.path().join("p.payload");
    let mut c = anemos();
    c.arg("pack-payload").arg(&src).arg("-o").arg(&out);
    let e = err_line(c);
    assert!(
        e.contains("IMGBUILD: 5:") && e.contains("--no-validate"),
        "{e}"
    );
    assert!(!out.exists(), "no payload written");
    // An external makeimg reads the IMGBUILD its own way: not checked.
    fs::write(
        src.join("anemos.toml"),
        "hostname = \"x\"\n[install]\nkind = \"script\"\npath = \"IMGBUILD\"\n",
    )
    .unwrap();
    let mut c = anemos();
    c.arg("pack-payload").arg(&src).arg("-o").arg(&out);
    ok(c);
    // A bad target is named.
    fs::write(src.join("anemos.toml"), "hostname = \"x\"\n").unwrap();
    fs::write(src.join("IMGBUILD"), "imgname=x\ntarget=gentoo\n").unwrap();
    let mut c = anemos();
    c.arg("pack-payload").arg(&src).arg("-o").arg(&out);
    let e = err_line(c);
    assert!(e.contains("target: unknown target \"gentoo\""), "{e}");
}

#[test]
fn makeimg_refuses_an_unbuildable_raw_file_system_before_building() {
    let d = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("IMGBUILD"),
        "imgname=web\ntarget=debian\nformat='raw 4G gpt btrfs'\n",
    )
    .unwrap();
    for args in [&["makeimg"][..], &["makeimg", "--format", "raw"]] {
        let mut c = anemos();
        c.args(args).current_dir(d.path());
        let e = err_line(c);
        assert!(
            e.contains("IMGBUILD: format: raw file system \"btrfs\" is not supported")
                && e.contains("ext4, ext3 or ext2"),
            "{args:?}: {e}"
        );
    }
    // Nothing was made.
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
}

/// The raid1 payload of the QEMU scenario on image files: 1 GiB, 1.125 GiB, and a data disk.
fn raid1_disks(dir: &Path) -> (PathBuf, Vec<String>, Vec<PathBuf>) {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/payloads/raid1/anemos.toml");
    let mut specs = Vec::new();
    let mut files = Vec::new();
    for (name, size, serial) in [
        ("a.img", 1024u64 << 20, "sys0"),
        ("b.img", 1152 << 20, "sys1"),
        ("data.img", 64 << 20, "data0"),
    ] {
        let p = dir.join(name);
        fs::File::create(&p).unwrap().set_len(size).unwrap();
        specs.push(format!("{}:serial={serial}", p.display()));
        files.push(p);
    }
    (cfg, specs, files)
}

#[test]
fn raid1_plan_shows_the_arrays_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, specs, files) = raid1_disks(d.path());
    let before: Vec<String> = files.iter().map(|f| sha256(f)).collect();
    let o = ok({
        let mut c = anemos();
        c.arg("plan").arg(&cfg);
        for s in &specs {
            c.arg("--disk").arg(s);
        }
        c
    });
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("array \"root\" = /dev/md/root: RAID1 over root-a (")
            && out.contains("/etc/mdadm/mdadm.conf:\n")
            && out.contains("name=any:root"),
        "{out}"
    );
    let j = plan_json(&cfg, &specs);
    let arrays = j["arrays"].as_array().unwrap();
    assert_eq!(arrays.len(), 3);
    let root = &arrays[2];
    // The "rest" members: disk a (1 GiB) decides, minus ESP, the /boot and /var members, swap
    // and tables.
    assert_eq!(
        root["member_size_bytes"],
        (1024 - 2 - 100 - 96 - 32 - 320) << 20
    );
    let b = &j["disks"][1]["partitions"];
    assert_eq!(b[3]["size_bytes"], root["member_size_bytes"]);
    assert_eq!(b[4]["first_lba"], b[3]["last_lba"].as_u64().unwrap() + 1);
    let fstab = j["fstab"].as_str().unwrap();
    assert!(
        fstab.contains(&format!(
            "UUID={} / ext4",
            root["fs_uuid"].as_str().unwrap()
        )),
        "{fstab}"
    );
    assert!(j["mdadm_conf"]
        .as_str()
        .unwrap()
        .contains(root["uuid"].as_str().unwrap()));
    let after: Vec<String> = files.iter().map(|f| sha256(f)).collect();
    assert_eq!(before, after, "plan must not write");
}

#[test]
fn raid1_negatives_name_the_field_and_write_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (cfg, specs, files) = raid1_disks(d.path());
    let before: Vec<String> = files.iter().map(|f| sha256(f)).collect();
    let good = fs::read_to_string(&cfg).unwrap();
    let variant = |name: &str, from: &str, to: &str| {
        assert!(good.contains(from), "{from}");
        let p = d.path().join(name);
        fs::write(&p, good.replacen(from, to, 1)).unwrap();
        p
    };
    let validate_err = |p: &Path| {
        let o = run({
            let mut c = anemos();
            c.arg("validate").arg(p);
            c
        });
        assert!(!o.status.success(), "expected failure");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    // An ESP on md.
    let esp = variant(
        "esp.toml",
        "members = [\"boot-a\", \"boot-b\"]",
        "members = [\"esp-a\", \"boot-b\"]",
    );
    let e = validate_err(&esp);
    assert!(
        e.contains("array[0].members[0]: array \"boot\": member \"esp-a\" is an ESP")
            && e.contains("one ESP per disk"),
        "{e}"
    );
    // Members of different sizes.
    let sizes = variant(
        "sizes.toml",
        "{ label = \"boot-b\", type = \"raid\", size = \"96MiB\" }",
        "{ label = \"boot-b\", type = \"raid\", size = \"128MiB\" }",
    );
    let e = validate_err(&sizes);
    assert!(
        e.contains("array[0].members: array \"boot\": members have different sizes (boot-a: 96MiB, boot-b: 128MiB)"),
        "{e}"
    );
    // A preserved disk named as a member.
    let preserved = variant(
        "preserved.toml",
        "members = [\"root-a\", \"root-b\"]",
        "members = [\"root-a\", \"data\"]",
    );
    let e = validate_err(&preserved);
    assert!(
        e.contains("array[2].members[1]: array \"root\": member \"data\" is on the preserved disk \"data\""),
        "{e}"
    );
    // A missing member disk: valid, but the plan fails naming the array and the member.
    let e = err_line_multi({
        let mut c = anemos();
        c.arg("plan").arg(&cfg);
        c.arg("--disk").arg(&specs[0]).arg("--disk").arg(&specs[2]);
        c
    });
    assert!(
        e.contains("array \"boot\": the disk of member \"boot-b\" is missing: disk \"b\": match { serial = \"sys1\" } found no disk"),
        "{e}"
    );
    let after: Vec<String> = files.iter().map(|f| sha256(f)).collect();
    assert_eq!(before, after, "nothing is written");
}

/// `anemos deploy --plan-only` stops at the plan, so confirming a deploy with it makes no sense.
#[test]
fn deploy_plan_only_is_documented_and_excludes_yes() {
    let mut c = anemos();
    c.args(["deploy", "--help"]);
    let help = String::from_utf8_lossy(&ok(c).stdout).to_string();
    assert!(help.contains("--plan-only"), "{help}");
    let mut c = anemos();
    c.args([
        "deploy",
        "root@h",
        "--payload",
        "p",
        "--image",
        "i",
        "--plan-only",
        "--yes",
    ]);
    let o = run(c);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--plan-only") && e.contains("--yes"), "{e}");
}

/// A copy of the cached modules tree (files symlinked) under another release name: what a base
/// image packed for another kernel carries.
fn renamed_modules_tree(k: &Path, dir: &Path, release: &str) -> PathBuf {
    let dest = dir.join("lib/modules").join(release);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let st = Command::new("cp")
        .arg("-rs")
        .arg(fs::canonicalize(k).unwrap())
        .arg(&dest)
        .status()
        .unwrap();
    assert!(st.success());
    dest
}

fn kexec_check(img: &Path, payload: &Path, kernel: &Path) -> Output {
    let mut c = anemos();
    c.args(["kexec", "--image"])
        .arg(img)
        .arg("--payload")
        .arg(payload)
        .arg("--kernel")
        .arg(kernel);
    run(c)
}

#[test]
fn kexec_refuses_a_base_image_for_another_kernel() {
    let Some(k) = kernel_modules("kexec_refuses_a_base_image_for_another_kernel") else {
        return;
    };
    let kernel = k.join("../../../boot").join(format!(
        "vmlinuz-{}",
        fs::canonicalize(&k)
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
    ));
    let release = "6.1.0-57-cloud-amd64";
    assert!(kernel.is_file(), "{} missing", kernel.display());
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("p");
    fs::create_dir(&p).unwrap();
    fs::write(p.join("anemos.toml"), "# no disks\n").unwrap();

    // Modules of another release: refused before the plan, both releases named.
    let other = renamed_modules_tree(&k, d.path(), "6.1.0-99-other-amd64");
    let img = d.path().join("other.img");
    ok(pack_cmd(
        &img,
        &[
            "--kernel-modules",
            other.to_str().unwrap(),
            "--module",
            "virtio_blk",
        ],
    ));
    let o = kexec_check(&img, &p, &kernel);
    let (out, e) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(!o.status.success(), "{out}{e}");
    assert!(out.is_empty(), "nothing but the refusal: {out}");
    assert!(
        e.contains("has kernel modules for 6.1.0-99-other-amd64, but the kernel it would boot")
            && e.contains(&format!("is {release}: "))
            && e.contains("Nothing was changed")
            && e.contains("--image auto"),
        "{e}"
    );

    // The matching release passes the check (what follows depends on this host's disks).
    let good = d.path().join("good.img");
    ok(pack_cmd(
        &good,
        &[
            "--kernel-modules",
            k.to_str().unwrap(),
            "--module",
            "virtio_blk",
        ],
    ));
    let o = kexec_check(&good, &p, &kernel);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with(&format!(
            "kernel release: {release} (kernel {} and the base image's ",
            kernel.display()
        )),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // The same image with one module file removed: its own manifest refuses it.
    let x = d.path().join("x");
    ok({
        let mut c = anemos();
        c.arg("inspect").arg(&good).arg("--extract").arg(&x);
        c
    });
    let ko = x.join(format!(
        "lib/modules/{release}/kernel/drivers/block/virtio_blk.ko"
    ));
    fs::remove_file(&ko).unwrap();
    fs::remove_file(x.join("init")).unwrap();
    let broken = d.path().join("broken.img");
    ok(pack_cmd(&broken, &["--rootfs", x.to_str().unwrap()]));
    let o = kexec_check(&broken, &p, &kernel);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("lacks 1 of the ")
            && e.contains(&format!(
                "virtio_blk (/lib/modules/{release}/kernel/drivers/block/virtio_blk.ko)"
            )),
        "{e}"
    );
}

#[test]
fn kexec_image_auto_names_the_missing_modules_tree() {
    // The kernel to boot is Debian's RT kernel (its setup header is all that is read); this
    // machine has no /lib/modules for it, so nothing can be built and nothing is changed.
    let kernel = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/kver/testdata/rt-6.1.0-47.setup");
    assert!(!Path::new("/lib/modules/6.1.0-47-rt-amd64").exists());
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("p");
    fs::create_dir(&p).unwrap();
    fs::write(p.join("anemos.toml"), "# no disks\n").unwrap();
    let cache = d.path().join("cache");
    let mut c = anemos();
    c.args(["kexec", "--image", "auto", "--cache-dir"])
        .arg(&cache)
        .arg("--payload")
        .arg(&p)
        .arg("--kernel")
        .arg(&kernel);
    let e = err_line(c);
    assert!(
        e.contains("cannot build the base image here: no /lib/modules/6.1.0-47-rt-amd64/modules.dep for the kernel 6.1.0-47-rt-amd64"),
        "{e}"
    );
    assert_eq!(fs::read_dir(&cache).map(|r| r.count()).unwrap_or(0), 0);
    // --tools-root belongs to --image auto.
    let mut c = anemos();
    c.args(["kexec", "--image", "base.img", "--tools-root", "/"])
        .arg("--payload")
        .arg(&p)
        .arg("--kernel")
        .arg(&kernel);
    assert!(err_line(c).contains("--tools-root is for --image auto"));
}

/// A tar entry written byte by byte (the tar crate's builder refuses hostile names).
fn raw_tar_entry(kind: tar::EntryType, name: &str, link: &str) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    let data: &[u8] = if kind == tar::EntryType::Regular {
        b"x\n"
    } else {
        b""
    };
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// `anemos pack-payload` reads a payload's rootfs archive with the deploy image's own checks,
/// so a hostile or broken archive is refused on the workstation; --no-validate packs it (to
/// test the init's check stage).
#[test]
fn pack_payload_refuses_hostile_and_broken_rootfs_archives() {
    use tar::EntryType as T;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("p");
    fs::create_dir(&p).unwrap();
    let cfg = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/payloads/rootfs-escape/anemos.toml"),
    )
    .unwrap();
    fs::write(p.join("anemos.toml"), cfg).unwrap();
    let good: Vec<u8> = [
        raw_tar_entry(T::Regular, "etc/motd", ""),
        raw_tar_entry(T::Symlink, "bin", "usr/bin"),
        vec![0; 1024],
    ]
    .concat();
    let zst = zstd::encode_all(&good[..], 3).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "symlink",
            [
                raw_tar_entry(T::Symlink, "etc", "/"),
                raw_tar_entry(T::Regular, "etc/passwd", ""),
                vec![0; 1024],
            ]
            .concat(),
            "entry \"etc/passwd\" is written through the symlink \"etc\" -> \"/\"",
        ),
        (
            "absolute",
            [raw_tar_entry(T::Regular, "/etc/passwd", ""), vec![0; 1024]].concat(),
            "entry \"/etc/passwd\" escapes the target root",
        ),
        (
            "truncated",
            zst[..zst.len() - 4].to_vec(),
            "evil.tar: incomplete frame",
        ),
    ];
    for (name, tar, want) in cases {
        fs::write(p.join("evil.tar"), tar).unwrap();
        let out = d.path().join(format!("{name}.img"));
        let mut c = anemos();
        c.arg("pack-payload").arg(&p).arg("-o").arg(&out);
        let e = err_line(c);
        assert!(
            e.contains("payload rootfs archive evil.tar, read as the deploy image's check stage will read it") && e.contains(want),
            "{name}: {e}"
        );
        assert!(!out.exists(), "{name}");
        let mut c = anemos();
        c.arg("pack-payload")
            .arg(&p)
            .arg("-o")
            .arg(&out)
            .arg("--no-validate");
        ok(c);
    }
    fs::write(p.join("evil.tar"), &zst).unwrap();
    let mut c = anemos();
    c.arg("pack-payload")
        .arg(&p)
        .arg("-o")
        .arg(d.path().join("good.img"));
    ok(c);
}

/// `validate` and `plan` say that a streamed rootfs is checked only while and after the disks
/// are written, and that one in RAM is checked before.
#[test]
fn validate_and_plan_say_when_a_url_rootfs_is_checked() {
    let d = tempfile::tempdir().unwrap();
    let (_, d0, _) = disks_basic(d.path());
    let base = "[[disk]]\nname = \"system\"\nmatch = { serial = \"sys0\" }\nwipe = true\npartitions = [ { label = \"root\", type = \"root\", size = \"rest\", format = \"ext4\", mount = \"/\" } ]\n[install]\nkind = \"rootfs\"\nurl = \"http://h/r.tar.zst\"\ninsecure = true\n";
    for (download, want) in [
        (
            "stream",
            "can only be checked while and after the disks are written",
        ),
        (
            "ram",
            "its sha256 and every entry are checked before the first write",
        ),
    ] {
        let cfg = d.path().join(format!("{download}.toml"));
        fs::write(&cfg, format!("{base}download = \"{download}\"\n")).unwrap();
        let mut c = anemos();
        c.arg("validate").arg(&cfg);
        let e = String::from_utf8_lossy(&ok(c).stderr).to_string();
        assert!(
            e.contains("rootfs from http://h/r.tar.zst: ") && e.contains(want),
            "{e}"
        );
        let mut c = anemos();
        c.arg("plan")
            .arg(&cfg)
            .arg("--disk")
            .arg(format!("{}:serial=sys0", d0.display()));
        let o = String::from_utf8_lossy(&ok(c).stdout).to_string();
        assert!(
            o.contains("rootfs from http://h/r.tar.zst: ") && o.contains(want),
            "{o}"
        );
    }
}

/// A hostile anemos.toml on the workstation: too big, or nested far too deep, is one clear
/// error (the same parser runs as PID 1 in the deploy image).
#[test]
fn validate_refuses_huge_and_deeply_nested_files() {
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big.toml");
    fs::write(&big, "#".repeat((1 << 20) + 1)).unwrap();
    let mut c = anemos();
    c.arg("validate").arg(&big);
    let e = err_line(c);
    assert!(
        e.contains("1048577 bytes: an anemos.toml may be at most 1048576 bytes (1 MiB)"),
        "{e}"
    );
    let deep = d.path().join("deep.toml");
    let n = 100_000;
    fs::write(
        &deep,
        format!("hostname = {}{}\n", "[".repeat(n), "]".repeat(n)),
    )
    .unwrap();
    let mut c = anemos();
    c.arg("validate").arg(&deep);
    let e = err_line(c);
    assert!(e.contains("deep.toml:1:92: cannot recurse further"), "{e}");
}

/// `kind = "grub"`: validate refuses BIOS on GPT without a BIOS boot partition (naming the
/// field and why), and the plan of a valid setup names the firmware, the disk and the ESP.
#[test]
fn grub_bios_needs_a_bios_boot_partition_and_the_plan_shows_the_firmware() {
    let d = tempfile::tempdir().unwrap();
    let parts = |bios: &str| {
        format!(
            "[[disk]]\nname = \"system\"\nmatch = {{ serial = \"sys0\" }}\nwipe = true\npartitions = [\n{bios}\
             {{ label = \"esp\", type = \"esp\", size = \"128MiB\", format = \"vfat\", mount = \"/boot/efi\" }},\n\
             {{ label = \"root\", type = \"root\", size = \"rest\", format = \"ext4\", mount = \"/\" }},\n]\n\
             [bootloader]\nkind = \"grub\"\nfirmware = [\"bios\", \"uefi\"]\n"
        )
    };
    let bad = d.path().join("bad.toml");
    fs::write(&bad, parts("")).unwrap();
    let e = err_line({
        let mut c = anemos();
        c.arg("validate").arg(&bad);
        c
    });
    assert!(
        e.contains("bootloader.firmware: \"bios\" on GPT (anemos writes GPT) needs a BIOS boot partition for grub's core image, but no partition has type = \"bios-boot\""),
        "{e}"
    );
    let good = d.path().join("good.toml");
    fs::write(
        &good,
        parts("{ label = \"bios\", type = \"bios-boot\", size = \"1MiB\" },\n"),
    )
    .unwrap();
    ok({
        let mut c = anemos();
        c.arg("validate").arg(&good);
        c
    });
    let img = d.path().join("sys0.img");
    fs::File::create(&img).unwrap().set_len(1 << 30).unwrap();
    let o = ok({
        let mut c = anemos();
        c.arg("plan")
            .arg(&good)
            .arg("--disk")
            .arg(format!("{}:serial=sys0", img.display()));
        c
    });
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("bios-boot"), "{out}");
    assert!(
        out.contains("bootloader: grub from the target's packages for BIOS and UEFI"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "bootloader: BIOS: grub's core image on {} (its BIOS boot partition)",
            img.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("on the ESP /boot/efi, native Boot#### entry"),
        "{out}"
    );
}
