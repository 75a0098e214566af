//! Command-line interface (everything except init mode).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use crate::codec::Compression;
use crate::pack::{self, PackOptions};

mod autobase;
mod deploy;
mod deploy_report;
mod events;
mod follow;
mod kexec;
mod makeimg;
mod netkeep;
mod report;
mod watch;

pub use makeimg::main as makeimg_main;

/// Deploy a whole machine from code.
///
/// anemos packs a machine's description (disk layout, OS build, bootloader) into an initramfs
/// *payload*, boots into it, and rebuilds the disks from RAM. The same binary is the image's
/// init (PID 1).
#[derive(Debug, Parser)]
#[command(name = "anemos", version = env!("CARGO_PKG_VERSION"), long_version = LONG_VERSION)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("ANEMOS_GIT"),
    ", ",
    env!("ANEMOS_TARGET"),
    ")"
);

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build a base initramfs image: /init (this binary), init-config, tools, modules.
    ///
    /// The image is a reproducible newc cpio: entries sorted, owners 0, mtimes from
    /// SOURCE_DATE_EPOCH (else 0). It is written to a temp file and renamed, so a failed
    /// pack never leaves a partial IMAGE.
    Pack(PackArgs),
    /// Pack a deploy description (DIR or TAR) as a payload segment under /payload.
    ///
    /// The segment carries a sha256 manifest that the init verifies before touching any disk.
    /// Append it to a base image with `cat BASE PAYLOAD > IMAGE` or `anemos pack --payload`.
    PackPayload {
        /// Directory or tar archive (.tar, .tar.gz, .tar.zst, .tar.xz) holding anemos.toml.
        src: PathBuf,
        /// Output payload file.
        #[arg(short, long)]
        output: PathBuf,
        /// Compression of the segment.
        #[arg(long, value_enum, default_value = "zstd")]
        compress: Compression,
        /// Skip validating anemos.toml (only for testing the init's own checks).
        #[arg(long, hide = true)]
        no_validate: bool,
    },
    /// List every segment and entry of an initramfs (ours or another tool's).
    ///
    /// Shows offset, compression, entry count and uncompressed size per segment, then each
    /// entry's mode, owner, size, path and link target.
    Inspect {
        image: PathBuf,
        /// Extract all segments into DIR (entries escaping DIR are refused).
        #[arg(long, value_name = "DIR")]
        extract: Option<PathBuf>,
        /// Print one file's contents to stdout.
        #[arg(long, value_name = "PATH")]
        cat: Option<String>,
    },
    /// Check an anemos.toml on its own: syntax, unknown keys, sizes, labels, mounts, layout.
    ///
    /// Every problem is listed with its key path. Nothing is read besides the file.
    Validate {
        /// The config file.
        config: PathBuf,
        /// Print the result as JSON on stdout ({"valid": true, ...} or {"valid": false,
        /// "error": "..."}, exit status 1).
        #[arg(long)]
        json: bool,
    },
    /// Show what a deploy would do to the disks: the same plan the init prints.
    ///
    /// Without --disk, the disks of this machine (from sysfs) are used; nothing is written
    /// either way. Each partition's start/end (in sectors), size, type, label, filesystem,
    /// mount point and derived identifiers are shown, and in words what will be destroyed.
    Plan {
        /// The config file.
        config: PathBuf,
        /// A disk image file standing in for a disk:
        /// FILE[:bus=virtio|scsi][:serial=S][:wwn=0xW][:model=M][:sector=4096][:id=BY-ID]
        /// (repeatable; the disk gets the identity and by-id names QEMU's virtio-blk, or with
        /// bus=scsi its scsi-hd, would give it in the init, e.g. virtio-S for serial=S).
        #[arg(long, value_name = "FILE[:KEY=VALUE...]")]
        disk: Vec<String>,
        /// Print the plan as JSON (field names in docs/config.md) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// On the server: show the plan, then (with --yes) kexec into the deploy image.
    ///
    /// Validates the payload's anemos.toml, prints the plan against this machine's disks, checks
    /// free RAM and that kexec is allowed, and stops there unless --yes is given. With --yes it
    /// loads the running kernel (or --kernel) with BASE + the payload as initramfs, keeping the
    /// current console= arguments, and reboots into it with kexec. Run as root.
    ///
    /// Before anything else the release of the kernel that would boot (its bzImage header) is
    /// compared with the release of the base image's kernel modules: a mismatch, or modules
    /// the image's own manifest lists but lacks, is refused with both releases named.
    Kexec {
        /// Base image made by `anemos pack`, or `auto`: build it here for the kernel that will
        /// boot (its /lib/modules: the storage, net and fs sets, the modules loaded now and the
        /// drivers of this machine's disks and NICs; mke2fs and the other disk tools found
        /// here, with their libraries), cached in --cache-dir and reused while the kernel and
        /// this anemos stay the same.
        #[arg(long, value_name = "BASE|auto")]
        image: PathBuf,
        /// Where `--image auto` keeps the base images it builds.
        #[arg(long, value_name = "DIR", default_value = "/var/cache/anemos")]
        cache_dir: PathBuf,
        /// With `--image auto`: a tools root (directory or tar, as for `anemos pack --rootfs`)
        /// laid under the image, e.g. busybox for the recovery console.
        #[arg(long, value_name = "DIR|TAR")]
        tools_root: Option<PathBuf>,
        /// The deploy description: a directory, a tar, or a file made by `anemos pack-payload`.
        #[arg(long, value_name = "DIR|TAR|PAYLOAD")]
        payload: PathBuf,
        /// Kernel to boot (default: the running kernel's image from /boot or /lib/modules).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Extra kernel command-line arguments (e.g. anemos.on_failure=shell).
        #[arg(long)]
        append: Option<String>,
        /// `keep`: capture this system's addresses, routes and DNS and have the deploy image
        /// use them (matched by MAC; before anemos.toml's [network], after ip= on --append).
        #[arg(long, value_enum, value_name = "keep")]
        network: Option<NetworkArg>,
        /// This deploy's ID, written into the deployed system (default: a fresh one).
        #[arg(long, value_name = "ID")]
        deploy_id: Option<String>,
        /// Access bundle for the deploy image's ssh server (made by `anemos deploy`).
        #[arg(long, value_name = "FILE")]
        access: Option<PathBuf>,
        /// Really do it (without it nothing is changed).
        #[arg(long)]
        yes: bool,
    },
    /// From the workstation: deploy a server over ssh and wait for it to come back.
    ///
    /// Packs the payload, uploads what the server lacks (this binary, the base image, the
    /// payload) through your own ssh (config, agent, keys), shows the remote plan, asks for
    /// confirmation (or --yes), runs `anemos kexec --yes` there, then waits for the host to
    /// answer on ssh again as the deployed system.
    ///
    /// Without --image nothing but this binary and the payload is uploaded: the server builds
    /// the base image for its own kernel (`anemos kexec --image auto`), caches it in
    /// --remote-dir and reuses it next time. A base image whose modules are for another kernel
    /// release than the one the server would boot is refused there before anything changes.
    Deploy {
        /// [user@]host, as you would give it to ssh.
        host: String,
        /// The deploy description directory (with anemos.toml).
        #[arg(long)]
        payload: PathBuf,
        /// Base image made by `anemos pack`, uploaded as it is. Without it the server builds
        /// the base image itself for the kernel it will boot (`anemos kexec --image auto`:
        /// that kernel's /lib/modules, the storage, net and fs module sets plus the modules
        /// loaded there and its disks' and NICs' drivers, its mke2fs and other disk tools,
        /// dropbear if it has it), keeps it in --remote-dir and reuses it for later deploys
        /// while the kernel and this anemos stay the same.
        #[arg(long)]
        image: Option<PathBuf>,
        /// ssh option, passed as `-o OPTION` (repeatable), e.g. Port=2222.
        #[arg(long = "ssh-option", value_name = "OPTION")]
        ssh_option: Vec<String>,
        /// Where files are kept on the server.
        #[arg(long, default_value = "/tmp/anemos-deploy")]
        remote_dir: String,
        /// Extra kernel arguments for the deploy image.
        #[arg(long)]
        append: Option<String>,
        /// `keep`: the deploy image takes over the server's current addresses, routes and DNS
        /// (`anemos kexec --network keep` on the server).
        #[arg(long, value_enum, value_name = "keep")]
        network: Option<NetworkArg>,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Seconds to wait for the host to come back.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Also print one JSON object per event on stdout (step, upload, plan, kexec,
        /// stage, log, outcome, result); the plan and the messages then go to stderr.
        #[arg(long)]
        json: bool,
        /// Public key(s) allowed into the deploy image's ssh server (an `authorized_keys`
        /// file; repeatable). Default: the ssh agent's keys and the IdentityFile of
        /// --ssh-option, else ~/.ssh/id_*.pub.
        #[arg(long = "authorized-key", value_name = "FILE")]
        authorized_key: Vec<PathBuf>,
        /// After a failure before any disk write, the deploy image waits this long for the
        /// watcher to read it, then reboots into the old system (the watcher ends it early).
        #[arg(long, default_value_t = 120, value_name = "SECONDS")]
        hold: u64,
        /// Do not give the deploy image an ssh server: no watching, no recovery over ssh.
        #[arg(long)]
        no_watch: bool,
        /// Stop after showing the server's plan: upload what the plan needs (into
        /// --remote-dir), print the plan, exit 0 when the server accepts it, nonzero when it
        /// refuses it. No kexec, no disk is touched.
        #[arg(long, conflicts_with = "yes")]
        plan_only: bool,
        /// Without --image: a tools root tar (.tar, .tar.gz, .tar.zst, .tar.xz), uploaded and
        /// laid under the base image the server builds (`anemos kexec --tools-root`).
        #[arg(long, value_name = "TAR", conflicts_with = "image")]
        tools_root: Option<PathBuf>,
    },
    /// In the deploy image (over its ssh server): print the deploy's log, live, until it ends.
    Follow(follow::FollowArgs),
    /// In the deploy image: ask the init to release a hold, reboot, power off, continue or
    /// retry.
    Ctl(follow::CtlArgs),
    /// From the workstation: re-attach to a running deploy image (pinned host key).
    Watch(watch::WatchArgs),
    /// On a server after a failed deploy: show the failure report the deploy image left.
    ///
    /// A deploy image that fails stores what failed (stage, error, whether disks were written,
    /// deploy ID, time, last log lines) in the EFI variable AnemosFailure-<anemos GUID>, so it
    /// reaches you even when the deploy image had no network; no disk is written for it.
    /// Mounts efivarfs if needed (trying `modprobe efivarfs`). Exit status: 0 a report was
    /// shown, 3 there is none, 1 an error (no EFI, no efivarfs, a damaged variable). Run as
    /// root.
    Report {
        /// Remove the variable after printing it.
        #[arg(long)]
        clear: bool,
        /// Print one JSON object on stdout: {"variable": ..., "report": {...} | null,
        /// "error": null | "..."}.
        #[arg(long)]
        json: bool,
    },
    /// Build an OS image from ./IMGBUILD (makeimg's format): bootstrap, files, patches,
    /// templates, secrets, provision().
    ///
    /// Targets debian (mmdebstrap or debootstrap), arch (pacstrap) and alpine (apk); output a
    /// directory, a tar or a raw disk image (no bootloader), or with format=custom the
    /// IMGBUILD's setup()/cleanup() around a directory build. Needs root, except with --check.
    /// Also run when this binary is called as `makeimg`. See docs/makeimg.md.
    Makeimg(makeimg::MakeimgArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print version and build information.
    Version,
}

#[derive(Debug, clap::Args)]
struct PackArgs {
    /// Output image path.
    #[arg(short, long)]
    output: PathBuf,
    /// Tools root for the recovery console and install step: a directory or a tar archive
    /// (.tar, .tar.gz, .tar.zst, .tar.xz), e.g. busybox-static or an Alpine/Debian root.
    #[arg(long, value_name = "DIR|TAR")]
    rootfs: Option<PathBuf>,
    /// Add a host file or directory at DEST in the image (repeatable).
    #[arg(long, value_name = "SRC:DEST")]
    add: Vec<String>,
    /// Add host executables with their whole shared-library closure (repeatable).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    binary: Vec<PathBuf>,
    /// A /lib/modules/<release> tree to take kernel modules from.
    #[arg(long, value_name = "DIR")]
    kernel_modules: Option<PathBuf>,
    /// Modules to include with their dependencies: names, aliases or sets
    /// (virtio, nvme, ahci, usb-storage, md, storage, net, fs). Repeatable.
    #[arg(long, value_name = "NAME", num_args = 1..)]
    module: Vec<String>,
    /// Take modules from the build host: /lib/modules/$(uname -r) and every module listed
    /// in /proc/modules. Never done unless asked.
    #[arg(long)]
    host_modules: bool,
    /// Store .ko.xz/.ko.zst/.ko.gz as they are instead of decompressing them (only for
    /// kernels built with CONFIG_MODULE_DECOMPRESS).
    #[arg(long)]
    keep_compressed_modules: bool,
    /// Firmware directory (repeatable). Default: <modules dir>/../../firmware if it exists.
    #[arg(long, value_name = "DIR")]
    firmware_dir: Vec<PathBuf>,
    /// Compression of the image.
    #[arg(long, value_enum, default_value = "zstd")]
    compress: Compression,
    /// Compression level (codec-specific; defaults: zstd 9, gzip 9, xz 6; zstd 19 is smallest but ~8x slower).
    #[arg(long)]
    level: Option<i32>,
    /// Keep file owners from the sources instead of root:root.
    #[arg(long)]
    keep_owner: bool,
    /// Append a payload: a directory, tar, or a file made by `anemos pack-payload`.
    #[arg(long, value_name = "DIR|TAR|PAYLOAD")]
    payload: Option<PathBuf>,
    /// Binary to install as /init (default: this anemos binary).
    #[arg(long, value_name = "PATH")]
    init: Option<PathBuf>,
}

/// Runs the CLI and maps errors to a one-line message and exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anemos: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Pack(a) => run_pack(a),
        Cmd::PackPayload {
            src,
            output,
            compress,
            no_validate,
        } => {
            if no_validate {
                std::env::set_var("ANEMOS_NO_VALIDATE", "1");
            }
            let (n, size) =
                pack::pack_payload(&src, &output, compress, None, pack::mtime_from_env()?)?;
            eprintln!(
                "anemos: wrote payload {} ({n} files, {size} bytes)",
                output.display()
            );
            Ok(())
        }
        Cmd::Inspect {
            image,
            extract,
            cat,
        } => run_inspect(image, extract, cat),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "anemos", &mut std::io::stdout());
            Ok(())
        }
        Cmd::Validate { config, json: true } => validate_json(&config),
        Cmd::Validate {
            config,
            json: false,
        } => {
            let v = load_config(&config)?;
            eprintln!(
                "anemos: {} is valid: {} disk(s), {} partition(s) to create{}",
                config.display(),
                v.layout.disks.len(),
                v.layout
                    .disks
                    .iter()
                    .map(|d| d.partitions.len())
                    .sum::<usize>(),
                match v.layout.arrays.len() {
                    0 => String::new(),
                    n => format!(", {n} md array(s)"),
                }
            );
            if !v.network.interfaces.is_empty() {
                eprintln!(
                    "anemos: deploy-image network: {} interface entr{} (see docs/network.md for the precedence of ip= and --network keep)",
                    v.network.interfaces.len(),
                    if v.network.interfaces.len() == 1 { "y" } else { "ies" }
                );
            }
            if let Some(note) = rootfs_download_note(v.install.as_ref()) {
                eprintln!("anemos: {note}");
            }
            Ok(())
        }
        Cmd::Plan { config, disk, json } => {
            let v = load_config(&config)?;
            let disks = if disk.is_empty() {
                crate::blockdev::identity::disks_from_sysfs(
                    std::path::Path::new("/sys"),
                    std::path::Path::new("/dev"),
                )?
            } else {
                disk.iter()
                    .map(|d| crate::blockdev::identity::from_image_spec(d))
                    .collect::<Result<Vec<_>>>()?
            };
            let plan = crate::disk::plan::plan(&v.layout, &disks)?;
            let fstab = crate::disk::fstab::render(&plan);
            if json {
                let view = crate::disk::plan_json::view(&plan, fstab);
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", crate::disk::plan::render(&plan));
                for line in crate::init::grub::describe(&v.bootloader, &plan) {
                    println!("{line}");
                }
                if disk.is_empty() {
                    // On a running system: what the deploy image's guard would refuse if it
                    // were still so after the kexec (mounts, swap, md arrays, holders).
                    for d in &plan.disks {
                        if let crate::disk::plan::DiskAction::Repartition { .. } = d.action {
                            let b = crate::disk::guard::check_disk(
                                d.disk.path.trim_start_matches("/dev/"),
                            );
                            for r in b.reasons {
                                println!("busy now: {r}");
                            }
                        }
                    }
                }
                print!("\n/etc/fstab:\n{fstab}");
                if let Some(note) = rootfs_download_note(v.install.as_ref()) {
                    println!("\n{note}");
                }
                if !plan.arrays.is_empty() {
                    let conf = crate::disk::md::render_conf(&plan.arrays);
                    print!("\n/etc/mdadm/mdadm.conf:\n{conf}");
                }
            }
            Ok(())
        }
        Cmd::Deploy {
            host,
            payload,
            image,
            ssh_option,
            remote_dir,
            append,
            network,
            yes,
            timeout,
            json,
            authorized_key,
            hold,
            no_watch,
            plan_only,
            tools_root,
        } => deploy::run(deploy::DeployArgs {
            host,
            payload,
            image,
            ssh_options: ssh_option,
            remote_dir,
            append,
            network_keep: network == Some(NetworkArg::Keep),
            yes,
            timeout,
            json,
            authorized_keys: authorized_key,
            hold,
            watch: !no_watch,
            plan_only,
            tools_root,
        }),
        Cmd::Kexec {
            image,
            cache_dir,
            tools_root,
            payload,
            kernel,
            append,
            network,
            deploy_id,
            access,
            yes,
        } => kexec::run(kexec::KexecArgs {
            image,
            cache_dir,
            tools_root,
            payload,
            kernel,
            append,
            network_keep: network == Some(NetworkArg::Keep),
            deploy_id,
            access,
            yes,
        }),
        Cmd::Follow(a) => follow::follow(a),
        Cmd::Ctl(a) => follow::ctl(a),
        Cmd::Watch(a) => watch::watch(a),
        Cmd::Report { clear, json } => match report::run(clear, json)? {
            0 => Ok(()),
            code => std::process::exit(code.into()),
        },
        Cmd::Makeimg(a) => makeimg::run(a),
        Cmd::Version => {
            println!("{}", crate::version::banner());
            Ok(())
        }
    }
}

