//! The downloader's HTTP response head: read up to its empty line (bounded), status,
//! Content-Length, Content-Range, chunked; and URL parsing.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::http_head(data));
