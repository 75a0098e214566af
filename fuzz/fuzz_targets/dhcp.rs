//! DHCP replies from the network and the domain search list option (RFC 3397 compression).
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::dhcp(data));
