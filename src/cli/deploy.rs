//! `anemos deploy [user@]HOST`: from the workstation, through the user's own `ssh` (config,
//! agent, keys; no home-made transport). Packs the payload, uploads what the server lacks
//! (this binary, the base image, the payload) by streaming over ssh, shows the remote plan,
//! asks for confirmation (or --yes), runs `anemos kexec --yes` remotely, then waits for the
//! host to come back on ssh and checks that it is the deployed system.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::events::{Event, Events};
use crate::codec::Compression;
use crate::pack;

pub struct DeployArgs {
    pub host: String,
    pub payload: PathBuf,
    /// The base image to upload; `None`: the server builds one (`anemos kexec --image auto`).
    pub image: Option<PathBuf>,
    pub ssh_options: Vec<String>,
    pub remote_dir: String,
    pub append: Option<String>,
    pub network_keep: bool,
    pub yes: bool,
    pub timeout: u64,
    /// One JSON object per event on stdout (see `super::events`).
    pub json: bool,
    /// `--authorized-key` files for the deploy image's ssh server.
    pub authorized_keys: Vec<PathBuf>,
    /// Seconds the deploy image holds after a failure before any write (`anemos.hold=`).
    pub hold: u64,
    /// Give the deploy image an ssh server to watch it through.
    pub watch: bool,
    /// Stop once the server has shown its plan (`--plan-only`).
    pub plan_only: bool,
    /// Without `image`: a tools root tar for the base image the server builds.
    pub tools_root: Option<PathBuf>,
}

/// The ssh argv for running `cmd` on `host`. Pure.
pub fn ssh_argv(host: &str, opts: &[String], batch: bool, cmd: &str) -> Vec<String> {
    let mut v = vec!["ssh".to_string()];
    for o in opts {
        v.push("-o".into());
        v.push(o.clone());
    }
    if batch {
        v.extend([
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            // A server that kexecs vanishes without closing the connection: notice within
            // 15 s instead of waiting for TCP to give up.
            "-o".into(),
            "ServerAliveInterval=5".into(),
            "-o".into(),
            "ServerAliveCountMax=3".into(),
        ]);
    }
    v.push(host.to_string());
    v.push(cmd.to_string());
    v
}

/// Quotes for a remote POSIX shell. Pure.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Parses `sha256sum` output into (path, hash). Pure.
pub fn parse_sums(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let h = it.next()?;
            let p = it.next()?;
            (h.len() == 64).then(|| (p.to_string(), h.to_string()))
        })
        .collect()
}

fn step(ev: &Events, n: u32, total: u32, what: &str) {
    eprintln!("deploy: [{n}/{total}] {what}");
    ev.emit(Event::Step {
        step: n,
        of: total,
        what: what.to_string(),
    });
}

pub(super) fn ssh_output(a: &DeployArgs, cmd: &str) -> Result<(bool, String)> {
    let argv = ssh_argv(&a.host, &a.ssh_options, true, cmd);
    let o = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| "running ssh (is OpenSSH installed?)")?;
    Ok((
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    ))
}

/// Starts an ssh argv with stdin closed and stdout/stderr piped to us.
pub(super) fn spawn_piped(argv: &[String]) -> Result<std::process::Child> {
    Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ssh (is OpenSSH installed?)")
}

