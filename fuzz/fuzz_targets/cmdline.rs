//! The kernel command line: the init's parameters (`anemos.*`, `ip=`, ...) and `ip=` on its
//! own.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::cmdline(data));
