//! The PID-1 init of the deploy image.
//!
//! It never returns: every path ends in reboot(2), power-off or a recovery console, and a
//! panic anywhere in a stage is caught and routed into the failure policy, so the kernel never
//! sees init exit. The boot sequence is the explicit list in [`STAGES`], one module each.

pub mod arrays;
pub mod bootentry;
pub mod bootloader;
pub mod check;
pub mod cmdline;
pub mod devices;
pub mod disks;
pub mod download;
pub mod early;
pub mod espmirror;
pub mod finish;
pub mod grub;
pub mod install;
pub mod logger;
pub mod luks;
pub mod makeimg;
pub mod modules;
pub mod mountfail;
pub mod network;
pub mod payload;
pub mod pid1;
pub mod recovery;
pub mod report;
pub mod shell;
pub mod sshd;

use std::ffi::OsStr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};

use cmdline::{OnFailure, Params};
use pid1::PowerRequest;
use recovery::Action;

/// Init mode when we are PID 1, or when invoked as `/init` / `init`.
pub fn should_run_as_init(pid: u32, argv0: &OsStr) -> bool {
    if pid == 1 {
        return true;
    }
    Path::new(argv0)
        .file_name()
        .map(|n| n == "init")
        .unwrap_or(false)
}

/// State shared by the stages.
pub struct Ctx {
    pub params: Params,
    pub payload: Option<payload::Loaded>,
    /// Set just before the first destructive write; flips the default failure policy.
    pub destructive_started: bool,
    pub modules_ms: u128,
    pub devices_ms: u128,
    /// Time spent naming missing drivers (sysfs walk), reported separately.
    pub scan_ms: u128,
    /// The missing-driver scan started by the modules stage, joined by the devices stage.
    pub driver_scan: Option<std::thread::JoinHandle<u128>>,
    pub plan: Option<crate::disk::plan::Plan>,
    /// Disks written so far (path, size), for clearing their tables on failure.
    pub written: Vec<(String, u64)>,
    /// md arrays created so far (/dev/md/NAME), stopped before the tables are cleared.
    pub arrays: Vec<String>,
    /// LUKS containers opened so far (mapping names), closed before the arrays are stopped.
    pub luks: Vec<String>,
    pub entry: Option<bootloader::Entry>,
    /// A URL rootfs as the fetch stage left it (in RAM, or connected for streaming).
    pub fetched: Option<install::Fetched>,
    /// The payload's IMGBUILD when the built-in makeimg installs it: read once, by the payload
    /// stage, and used by the fetch (mirror check) and install stages.
    pub imgbuild: Option<crate::makeimg::imgbuild::ImgBuild>,
    /// (stage, ms) of every completed stage, for the deploy report.
    pub timings: Vec<(String, u128)>,
    /// An interface was brought up by the network stage.
    pub network_up: bool,
    /// The ssh server runs (a watcher may be connected).
    pub sshd_up: bool,
    /// The rootfs archive the `check` stage read to its end, with its entry count.
    pub archive_checked: Option<(std::path::PathBuf, u64)>,
}

impl Ctx {
    /// The state before the first stage.
    pub fn new(params: Params) -> Ctx {
        Ctx {
            params,
            payload: None,
            destructive_started: false,
            modules_ms: 0,
            devices_ms: 0,
            scan_ms: 0,
            driver_scan: None,
            plan: None,
            written: Vec::new(),
            arrays: Vec::new(),
            luks: Vec::new(),
            entry: None,
            timings: Vec::new(),
            fetched: None,
            imgbuild: None,
            network_up: false,
            sshd_up: false,
            archive_checked: None,
        }
    }

    /// The payload's disk layout, when it declares any disk.
    pub fn layout(&self) -> Option<&crate::config::layout::Layout> {
        self.payload
            .as_ref()
            .map(|p| &p.config.layout)
            .filter(|l| !l.disks.is_empty())
    }
}

/// One step of the boot sequence.
pub struct Stage {
    pub name: &'static str,
    /// Writes to disks. A dry run (`anemos.dry_run`) stops before the first such stage, and
    /// the runner skips every later one.
    pub writes: bool,
    pub run: fn(&mut Ctx) -> Result<()>,
}

