//! An IMGBUILD's variables and functions as the probe shell prints them (NUL-separated
//! `v:NAME=VALUE` and `f:NAME` records), then their validation (`format`, `hostconf`, ...).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::imgbuild(data));
