//! anemos.toml: parse and validate (`anemos validate`), then plan against the fixed disk set
//! and render the plan, its fstab and its JSON view (`anemos plan --disk ... [--json]`).
//! Also read as a `--network keep` file.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::config(data));
