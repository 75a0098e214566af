//! A modules tree's index files and module requests resolved against them, dependency order
//! included (`anemos pack --kernel-modules DIR --module ...` before any module file is read).
//! The input is split at 0xff bytes (never in UTF-8) into `modules.dep`, `modules.builtin`,
//! `modules.builtin.modinfo`, `modules.alias`, `modules.softdep` and the requests, one a line.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::modules_index(data));
