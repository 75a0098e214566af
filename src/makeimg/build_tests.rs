//! Whole builds with the bootstrap step replaced by one laying a small root: the steps in
//! order, the tar and raw outputs, format custom's setup()/cleanup() around the build, and
//! (as root, with a static busybox) provision() in the chroot.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;

/// A project: IMGBUILD, files/ with a file, a patch and a template, secrets/ with a key.
fn project(dir: &Path, imgbuild: &str) -> Options {
    fs::write(dir.join("IMGBUILD"), imgbuild).unwrap();
    fs::create_dir_all(dir.join("files/etc/ssh")).unwrap();
    fs::write(dir.join("files/etc/motd"), "welcome\n").unwrap();
    fs::write(
        dir.join("files/etc/ssh/sshd_config.makeimg.patch"),
        "--- sshd_config\n+++ sshd_config\n@@ -1,2 +1,2 @@\n-PermitRootLogin yes\n+PermitRootLogin no\n Port 22\n",
    )
    .unwrap();
    fs::write(dir.join("files/etc/hostname.makeimg.template"), "${HOST}\n").unwrap();
    fs::create_dir_all(dir.join("secrets/etc/ssh")).unwrap();
    fs::write(dir.join("secrets/etc/ssh/ssh_host_ed25519_key"), "KEY\n").unwrap();
    Options {
        imgbuild: imgbuild::load(&dir.join("IMGBUILD")).unwrap(),
        project: dir.to_path_buf(),
        inputs: vec![],
        output: Output::Dir(dir.join("out")),
        mirror: None,
        env: [("HOST".to_string(), "web1".to_string())].into(),
        tool_env: Default::default(),
    }
}

/// Stands in for the bootstrap tool: the file the patch expects.
fn fake_bootstrap(root: &Path) -> Result<()> {
    fs::create_dir_all(root.join("etc/ssh"))?;
    fs::write(
        root.join("etc/ssh/sshd_config"),
        "PermitRootLogin yes\nPort 22\n",
    )?;
    Ok(())
}

#[test]
fn steps_run_in_order_into_a_tar() {
    if crate::testutil::tool("patch", "patch", "steps_run_in_order_into_a_tar").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut o = project(d.path(), "target=debian\nformat='tar gzip'\n");
    let out = d.path().join("img.tar.gz");
    o.output = output(&o.imgbuild, None, Some(out.clone())).unwrap();
    build_with(&o, &fake_bootstrap).unwrap();
    let plain = crate::codec::decode_all(Compression::Gzip, &fs::read(&out).unwrap()).unwrap();
    let mut files = BTreeMap::new();
    for e in tar::Archive::new(&plain[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        let mode = e.header().mode().unwrap() & 0o7777;
        let mut s = String::new();
        if e.header().entry_type().is_file() {
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
        }
        files.insert(p, (mode, s));
    }
    assert_eq!(files["etc/motd"].1, "welcome\n");
    assert_eq!(files["etc/hostname"].1, "web1\n");
    assert_eq!(
        files["etc/ssh/sshd_config"].1,
        "PermitRootLogin no\nPort 22\n"
    );
    assert_eq!(
        files["etc/ssh/ssh_host_ed25519_key"],
        (0o600, "KEY\n".into())
    );
    assert!(
        !files.keys().any(|k| k.contains(".makeimg.")),
        "{:?}",
        files.keys()
    );
    // Only the project and the tar are left: no temporary root or file.
    let mut left: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["IMGBUILD", "files", "img.tar.gz", "secrets"]);
}

#[test]
fn a_failing_step_is_named_and_the_temp_root_removed() {
    let d = tempfile::tempdir().unwrap();
    let mut o = project(d.path(), "target=debian\n");
    o.env.clear();
    o.output = Output::Tar(d.path().join("img.tar"), Compression::None);
    // No sshd_config to patch: the patches step fails, named, before patch(1) is run.
    let e = format!(
        "{:#}",
        build_with(&o, &|root| Ok(fs::create_dir_all(root.join("etc"))?)).unwrap_err()
    );
    assert!(e.starts_with("makeimg: step patches: "), "{e}");
    assert!(!d.path().join("img.tar").exists());
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 3);
}