/// How a URL rootfs is fetched and when it is checked, for `validate` and `plan`: only an
/// archive in RAM is read to its end (sha256, truncation, hostile entries) before the first
/// write; a streamed one is checked while and after the disks are written.
fn rootfs_download_note(install: Option<&crate::config::Install>) -> Option<String> {
    let Some(crate::config::Install::Rootfs {
        source: crate::config::RootfsSource::Url(u),
        download,
        ..
    }) = install
    else {
        return None;
    };
    let how = match download {
        crate::config::Download::Auto => {
            "into RAM before any disk is written when it fits, then its sha256 and every entry are checked before the first write; if it does not fit it is streamed, and checked only while and after the disks are written"
        }
        crate::config::Download::Ram => {
            "into RAM before any disk is written; its sha256 and every entry are checked before the first write"
        }
        crate::config::Download::Stream => {
            "streamed into the unpack (download = \"stream\"): its sha256 and its entries (truncation, corruption, unsafe paths) can only be checked while and after the disks are written; download = \"ram\" checks them first"
        }
    };
    Some(format!("rootfs from {u}: {how}"))
}

/// `anemos validate --json`: the verdict on stdout either way; exit status 1 when invalid.
fn validate_json(config: &std::path::Path) -> Result<()> {
    let out = match load_config(config) {
        Ok(v) => serde_json::json!({
            "config": config.display().to_string(),
            "valid": true,
            "disks": v.layout.disks.len(),
            "partitions": v.layout.disks.iter().map(|d| d.partitions.len()).sum::<usize>(),
            "network_interfaces": v.network.interfaces.len(),
        }),
        Err(e) => serde_json::json!({
            "config": config.display().to_string(),
            "valid": false,
            "error": format!("{e:#}"),
        }),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    if out["valid"] == true {
        Ok(())
    } else {
        std::process::exit(1)
    }
}

fn load_config(path: &std::path::Path) -> Result<crate::config::Validated> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let name = path.display().to_string();
    crate::config::load(&text, &name).map_err(|e| anyhow::anyhow!("{e}"))
}

