use super::search::{expand_dst, ld_so_conf_dirs, normalize, resolve_in_root, DstValues};
use super::*;
use crate::elf::{ElfKind, ELFCLASS64, EM_386, EM_X86_64};
use crate::util::fnmatch;
use goblin::container::Ctx;
use goblin::elf::program_header::ProgramHeader;
use goblin::elf::Elf;
use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::process::Command;

const INTERP: &str = "/lib64/ld-linux-x86-64.so.2";

/// Basename of a path as a String.
fn base(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Run `ldd` on `binary` and return the basenames of every resolved
/// object (interpreter included, linux-vdso excluded). Panics on a
/// "not found" line.
fn ldd_basenames(binary: &Path) -> BTreeSet<String> {
    let out = Command::new("ldd").arg(binary).output().expect("run ldd");
    assert!(
        out.status.success(),
        "ldd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("ldd output is UTF-8");
    let mut names = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(!line.contains("not found"), "ldd could not resolve: {line}");
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next().unwrap_or_default(),
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if line.starts_with("linux-vdso") || line.starts_with("linux-gate") || path.is_empty() {
            continue;
        }
        names.insert(base(Path::new(path)));
    }
    names
}

/// True on a glibc x86_64 host where the ldd comparison makes sense; otherwise `test` is
/// reported skipped (a failure under `ANEMOS_REQUIRE_TOOLS=1`).
fn glibc_x86_64_host(test: &str) -> bool {
    let ok = Path::new(INTERP).exists() && Command::new("ldd").arg("--version").output().is_ok();
    if !ok {
        crate::testutil::skip(
            test,
            "needs a glibc x86_64 host with ldd (apt-get install libc-bin)",
        );
    }
    ok
}

/// Copy `host` (following symlinks) to `root` + `image`, creating dirs.
fn install(root: &Path, host: &Path, image: &str) -> PathBuf {
    let target = root.join(image.trim_start_matches('/'));
    fs::create_dir_all(target.parent().expect("has parent")).expect("mkdir");
    fs::copy(host, &target).expect("copy file into fake root");
    target
}

fn write(root: &Path, image: &str, contents: &[u8]) -> PathBuf {
    let target = root.join(image.trim_start_matches('/'));
    fs::create_dir_all(target.parent().expect("has parent")).expect("mkdir");
    fs::write(&target, contents).expect("write file");
    target
}

/// Compile C source with gcc for `test`; `None` (the test skipped) if gcc is not installed.
fn gcc(test: &str, args: &[&str]) -> Option<()> {
    let gcc = crate::testutil::tool("gcc", "gcc", test)?;
    let out = Command::new(gcc).args(args).output().expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

#[test]
fn mke2fs_closure_matches_ldd() {
    if !glibc_x86_64_host("mke2fs_closure_matches_ldd") {
        return;
    }
    let mke2fs = Path::new("/sbin/mke2fs");
    assert!(
        mke2fs.exists(),
        "/sbin/mke2fs missing: apt-get install -y e2fsprogs"
    );
    let files =
        resolve_closure(Path::new("/"), &[mke2fs.to_path_buf()]).expect("closure of mke2fs");

    let dests: Vec<&Path> = files.iter().map(|f| f.dest.as_path()).collect();
    let mut sorted = dests.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        dests, sorted,
        "result must be sorted and deduplicated by dest"
    );

    assert!(dests.contains(&mke2fs), "binary itself missing: {dests:?}");
    assert!(
        dests.contains(&Path::new(INTERP)),
        "interpreter missing: {dests:?}"
    );
    let loaders = dests
        .iter()
        .filter(|d| base(d) == "ld-linux-x86-64.so.2")
        .count();
    assert_eq!(
        loaders, 1,
        "libc's DT_NEEDED on the loader must match it by soname: {dests:?}"
    );
    assert!(
        dests.contains(&Path::new("/lib/x86_64-linux-gnu/libc.so.6")),
        "libc dest: {dests:?}"
    );
    for lib in [
        "libc.so.6",
        "libext2fs.so.2",
        "libcom_err.so.2",
        "libblkid.so.1",
        "libuuid.so.1",
        "libe2p.so.2",
    ] {
        assert!(
            dests.iter().any(|d| base(d) == lib),
            "{lib} missing from {dests:?}"
        );
    }
    for file in &files {
        let meta = fs::symlink_metadata(&file.src).expect("src exists");
        assert!(
            meta.is_file(),
            "src {} must be a real file, not a symlink",
            file.src.display()
        );
        assert!(file.dest.is_absolute());
    }

    let ours: BTreeSet<String> = files
        .iter()
        .filter(|f| f.dest != mke2fs)
        .map(|f| base(&f.dest))
        .collect();
    assert_eq!(ours, ldd_basenames(mke2fs), "closure differs from ldd");
}

#[test]
fn missing_library_names_binary_and_library() {
    let root = tempfile::tempdir().expect("tempdir");
    install(root.path(), Path::new("/bin/ls"), "/usr/bin/ls");
    install(root.path(), Path::new(INTERP), INTERP);
    let err = resolve_closure(root.path(), &[PathBuf::from("/usr/bin/ls")])
        .expect_err("libs are missing");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ClosureError::LibraryNotFound {
                needed_by: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(msg.starts_with("--binary /usr/bin/ls: library "), "{msg}");
    assert!(
        msg.contains("libselinux.so.1") || msg.contains("libc.so.6"),
        "{msg}"
    );
    assert!(
        msg.contains("not found (searched: /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
}

#[test]
fn missing_interpreter_is_reported() {
    let root = tempfile::tempdir().expect("tempdir");
    install(root.path(), Path::new("/bin/true"), "/usr/bin/true");
    let err = resolve_closure(root.path(), &[PathBuf::from("/usr/bin/true")])
        .expect_err("no interpreter");
    assert_eq!(
        err.to_string(),
        format!("--binary /usr/bin/true: interpreter {INTERP} not found")
    );
}

#[test]
fn missing_file_is_reported() {
    let err = resolve_closure(Path::new("/"), &[PathBuf::from("/nope")]).expect_err("no such file");
    assert!(matches!(err, ClosureError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "--binary /nope: no such file");

    let err = resolve_closure(Path::new("/"), &[PathBuf::from("nope-relative-xyz")])
        .expect_err("no such file");
    assert_eq!(err.to_string(), "--binary nope-relative-xyz: no such file");
}

#[test]
fn non_elf_is_reported() {
    let err =
        resolve_closure(Path::new("/"), &[PathBuf::from("/etc/passwd")]).expect_err("text file");
    assert_eq!(err.to_string(), "--binary /etc/passwd: not an ELF file");
    let err = resolve_closure(Path::new("/"), &[PathBuf::from("/etc")]).expect_err("directory");
    assert_eq!(err.to_string(), "--binary /etc: not a regular file");

    let root = tempfile::tempdir().expect("tempdir");
    write(root.path(), "/usr/bin/script", b"#!/bin/sh\necho hi\n");
    write(root.path(), "/usr/bin/tiny", b"\x7fE");
    for name in ["/usr/bin/script", "/usr/bin/tiny"] {
        let err = resolve_closure(root.path(), &[PathBuf::from(name)]).expect_err("not ELF");
        assert_eq!(err.to_string(), format!("--binary {name}: not an ELF file"));
    }
}

#[test]
fn malformed_elf_is_an_error_naming_the_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let bytes = fs::read("/bin/true").expect("read /bin/true");
    write(root.path(), "/usr/bin/trunc", &bytes[..70]);
    let err =
        resolve_closure(root.path(), &[PathBuf::from("/usr/bin/trunc")]).expect_err("truncated");
    let msg = err.to_string();
    assert!(matches!(err, ClosureError::Malformed { .. }), "{err:?}");
    assert!(
        msg.starts_with("--binary /usr/bin/trunc: malformed ELF file "),
        "{msg}"
    );
    assert!(msg.contains("/usr/bin/trunc:"), "{msg}");
}

/// File ranges of the ELF header + program headers and of PT_DYNAMIC.
fn interesting_ranges(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let header = Elf::parse_header(bytes).expect("header");
    let ctx = Ctx::new(
        header.container().expect("class"),
        header.endianness().expect("endian"),
    );
    let phdrs = ProgramHeader::parse(bytes, header.e_phoff as usize, header.e_phnum as usize, ctx)
        .expect("phdrs");
    let phdr_end = header.e_phoff as usize + phdrs.len() * usize::from(header.e_phentsize);
    let mut ranges = Vec::new();
    ranges.push(0..phdr_end);
    for ph in phdrs
        .iter()
        .filter(|ph| ph.p_type == goblin::elf::program_header::PT_DYNAMIC)
    {
        ranges.push(ph.p_offset as usize..(ph.p_offset + ph.p_filesz) as usize);
    }
    ranges
}

#[test]
fn mutated_elf_never_panics() {
    if !glibc_x86_64_host("mutated_elf_never_panics") {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    install(root.path(), Path::new(INTERP), INTERP);
    install(
        root.path(),
        Path::new("/lib/x86_64-linux-gnu/libc.so.6"),
        "/lib/x86_64-linux-gnu/libc.so.6",
    );
    let original = fs::read("/bin/true").expect("read /bin/true");
    let ranges = interesting_ranges(&original);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut failed) = (0, 0);
    for round in 0..1000 {
        let mut bytes = original.clone();
        for _ in 0..(1 + round % 4) {
            let range = &ranges[(next() as usize) % ranges.len()];
            let at = range.start + (next() as usize) % range.len().max(1);
            if let Some(b) = bytes.get_mut(at) {
                *b = next() as u8;
            }
        }
        if round % 100 == 0 {
            bytes.truncate((next() as usize) % original.len());
        }
        write(root.path(), "/usr/bin/fuzz", &bytes);
        // Any result is fine as long as it does not panic.
        match resolve_closure(root.path(), &[PathBuf::from("/usr/bin/fuzz")]) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.to_string().starts_with("--binary /usr/bin/fuzz: "), "{e}");
                failed += 1;
            }
        }
    }
    assert!(
        ok > 0 && failed > 0,
        "fuzzing should hit both outcomes: ok={ok} failed={failed}"
    );
}

#[test]
fn static_binary_is_just_itself() {
    let Some(busybox) = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
    else {
        crate::testutil::skip(
            "static_binary_is_just_itself",
            "busybox is not installed (apt-get install busybox-static)",
        );
        return;
    };
    let info = parse_elf(&fs::read(busybox).expect("read busybox")).expect("busybox is ELF");
    if info.interpreter.is_some() || !info.needed.is_empty() {
        crate::testutil::skip(
            "static_binary_is_just_itself",
            &format!(
                "{} is dynamically linked (apt-get install busybox-static)",
                busybox.display()
            ),
        );
        return;
    }
    let files = resolve_closure(Path::new("/"), &[busybox.to_path_buf()]).expect("closure");
    let expected_src = fs::canonicalize(busybox).expect("canonicalize");
    assert_eq!(
        files,
        vec![ElfFile {
            dest: busybox.to_path_buf(),
            src: expected_src
        }]
    );
}

#[test]
fn relative_binary_goes_to_usr_bin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = install(dir.path(), Path::new("/bin/true"), "/mytrue");
    let cwd = std::env::current_dir().expect("cwd");
    let relative = pathdiff(&copy, &cwd);
    let files = resolve_closure(Path::new("/"), &[relative]).expect("closure");
    let me = files
        .iter()
        .find(|f| f.dest == Path::new("/usr/bin/mytrue"))
        .expect("binary dest");
    assert_eq!(me.src, fs::canonicalize(&copy).expect("canonicalize"));
    assert!(
        files.iter().any(|f| base(&f.dest) == "libc.so.6"),
        "{files:?}"
    );
}

