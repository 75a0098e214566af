//! The PID-1 init of the deploy image.
//!
//! It never returns: every path ends in reboot(2), power-off or a recovery console, and a
//! panic anywhere in a stage is caught and routed into the failure policy, so the kernel never
//! sees init exit. The boot sequence is the explicit list in [`STAGES`], one module each.

pub mod bootloader;
pub mod cmdline;
pub mod devices;
pub mod disks;
pub mod early;
pub mod install;
pub mod logger;
pub mod modules;
pub mod network;
pub mod payload;
pub mod pid1;
pub mod recovery;
pub mod shell;

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
    pub plan: Option<crate::disk::plan::Plan>,
    /// Disks written so far (path, size), for clearing their tables on failure.
    pub written: Vec<(String, u64)>,
    /// Set by a dry run: later destructive stages are skipped.
    pub stop_before_writes: bool,
    pub entry: Option<bootloader::Entry>,
    /// A URL rootfs as the fetch stage left it (in RAM, or connected for streaming).
    pub fetched: Option<install::Fetched>,
    /// (stage, ms) of every completed stage, for the deploy report.
    pub timings: Vec<(String, u128)>,
}

type StageFn = fn(&mut Ctx) -> Result<()>;

/// The boot sequence, in order. `early` runs before this list (it sets up logging itself).
pub const STAGES: &[(&str, StageFn)] = &[
    ("modules", stage_modules),
    ("payload", stage_payload),
    ("network", stage_network),
    ("fetch", stage_fetch),
    ("devices", stage_devices),
    ("plan", stage_plan),
    ("verify", stage_verify),
    ("partition", stage_partition),
    ("mkfs", stage_mkfs),
    ("mount", stage_mount),
    ("install", stage_install),
    ("bootloader", stage_bootloader),
    ("finish", stage_finish),
];

fn stage_names() -> Vec<&'static str> {
    STAGES.iter().map(|(n, _)| *n).collect()
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
            let _ = recovery::on_failure(OnFailure::Reboot, 10, &[]);
            pid1::power(PowerRequest::Reboot)
        }
        Err(_) => {
            let e = anyhow::anyhow!(panic_text());
            fail_banner("early", &e, false, OnFailure::Reboot);
            let _ = recovery::on_failure(OnFailure::Reboot, 10, &[]);
            pid1::power(PowerRequest::Reboot)
        }
    };
    let mut ctx = Ctx {
        params,
        payload: None,
        destructive_started: false,
        modules_ms: 0,
        devices_ms: 0,
        scan_ms: 0,
        plan: None,
        written: Vec::new(),
        stop_before_writes: false,
        entry: None,
        timings: Vec::new(),
        fetched: None,
    };
    let mut from = 0;
    let mut broke = false;
    loop {
        match run_stages(&mut ctx, from, &mut broke) {
            Ok(()) => pid1::power(PowerRequest::Poweroff),
            Err((idx, e)) => {
                let policy = recovery::policy(ctx.params.on_failure, ctx.destructive_started);
                fail_banner(STAGES[idx].0, &e, ctx.destructive_started, policy);
                if !ctx.written.is_empty() {
                    if ctx.params.keep_on_failure {
                        log::warn!(
                            "anemos.keep_on_failure: leaving the half-written disks as they are"
                        );
                    } else {
                        disks::clear_tables(&ctx.written);
                    }
                }
                match recovery::on_failure(policy, ctx.params.countdown, &stage_names()) {
                    Action::Retry(s) => {
                        from = s
                            .and_then(|s| STAGES.iter().position(|(n, _)| *n == s))
                            .unwrap_or(idx)
                    }
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
        let (name, f) = STAGES[i];
        if ctx.params.break_at.as_deref() == Some(name) && !*broke {
            *broke = true;
            log::info!("anemos.break={name}: pausing before stage {name}");
            match recovery::console_loop(&stage_names(), false) {
                Action::Continue => {}
                Action::Retry(s) => {
                    i = s
                        .and_then(|s| STAGES.iter().position(|(n, _)| *n == s))
                        .unwrap_or(i);
                    continue;
                }
                Action::Power(p) => pid1::power(p),
            }
        }
        log::info!("STAGE {name} begin");
        let t = Instant::now();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if ctx.params.test_panic.as_deref() == Some(name) {
                panic!("test panic injected by anemos.test_panic={name}");
            }
            f(ctx)
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
                "figures: init overhead {} ms from /init to payload ok excluding module loading ({} ms) and device waits ({} ms); of it, missing-driver scan {} ms",
                total.saturating_sub(ctx.modules_ms + ctx.devices_ms),
                ctx.modules_ms,
                ctx.devices_ms,
                ctx.scan_ms
            );
        }
        i += 1;
    }
    Ok(())
}

