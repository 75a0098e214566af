//! anemos: one static binary. As PID 1 (or invoked as `/init`) it is the deploy image's init;
//! otherwise it is the command-line tool. The modules live in the library (src/lib.rs).
#![deny(unsafe_code)]

use anemos::{cli, init};

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