/// `path` relative to `from` using `..` steps (both absolute).
fn pathdiff(path: &Path, from: &Path) -> PathBuf {
    let path: Vec<_> = path.components().collect();
    let from: Vec<_> = from.components().collect();
    let common = path.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &path[common..] {
        out.push(c);
    }
    out
}

#[test]
fn expand_dst_substitutes_known_tokens() {
    let v = DstValues {
        origin: "/opt/app/bin".into(),
        lib: "lib64".into(),
        platform: "x86_64".into(),
    };
    assert_eq!(expand_dst("$ORIGIN/../lib", &v), "/opt/app/bin/../lib");
    assert_eq!(expand_dst("${ORIGIN}/../lib", &v), "/opt/app/bin/../lib");
    assert_eq!(expand_dst("$ORIGIN", &v), "/opt/app/bin");
    assert_eq!(expand_dst("/usr/$LIB/x", &v), "/usr/lib64/x");
    assert_eq!(
        expand_dst("/usr/${LIB}x/$PLATFORM", &v),
        "/usr/lib64x/x86_64"
    );
    assert_eq!(expand_dst("/p/${PLATFORM}/q", &v), "/p/x86_64/q");
    // Not tokens: glued to other characters, unknown, unterminated, lone `$`.
    assert_eq!(expand_dst("$ORIGINAL/x", &v), "$ORIGINAL/x");
    assert_eq!(expand_dst("/a/$FOO/b", &v), "/a/$FOO/b");
    assert_eq!(expand_dst("${ORIGIN/x", &v), "${ORIGIN/x");
    assert_eq!(expand_dst("/a$", &v), "/a$");
    assert_eq!(
        expand_dst("$ORIGIN/$ORIGIN", &v),
        "/opt/app/bin//opt/app/bin"
    );
}

