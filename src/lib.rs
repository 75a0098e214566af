//! anemos as a library: every module of the one binary (src/main.rs is a thin entry point).
//! The library exists so that fuzz targets (fuzz/) and benchmarks can call the parsers
//! directly; nothing outside this repository is meant to depend on it.
#![deny(unsafe_code)]

pub mod blockdev;
pub mod cli;
pub mod cmd;
pub mod codec;
pub mod config;
pub mod deploy_id;
pub mod disk;
pub mod efiboot;
pub mod efivar;
pub mod elf;
pub mod failreport;
pub mod fetch;
pub mod init;
pub mod kcmdline;
pub mod kexec;
pub mod kver;
pub mod makeimg;
pub mod module_manifest;
pub mod net;
pub mod pack;
pub mod remote;
#[cfg(test)]
pub mod testutil;
pub mod util;
pub mod version;