/// The boot sequence, in order, declared once. `early` runs before this list (it sets up
/// logging itself).
pub const STAGES: &[Stage] = &[
    Stage {
        name: "modules",
        writes: false,
        run: modules::stage,
    },
    Stage {
        name: "payload",
        writes: false,
        run: payload::stage,
    },
    Stage {
        name: "network",
        writes: false,
        run: network::stage,
    },
    Stage {
        name: "ssh",
        writes: false,
        run: sshd::stage,
    },
    Stage {
        name: "fetch",
        writes: false,
        run: download::stage,
    },
    Stage {
        name: "devices",
        writes: false,
        run: devices::stage,
    },
    Stage {
        name: "plan",
        writes: false,
        run: disks::stage_plan,
    },
    Stage {
        name: "verify",
        writes: false,
        run: disks::stage_verify,
    },
    Stage {
        name: "check",
        writes: false,
        run: check::stage,
    },
    Stage {
        name: "partition",
        writes: true,
        run: disks::stage_partition,
    },
    Stage {
        name: "arrays",
        writes: true,
        run: arrays::stage,
    },
    Stage {
        name: "luks",
        writes: true,
        run: luks::stage,
    },
    Stage {
        name: "mkfs",
        writes: true,
        run: disks::stage_mkfs,
    },
    Stage {
        name: "mount",
        writes: true,
        run: disks::stage_mount,
    },
    Stage {
        name: "install",
        writes: true,
        run: install::stage,
    },
    Stage {
        name: "bootloader",
        writes: true,
        run: bootloader::stage,
    },
    Stage {
        name: "finish",
        writes: true,
        run: finish::stage,
    },
];

fn stage_names() -> Vec<&'static str> {
    STAGES.iter().map(|s| s.name).collect()
}

fn stage_index(name: &str) -> Option<usize> {
    STAGES.iter().position(|s| s.name == name)
}

static PANIC_MSG: Mutex<Option<String>> = Mutex::new(None);

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = match info.payload().downcast_ref::<&str>() {
            Some(s) => s.to_string(),
            None => info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "(non-string panic)".into()),
        };
        let loc = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = format!("panic: {msg}{loc}");
        log::error!("{text}");
        if let Ok(mut g) = PANIC_MSG.lock() {
            *g = Some(text);
        }
    }));
}

/// Entry point of init mode.
pub fn run() -> ! {
    let start = Instant::now();
    logger::init(start);
    install_panic_hook();
    let early = std::panic::catch_unwind(early_stage);
    let params = match early {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            fail_banner("early", &e, false, OnFailure::Reboot);
            let _ = recovery::on_failure(OnFailure::Reboot, 10, 0, &[]);
            pid1::power(PowerRequest::Reboot)
        }
        Err(_) => {
            let e = anyhow::anyhow!(panic_text());
            fail_banner("early", &e, false, OnFailure::Reboot);
            let _ = recovery::on_failure(OnFailure::Reboot, 10, 0, &[]);
            pid1::power(PowerRequest::Reboot)
        }
    };
    if let Some(id) = &params.deploy_id {
        // The probe of `anemos deploy` reads it to tell the deploy image from other systems.
        let _ = std::fs::write(crate::deploy_id::IMAGE_FILE, format!("{id}\n"));
    }
    let mut ctx = Ctx::new(params);
    let mut from = 0;
    let mut broke = false;
    loop {
        match run_stages(&mut ctx, from, &mut broke) {
            Ok(()) => pid1::power(PowerRequest::Poweroff),
            Err((idx, e)) => {
                let policy = recovery::policy(ctx.params.on_failure, ctx.destructive_started);
                fail_banner(STAGES[idx].name, &e, ctx.destructive_started, policy);
                if !ctx.luks.is_empty() {
                    logger::console(&format!(
                        "luks: /dev/mapper/{} was open when the deploy failed{}",
                        ctx.luks.join(", /dev/mapper/"),
                        if ctx.written.is_empty() || ctx.params.keep_on_failure {
                            ""
                        } else {
                            "; closed before the written disks' tables are cleared"
                        }
                    ));
                }
                if !ctx.arrays.is_empty() {
                    logger::console(&format!(
                        "arrays: {} existed when the deploy failed{}",
                        ctx.arrays.join(", "),
                        if ctx.written.is_empty() || ctx.params.keep_on_failure {
                            ""
                        } else {
                            "; they are stopped before the written disks' tables are cleared"
                        }
                    ));
                }
                report::store(&ctx, STAGES[idx].name, &e);
                let hold = crate::remote::state::hold_for(
                    policy == OnFailure::Reboot,
                    ctx.destructive_started,
                    ctx.sshd_up,
                    ctx.params.hold,
                );
                publish_failure(&ctx, STAGES[idx].name, &e, policy, hold);
                if !ctx.written.is_empty() {
                    if ctx.params.keep_on_failure {
                        log::warn!(
                            "anemos.keep_on_failure: leaving the half-written disks as they are"
                        );
                    } else {
                        disks::clear_tables(&ctx.written, &ctx.arrays, &ctx.luks);
                        ctx.arrays.clear();
                        ctx.luks.clear();
                    }
                }
                match recovery::on_failure(policy, ctx.params.countdown, hold, &stage_names()) {
                    Action::Retry(s) => from = s.as_deref().and_then(stage_index).unwrap_or(idx),
                    Action::Continue => from = idx,
                    Action::Power(p) => pid1::power(p),
                }
            }
        }
    }
}

