//! Netlink replies: the ACK search over a buffer of messages. The first four bytes are the
//! sequence number looked for.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::netlink(data));
