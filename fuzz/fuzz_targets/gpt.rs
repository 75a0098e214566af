//! A disk's GPT as device naming reads it at boot (512 then 4096-byte sectors, backup header)
//! and as the disk stages read it back. The input is read as is, then once more with the
//! CRCs of a header at LBA 1 (512-byte sectors) and of its entry array recomputed, so that
//! mutations reach the code behind the checksum checks.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::gpt(data));