fn stage_modules(ctx: &mut Ctx) -> Result<()> {
    let r = modules::load_all(&ctx.params.blacklist)?;
    ctx.modules_ms = r.ms;
    log::info!(
        "modules: {} loaded, {} already present, {} blacklisted, {} failed in {} ms",
        r.loaded,
        r.already,
        r.blacklisted,
        r.failed.len(),
        r.ms
    );
    for (m, why) in &r.failed {
        log::warn!("module {m} failed to load: {why}");
    }
    let t = Instant::now();
    modules::report_missing_drivers(ctx.params.debug);
    ctx.scan_ms = t.elapsed().as_millis();
    Ok(())
}

fn stage_payload(ctx: &mut Ctx) -> Result<()> {
    let p = payload::load(Path::new("/"))?;
    log::info!(
        "payload: {} files verified against the sha256 manifest; anemos.toml loaded",
        p.files
    );
    if let Some(h) = &p.config.hostname {
        early::set_hostname(h);
    }
    ctx.payload = Some(p);
    Ok(())
}

struct UrlInstall {
    url: String,
    sha256: Option<String>,
    insecure: bool,
    download: crate::config::Download,
}

fn url_install(ctx: &Ctx) -> Option<UrlInstall> {
    match ctx.payload.as_ref().and_then(|p| p.config.install.clone()) {
        Some(crate::config::Install::Rootfs {
            source: crate::config::RootfsSource::Url(url),
            sha256,
            insecure,
            download,
            ..
        }) => Some(UrlInstall {
            url,
            sha256: sha256.map(|h| crate::util::hex(&h)),
            insecure,
            download,
        }),
        _ => None,
    }
}

