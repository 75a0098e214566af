//! `anemos makeimg` (also run when the binary is called as `makeimg`): builds the image that
//! ./IMGBUILD describes, or with --check only reads and validates it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use crate::makeimg::{self, OutKind};

#[derive(Debug, clap::Args)]
pub struct MakeimgArgs {
    /// Only read and validate ./IMGBUILD (its shell syntax, target, format): nothing is built
    /// and root is not needed.
    #[arg(long)]
    check: bool,
    /// Output kind, overriding the IMGBUILD's `format` (raw takes SIZE, PARTTYPE and FS from
    /// the IMGBUILD's `format=raw ...`, else 8G msdos ext4).
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Output directory (dir, custom) or file (tar, compression from its suffix .gz, .zst,
    /// .xz; raw disk image). Default: IMGNAME, IMGNAME.tar[.EXT] or IMGNAME.img in the
    /// current directory.
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Package mirror URL for the bootstrap tool (debian, arch, alpine).
    #[arg(long, value_name = "URL")]
    mirror: Option<String>,
    /// Input directories for files, patches and templates (default: files/ when present).
    #[arg(value_name = "INPUT_DIR")]
    inputs: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    /// A directory holding the root.
    Dir,
    /// A tar archive of the root.
    Tar,
    /// A disk image: partition table and one ext2/3/4 file system holding the root (no
    /// bootloader).
    Raw,
}

// The command line when the binary is called as `makeimg`.
#[derive(Debug, Parser)]
#[command(
    name = "makeimg",
    version = env!("CARGO_PKG_VERSION"),
    about = "Build an OS image from ./IMGBUILD (the makeimg built into anemos; see docs/makeimg.md)"
)]
struct Standalone {
    #[command(flatten)]
    args: MakeimgArgs,
}

/// Entry point when argv0 is `makeimg`.
pub fn main() -> ExitCode {
    match run(Standalone::parse().args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("makeimg: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

pub fn run(a: MakeimgArgs) -> Result<()> {
    let path = Path::new("IMGBUILD");
    let b = makeimg::imgbuild::load(path)?;
    if a.check {
        eprintln!(
            "makeimg: IMGBUILD is valid: imgname {}, target {}{}, format {}, {} package(s), functions: {}",
            b.imgname,
            b.target.name(),
            if b.target == makeimg::imgbuild::Target::Debian {
                format!(" ({})", b.debian_suite)
            } else {
                String::new()
            },
            b.format,
            b.packages.len(),
            if b.functions.is_empty() {
                "none".to_string()
            } else {
                b.functions.join(", ")
            }
        );
        return Ok(());
    }
    let kind = a.format.map(|f| match f {
        FormatArg::Dir => OutKind::Dir,
        FormatArg::Tar => OutKind::Tar,
        FormatArg::Raw => OutKind::Raw,
    });
    let output = makeimg::output(&b, kind, a.output)?;
    init_logger();
    makeimg::build(&makeimg::Options {
        imgbuild: b,
        project: std::env::current_dir()?,
        inputs: a.inputs,
        output,
        mirror: a.mirror,
        env: std::env::vars().collect(),
        tool_env: Default::default(),
    })
}

/// Log records to stderr (info and up; debug too with MAKEIMG_DEBUG=1).
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{}", r.args());
        }
    }
    fn flush(&self) {}
}

fn init_logger() {
    static LOGGER: StderrLogger = StderrLogger;
    if log::set_logger(&LOGGER).is_ok() {
        let debug = std::env::var("MAKEIMG_DEBUG").is_ok_and(|v| v == "1");
        log::set_max_level(if debug {
            log::LevelFilter::Debug
        } else {
            log::LevelFilter::Info
        });
    }
}
