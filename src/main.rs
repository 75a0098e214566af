//! anemos: one static binary. As PID 1 (or invoked as `/init`) it is the deploy image's init;
//! otherwise it is the command-line tool.
#![deny(unsafe_code)]

mod blockdev;
mod cli;
mod cmd;
mod codec;
mod config;
mod deploy_id;
mod disk;
mod efiboot;
mod efivar;
mod elf;
mod failreport;
mod fetch;
mod init;
mod kcmdline;
mod kexec;
mod kver;
mod makeimg;
mod module_manifest;
mod net;
mod pack;
mod remote;
#[cfg(test)]
mod testutil;
mod util;
mod version;

fn main() -> std::process::ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if init::should_run_as_init(std::process::id(), &argv0) {
        init::run();
    }
    if std::path::Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new("makeimg")) {
        return cli::makeimg_main();
    }
    cli::main()
}