/// Runs the remote `anemos kexec --yes`. Returns as soon as the server confirms the kexec
/// (its connection then hangs until ssh's keepalive gives up, ~15 s that the deploy image
/// would spend unwatched), or when ssh ends: (exited 0, the output so far).
fn start_kexec(a: &DeployArgs, cmd: &str) -> Result<(bool, String)> {
    let mut child = spawn_piped(&ssh_argv(&a.host, &a.ssh_options, true, cmd))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        })
    })
    .collect();
    drop(tx);
    let mut out = String::new();
    // Every line until the confirmation, or until both streams close (ssh ended).
    for l in rx.iter() {
        out.push_str(&l);
        out.push('\n');
        if l.contains("kexec loaded") {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((true, out));
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let st = child.wait()?;
    Ok((st.success(), out))
}

pub(super) fn upload(a: &DeployArgs, local: &Path, remote: &str) -> Result<()> {
    let cmd = format!(
        "cat > {q}.part && chmod 0755 {q}.part && mv {q}.part {q}",
        q = sh_quote(remote)
    );
    let argv = ssh_argv(&a.host, &a.ssh_options, true, &cmd);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .spawn()
        .context("running ssh")?;
    let mut input = child.stdin.take().context("ssh stdin")?;
    let mut f =
        std::fs::File::open(local).with_context(|| format!("opening {}", local.display()))?;
    let total = f.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, t, mut last) = (0u64, Instant::now(), Instant::now());
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        input
            .write_all(&buf[..n])
            .with_context(|| format!("uploading {}", local.display()))?;
        done += n as u64;
        if last.elapsed() > Duration::from_secs(2) {
            last = Instant::now();
            eprintln!(
                "deploy:   {} {}/{} MiB ({:.1} MB/s)",
                local.display(),
                done >> 20,
                total >> 20,
                done as f64 / t.elapsed().as_secs_f64() / 1e6
            );
        }
    }
    drop(input);
    let st = child.wait()?;
    if !st.success() {
        bail!(
            "uploading {} to {}:{remote} failed ({st})",
            local.display(),
            a.host
        );
    }
    Ok(())
}

fn local_sha(p: &Path) -> Result<String> {
    let f = std::fs::File::open(p).with_context(|| format!("reading {}", p.display()))?;
    Ok(crate::pack::payload::sha256_reader(f)?.0)
}

pub fn run(a: DeployArgs) -> Result<()> {
    let ev = Events::new(a.json);
    let mut id = None;
    let r = run_with(&a, &ev, &mut id);
    ev.emit(Event::Result {
        ok: r.is_ok(),
        host: a.host.clone(),
        deploy_id: id,
        error: r.as_ref().err().map(|e| format!("{e:#}")),
    });
    r
}

/// Whether the base image can run the ssh server: dropbear and /bin/sh in it. Reads the
/// image's file list (decompressing it, a few seconds for a large image).
fn image_can_watch(image: &Path) -> Result<Option<String>> {
    let segs = crate::pack::inspect::read_segments(image)
        .with_context(|| format!("--image {}: not an initramfs image", image.display()))?;
    let has = |p: &str| segs.iter().any(|s| s.entries.iter().any(|e| e.path == p));
    if !crate::init::sshd::DROPBEAR_PATHS
        .iter()
        .any(|p| has(p.trim_start_matches('/')))
    {
        return Ok(Some(format!("the base image {} has no dropbear (add it with `anemos pack --binary /usr/sbin/dropbear`)", image.display())));
    }
    if !has("bin/sh") {
        return Ok(Some(format!("the base image {} has no /bin/sh for dropbear's sessions (give `anemos pack` a --rootfs with a shell, e.g. busybox)", image.display())));
    }
    Ok(None)
}

/// Whether a base image built on the server will run the ssh server: the server has dropbear
/// (the image gets it and a shell). An unreachable server is no reason: step 2 reports that.
fn server_can_watch(a: &DeployArgs) -> Result<Option<String>> {
    let paths = crate::init::sshd::DROPBEAR_PATHS;
    let (ok, out) = ssh_output(a, &format!("ls {} 2>/dev/null; true", paths.join(" ")))?;
    if !ok || paths.iter().any(|p| out.lines().any(|l| l.trim() == *p)) {
        return Ok(None);
    }
    Ok(Some(format!(
        "{} has no dropbear ({}), so the base image built there has none (install dropbear-bin there, or give --image)",
        a.host,
        paths.join(", ")
    )))
}

