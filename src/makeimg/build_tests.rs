//! Whole builds with the bootstrap step replaced by one laying a small root: the steps in
//! order, the tar output, and (as root, with a static busybox) provision() in the chroot.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
