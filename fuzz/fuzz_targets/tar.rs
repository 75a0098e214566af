//! A rootfs tar archive (any compression): the pre-scan (`install::check_tar`), then the
//! unpack of a checked archive, and the streamed unpack that checks each entry just before
//! writing it. Nothing may land outside the target directory.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::tar(data));