/// The per-deploy ssh access, or why the deploy runs unwatched.
fn prepare_watch(a: &DeployArgs, deploy_id: &str) -> Result<Option<super::watch::Pinned>> {
    if !a.watch {
        eprintln!("deploy:   --no-watch: the deploy image gets no ssh server; its stages show on its console only");
        return Ok(None);
    }
    crate::remote::state::check_hold(a.hold, a.timeout).map_err(|e| anyhow::anyhow!(e))?;
    let keys = super::watch::operator_keys(&a.authorized_keys, &a.ssh_options)?;
    if keys.is_empty() {
        eprintln!("deploy:   warning: no public key found for the deploy image's ssh server (no ssh agent keys, no IdentityFile, no ~/.ssh/id_*.pub; give --authorized-key FILE): the deploy runs unwatched");
        return Ok(None);
    }
    let why = match &a.image {
        Some(image) => image_can_watch(image)?,
        None => server_can_watch(a)?,
    };
    if let Some(why) = why {
        eprintln!("deploy:   warning: {why}: the deploy runs unwatched (its stages show on its console only)");
        return Ok(None);
    }
    let p = super::watch::make_access(deploy_id, &keys)?;
    eprintln!(
        "deploy:   the deploy image will run an ssh server for {} key(s), with this deploy's host key (pinned in {})",
        keys.len(),
        p.known_hosts().display()
    );
    Ok(Some(p))
}