#[test]
fn wildcard_and_glob() {
    assert!(fnmatch("*.conf", "libc.conf"));
    assert!(fnmatch("*.conf", ".conf"));
    assert!(!fnmatch("*.conf", "libc.conf.bak"));
    assert!(fnmatch("a*b*c", "aXbYbc"));
    assert!(fnmatch("?x", "ax"));
    assert!(!fnmatch("?x", "x"));
    assert!(fnmatch("*", "anything"));

    let root = tempfile::tempdir().expect("tempdir");
    write(
        root.path(),
        "/etc/ld.so.conf",
        b"# comment\n/opt/first\ninclude /etc/ld.so.conf.d/*.conf\n",
    );
    write(
        root.path(),
        "/etc/ld.so.conf.d/b.conf",
        b"/opt/b1 /opt/b2:/opt/b3 # trailing\nhwcap 0 nosegneg\n",
    );
    write(
        root.path(),
        "/etc/ld.so.conf.d/a.conf",
        b"/opt/a\ninclude more/*.conf\nrelative/dir\n",
    );
    write(
        root.path(),
        "/etc/ld.so.conf.d/ignored.txt",
        b"/opt/ignored\n",
    );
    write(
        root.path(),
        "/etc/ld.so.conf.d/more/m.conf",
        b"/opt/m=libc6\n/opt/first\n",
    );
    // An include loop must terminate.
    write(
        root.path(),
        "/etc/ld.so.conf.d/z.conf",
        b"include /etc/ld.so.conf\n",
    );
    let dirs = ld_so_conf_dirs(root.path());
    let expected: Vec<PathBuf> = [
        "/opt/first",
        "/opt/a",
        "/opt/m",
        "/opt/b1",
        "/opt/b2",
        "/opt/b3",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(dirs, expected);
}

#[test]
fn resolve_in_root_stays_inside_root() {
    let root = tempfile::tempdir().expect("tempdir");
    let real = write(root.path(), "/usr/lib/real.so", b"x");
    fs::create_dir_all(root.path().join("lib64")).expect("mkdir");
    symlink("/usr/lib/real.so", root.path().join("lib64/abs.so")).expect("symlink");
    symlink(
        "../../../../../usr/lib/real.so",
        root.path().join("lib64/rel.so"),
    )
    .expect("symlink");
    symlink("loop", root.path().join("lib64/loop")).expect("symlink");
    let root_path = fs::canonicalize(root.path()).expect("canonicalize");
    let real = fs::canonicalize(real).expect("canonicalize");
    assert_eq!(
        resolve_in_root(&root_path, Path::new("/lib64/abs.so")).expect("abs"),
        real
    );
    assert_eq!(
        resolve_in_root(&root_path, Path::new("/lib64/rel.so")).expect("rel"),
        real
    );
    assert!(resolve_in_root(&root_path, Path::new("/lib64/loop")).is_err());
    assert!(resolve_in_root(&root_path, Path::new("/lib64/none")).is_err());
    assert_eq!(
        normalize(Path::new("/a/./b/../c//d")),
        PathBuf::from("/a/c/d")
    );
}

/// Minimal 32-bit i386 ELF header (enough for the class check).
fn elf32_header() -> Vec<u8> {
    let mut h = vec![0u8; 52];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 1; // ELFCLASS32
    h[5] = 1; // little endian
    h[6] = 1;
    h[16] = 3; // ET_DYN
    h[18] = EM_386 as u8;
    h
}

#[test]
fn wrong_class_and_non_elf_candidates_are_skipped() {
    if !glibc_x86_64_host("wrong_class_and_non_elf_candidates_are_skipped") {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    install(r, Path::new("/bin/true"), "/usr/bin/true");
    install(
        r,
        &fs::canonicalize(INTERP).expect("interp"),
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    );
    fs::create_dir_all(r.join("lib64")).expect("mkdir");
    symlink(
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        r.join("lib64/ld-linux-x86-64.so.2"),
    )
    .expect("ln");
    install(
        r,
        Path::new("/lib/x86_64-linux-gnu/libc.so.6"),
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
    );
    write(r, "/etc/ld.so.conf", b"/opt/lib32\n/opt/text\n");
    write(r, "/opt/lib32/libc.so.6", &elf32_header());
    write(r, "/opt/text/libc.so.6", b"GROUP ( /lib/libc.so.6 )\n");

    let files = resolve_closure(r, &[PathBuf::from("/usr/bin/true")]).expect("closure");
    let rc = fs::canonicalize(r).expect("canonicalize");
    let got: Vec<(String, PathBuf)> = files
        .iter()
        .map(|f| {
            (
                f.dest.display().to_string(),
                f.src.strip_prefix(&rc).expect("inside root").into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                INTERP.to_string(),
                PathBuf::from("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
            ),
            ("/usr/bin/true".to_string(), PathBuf::from("usr/bin/true")),
            (
                "/usr/lib/x86_64-linux-gnu/libc.so.6".to_string(),
                PathBuf::from("usr/lib/x86_64-linux-gnu/libc.so.6")
            ),
        ]
    );
}

/// Build /opt/app/{bin/app, lib/libfoo.so, lib2/libbar.so} in `dir` where
/// app needs libfoo (found via `$ORIGIN/../lib`) and libfoo needs libbar,
/// which only the executable's search path `$ORIGIN/../lib2` provides.
/// `dtags` selects RPATH or RUNPATH for app; `foo_extra` adds link flags
/// for libfoo.
fn build_origin_app(test: &str, dir: &Path, dtags: &str, foo_extra: &[&str]) -> Option<PathBuf> {
    let d = |p: &str| dir.join(p).display().to_string();
    for sub in ["src", "bin", "lib", "lib2"] {
        fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    fs::write(dir.join("src/bar.c"), "int bar(void){return 0;}\n").expect("write");
    fs::write(
        dir.join("src/foo.c"),
        "int bar(void); int foo(void){return bar();}\n",
    )
    .expect("write");
    fs::write(
        dir.join("src/app.c"),
        "int foo(void); int main(void){return foo();}\n",
    )
    .expect("write");
    gcc(
        test,
        &[
            "-shared",
            "-fPIC",
            "-Wl,-soname,libbar.so",
            "-o",
            &d("lib2/libbar.so"),
            &d("src/bar.c"),
        ],
    )?;
    let (foo_out, foo_src, lib2) = (d("lib/libfoo.so"), d("src/foo.c"), d("lib2"));
    let mut foo_args = vec![
        "-shared",
        "-fPIC",
        "-Wl,-soname,libfoo.so",
        "-o",
        &foo_out,
        &foo_src,
        "-L",
        &lib2,
        "-lbar",
    ];
    foo_args.extend_from_slice(foo_extra);
    gcc(test, &foo_args)?;
    let rpath = "-Wl,-rpath,$ORIGIN/../lib:${ORIGIN}/../lib2";
    gcc(
        test,
        &[
            "-o",
            &d("bin/app"),
            &d("src/app.c"),
            "-L",
            &d("lib"),
            "-L",
            &d("lib2"),
            "-lfoo",
            "-Wl,--allow-shlib-undefined",
            dtags,
            rpath,
        ],
    )?;
    Some(dir.join("bin/app"))
}

#[test]
fn origin_rpath_is_inherited_by_libraries() {
    if !glibc_x86_64_host("origin_rpath_is_inherited_by_libraries") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = fs::canonicalize(dir.path()).expect("canonicalize");
    let Some(app) = build_origin_app(
        "origin_rpath_is_inherited_by_libraries",
        &dir,
        "-Wl,--disable-new-dtags",
        &[],
    ) else {
        return;
    };
    let info = parse_elf(&fs::read(&app).expect("read")).expect("parse");
    assert!(
        info.runpath.is_empty() && !info.rpath.is_empty(),
        "expected DT_RPATH: {info:?}"
    );

    let files = resolve_closure(Path::new("/"), std::slice::from_ref(&app)).expect("closure");
    let dests: Vec<&Path> = files.iter().map(|f| f.dest.as_path()).collect();
    assert!(
        dests.contains(&dir.join("lib/libfoo.so").as_path()),
        "{dests:?}"
    );
    assert!(
        dests.contains(&dir.join("lib2/libbar.so").as_path()),
        "{dests:?}"
    );
    let ours: BTreeSet<String> = files
        .iter()
        .filter(|f| f.dest != app)
        .map(|f| base(&f.dest))
        .collect();
    assert_eq!(ours, ldd_basenames(&app));
}

#[test]
fn origin_runpath_is_not_inherited() {
    if !glibc_x86_64_host("origin_runpath_is_not_inherited") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = fs::canonicalize(dir.path()).expect("canonicalize");
    let Some(app) = build_origin_app(
        "origin_runpath_is_not_inherited",
        &dir,
        "-Wl,--enable-new-dtags",
        &[],
    ) else {
        return;
    };
    let info = parse_elf(&fs::read(&app).expect("read")).expect("parse");
    assert!(!info.runpath.is_empty(), "expected DT_RUNPATH: {info:?}");

    // The real loader agrees that libbar is unreachable.
    let ldd = Command::new("ldd").arg(&app).output().expect("ldd");
    assert!(String::from_utf8_lossy(&ldd.stdout).contains("libbar.so => not found"));

    let err = resolve_closure(Path::new("/"), std::slice::from_ref(&app))
        .expect_err("libbar unreachable");
    let msg = err.to_string();
    let expected = format!(
        "--binary {}: library libbar.so (needed by {}) not found (searched: ",
        app.display(),
        dir.join("lib/libfoo.so").display()
    );
    assert!(msg.starts_with(&expected), "{msg}");
}

#[test]
fn runpath_of_requester_disables_rpath_of_loaders() {
    if !glibc_x86_64_host("runpath_of_requester_disables_rpath_of_loaders") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = fs::canonicalize(dir.path()).expect("canonicalize");
    let foo_runpath = [
        "-Wl,--enable-new-dtags",
        "-Wl,-rpath,/nonexistent-anemos-test",
    ];
    let Some(app) = build_origin_app(
        "runpath_of_requester_disables_rpath_of_loaders",
        &dir,
        "-Wl,--disable-new-dtags",
        &foo_runpath,
    ) else {
        return;
    };

    // The real loader ignores app's DT_RPATH for libfoo's needs.
    let ldd = Command::new("ldd").arg(&app).output().expect("ldd");
    assert!(String::from_utf8_lossy(&ldd.stdout).contains("libbar.so => not found"));

    let err = resolve_closure(Path::new("/"), std::slice::from_ref(&app))
        .expect_err("libbar unreachable");
    let msg = err.to_string();
    assert!(msg.contains("library libbar.so (needed by "), "{msg}");
    assert!(
        msg.contains("searched: /nonexistent-anemos-test, "),
        "{msg}"
    );
    assert!(
        !msg.contains("lib2"),
        "app's RPATH must not be searched: {msg}"
    );
}

/// A synthetic loaded object for search-order tests.
fn node(dest: &str, loader: Option<usize>, rpath: &[&str], runpath: &[&str]) -> Node {
    let info = ElfInfo {
        kind: ElfKind {
            class: ELFCLASS64,
            data: 1,
            machine: EM_X86_64,
        },
        rpath: rpath.iter().map(|s| s.to_string()).collect(),
        runpath: runpath.iter().map(|s| s.to_string()).collect(),
        ..ElfInfo::default()
    };
    Node {
        dest: dest.into(),
        src: dest.into(),
        info,
        loader,
    }
}

#[test]
fn search_order_follows_ld_so() {
    let conf = vec![PathBuf::from("/conf")];
    let resolver = Resolver {
        root: Path::new("/"),
        conf_dirs: &conf,
        binary: Path::new("/opt/x/bin/exe"),
    };
    let mut nodes = vec![
        node(
            "/opt/x/bin/exe",
            None,
            &["$ORIGIN/../rpath-exe:/opt/r2"],
            &[],
        ),
        // Both tags: RPATH ignored, RUNPATH used for its own needs only.
        node(
            "/opt/x/lib/liba.so",
            Some(0),
            &["/ignored"],
            &["${ORIGIN}/run-a"],
        ),
        node(
            "/opt/x/lib/libb.so",
            Some(1),
            &["/rpath-b", "relative/skipped::/rpath-b2"],
            &[],
        ),
        node("/lib64/ld-linux-x86-64.so.2", None, &[], &[]),
    ];
    let paths = |v: &[&str]| -> Vec<PathBuf> { v.iter().map(PathBuf::from).collect() };
    let defaults = [
        "/conf",
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ];
    let with_defaults = |v: &[&str]| paths(&[v, &defaults[..]].concat());

    assert_eq!(
        resolver.search_dirs(&nodes, 0),
        with_defaults(&["/opt/x/rpath-exe", "/opt/r2"])
    );
    assert_eq!(
        resolver.search_dirs(&nodes, 1),
        with_defaults(&["/opt/x/lib/run-a"])
    );
    assert_eq!(
        resolver.search_dirs(&nodes, 2),
        with_defaults(&["/rpath-b", "/rpath-b2", "/opt/x/rpath-exe", "/opt/r2"])
    );
    // Objects outside the loader chain still get the executable's RPATH.
    assert_eq!(
        resolver.search_dirs(&nodes, 3),
        with_defaults(&["/opt/x/rpath-exe", "/opt/r2"])
    );

    nodes[2].info.nodeflib = true;
    assert_eq!(
        resolver.search_dirs(&nodes, 2),
        paths(&["/rpath-b", "/rpath-b2", "/opt/x/rpath-exe", "/opt/r2"])
    );
}

#[test]
fn several_binaries_are_merged() {
    if !glibc_x86_64_host("several_binaries_are_merged") {
        return;
    }
    let bins = [
        PathBuf::from("/bin/true"),
        PathBuf::from("/bin/ls"),
        PathBuf::from("/bin/true"),
    ];
    let files = resolve_closure(Path::new("/"), &bins).expect("closure");
    let libc = files
        .iter()
        .filter(|f| base(&f.dest) == "libc.so.6")
        .count();
    assert_eq!(libc, 1, "{files:?}");
    assert!(files.iter().any(|f| f.dest == Path::new("/bin/ls")));
    assert!(files.iter().any(|f| f.dest == Path::new("/bin/true")));
    assert!(files.iter().any(|f| base(&f.dest) == "libselinux.so.1"));
    assert!(resolve_closure(Path::new("/"), &[])
        .expect("empty")
        .is_empty());
}
