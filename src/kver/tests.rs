use super::*;

/// The setup part of qemu-tests' kernel (Debian 12 cloud, linux-image-6.1.0-57-cloud-amd64).
const CLOUD: &[u8] = include_bytes!("testdata/cloud-6.1.0-57.setup");
/// The setup part of Debian 12's PREEMPT_RT kernel, linux-image-6.1.0-47-rt-amd64-unsigned.
const RT: &[u8] = include_bytes!("testdata/rt-6.1.0-47.setup");

#[test]
fn reads_the_release_of_real_kernels() {
    let v = bzimage_version(CLOUD).unwrap();
    assert_eq!(v.release, "6.1.0-57-cloud-amd64");
    assert!(
        v.full
            .starts_with("6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP"),
        "{}",
        v.full
    );
    let v = bzimage_version(RT).unwrap();
    assert_eq!(v.release, "6.1.0-47-rt-amd64");
    assert!(v.full.contains("PREEMPT_RT Debian 6.1.170-3"), "{}", v.full);
}

#[test]
fn the_whole_test_kernel_reads_as_its_fixture() {
    // The fixtures are the first bytes of real kernels; the whole image parses the same.
    let cache = std::env::var_os("ANEMOS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-tests/cache"));
    let path = cache.join("kernel/vmlinuz");
    let Ok(bytes) = std::fs::read(&path) else {
        crate::testutil::skip(
            "the_whole_test_kernel_reads_as_its_fixture",
            &format!("no {} (qemu-tests/fetch-kernel.sh)", path.display()),
        );
        return;
    };
    let whole = bzimage_version(&bytes).unwrap();
    assert_eq!(
        whole.release.split('-').next(),
        Some("6.1.0"),
        "{}",
        whole.full
    );
    assert_eq!(whole, bzimage_version(&bytes[..SETUP_MAX]).unwrap());
}

#[test]
fn refuses_what_is_no_bzimage() {
    assert_eq!(
        bzimage_version(&[0u8; 100]),
        Err(BzImageError::TooShort { len: 100 })
    );
    // An ELF vmlinux or an arm64 Image: no HdrS.
    let mut elf = vec![0u8; 4096];
    elf[..4].copy_from_slice(b"\x7fELF");
    assert_eq!(bzimage_version(&elf), Err(BzImageError::NoHeader));

    let mut old = CLOUD.to_vec();
    old[0x206..0x208].copy_from_slice(&0x0104u16.to_le_bytes());
    assert_eq!(
        bzimage_version(&old),
        Err(BzImageError::OldProtocol { major: 1, minor: 4 })
    );
    assert!(bzimage_version(&old)
        .unwrap_err()
        .to_string()
        .contains("boot protocol 1.04"));

    let mut none = CLOUD.to_vec();
    none[0x20E..0x210].copy_from_slice(&[0, 0]);
    assert_eq!(bzimage_version(&none), Err(BzImageError::NoVersion));

    // The pointer leads past the bytes given.
    let short = &CLOUD[..0x1000];
    assert!(matches!(
        bzimage_version(short),
        Err(BzImageError::OutOfRange { offset }) if offset > 0x1000
    ));

    let mut junk = CLOUD.to_vec();
    let at = u16::from_le_bytes([CLOUD[0x20E], CLOUD[0x20F]]) as usize + 0x200;
    junk[at..at + 4].copy_from_slice(b"abc ");
    assert!(matches!(
        bzimage_version(&junk),
        Err(BzImageError::BadText { .. })
    ));
}

#[test]
fn release_comparison_is_exact() {
    assert!(same_release(
        "6.1.0-57-cloud-amd64",
        "6.1.0-57-cloud-amd64\n"
    ));
    assert!(!same_release("6.1.0-57-amd64", "6.1.0-57-cloud-amd64"));
    assert!(!same_release(
        "6.1.0-56-cloud-amd64",
        "6.1.0-57-cloud-amd64"
    ));
    assert!(!same_release(
        "6.1.0-57-cloud-amd64",
        "6.1.0-57-cloud-amd64+"
    ));
    assert!(is_release("6.18.44-fc-v669"));
    assert!(!is_release("Linux"));
    assert!(!is_release("6.1/../x"));
}

const MANIFEST: &str = "# anemos module manifest v1 release=6.1.0-57-cloud-amd64\n\
    virtio_pci /lib/modules/6.1.0-57-cloud-amd64/kernel/drivers/virtio/virtio_pci.ko\n\
    virtio_blk /lib/modules/6.1.0-57-cloud-amd64/kernel/drivers/block/virtio_blk.ko\n";
const MPATH: &str = "lib/modules/6.1.0-57-cloud-amd64/anemos.modules";

fn files() -> Vec<&'static str> {
    vec![
        "init",
        "lib/modules/6.1.0-57-cloud-amd64/kernel/drivers/virtio/virtio_pci.ko",
        "./lib/modules/6.1.0-57-cloud-amd64/kernel/drivers/block/virtio_blk.ko",
        MPATH,
    ]
}