fn run_with(a: &DeployArgs, ev: &Events, id_out: &mut Option<String>) -> Result<()> {
    let total = if a.plan_only { 3 } else { 6 };
    let deploy_id = crate::deploy_id::new();
    *id_out = Some(deploy_id.clone());
    // A plan needs no access to a deploy image that will not start.
    let pinned = if a.plan_only {
        None
    } else {
        prepare_watch(a, &deploy_id)?
    };
    step(
        ev,
        1,
        total,
        &format!("packing the payload {}", a.payload.display()),
    );
    let tmp = std::env::temp_dir().join(format!("anemos-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let payload_img = tmp.join("payload.img");
    pack::pack_payload(
        &a.payload,
        &payload_img,
        Compression::Zstd,
        None,
        pack::mtime_from_env()?,
    )?;
    let me = std::env::current_exe().context("finding this anemos binary")?;
    let mut files: Vec<(PathBuf, String)> = vec![(me, format!("{}/anemos", a.remote_dir))];
    match &a.image {
        Some(image) => files.push((image.clone(), format!("{}/base.img", a.remote_dir))),
        None => eprintln!("deploy:   no --image: the server builds the base image for its own kernel (anemos kexec --image auto), cached in {}", a.remote_dir),
    }
    files.push((payload_img.clone(), format!("{}/payload.img", a.remote_dir)));
    let tools_root = a.tools_root.as_ref().map(|t| {
        // The server reads the tar by its name (its compression), so the name is kept.
        let name = t
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "tools-root.tar".into());
        format!("{}/tools-root-{name}", a.remote_dir)
    });
    if let (Some(local), Some(remote)) = (&a.tools_root, &tools_root) {
        if !local.is_file() {
            bail!(
                "--tools-root {}: not a tar file (a directory cannot be uploaded as it is; tar it)",
                local.display()
            );
        }
        files.push((local.clone(), remote.clone()));
    }
    if let Some(p) = &pinned {
        files.push((p.bundle(), format!("{}/access.img", a.remote_dir)));
    }

    step(
        ev,
        2,
        total,
        &format!("checking what {} already has", a.host),
    );
    let list: Vec<String> = files.iter().map(|(_, r)| sh_quote(r)).collect();
    let (ok, out) = ssh_output(
        a,
        &format!(
            "mkdir -p {} && (sha256sum {} 2>/dev/null; true)",
            sh_quote(&a.remote_dir),
            list.join(" ")
        ),
    )?;
    if !ok {
        bail!("cannot reach {} over ssh: {}", a.host, out.trim());
    }
    let remote = parse_sums(&out);
    for (local, r) in &files {
        let want = local_sha(local)?;
        if remote.iter().any(|(p, h)| p == r && *h == want) {
            eprintln!("deploy:   {r}: already there");
            ev.emit(Event::Upload {
                file: r.clone(),
                action: "present",
            });
            continue;
        }
        eprintln!("deploy:   uploading {} -> {}:{r}", local.display(), a.host);
        upload(a, local, r)?;
        ev.emit(Event::Upload {
            file: r.clone(),
            action: "uploaded",
        });
    }

    // The hold is a kernel parameter of the deploy image (anemos.on_failure and the like in
    // --append still apply); the user's --append comes last and wins.
    let append = match (&pinned, &a.append) {
        (Some(_), Some(x)) => Some(format!("anemos.hold={} {x}", a.hold)),
        (Some(_), None) => Some(format!("anemos.hold={}", a.hold)),
        (None, x) => x.clone(),
    };
    let image_arg = match &a.image {
        Some(_) => sh_quote(&format!("{}/base.img", a.remote_dir)),
        None => format!(
            "{} --cache-dir {}{}",
            super::autobase::AUTO,
            sh_quote(&a.remote_dir),
            tools_root
                .as_ref()
                .map(|t| format!(" --tools-root {}", sh_quote(t)))
                .unwrap_or_default()
        ),
    };
    let kexec = format!(
        "{}/anemos kexec --deploy-id {deploy_id} --image {image_arg} --payload {}{}{}{}",
        a.remote_dir,
        sh_quote(&format!("{}/payload.img", a.remote_dir)),
        pinned
            .as_ref()
            .map(|_| format!(
                " --access {}",
                sh_quote(&format!("{}/access.img", a.remote_dir))
            ))
            .unwrap_or_default(),
        append
            .as_ref()
            .map(|x| format!(" --append {}", sh_quote(x)))
            .unwrap_or_default(),
        if a.network_keep {
            " --network keep"
        } else {
            ""
        }
    );
    step(
        ev,
        3,
        total,
        "the plan on the server (nothing is changed yet)",
    );
    let (ok, out) = ssh_output(a, &kexec)?;
    if ev.json() {
        eprint!("{out}");
        ev.emit(Event::Plan { text: out.clone() });
    } else {
        print!("{out}");
    }
    if !ok {
        bail!("the server refused the deploy (see above); nothing was changed");
    }
    if a.plan_only {
        let _ = std::fs::remove_dir_all(&tmp);
        eprintln!(
            "deploy: plan only: {} accepts this deploy; nothing was changed",
            a.host
        );
        return Ok(());
    }
    if !a.yes {
        eprint!(
            "deploy: this erases every disk marked DESTROYED above on {}. Type 'yes' to go on: ",
            a.host
        );
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != "yes" {
            bail!("not confirmed; nothing was changed");
        }
    }
    // The boot ID of the running (old) system: a host answering with it has not kexec'd yet;
    // a new boot without this deploy's ID is the old system back after a failed deploy.
    let (ok, out) = ssh_output(a, &format!("cat {}", crate::deploy_id::BOOT_ID))?;
    let old_boot = out.trim().to_string();
    if !ok || old_boot.is_empty() {
        bail!(
            "cannot read {} on {}: {}; nothing was changed",
            crate::deploy_id::BOOT_ID,
            a.host,
            out.trim()
        );
    }
    step(
        ev,
        4,
        total,
        &format!(
            "kexec into the deploy image, deploy id {deploy_id} (the ssh connection will drop)"
        ),
    );
    ev.emit(Event::Kexec {
        deploy_id: deploy_id.clone(),
        old_boot_id: old_boot.clone(),
    });
    let (ok, out) = start_kexec(a, &format!("{kexec} --yes"))?;
    if !out.contains("kexec loaded") {
        // The remote anemos ended by itself (a refusal or an error): nothing happened.
        if ok || out.contains("anemos: error") {
            bail!("the remote kexec did not start:\n{}", out.trim());
        }
        // The connection dropped before the confirmation came through (the server goes down
        // right after printing it); the boot IDs below tell whether it really went down.
        eprintln!("deploy:   the connection dropped before the server confirmed the kexec; watching which system answers");
    }
    step(
        ev,
        5,
        total,
        &format!(
            "{}waiting up to {} s for {} to come back on ssh as the deployed system",
            if pinned.is_some() {
                "watching the deploy image, then "
            } else {
                ""
            },
            a.timeout,
            a.host
        ),
    );
    let t = Instant::now();
    await_deployed(a, ev, pinned.as_ref(), &old_boot, &deploy_id)?;
    step(
        ev,
        6,
        total,
        &format!(
            "{} is up as the deployed system after {} s",
            a.host,
            t.elapsed().as_secs()
        ),
    );
    let _ = std::fs::remove_dir_all(&tmp);
    if let Some(p) = &pinned {
        let _ = std::fs::remove_dir_all(&p.dir);
    }
    let msg = format!(
        "deploy: success: {} runs the deployed system, deploy id {deploy_id}",
        a.host
    );
    if ev.json() {
        eprintln!("{msg}");
    } else {
        println!("{msg}");
    }
    Ok(())
}

/// The host name without `user@` (the deploy image is always logged into as root).
fn bare_host(host: &str) -> &str {
    host.rsplit('@').next().unwrap_or(host)
}

/// After the kexec: watches the deploy image when it can (pinned ssh), and otherwise (and
/// after it) probes whoever answers on ssh with the user's options, until the deployed system
/// answers, a failure is known, or the timeout.
fn await_deployed(
    a: &DeployArgs,
    ev: &Events,
    pinned: Option<&super::watch::Pinned>,
    old_boot: &str,
    deploy_id: &str,
) -> Result<()> {
    use super::watch::{Refusal, Watched};
    use crate::deploy_id::Answer;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let probe = crate::deploy_id::probe_command();
    let mut last = "no answer on ssh yet".to_string();
    let mut watching = pinned;
    let host = bare_host(&a.host);
    loop {
        if let Some(p) = watching {
            match super::watch::follow(p, host, &a.ssh_options, ev)? {
                Watched::Finished(st) if st.status == "done" => {
                    eprintln!("deploy: {}", super::watch::describe(&st));
                    emit_outcome(ev, &st);
                    watching = None;
                }
                Watched::Finished(st) => {
                    return Err(watched_failure(a, ev, p, &st, old_boot, deploy_id))
                }
                Watched::Dropped => {
                    eprintln!("deploy: the connection to the deploy image dropped; watching which system answers");
                }
                Watched::NotConnected(Refusal::Denied(e)) => {
                    eprintln!("deploy: warning: the deploy image refused our key ({e}); no more watching, waiting for the result");
                    watching = None;
                }
                Watched::NotConnected(Refusal::Unreachable(e)) => {
                    // Nothing listens (the deploy image is still booting): the probe would not
                    // get through either; try again soon, not to miss the start of the deploy.
                    last = format!("nothing answers yet ({e})");
                    if t.elapsed() < Duration::from_secs(a.timeout) {
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                }
                // Another host key: the old system (not gone yet, or back) or the new one.
                Watched::NotConnected(_) => {}
            }
        }
        if let Ok((_, reply)) = ssh_output(a, &probe) {
            match crate::deploy_id::judge(old_boot, deploy_id, &reply) {
                Answer::Deployed => return Ok(()),
                Answer::OtherSystem { found } => bail!(
                    "the deploy failed: {} came back as a system this deploy did not write, {} s after the kexec dropped the connection (a new boot with deploy id {}, not {deploy_id}): the deploy image gave up, most likely before writing, and rebooted into the old system; {}",
                    a.host,
                    t.elapsed().as_secs(),
                    found.as_deref().unwrap_or("none"),
                    super::deploy_report::failure_report(a, deploy_id),
                ),
                Answer::DeployImage => last = "the deploy image (still deploying)".into(),
                Answer::NotYetKexeced => last = "still the old system's boot (kexec not done yet)".into(),
                Answer::Unreadable => last = format!("an unexpected answer: {}", reply.trim()),
            }
        }
        if t.elapsed() > Duration::from_secs(a.timeout) {
            bail!("{} did not come back as the deployed system (deploy id {deploy_id}) within {} s; last seen: {last} (check its console; the deploy image shows the failed stage there)", a.host, a.timeout);
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

fn emit_outcome(ev: &Events, st: &crate::remote::state::State) {
    ev.emit(Event::Outcome {
        status: st.status.clone(),
        stage: st.stage.clone(),
        error: st.error.clone(),
        disks_written: st.disks_written,
        next: st.next.clone(),
    });
}

/// The deploy image reported a failure: say so, end its hold (so the old system comes back at
/// once) or print how to reach its recovery console. Returns the error to exit with.
fn watched_failure(
    a: &DeployArgs,
    ev: &Events,
    p: &super::watch::Pinned,
    st: &crate::remote::state::State,
    old_boot: &str,
    deploy_id: &str,
) -> anyhow::Error {
    let host = bare_host(&a.host);
    emit_outcome(ev, st);
    let what = super::watch::describe(st);
    eprintln!("deploy: {what}");
    match st.next.as_str() {
        "hold" => {
            match super::watch::run_pinned(p, host, &a.ssh_options, "anemos ctl release") {
                Ok(_) => eprintln!(
                    "deploy: ended the deploy image's hold: it reboots into the old system now"
                ),
                Err(e) => eprintln!(
                    "deploy: could not end the hold ({e}); the deploy image reboots after {} s",
                    st.hold_s
                ),
            }
            let t = Instant::now();
            let wait = Duration::from_secs(a.timeout.min(300));
            let probe = crate::deploy_id::probe_command();
            let back = loop {
                std::thread::sleep(Duration::from_secs(3));
                if let Ok((_, reply)) = ssh_output(a, &probe) {
                    if let crate::deploy_id::Answer::OtherSystem { .. } =
                        crate::deploy_id::judge(old_boot, deploy_id, &reply)
                    {
                        break format!(
                            "the old system is back on {} ({} s after the release) and answers ssh",
                            a.host,
                            t.elapsed().as_secs()
                        );
                    }
                }
                if t.elapsed() > wait {
                    break format!(
                        "the old system did not answer ssh within {} s of the release; check the server's console",
                        wait.as_secs()
                    );
                }
            };
            eprintln!("deploy: {back}");
            anyhow::anyhow!(
                "deploy id {deploy_id}: {}; {back}",
                super::watch::describe_failure(st)
            )
        }
        "console" => {
            let cmd = super::watch::recovery_command(p, host, &a.ssh_options);
            eprintln!("deploy: recovery: {cmd}");
            eprintln!("deploy: (there: `anemos follow --once` shows the log; `anemos ctl retry [STAGE]`, `anemos ctl reboot` or `anemos ctl poweroff` tell the init what to do; keep {} until then)", p.dir.display());
            anyhow::anyhow!(
                "deploy id {deploy_id}: {}; the deploy image waits in its recovery console: {cmd}",
                super::watch::describe_failure(st)
            )
        }
        _ => anyhow::anyhow!("deploy id {deploy_id}: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_argv_passes_options_and_batch_mode() {
        let v = ssh_argv(
            "root@h",
            &["Port=2222".into(), "IdentityFile=/k".into()],
            true,
            "true",
        );
        assert_eq!(
            v,
            [
                "ssh",
                "-o",
                "Port=2222",
                "-o",
                "IdentityFile=/k",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=5",
                "-o",
                "ServerAliveCountMax=3",
                "root@h",
                "true"
            ]
        );
    }

    #[test]
    fn quoting_and_sums() {
        assert_eq!(sh_quote("a b'c"), "'a b'\\''c'");
        let s = format!(
            "{}  /tmp/x/anemos\ngarbage\n{}  /tmp/x/base.img\n",
            "a".repeat(64),
            "b".repeat(64)
        );
        assert_eq!(
            parse_sums(&s),
            [
                ("/tmp/x/anemos".to_string(), "a".repeat(64)),
                ("/tmp/x/base.img".to_string(), "b".repeat(64))
            ]
        );
    }
}