fn panic_text() -> String {
    PANIC_MSG
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_else(|| "panic".into())
}

/// Tells watchers (`anemos follow`) how the deploy ended and what comes next.
fn publish_failure(ctx: &Ctx, stage: &str, e: &anyhow::Error, policy: OnFailure, hold: u64) {
    let next = match policy {
        _ if hold > 0 => "hold",
        OnFailure::Shell => "console",
        OnFailure::Reboot => "reboot",
        OnFailure::Poweroff => "poweroff",
    };
    crate::remote::state::write(&crate::remote::state::State {
        deploy_id: ctx.params.deploy_id.clone(),
        stage: stage.to_string(),
        status: "failed".into(),
        error: e.chain().map(|c| c.to_string()).collect(),
        disks_written: ctx.destructive_started,
        next: next.into(),
        hold_s: hold,
    });
}

/// Tells watchers which stage runs.
fn publish_stage(ctx: &Ctx, stage: &str) {
    crate::remote::state::write(&crate::remote::state::State {
        deploy_id: ctx.params.deploy_id.clone(),
        stage: stage.to_string(),
        status: "running".into(),
        ..Default::default()
    });
}

fn fail_banner(stage: &str, e: &anyhow::Error, destructive: bool, policy: OnFailure) {
    log::error!("stage {stage} failed: {e:#}");
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    logger::console(&recovery::banner(
        stage,
        &chain,
        &logger::tail(20),
        destructive,
        policy,
    ));
}

/// Mounts, stdio, logging, environment, command line. Returns the parsed parameters.
fn early_stage() -> Result<Params> {
    logger::console(&format!(
        "{} init starting (pid {})",
        crate::version::banner(),
        std::process::id()
    ));
    log::info!("STAGE early begin");
    let t = Instant::now();
    early::mount_api_filesystems()?;
    early::console_stdio();
    logger::attach_kmsg();
    logger::attach_file("/run/anemos/log");
    early::environment();
    early::set_hostname("anemos");
    pid1::start_reaper();
    pid1::start_signal_thread();
    let text = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let params = cmdline::parse(&text);
    logger::set_debug(params.debug);
    if !params.debug {
        // Like `quiet`: our records still go to /dev/kmsg, but the kernel stops echoing
        // info-level lines to the (slow, serial) console, where we print them ourselves.
        let _ = std::fs::write("/proc/sys/kernel/printk", "4");
    }
    log::debug!("kernel command line: {}", text.trim());
    for w in &params.warnings {
        log::warn!("{w}");
    }
    log::info!("STAGE early ok ({} ms)", t.elapsed().as_millis());
    Ok(params)
}

/// Runs stages from `from`; on failure returns the failed stage's index and error.
fn run_stages(
    ctx: &mut Ctx,
    from: usize,
    broke: &mut bool,
) -> std::result::Result<(), (usize, anyhow::Error)> {
    let mut i = from;
    while i < STAGES.len() {
        let Stage { name, writes, run } = STAGES[i];
        if ctx.params.break_at.as_deref() == Some(name) && !*broke {
            *broke = true;
            log::info!("anemos.break={name}: pausing before stage {name}");
            match recovery::console_loop(&stage_names(), false) {
                Action::Continue => {}
                Action::Retry(s) => {
                    i = s.as_deref().and_then(stage_index).unwrap_or(i);
                    continue;
                }
                Action::Power(p) => pid1::power(p),
            }
        }
        if writes && (ctx.params.dry_run) {
            log::info!("STAGE {name} skipped (dry run: it writes to disks)");
            i += 1;
            continue;
        }
        log::info!("STAGE {name} begin");
        publish_stage(ctx, name);
        let t = Instant::now();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if ctx.params.test_panic.as_deref() == Some(name) {
                panic!("test panic injected by anemos.test_panic={name}");
            }
            run(ctx)
        }));
        let r = match r {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(panic_text()).context(format!("stage {name} panicked"))),
        };
        match r {
            Ok(()) => {
                log::info!("STAGE {name} ok ({} ms)", t.elapsed().as_millis());
                ctx.timings
                    .push((name.to_string(), t.elapsed().as_millis()));
            }
            Err(e) => {
                log::info!("STAGE {name} fail ({} ms)", t.elapsed().as_millis());
                return Err((i, e));
            }
        }
        if name == "payload" {
            let total = logger::elapsed_ms();
            log::info!(
                "figures: init overhead {} ms from /init to payload ok excluding module loading ({} ms) and device waits ({} ms)",
                total.saturating_sub(ctx.modules_ms + ctx.devices_ms),
                ctx.modules_ms,
                ctx.devices_ms,
            );
        }
        i += 1;
    }
    if ctx.params.dry_run {
        log::info!("dry run: nothing was written; powering off");
    }
    Ok(())
}