#[test]
fn base_image_modules_match_or_are_refused_naming_both_releases() {
    let base = base_modules(files(), Some((MPATH, MANIFEST))).unwrap();
    assert_eq!(base.release.as_deref(), Some("6.1.0-57-cloud-amd64"));
    assert_eq!(base.listed, 2);
    assert!(base.missing.is_empty());
    let img = Path::new("/deploy/base.img");
    assert_eq!(
        check_base(
            &base,
            img,
            Path::new("/boot/vmlinuz-6.1.0-57-cloud-amd64"),
            "6.1.0-57-cloud-amd64"
        ),
        Ok(Verdict::Matches {
            release: "6.1.0-57-cloud-amd64".into(),
            modules: 2
        })
    );
    let e = check_base(
        &base,
        img,
        Path::new("/boot/vmlinuz-6.1.0-47-rt-amd64"),
        "6.1.0-47-rt-amd64",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("the base image /deploy/base.img has kernel modules for 6.1.0-57-cloud-amd64, but the kernel it would boot, /boot/vmlinuz-6.1.0-47-rt-amd64, is 6.1.0-47-rt-amd64"),
        "{e}"
    );
    assert!(e.contains("Nothing was changed"), "{e}");
    assert!(e.contains("--image auto"), "{e}");
    assert!(
        e.contains("--kernel-modules /lib/modules/6.1.0-47-rt-amd64"),
        "{e}"
    );
    assert!(
        e.contains("--kernel /boot/vmlinuz-6.1.0-57-cloud-amd64"),
        "{e}"
    );
}

#[test]
fn a_manifest_listing_absent_modules_is_refused() {
    let mut f = files();
    f.remove(2);
    let base = base_modules(f, Some((MPATH, MANIFEST))).unwrap();
    assert_eq!(base.missing.len(), 1);
    let e = check_base(
        &base,
        Path::new("b.img"),
        Path::new("k"),
        "6.1.0-57-cloud-amd64",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("the base image b.img lacks 1 of the 2 kernel modules its own module manifest (/lib/modules/6.1.0-57-cloud-amd64/anemos.modules) lists: virtio_blk (/lib/modules/6.1.0-57-cloud-amd64/kernel/drivers/block/virtio_blk.ko)"),
        "{e}"
    );
    // A manifest that cannot be parsed is an error too, not "no modules".
    assert!(base_modules(files(), Some((MPATH, "x relative.ko\n"))).is_err());
}

#[test]
fn images_without_a_manifest() {
    // No modules at all: the deploy image relies on built-in drivers.
    let base = base_modules(["init", "bin/sh"], None).unwrap();
    assert_eq!(
        check_base(
            &base,
            Path::new("b"),
            Path::new("k"),
            "6.1.0-57-cloud-amd64"
        ),
        Ok(Verdict::NoModules)
    );
    // Module files of one release and no manifest: that release is compared.
    let base = base_modules(["lib/modules/6.1.0-9-amd64/kernel/x.ko.xz"], None).unwrap();
    let e = check_base(
        &base,
        Path::new("b"),
        Path::new("k"),
        "6.1.0-57-cloud-amd64",
    )
    .unwrap_err();
    assert!(matches!(e, MismatchError::Release { ref modules, .. } if modules == "6.1.0-9-amd64"));
    // Several releases and no manifest: refused, all named.
    let base = base_modules(
        [
            "lib/modules/6.1.0-9-amd64/a.ko",
            "lib/modules/6.1.0-57-cloud-amd64/b.ko",
        ],
        None,
    )
    .unwrap();
    let e = check_base(
        &base,
        Path::new("b"),
        Path::new("k"),
        "6.1.0-57-cloud-amd64",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("several releases (6.1.0-57-cloud-amd64, 6.1.0-9-amd64)"),
        "{e}"
    );
    // modules.alias alone is no module tree.
    let base = base_modules(["lib/modules/6.1.0-9-amd64/modules.alias"], None).unwrap();
    assert!(base.trees.is_empty());
}

#[test]
fn cache_key_names_release_version_and_binary() {
    let k = cache_key("6.1.0-57-cloud-amd64", "0.1.0", "0123456789abcdef0123");
    assert_eq!(k, "base-6.1.0-57-cloud-amd64-anemos-0.1.0-0123456789ab.img");
    // Another kernel, another anemos version or another build each get their own image.
    assert_ne!(
        k,
        cache_key("6.1.0-58-cloud-amd64", "0.1.0", "0123456789abcdef0123")
    );
    assert_ne!(
        k,
        cache_key("6.1.0-57-cloud-amd64", "0.2.0", "0123456789abcdef0123")
    );
    assert_ne!(
        k,
        cache_key("6.1.0-57-cloud-amd64", "0.1.0", "fedcba9876543210")
    );
    // Always one path component.
    let odd = cache_key("6.1/../x y", "0.1.0 (git abc)", "ab");
    assert_eq!(odd, "base-6.1_.._x_y-anemos-0.1.0__git_abc_-ab.img");
    assert!(!odd.contains('/'));
}

#[test]
fn drivers_of_this_machine_missing_from_the_image_are_named() {
    let base = base_modules(files(), Some((MPATH, MANIFEST))).unwrap();
    let wanted = vec![
        (
            "vda".to_string(),
            vec!["virtio_blk".to_string(), "virtio-pci".to_string()],
        ),
        ("sda".to_string(), vec!["mpt3sas".to_string()]),
    ];
    assert_eq!(
        absent_drivers(&base, &wanted),
        vec![("sda".to_string(), "mpt3sas".to_string())]
    );
}