fn run_pack(a: PackArgs) -> Result<()> {
    let mut add = Vec::new();
    for s in &a.add {
        add.push(pack::parse_add(s)?);
    }
    let mut kernel_modules = a.kernel_modules.clone();
    let mut modules = a.module.clone();
    if a.host_modules {
        let release = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        kernel_modules.get_or_insert_with(|| PathBuf::from(format!("/lib/modules/{release}")));
        let loaded = std::fs::read_to_string("/proc/modules").unwrap_or_default();
        modules.extend(
            loaded
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(String::from),
        );
    }
    let o = PackOptions {
        output: a.output.clone(),
        rootfs: a.rootfs,
        add,
        links: Vec::new(),
        binaries: a.binary,
        kernel_modules,
        modules,
        keep_compressed_modules: a.keep_compressed_modules,
        firmware_dirs: a.firmware_dir,
        compression: Some(a.compress),
        level: a.level,
        keep_owner: a.keep_owner,
        payload: a.payload,
        init: a.init,
        mtime: pack::mtime_from_env()?,
    };
    let t = std::time::Instant::now();
    let r = pack::pack(&o)?;
    eprintln!(
        "anemos: wrote {} ({} entries, {} modules, {} bytes uncompressed, {} bytes {}{}) in {} ms",
        a.output.display(),
        r.entries,
        r.modules,
        r.uncompressed,
        r.image_size,
        a.compress,
        r.payload_files
            .map(|n| format!(", payload {n} files"))
            .unwrap_or_default(),
        t.elapsed().as_millis()
    );
    Ok(())
}

fn run_inspect(image: PathBuf, extract: Option<PathBuf>, cat: Option<String>) -> Result<()> {
    use pack::inspect;
    if let Some(p) = cat {
        let data = inspect::cat(&image, &p)?;
        std::io::stdout().write_all(&data)?;
        return Ok(());
    }
    if let Some(dir) = extract {
        let s = inspect::extract(&image, &dir)?;
        eprintln!(
            "anemos: extracted {} into {}: {:?}",
            image.display(),
            dir.display(),
            s
        );
        return Ok(());
    }
    let segs = inspect::read_segments(&image)?;
    let mut out = std::io::stdout().lock();
    // A closed pipe (e.g. `| head`) is not an error worth reporting.
    let _ = out.write_all(inspect::format_listing(&segs).as_bytes());
    Ok(())
}

/// `anemos kexec --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkArg {
    /// Keep this system's network configuration in the deploy image.
    Keep,
}
