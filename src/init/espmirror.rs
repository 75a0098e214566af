//! Mirrored ESPs: every ESP without a mount point (formatted vfat by the mkfs stage) is made
//! identical to the mounted one at the end of the bootloader stage, so the firmware can boot
//! from any disk when one fails. Each mirror is mounted on a temporary directory, emptied,
//! filled with a copy of the mounted ESP's whole tree, synced and unmounted.
//!
//! Files are written through the kernel's vfat driver (the same one the mounted ESP uses; the
//! image packs it for that), not through `crate::disk::vfat`: that module only formats, and a
//! FAT file writer of our own would duplicate what the kernel already does correctly (long
//! names, cluster chains, FSInfo).
//!
//! To keep the mirrors in step later, the target gets [`HOOK`]: a shell script, linked into the
//! kernel and initramfs hook directories, that does the same copy after each kernel or
//! initramfs update (see [`hook_script`]).

use std::fs;
use std::io;
use std::path::Path;

use anyhow::{Context, Result};

use crate::blockdev::device as blockdev;
use crate::config::layout::FsKind;
use crate::disk::plan::{self, Plan};
use crate::util::uuid_string;

/// Where each mirror is mounted while it is filled.
const MIRROR_MOUNT: &str = "/run/anemos/esp-mirror";

/// The sync script in the target, and the hook directories it is linked into (Debian's
/// kernel-install hooks, run by run-parts in name order, and update-initramfs' post-update
/// hooks; `zz-` puts it after the hooks that write the kernel and initrd).
pub const HOOK: &str = "usr/local/sbin/anemos-esp-sync";
pub const HOOK_LINKS: &[&str] = &[
    "etc/kernel/postinst.d/zz-anemos-esp-sync",
    "etc/kernel/postrm.d/zz-anemos-esp-sync",
    "etc/initramfs/post-update.d/zz-anemos-esp-sync",
];

/// Files and bytes copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
}

/// Copies the tree `src` into the directory `dst` (regular files and directories: a FAT volume
/// holds nothing else; anything else is an error naming it).
pub fn copy_tree(src: &Path, dst: &Path, n: &mut Copied) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(src)
        .with_context(|| format!("listing {}", src.display()))?
        .collect::<io::Result<_>>()
        .with_context(|| format!("listing {}", src.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let from = e.path();
        let to = dst.join(e.file_name());
        let t = e
            .file_type()
            .with_context(|| format!("reading {}", from.display()))?;
        if t.is_dir() {
            fs::create_dir(&to).with_context(|| format!("creating {}", to.display()))?;
            copy_tree(&from, &to, n)?;
        } else if t.is_file() {
            n.bytes += fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
            n.files += 1;
        } else {
            anyhow::bail!(
                "{}: not a regular file or directory, cannot be put on a FAT ESP",
                from.display()
            );
        }
    }
    Ok(())
}