fn stage_network(ctx: &mut Ctx) -> Result<()> {
    let Some(p) = &ctx.payload else { return Ok(()) };
    let text = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mut ip = Vec::new();
    let mut ns = Vec::new();
    for w in crate::kcmdline::split_words(&text) {
        if let Some(v) = w.strip_prefix("ip=") {
            ip.push(
                crate::net::parse_ip_param(v)
                    .map_err(|e| anyhow::anyhow!("kernel command line: {e}"))?,
            );
        } else if let Some(v) = w.strip_prefix("nameserver=") {
            ns.push(
                crate::net::parse_nameserver(v)
                    .map_err(|e| anyhow::anyhow!("kernel command line: {e}"))?,
            );
        }
    }
    let ifaces = crate::net::list_ifaces(Path::new("/sys")).unwrap_or_default();
    let kept = match std::fs::read_to_string(network::KEPT_PATH) {
        Ok(text) => Some(
            crate::config::load_network(&text, network::KEPT_PATH)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        Err(_) => None,
    };
    let plans = network::plan_network(
        &ip,
        &ns,
        kept.as_ref(),
        &p.config.network,
        &ifaces,
        url_install(ctx).is_some(),
    )?;
    if plans.is_empty() {
        log::info!("network: not configured and not needed");
        return Ok(());
    }
    let applied = network::apply(&plans, ctx.params.timeout)?;
    network::write_resolver(&applied, p.config.hostname.as_deref().unwrap_or("anemos"))?;
    Ok(())
}

/// Download attempts after a failure, in a row (reset when bytes arrive).
const FETCH_RETRIES: u32 = 4;

fn stage_fetch(ctx: &mut Ctx) -> Result<()> {
    let Some(u) = url_install(ctx) else {
        return Ok(());
    };
    if u.sha256.is_none() && !u.insecure {
        anyhow::bail!("[install] url needs sha256 (or insecure = true)");
    }
    // Connecting here, before any disk is touched, means a bad URL, an unreachable server or
    // a 404 never leaves a wiped disk.
    let dl = crate::fetch::Download::open(&u.url, FETCH_RETRIES)?;
    std::fs::create_dir_all("/run/anemos")?;
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| crate::fetch::mem_available(&m))
        .unwrap_or(0);
    let run_free = rustix::fs::statvfs("/run/anemos")
        .map(|v| v.f_bavail * v.f_frsize)
        .unwrap_or(0);
    let (mode, why) = crate::fetch::choose_mode(u.download, dl.total(), mem, run_free)?;
    match mode {
        crate::fetch::Mode::Ram => {
            log::info!("fetch: into RAM before any disk is written: {why}");
            let dest = std::path::PathBuf::from("/run/anemos/rootfs.download");
            crate::fetch::save(dl, &dest, u.sha256.as_deref())?;
            ctx.fetched = Some(install::Fetched::File(dest));
        }
        crate::fetch::Mode::Stream => {
            log::warn!(
                "fetch: {} will be streamed into the unpack ({why}); its sha256 is checked when the \
                 download ends, after the disks were written — a mismatch then fails the deploy",
                u.url
            );
            ctx.fetched = Some(install::Fetched::Stream(Box::new(dl), u.sha256));
        }
    }
    Ok(())
}

fn layout(ctx: &Ctx) -> Option<&crate::config::layout::Layout> {
    ctx.payload
        .as_ref()
        .map(|p| &p.config.layout)
        .filter(|l| !l.disks.is_empty())
}

fn stage_devices(ctx: &mut Ctx) -> Result<()> {
    let needed = layout(ctx).map(disks::needed_paths).unwrap_or_default();
    // by-id links are ours to create: make them first, then wait for what the config names.
    devices::create_disk_links(false);
    let (waited, missing) = devices::wait_for(&needed, ctx.params.timeout);
    ctx.devices_ms = waited.as_millis();
    for m in missing {
        log::warn!(
            "device {m} did not appear within {} s",
            ctx.params.timeout.as_secs()
        );
    }
    let n = devices::create_disk_links(true);
    log::info!(
        "devices: settled after {} ms; {n} /dev/disk links created",
        waited.as_millis()
    );
    Ok(())
}

fn stage_plan(ctx: &mut Ctx) -> Result<()> {
    let Some(l) = layout(ctx) else {
        log::info!("anemos.toml has no [[disk]]: no disk will be touched");
        return Ok(());
    };
    let p = disks::plan_stage(l)?;
    ctx.plan = Some(p);
    Ok(())
}

fn stage_verify(ctx: &mut Ctx) -> Result<()> {
    let Some(p) = &ctx.plan else { return Ok(()) };
    disks::verify_stage(p)?;
    log::info!("verify: every target disk is free (nothing mounted, no swap, no holders)");
    if ctx.params.dry_run {
        log::info!("dry run (anemos.dry_run): stopping before the first write; the plan above is what a real run would do");
        ctx.stop_before_writes = true;
    }
    Ok(())
}

