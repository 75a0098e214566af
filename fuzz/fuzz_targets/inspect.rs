//! `anemos inspect IMAGE`, `--cat PATH` and `--extract DIR` on an arbitrary image: cpio
//! segments, compressed or not. Extraction must stay inside its directory.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::inspect(data));
