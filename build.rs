//! Build script: embeds the `init-config/` tree (files laid into every image) and version info.
use std::{env, fs, path::Path, process::Command};

fn main() {
    let out = env::var("OUT_DIR").expect("OUT_DIR set by cargo");
    let root = Path::new("init-config");
    println!("cargo:rerun-if-changed=init-config");
    let mut files = Vec::new();
    collect(root, root, &mut files);
    files.sort();
    let mut code = String::from("/// (path inside the image, mode, contents) of every file under `init-config/`.\npub const INIT_CONFIG: &[(&str, u32, &[u8])] = &[\n");
    for (rel, mode) in &files {
        let abs = fs::canonicalize(root.join(rel)).expect("canonical path");
        code.push_str(&format!(
            "    ({:?}, 0o{:o}, include_bytes!({:?})),\n",
            rel, mode, abs
        ));
    }
    code.push_str("];\n");
    fs::write(Path::new(&out).join("init_config.rs"), code).expect("write init_config.rs");

    let git = Command::new("git")
        .args(["describe", "--always", "--dirty", "--tags"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ANEMOS_GIT={git}");
    println!(
        "cargo:rustc-env=ANEMOS_TARGET={}",
        env::var("TARGET").unwrap_or_default()
    );
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/index");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, u32)>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let md = fs::metadata(&p).expect("stat init-config entry");
        if md.is_dir() {
            collect(root, &p, out);
        } else {
            use std::os::unix::fs::PermissionsExt;
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.push((rel, md.permissions().mode() & 0o7777));
        }
    }
}