fn stage_partition(ctx: &mut Ctx) -> Result<()> {
    if ctx.stop_before_writes {
        return Ok(());
    }
    let Some(p) = ctx.plan.clone() else {
        return Ok(());
    };
    let sizes: Vec<(String, u64)> = p
        .disks
        .iter()
        .map(|d| (d.disk.path.clone(), d.disk.size_bytes))
        .collect();
    let written = &mut ctx.written;
    let destructive = &mut ctx.destructive_started;
    disks::partition_stage(&p, |path| {
        *destructive = true;
        if let Some(s) = sizes.iter().find(|(d, _)| d == path) {
            if !written.iter().any(|(d, _)| d == path) {
                written.push(s.clone());
            }
        }
    })?;
    // The new partitions need their by-partuuid/by-label links.
    devices::create_disk_links(false);
    Ok(())
}

fn stage_mkfs(ctx: &mut Ctx) -> Result<()> {
    if ctx.stop_before_writes {
        return Ok(());
    }
    let Some(p) = &ctx.plan else { return Ok(()) };
    disks::mkfs_stage(p)?;
    devices::create_disk_links(false);
    Ok(())
}

fn stage_mount(ctx: &mut Ctx) -> Result<()> {
    if ctx.stop_before_writes {
        return Ok(());
    }
    let Some(p) = &ctx.plan else { return Ok(()) };
    disks::mount_stage(p)?;
    Ok(())
}

fn stage_install(ctx: &mut Ctx) -> Result<()> {
    if ctx.stop_before_writes {
        return Ok(());
    }
    let Some(payload) = &ctx.payload else {
        return Ok(());
    };
    let payload_dir = Path::new(install::PAYLOAD);
    install::protect_secrets(payload_dir);
    let Some(inst) = install::effective(&payload.config.install, payload_dir) else {
        log::info!(
            "no [install] in anemos.toml and no IMGBUILD in the payload: nothing to install"
        );
        return Ok(());
    };
    if ctx.plan.is_none() {
        anyhow::bail!("[install] needs a target: anemos.toml has no [[disk]] with a partition mounted at \"/\"");
    }
    let env = install::builder_env(
        ctx.plan.as_ref(),
        disks::TARGET,
        payload.config.hostname.as_deref(),
    );
    // A file in RAM stays for a retry of this stage; a stream can be read only once.
    let fetched = match &ctx.fetched {
        Some(install::Fetched::File(p)) => Some(install::Fetched::File(p.clone())),
        _ => ctx.fetched.take(),
    };
    let r = install::run(&inst, &env, Path::new(disks::TARGET), fetched);
    let n = install::wipe_secrets(payload_dir);
    if n > 0 {
        log::info!("wiped {n} secret file(s) from RAM");
    }
    r?;
    // A rootfs may ship its own /etc/fstab; otherwise (or if the archive replaced ours with an
    // empty one) keep the generated one.
    if let Some(p) = &ctx.plan {
        let f = format!("{}/etc/fstab", disks::TARGET);
        let keep = std::fs::read_to_string(&f)
            .map(|t| {
                t.lines()
                    .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
            })
            .unwrap_or(false);
        if !keep {
            let _ = std::fs::create_dir_all(format!("{}/etc", disks::TARGET));
            std::fs::write(&f, crate::disk::fstab::render(p))
                .with_context(|| format!("writing {f}"))?;
        }
    }
    Ok(())
}

fn stage_bootloader(ctx: &mut Ctx) -> Result<()> {
    if ctx.stop_before_writes {
        return Ok(());
    }
    let (Some(payload), Some(plan)) = (&ctx.payload, &ctx.plan) else {
        return Ok(());
    };
    match &payload.config.bootloader {
        crate::config::Bootloader::None => log::info!("bootloader: none configured"),
        crate::config::Bootloader::SystemdBoot {
            options,
            kernel,
            initrd,
        } => {
            let title = payload
                .config
                .hostname
                .clone()
                .unwrap_or_else(|| "anemos".into());
            let e = bootloader::install_systemd_boot(
                plan,
                Path::new(disks::TARGET),
                options.as_deref(),
                kernel.as_deref(),
                initrd,
                &title,
            )?;
            ctx.entry = Some(e);
        }
        crate::config::Bootloader::Command { command } => {
            let target = Path::new(disks::TARGET);
            let _m = install::ChrootMounts::new(target)?;
            let env = install::builder_env(Some(plan), "/", payload.config.hostname.as_deref());
            install::run_builder(
                "/bin/sh",
                &["-c".into(), command.clone()],
                Path::new("/"),
                &env,
                Some(target),
                "bootloader",
            )?;
        }
    }
    Ok(())
}