#[test]
fn provision_runs_chrooted_with_api_mounts() {
    let test = "provision_runs_chrooted_with_api_mounts";
    if !rustix::process::geteuid().is_root() {
        crate::testutil::skip(test, "needs root (chroot and bind mounts)");
        return;
    }
    let Some(busybox) = crate::testutil::tool("busybox", "busybox-static", test) else {
        return;
    };
    if crate::testutil::tool("patch", "patch", test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let o = project(
        d.path(),
        "target=debian\nformat=dir\nprovision() {\n  \
         cat /etc/hostname > /provisioned\n  \
         test -e /proc/self/stat && echo proc >> /provisioned\n  \
         test -c /dev/null && echo dev >> /provisioned\n}\n",
    );
    let root = d.path().join("out");
    let bb = busybox.clone();
    let boot = move |root: &Path| -> Result<()> {
        fake_bootstrap(root)?;
        fs::create_dir_all(root.join("bin"))?;
        fs::copy(&bb, root.join("bin/busybox"))?;
        for a in ["sh", "cat", "test", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(a))?;
        }
        Ok(())
    };
    let r = build_with(&o, &boot);
    // Never let the temp dir's removal descend into a bind mount left behind.
    let dev = fs::metadata(&root).unwrap().dev();
    for m in ["proc", "sys", "dev"] {
        if fs::metadata(root.join(m)).is_ok_and(|md| md.dev() != dev) {
            std::mem::forget(d);
            panic!("{m} still mounted in the image after provision");
        }
    }
    r.unwrap();
    assert_eq!(
        fs::read_to_string(root.join("provisioned")).unwrap(),
        "web1\nproc\ndev\n"
    );
    assert!(!root.join(".makeimg.IMGBUILD").exists());
    let key = fs::metadata(root.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
    assert_eq!((key.mode() & 0o7777, key.uid()), (0o600, 0));
}

/// The tools a raw image test needs, or `None` after the skip line naming what is missing.
fn raw_tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    let sfdisk = crate::testutil::tool("sfdisk", "fdisk", test)?;
    crate::testutil::tool("mkfs.ext4", "e2fsprogs", test)?;
    let debugfs = crate::testutil::tool("debugfs", "e2fsprogs", test)?;
    crate::testutil::tool("patch", "patch", test)?;
    Some((sfdisk, debugfs))
}