/// Removes everything inside `dir` (not `dir` itself).
fn empty_dir(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Pure: the sync script for the target: copies `esp_mount` (the mounted ESP, e.g. /boot) onto
/// the ESPs with these PARTUUIDs. A missing mirror (a failed or removed disk) is a warning, not
/// a failure, so that a kernel update still completes on a degraded machine.
pub fn hook_script(esp_mount: &str, mirror_partuuids: &[String]) -> String {
    format!(
        r#"#!/bin/sh
# Written by anemos: keeps the mirrored ESPs identical to the ESP mounted at {esp_mount}, so the
# firmware can boot from either disk. Linked into /etc/kernel/postinst.d, postrm.d and
# /etc/initramfs/post-update.d; run it by hand after changing {esp_mount} yourself.
# ANEMOS_ESP_SRC and ANEMOS_ESP_DEVDIR override the source tree and the directory holding the
# by-partuuid links (for testing).
src="${{ANEMOS_ESP_SRC:-{esp_mount}}}"
devdir="${{ANEMOS_ESP_DEVDIR:-/dev/disk/by-partuuid}}"
status=0
for id in {ids}; do
    dev="$devdir/$id"
    if [ ! -e "$dev" ]; then
        echo "anemos-esp-sync: WARNING: mirror ESP $dev is missing (disk removed or replaced?), not synced" >&2
        continue
    fi
    mnt=$(mktemp -d) || exit 1
    if ! mount -t vfat "$dev" "$mnt"; then
        echo "anemos-esp-sync: WARNING: cannot mount $dev, not synced" >&2
        rmdir "$mnt"; status=1; continue
    fi
    if command -v rsync >/dev/null 2>&1; then
        rsync -r --delete --times --modify-window=2 "$src"/ "$mnt"/ || status=1
    else
        find "$mnt" -mindepth 1 -maxdepth 1 -exec rm -rf {{}} + && cp -R "$src"/. "$mnt"/ || status=1
    fi
    sync
    umount "$mnt" && rmdir "$mnt"
    echo "anemos-esp-sync: $src -> $dev"
done
exit $status
"#,
        ids = mirror_partuuids.join(" ")
    )
}

/// Writes [`hook_script`] into the target at [`HOOK`] and links it into [`HOOK_LINKS`].
fn install_hook(target: &Path, esp_mount: &str, ids: &[String]) -> Result<()> {
    let script = target.join(HOOK);
    if let Some(d) = script.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::write(&script, hook_script(esp_mount, ids))
        .with_context(|| format!("writing {}", script.display()))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755))?;
    for l in HOOK_LINKS {
        let link = target.join(l);
        if let Some(d) = link.parent() {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("/{HOOK}"), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    log::info!(
        "ESP mirror: wrote /{HOOK} (linked from {}) to keep the mirrors in step after kernel and initramfs updates",
        HOOK_LINKS
            .iter()
            .map(|l| format!("/{l}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Makes every mirror ESP identical to the mounted one (`target` is the mounted target root)
/// and installs the hook. Nothing to do without mirrors.
pub fn sync(plan: &Plan, target: &Path) -> Result<()> {
    let Some((main, mirrors)) = plan::esps(plan) else {
        return Ok(());
    };
    if mirrors.is_empty() {
        return Ok(());
    }
    let esp_mount = main.part.mount.clone().unwrap_or_default();
    let src = target.join(esp_mount.trim_start_matches('/'));
    let src_dev = blockdev::partition_node(&main.disk.disk.path, main.part.number);
    fs::create_dir_all(MIRROR_MOUNT).with_context(|| format!("creating {MIRROR_MOUNT}"))?;
    for m in &mirrors {
        let dev = blockdev::partition_node(&m.disk.disk.path, m.part.number);
        super::mountfail::mount(FsKind::Vfat, &dev, MIRROR_MOUNT)?;
        let mut n = Copied::default();
        let r = empty_dir(Path::new(MIRROR_MOUNT))
            .and_then(|()| copy_tree(&src, Path::new(MIRROR_MOUNT), &mut n))
            .and_then(|()| {
                let f = fs::File::open(MIRROR_MOUNT)?;
                rustix::fs::syncfs(&f).context("syncfs")?;
                Ok(())
            });
        let u = rustix::mount::unmount(MIRROR_MOUNT, rustix::mount::UnmountFlags::empty());
        r.with_context(|| format!("ESP mirror: copying {src_dev} to {dev}"))?;
        u.with_context(|| format!("ESP mirror: unmounting {dev} from {MIRROR_MOUNT}"))?;
        log::info!(
            "ESP mirror: synced {} files ({} bytes) from {src_dev} to {dev}",
            n.files,
            n.bytes
        );
    }
    let ids: Vec<String> = mirrors
        .iter()
        .map(|m| uuid_string(&m.part.part_uuid))
        .collect();
    if target.join("etc").is_dir() {
        install_hook(target, &esp_mount, &ids)?;
    } else {
        log::warn!("ESP mirror: the target has no /etc, so no sync hook was written; keep the mirrors in step yourself (see the install docs)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_tree_copies_every_file_and_counts_them() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs::create_dir_all(src.path().join("EFI/BOOT")).unwrap();
        fs::create_dir_all(src.path().join("loader/entries")).unwrap();
        fs::write(src.path().join("EFI/BOOT/BOOTX64.EFI"), vec![7u8; 1000]).unwrap();
        fs::write(src.path().join("loader/entries/a.conf"), "title a\n").unwrap();
        fs::write(src.path().join("vmlinuz"), vec![1u8; 12345]).unwrap();
        let mut n = Copied::default();
        copy_tree(src.path(), dst.path(), &mut n).unwrap();
        assert_eq!(
            n,
            Copied {
                files: 3,
                bytes: 1000 + 8 + 12345
            }
        );
        assert_eq!(
            fs::read(dst.path().join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
            vec![7u8; 1000]
        );
        assert_eq!(
            fs::read_to_string(dst.path().join("loader/entries/a.conf")).unwrap(),
            "title a\n"
        );
        // A second sync onto the same mirror starts from an empty tree.
        fs::write(dst.path().join("stale"), "x").unwrap();
        empty_dir(dst.path()).unwrap();
        assert_eq!(fs::read_dir(dst.path()).unwrap().count(), 0);
        // A symlink cannot go onto FAT: named.
        std::os::unix::fs::symlink("vmlinuz", src.path().join("link")).unwrap();
        let e = copy_tree(src.path(), dst.path(), &mut Copied::default()).unwrap_err();
        assert!(
            format!("{e:#}").contains("link: not a regular file"),
            "{e:#}"
        );
    }

    #[test]
    fn hook_script_names_the_source_and_each_mirror() {
        let s = hook_script("/boot/efi", &["aaaa-1".into(), "bbbb-2".into()]);
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("src=\"${ANEMOS_ESP_SRC:-/boot/efi}\""), "{s}");
        assert!(s.contains("for id in aaaa-1 bbbb-2; do"), "{s}");
        assert!(s.contains("-exec rm -rf {} +"), "{s}");
    }

    /// Runs the hook with sh, `mount`/`umount` replaced by stubs that treat a directory as the
    /// device (mount copies the "device" in, umount writes the tree back): the mirror ends up
    /// with exactly the source's files, a stale file on it is gone.
    #[test]
    fn hook_copies_the_esp_onto_each_mirror() {
        let d = tempfile::tempdir().unwrap();
        let (src, devdir, bin) = (
            d.path().join("src"),
            d.path().join("dev"),
            d.path().join("bin"),
        );
        for p in [&src, &devdir, &bin] {
            fs::create_dir(p).unwrap();
        }
        fs::create_dir_all(src.join("EFI/BOOT")).unwrap();
        fs::write(src.join("EFI/BOOT/BOOTX64.EFI"), "loader").unwrap();
        fs::write(src.join("vmlinuz"), "kernel").unwrap();
        let mirror = devdir.join("1111-m");
        fs::create_dir(&mirror).unwrap();
        fs::write(mirror.join("stale"), "old").unwrap();
        let stub = |name: &str, body: &str| {
            let p = bin.join(name);
            fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        };
        let table = d.path().join("mounts");
        stub(
            "mount",
            &format!(
                "cp -R \"$3\"/. \"$4\"/ && echo \"$4 $3\" >> {}",
                table.display()
            ),
        );
        stub(
            "umount",
            &format!(
                "dev=$(grep \"^$1 \" {} | cut -d' ' -f2) && rm -rf \"$dev\"/* && cp -R \"$1\"/. \"$dev\"/ && rm -rf \"$1\"/*",
                table.display()
            ),
        );
        let script = d.path().join("hook.sh");
        fs::write(&script, hook_script("/boot", &["1111-m".into()])).unwrap();
        let out = std::process::Command::new("sh")
            .arg(&script)
            .env("ANEMOS_ESP_SRC", &src)
            .env("ANEMOS_ESP_DEVDIR", &devdir)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("-> "),
            "{err}"
        );
        let mut n = Copied::default();
        let check = tempfile::tempdir().unwrap();
        copy_tree(&mirror, check.path(), &mut n).unwrap();
        assert_eq!(
            n,
            Copied {
                files: 2,
                bytes: 12
            },
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(mirror.join("EFI/BOOT/BOOTX64.EFI")).unwrap(),
            "loader"
        );
        assert!(!mirror.join("stale").exists());
    }

    /// Runs the hook with sh against directories standing in for the ESPs: a missing mirror
    /// device is a warning and the exit status stays 0.
    #[test]
    fn hook_skips_a_missing_mirror() {
        let src = tempfile::tempdir().unwrap();
        let devdir = tempfile::tempdir().unwrap();
        let script = src.path().join("hook.sh");
        fs::write(&script, hook_script("/boot", &["gone".into()])).unwrap();
        let out = std::process::Command::new("sh")
            .arg(&script)
            .env("ANEMOS_ESP_SRC", src.path())
            .env("ANEMOS_ESP_DEVDIR", devdir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains("mirror ESP") && err.contains("/gone is missing"),
            "{err}"
        );
    }
}