/// Writes the deploy report into the target's /var/log/anemos/ (never secrets: they are
/// never logged).
fn write_report(ctx: &Ctx) {
    let dir = format!("{}/var/log/anemos", disks::TARGET);
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let mut r = format!(
        "anemos deploy report
{}

",
        crate::version::banner()
    );
    if let Some(p) = &ctx.plan {
        r.push_str("plan:\n");
        r.push_str(&crate::disk::plan::render(p));
    }
    r.push_str("\nstage timings (ms):\n");
    for (s, ms) in &ctx.timings {
        r.push_str(&format!("  {s:<12} {ms}\n"));
    }
    if let Some(e) = &ctx.entry {
        r.push_str(&format!(
            "\nboot entry: {} (options {})\n",
            e.entry_path.display(),
            e.options
        ));
    }
    r.push_str("\nlog:\n");
    r.push_str(&std::fs::read_to_string("/run/anemos/log").unwrap_or_default());
    match std::fs::write(format!("{dir}/deploy-report.txt"), r) {
        Ok(()) => log::info!("wrote {dir}/deploy-report.txt"),
        Err(e) => log::warn!("writing the deploy report: {e}"),
    }
}

fn stage_finish(ctx: &mut Ctx) -> Result<()> {
    if ctx.params.dry_run || ctx.stop_before_writes {
        log::info!("dry run: nothing was written; powering off");
        pid1::power(PowerRequest::Poweroff)
    }
    let finish = ctx
        .payload
        .as_ref()
        .map(|p| p.config.deploy.finish)
        .unwrap_or_default();
    if ctx.plan.is_none() {
        log::info!("nothing was deployed (no [[disk]]); powering off");
        pid1::power(PowerRequest::Poweroff)
    }
    write_report(ctx);
    let per: Vec<String> = ctx
        .timings
        .iter()
        .map(|(s, ms)| format!("{s} {ms}"))
        .collect();
    log::info!("figures: stage timings (ms): {}", per.join(", "));
    log::info!("deploy finished in {} ms", logger::elapsed_ms());
    match finish {
        crate::config::Finish::Poweroff => pid1::power(PowerRequest::Poweroff),
        crate::config::Finish::Reboot => {
            log::info!("rebooting into the installed system");
            pid1::power(PowerRequest::Reboot)
        }
        crate::config::Finish::Kexec => {
            let e = ctx
                .entry
                .clone()
                .ok_or_else(|| anyhow::anyhow!("finish = \"kexec\" needs a systemd-boot entry"))?;
            // Copy kernel and initrd to RAM first: the target is unmounted before the jump.
            std::fs::create_dir_all("/run/anemos/kexec")?;
            let k = Path::new("/run/anemos/kexec/kernel");
            std::fs::copy(&e.kernel, k).context("copying the kernel to /run")?;
            let i = match e.initrd.first() {
                Some(src) => {
                    let p = Path::new("/run/anemos/kexec/initrd");
                    std::fs::copy(src, p).context("copying the initrd to /run")?;
                    Some(p)
                }
                None => None,
            };
            let cmdline = e.options.clone();
            pid1::unmount_all();
            crate::kexec::load(k, i, &cmdline)?;
            log::info!("kexec into {} with {cmdline}", e.kernel.display());
            crate::kexec::exec()?;
            anyhow::bail!("kexec returned")
        }
    }
}