/// `debugfs -R REQUEST` on the file system at `offset` in `img`: its stdout.
fn debugfs(debugfs: &Path, img: &Path, offset: u64, request: &str) -> String {
    let o = std::process::Command::new(debugfs)
        .arg("-R")
        .arg(request)
        .arg(format!("{}?offset={offset}", img.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds the test project as `format=FORMAT` and checks the image: one partition of `table`
/// at 1 MiB up to (about) the end, and the built files in its file system.
fn raw_image_holds_the_tree(test: &str, format: &str, table: &str) {
    let Some((sfdisk, dbg)) = raw_tools(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let mut o = project(d.path(), &format!("target=debian\nformat='{format}'\n"));
    let img = d.path().join("disk.img");
    o.output = output(&o.imgbuild, None, Some(img.clone())).unwrap();
    build_with(&o, &fake_bootstrap).unwrap();

    let size = fs::metadata(&img).unwrap().len();
    assert_eq!(size, 64 << 20);
    let out = std::process::Command::new(&sfdisk)
        .arg("--json")
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["partitiontable"];
    assert_eq!(t["label"], table);
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{t}");
    assert_eq!(parts[0]["start"], 2048);
    let sectors = parts[0]["size"].as_u64().unwrap();
    if table == "dos" {
        assert_eq!(parts[0]["type"], "83");
        assert_eq!(sectors, (size - (1 << 20)) / 512);
    } else {
        assert_eq!(parts[0]["type"], raw::GPT_LINUX_FS);
        // Up to the backup table at the end, which mkfs left intact.
        assert!(sectors >= (size - (2 << 20)) / 512, "{sectors}");
        let mut tail = [0u8; 8];
        let f = fs::File::open(&img).unwrap();
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut tail, size - 512).unwrap();
        assert_eq!(&tail, b"EFI PART");
    }

    let cat = |p: &str| debugfs(&dbg, &img, 1 << 20, &format!("cat {p}"));
    assert_eq!(cat("/etc/motd"), "welcome\n");
    assert_eq!(cat("/etc/hostname"), "web1\n");
    assert_eq!(cat("/etc/ssh/sshd_config"), "PermitRootLogin no\nPort 22\n");
    let stat = debugfs(&dbg, &img, 1 << 20, "stat /etc/ssh/ssh_host_ed25519_key");
    assert!(
        stat.contains("Mode:  0600") && stat.contains("User:     0"),
        "{stat}"
    );
    let root = debugfs(&dbg, &img, 1 << 20, "ls /");
    assert!(!root.contains(".makeimg"), "{root}");
    // The file system asked for: extents are ext4's.
    let stats = debugfs(&dbg, &img, 1 << 20, "stats");
    let ext4 = stats.contains(" extent");
    assert_eq!(ext4, format.ends_with("ext4"), "{stats}");
    assert!(stats.contains("Block count:"), "{stats}");

    // Only the project and the image are left: no temporary root or file.
    let mut left: Vec<_> = fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["IMGBUILD", "disk.img", "files", "secrets"]);
}

#[test]
fn raw_image_msdos_ext4_holds_the_tree() {
    raw_image_holds_the_tree(
        "raw_image_msdos_ext4_holds_the_tree",
        "raw 64M msdos ext4",
        "dos",
    );
}

#[test]
fn raw_image_gpt_ext3_holds_the_tree() {
    raw_image_holds_the_tree(
        "raw_image_gpt_ext3_holds_the_tree",
        "raw 64M gpt ext3",
        "gpt",
    );
}

#[test]
fn raw_image_too_small_is_refused_with_the_numbers() {
    if raw_tools("raw_image_too_small_is_refused_with_the_numbers").is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let boot = |root: &Path| -> Result<()> {
        fake_bootstrap(root)?;
        fs::write(root.join("big"), vec![7u8; 6 << 20])?;
        Ok(())
    };
    let img = d.path().join("disk.img");
    let build = |format: &str| {
        let mut o = project(d.path(), &format!("target=debian\nformat='{format}'\n"));
        o.output = output(&o.imgbuild, None, Some(img.clone())).unwrap();
        format!("{:#}", build_with(&o, &boot).unwrap_err())
    };
    // The tree (6 MiB) exceeds the partition (3 MiB): refused before mkfs, with both sizes.
    let e = build("raw 4M");
    assert!(
        e.starts_with("makeimg: step output: format raw: SIZE 4 MiB is too small: the root takes")
            && e.contains("the partition holds 3145728 bytes (3 MiB)"),
        "{e}"
    );
    // The tree fits the partition (7 MiB) but not with the file system's own metadata: mkfs
    // fails, and the error says why it may have.
    let e = build("raw 8M");
    assert!(
        e.contains("making the ext4 file system of the raw image")
            && e.contains("a larger SIZE may help"),
        "{e}"
    );
    assert!(!img.exists());
    assert_eq!(fs::read_dir(d.path()).unwrap().count(), 3, "nothing left");
}

/// A custom IMGBUILD: setup() and cleanup() leave markers in $ANEMOS_ROOT and append to
/// `order`, as do the fake bootstrap and provision().
const CUSTOM: &str = "target=debian\nformat=custom\n\
    setup() {\n  echo \"$(pwd) $ANEMOS_ROOT\" > \"$ANEMOS_ROOT/setup-marker\"\n  \
    test ! -e \"$ANEMOS_ROOT/etc/motd\" && echo setup >> \"$ANEMOS_ROOT/order\"\n}\n\
    cleanup() {\n  cat \"$ANEMOS_ROOT/etc/motd\" > \"$ANEMOS_ROOT/cleanup-marker\"\n  \
    echo cleanup >> \"$ANEMOS_ROOT/order\"\n  CLEANUP_END\n}\n";

/// [`CUSTOM`] with `provision` as the body of provision(), and `cleanup_end` as cleanup()'s
/// last command.
fn custom(provision: &str, cleanup_end: &str) -> String {
    let mut s = CUSTOM.replace("CLEANUP_END", cleanup_end);
    if !provision.is_empty() {
        s.push_str(&format!("provision() {{\n  {provision}\n}}\n"));
    }
    s
}

/// A fake bootstrap that appends to `order`, and with a busybox, a shell for provision().
fn custom_bootstrap(busybox: Option<PathBuf>) -> impl Fn(&Path) -> Result<()> {
    move |root: &Path| {
        fake_bootstrap(root)?;
        let mut order = fs::OpenOptions::new()
            .append(true)
            .open(root.join("order"))?;
        std::io::Write::write_all(&mut order, b"bootstrap\n")?;
        if let Some(bb) = &busybox {
            fs::create_dir_all(root.join("bin"))?;
            fs::copy(bb, root.join("bin/busybox"))?;
            for a in ["sh", "echo", "false"] {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(a))?;
            }
        }
        Ok(())
    }
}

/// Fails the test when something is still mounted in `root` (and then keeps the temp dir, so
/// its removal never descends into the host's /proc, /sys or /dev); gives the temp dir back.
fn assert_unmounted(root: &Path, d: tempfile::TempDir) -> tempfile::TempDir {
    let dev = fs::metadata(root).unwrap().dev();
    for m in ["proc", "sys", "dev"] {
        if fs::metadata(root.join(m)).is_ok_and(|md| md.dev() != dev) {
            std::mem::forget(d);
            panic!("{m} still mounted in the image after provision");
        }
    }
    d
}

#[test]
fn custom_setup_and_cleanup_run_around_the_build() {
    let test = "custom_setup_and_cleanup_run_around_the_build";
    if !rustix::process::geteuid().is_root() {
        crate::testutil::skip(test, "needs root (provision: chroot and bind mounts)");
        return;
    }
    let Some(busybox) = crate::testutil::tool("busybox", "busybox-static", test) else {
        return;
    };
    if crate::testutil::tool("patch", "patch", test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut o = project(
        d.path(),
        &custom("echo provision >> /order", "echo cleaned up"),
    );
    // As any caller does: the directory output, here relative to nothing but the project.
    let root = d.path().join("target");
    o.output = output(&o.imgbuild, None, Some(root.clone())).unwrap();
    assert_eq!(o.output, Output::Dir(root.clone()));
    let r = build_with(&o, &custom_bootstrap(Some(busybox)));
    let _d = assert_unmounted(&root, d);
    r.unwrap();
    // setup ran in the project directory with ANEMOS_ROOT the root, before the files step;
    // cleanup after provision, with the files in place.
    assert_eq!(
        fs::read_to_string(root.join("setup-marker")).unwrap(),
        format!("{} {}\n", o.project.display(), root.display())
    );
    assert_eq!(
        fs::read_to_string(root.join("order")).unwrap(),
        "setup\nbootstrap\nprovision\ncleanup\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("cleanup-marker")).unwrap(),
        "welcome\n"
    );
}

#[test]
fn custom_cleanup_runs_after_a_failing_provision() {
    let test = "custom_cleanup_runs_after_a_failing_provision";
    if !rustix::process::geteuid().is_root() {
        crate::testutil::skip(test, "needs root (provision: chroot and bind mounts)");
        return;
    }
    let Some(busybox) = crate::testutil::tool("busybox", "busybox-static", test) else {
        return;
    };
    if crate::testutil::tool("patch", "patch", test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // cleanup() fails too: a warning only, the provision's error is the build's.
    let mut o = project(
        d.path(),
        &custom("echo provision >> /order; false", "false"),
    );
    let root = d.path().join("target");
    o.output = Output::Dir(root.clone());
    let r = build_with(&o, &custom_bootstrap(Some(busybox)));
    let _d = assert_unmounted(&root, d);
    let e = format!("{:#}", r.unwrap_err());
    assert!(e.starts_with("makeimg: step provision: "), "{e}");
    assert_eq!(
        fs::read_to_string(root.join("order")).unwrap(),
        "setup\nbootstrap\nprovision\ncleanup\n"
    );
    assert!(root.join("cleanup-marker").exists());
}

#[test]
fn custom_failing_cleanup_or_setup_fails_the_build() {
    if crate::testutil::tool(
        "patch",
        "patch",
        "custom_failing_cleanup_or_setup_fails_the_build",
    )
    .is_none()
    {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("target");
    // The build succeeded (no provision(), so nothing chrooted): a failing cleanup() fails it.
    let mut o = project(d.path(), &custom("", "exit 4"));
    o.output = Output::Dir(root.clone());
    let e = format!("{:#}", build_with(&o, &custom_bootstrap(None)).unwrap_err());
    assert!(e.starts_with("makeimg: step cleanup: "), "{e}");
    assert!(e.contains("exit status: 4"), "{e}");
    assert_eq!(
        fs::read_to_string(root.join("order")).unwrap(),
        "setup\nbootstrap\ncleanup\n"
    );
    // A failing setup(): nothing is built and cleanup() does not run.
    fs::remove_dir_all(&root).unwrap();
    let mut o = project(
        d.path(),
        &custom("", "true").replace("setup() {\n", "setup() {\n  false\n"),
    );
    o.output = Output::Dir(root.clone());
    let e = format!("{:#}", build_with(&o, &custom_bootstrap(None)).unwrap_err());
    assert!(e.starts_with("makeimg: step setup: "), "{e}");
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "nothing ran");
    // Without format custom, a Dir build runs neither function.
    fs::remove_dir_all(&root).unwrap();
    let mut o = project(
        d.path(),
        &custom("", "true").replace("format=custom", "format=dir"),
    );
    o.output = Output::Dir(root.clone());
    let e = format!("{:#}", build_with(&o, &custom_bootstrap(None)).unwrap_err());
    // The fake bootstrap finds no `order` file to append to, since setup() did not run.
    assert!(e.starts_with("makeimg: step bootstrap: "), "{e}");
}
