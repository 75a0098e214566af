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
    pub image: PathBuf,
    pub ssh_options: Vec<String>,
    pub remote_dir: String,
    pub append: Option<String>,
    pub network_keep: bool,
    pub yes: bool,
    pub timeout: u64,
    /// One JSON object per event on stdout (see `super::events`).
    pub json: bool,
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

fn run_with(a: &DeployArgs, ev: &Events, id_out: &mut Option<String>) -> Result<()> {
    let total = 6;
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
    let files: Vec<(PathBuf, String)> = vec![
        (me, format!("{}/anemos", a.remote_dir)),
        (a.image.clone(), format!("{}/base.img", a.remote_dir)),
        (payload_img.clone(), format!("{}/payload.img", a.remote_dir)),
    ];

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

    let deploy_id = crate::deploy_id::new();
    *id_out = Some(deploy_id.clone());
    let kexec = format!(
        "{}/anemos kexec --deploy-id {deploy_id} --image {} --payload {}{}{}",
        a.remote_dir,
        sh_quote(&format!("{}/base.img", a.remote_dir)),
        sh_quote(&format!("{}/payload.img", a.remote_dir)),
        a.append
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
    let (ok, out) = ssh_output(a, &format!("{kexec} --yes"))?;
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
            "waiting up to {} s for {} to come back on ssh",
            a.timeout, a.host
        ),
    );
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let probe = crate::deploy_id::probe_command();
    let mut last = "no answer on ssh yet".to_string();
    loop {
        if let Ok((_, reply)) = ssh_output(a, &probe) {
            use crate::deploy_id::Answer;
            match crate::deploy_id::judge(&old_boot, &deploy_id, &reply) {
                Answer::Deployed => break,
                Answer::OtherSystem { found } => bail!(
                    "the deploy failed: {} came back as a system this deploy did not write, {} s after the kexec dropped the connection (a new boot with deploy id {}, not {deploy_id}): the deploy image gave up, most likely before writing, and rebooted into the old system; {}",
                    a.host,
                    t.elapsed().as_secs(),
                    found.as_deref().unwrap_or("none"),
                    super::deploy_report::failure_report(a, &deploy_id),
                ),
                Answer::NotYetKexeced => last = "still the old system's boot (kexec not done yet)".into(),
                Answer::Unreadable => last = format!("an unexpected answer: {}", reply.trim()),
            }
        }
        if t.elapsed() > Duration::from_secs(a.timeout) {
            bail!("{} did not come back as the deployed system (deploy id {deploy_id}) within {} s; last seen: {last} (check its console; the deploy image shows the failed stage there)", a.host, a.timeout);
        }
        std::thread::sleep(Duration::from_secs(3));
    }
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
