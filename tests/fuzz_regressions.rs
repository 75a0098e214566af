//! The fuzz targets' inputs on stable Rust, without libFuzzer: every committed seed corpus file
//! (fuzz/corpus/TARGET/*) and every input that once broke a parser (fuzz/regressions/TARGET/*)
//! goes through the same target body the fuzzer runs (fuzz/harness.rs). A panic fails the test.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../fuzz/harness.rs"]
mod harness;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/KIND/TARGET/`, sorted; none when the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.expect("listing a fuzz input directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input of `kind` through its target; returns how many ran.
fn run_all(kind: &str) -> usize {
    let mut n = 0;
    for (target, body) in harness::TARGETS {
        for file in inputs(kind, target) {
            let data = fs::read(&file).expect("reading a fuzz input");
            let run = std::panic::catch_unwind(|| body(&data));
            assert!(run.is_ok(), "{}: target {target} panicked", file.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_target_has_a_seed_corpus() {
    for (target, _) in harness::TARGETS {
        assert!(
            !inputs("corpus", target).is_empty(),
            "fuzz/corpus/{target}/ has no seed input"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{target}.rs is missing"
        );
    }
}

#[test]
fn seed_corpora_and_regressions_run_clean() {
    let n = run_all("corpus");
    assert!(n >= harness::TARGETS.len(), "only {n} corpus inputs ran");
    // fuzz/regressions/TARGET/ holds inputs that once made TARGET panic, hang or allocate
    // without bound; the fix is in the parser and the input must now be handled (an error is
    // fine). A directory for an unknown target would never run: refused.
    if let Ok(rd) = fs::read_dir(fuzz_dir().join("regressions")) {
        for e in rd {
            let name = e.unwrap().file_name();
            assert!(
                harness::TARGETS.iter().any(|(t, _)| name == *t),
                "fuzz/regressions/{name:?} is not a fuzz target"
            );
        }
    }
    run_all("regressions");
}

/// The seeds reach the code behind the format checks: the GPT seeds are valid tables.
#[test]
fn gpt_seeds_are_valid_tables() {
    for file in inputs("corpus", "gpt") {
        let data = fs::read(&file).unwrap();
        let parts = anemos::blockdev::gpt::read_gpt(&mut std::io::Cursor::new(&data))
            .unwrap()
            .unwrap_or_else(|| panic!("{}: no valid GPT", file.display()));
        let labels: Vec<&str> = parts.iter().map(|p| p.part_label.as_str()).collect();
        assert_eq!(labels, ["esp", "root"], "{}", file.display());
    }
}

/// The seeds reach the code behind the format checks: the plain examples plan against the
/// fuzz target's fixed disk set.
#[test]
fn config_seeds_plan_against_the_fixed_disks() {
    let mut planned = 0;
    for file in inputs("corpus", "config") {
        let text = fs::read_to_string(&file).unwrap();
        let Ok(v) = anemos::config::load(&text, "anemos.toml") else {
            continue;
        };
        let disks: Vec<_> = harness::DISKS
            .iter()
            .map(|(s, size)| anemos::blockdev::identity::from_image_spec_sized(s, *size).unwrap())
            .collect();
        if anemos::disk::plan::plan(&v.layout, &disks).is_ok() {
            planned += 1;
        }
    }
    assert!(planned >= 10, "only {planned} config seeds planned");
}
