//! Watching a deploy image from the workstation, over its ssh server.
//!
//! `anemos deploy` makes a per-deploy directory (`anemos-deploy-ID` in the temp dir) with a
//! fresh host key, the `known_hosts` that pins it under the alias `anemos-deploy-ID`, the
//! operators' keys and the access bundle sent to the server. Every connection to the deploy
//! image goes through [`pinned_argv`]: strict host key checking against that file only, so an
//! answer from any other system (the old one back, the new one up) is a host key mismatch,
//! never mistaken for the deploy image. `anemos watch HOST --dir DIR` re-attaches to a running
//! deploy from that directory.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::events::{Event, Events};
use crate::remote::keys::{self, PublicKey};
use crate::remote::state::State;

/// The per-deploy ssh access as the workstation keeps it.
#[derive(Debug, Clone)]
pub struct Pinned {
    pub dir: PathBuf,
    pub deploy_id: String,
}

impl Pinned {
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("access.img")
    }
    pub fn alias(&self) -> String {
        format!("anemos-deploy-{}", self.deploy_id)
    }
}

/// The ssh argv for `cmd` in the deploy image. The pinning options come first: ssh takes the
/// first value of an option, so the user's `StrictHostKeyChecking=no` or
/// `UserKnownHostsFile=/dev/null` cannot weaken them; the user's other options (Port,
/// IdentityFile, ProxyJump, ...) still apply. Pure.
pub fn pinned_argv(p: &Pinned, host: &str, user_opts: &[String], cmd: &str) -> Vec<String> {
    let mut v = vec!["ssh".to_string()];
    for o in [
        "StrictHostKeyChecking=yes".to_string(),
        format!("UserKnownHostsFile={}", p.known_hosts().display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        format!("HostKeyAlias={}", p.alias()),
        "UpdateHostKeys=no".into(),
        "CheckHostIP=no".into(),
        "BatchMode=yes".into(),
        "ConnectTimeout=5".into(),
        "ServerAliveInterval=5".into(),
        "ServerAliveCountMax=3".into(),
    ]
    .into_iter()
    .chain(user_opts.iter().filter(|o| !overrides_pinning(o)).cloned())
    {
        v.push("-o".into());
        v.push(o);
    }
    v.push("-l".into());
    v.push("root".into());
    v.push(host.to_string());
    if !cmd.is_empty() {
        v.push(cmd.to_string());
    }
    v
}

/// A user ssh option that the pinning replaces (dropped rather than passed after it, where ssh
/// would ignore it anyway, so the printed commands do not show contradicting options). Pure.
fn overrides_pinning(opt: &str) -> bool {
    let key = opt
        .split(['=', ' '])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    [
        "stricthostkeychecking",
        "userknownhostsfile",
        "globalknownhostsfile",
        "hostkeyalias",
        "updatehostkeys",
        "checkhostip",
    ]
    .contains(&key.as_str())
}

/// The interactive command an operator types to reach the deploy image's console. Pure.
pub fn recovery_command(p: &Pinned, host: &str, user_opts: &[String]) -> String {
    let plain = |a: &str| {
        a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "=./_@:,+-".contains(c))
    };
    let argv = pinned_argv(p, host, user_opts, "");
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        // Interactive: no BatchMode (which only matters for prompts anemos cannot answer).
        if argv[i] == "-o" && argv.get(i + 1).map(String::as_str) == Some("BatchMode=yes") {
            i += 2;
            continue;
        }
        let a = &argv[i];
        out.push(if plain(a) {
            a.clone()
        } else {
            super::deploy::sh_quote(a)
        });
        i += 1;
    }
    out.join(" ")
}

/// How an ssh attempt ended, from its exit status and error output. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing answered (refused, timed out, no route).
    Unreachable(String),
    /// Something answered with another host key: not this deploy's image.
    OtherHostKey(String),
    /// The deploy image refused our keys.
    Denied(String),
    Other(String),
}

pub fn classify(stderr: &str) -> Refusal {
    let s = stderr.trim().to_string();
    if s.contains("Host key verification failed")
        || s.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || s.contains("No ED25519 host key is known")
        || s.contains("host key for")
    {
        Refusal::OtherHostKey(s)
    } else if s.contains("Permission denied") {
        Refusal::Denied(s)
    } else if s.contains("Connection refused")
        || s.contains("timed out")
        || s.contains("No route to host")
        || s.contains("Connection reset")
        || s.contains("Connection closed")
        || s.contains("kex_exchange_identification")
        || s.is_empty()
    {
        Refusal::Unreachable(s)
    } else {
        Refusal::Other(s)
    }
}

/// How a watch ended.
#[derive(Debug)]
pub enum Watched {
    /// The deploy image said how the deploy ended.
    Finished(State),
    /// The connection ended before that (the image rebooted, or the network went).
    Dropped,
    /// No connection was made.
    NotConnected(Refusal),
}

/// A line of `anemos follow`'s log as an event: `STAGE name begin|ok|fail [(N ms)]` lines
/// become stage events, the rest log events. Pure.
pub fn log_event(line: &str) -> Event {
    let body = line.split_once("] ").map(|(_, b)| b).unwrap_or(line);
    let w: Vec<&str> = body.split_whitespace().collect();
    if let ["STAGE", name, status, rest @ ..] = w.as_slice() {
        if matches!(*status, "begin" | "ok" | "fail" | "skipped") {
            let ms = rest
                .first()
                .and_then(|r| r.strip_prefix('('))
                .and_then(|r| r.parse::<u64>().ok());
            return Event::Stage {
                stage: name.to_string(),
                status: status.to_string(),
                ms,
            };
        }
    }
    Event::Log {
        line: body.to_string(),
    }
}

/// Runs `anemos follow` in the deploy image, printing its log as it comes and emitting events.
pub fn follow(p: &Pinned, host: &str, user_opts: &[String], ev: &Events) -> Result<Watched> {
    let mut child = super::deploy::spawn_piped(&pinned_argv(p, host, user_opts, "anemos follow"))?;
    let out = child.stdout.take().context("ssh stdout")?;
    let mut got_any = false;
    let mut end = None;
    for line in std::io::BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        if !got_any {
            got_any = true;
            eprintln!(
                "deploy: watching the deploy image over ssh (host key pinned as {})",
                p.alias()
            );
        }
        if let Some(l) = line.strip_prefix("log ") {
            eprintln!("deploy image: {l}");
            ev.emit(log_event(l));
        } else if let Some(j) = line.strip_prefix("state ") {
            end = State::decode(j).ok();
        }
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let _ = child.wait();
    Ok(match (end, got_any) {
        (Some(st), _) => Watched::Finished(st),
        (None, true) => Watched::Dropped,
        (None, false) => Watched::NotConnected(classify(&err)),
    })
}

/// Runs one command in the deploy image (e.g. `anemos ctl release`).
pub fn run_pinned(p: &Pinned, host: &str, user_opts: &[String], cmd: &str) -> Result<String> {
    let argv = pinned_argv(p, host, user_opts, cmd);
    let o = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .context("running ssh")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if !o.status.success() {
        bail!("{}", text.trim());
    }
    Ok(text)
}

/// The operators' public keys for the deploy image: `--authorized-key` files when given, else
/// the ssh agent's keys plus the `.pub` of every `IdentityFile=` ssh option, else the usual
/// `~/.ssh/id_*.pub`. Errors name the file and line.
pub fn operator_keys(explicit: &[PathBuf], user_opts: &[String]) -> Result<Vec<PublicKey>> {
    let read = |p: &Path| -> Result<Vec<PublicKey>> {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("--authorized-key {}: cannot read it", p.display()))?;
        keys::parse_authorized(&text, &p.display().to_string()).map_err(|e| anyhow::anyhow!(e))
    };
    let mut v = Vec::new();
    if !explicit.is_empty() {
        for p in explicit {
            let k = read(p)?;
            if k.is_empty() {
                bail!("--authorized-key {}: no key in it", p.display());
            }
            v.extend(k);
        }
        return Ok(v);
    }
    if let Ok(o) = Command::new("ssh-add").arg("-L").output() {
        if o.status.success() {
            let text = String::from_utf8_lossy(&o.stdout);
            v.extend(keys::parse_authorized(&text, "ssh-add -L").unwrap_or_default());
        }
    }
    for o in user_opts {
        if let Some(f) = o
            .strip_prefix("IdentityFile=")
            .or_else(|| o.strip_prefix("IdentityFile "))
        {
            let pubf = PathBuf::from(format!("{}.pub", expand_home(f)));
            if pubf.is_file() {
                v.extend(read(&pubf)?);
            }
        }
    }
    if v.is_empty() {
        if let Some(home) = std::env::var_os("HOME") {
            for n in ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"] {
                let p = Path::new(&home).join(".ssh").join(n);
                if p.is_file() {
                    v.extend(read(&p)?);
                }
            }
        }
    }
    v.dedup_by(|a, b| a.blob == b.blob);
    Ok(v)
}

fn expand_home(p: &str) -> String {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(h)) => format!("{h}/{rest}"),
        _ => p.to_string(),
    }
}

/// Makes the per-deploy directory: host key (by ssh-keygen), known_hosts, access bundle.
pub fn make_access(deploy_id: &str, operators: &[PublicKey]) -> Result<Pinned> {
    let dir = std::env::temp_dir().join(format!("anemos-deploy-{deploy_id}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let p = Pinned {
        dir,
        deploy_id: deploy_id.to_string(),
    };
    let key = p.dir.join("host_key");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(p.dir.join("host_key.pub"));
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(p.alias())
        .arg("-f")
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .context("running ssh-keygen (OpenSSH's, for the per-deploy host key)")?;
    if !st.success() {
        bail!("ssh-keygen failed ({st}) making the per-deploy host key");
    }
    let pem = std::fs::read_to_string(&key)?;
    let (dropbear_key, public) =
        keys::openssh_ed25519_to_dropbear(&pem).map_err(|e| anyhow::anyhow!(e))?;
    std::fs::write(
        p.known_hosts(),
        format!("{} {} {}\n", p.alias(), public.kind, {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&public.blob)
        }),
    )?;
    let seg = crate::remote::bundle::segment(operators, &dropbear_key, &public)?;
    std::fs::write(p.bundle(), seg)?;
    std::fs::write(p.dir.join("deploy-id"), format!("{deploy_id}\n"))?;
    Ok(p)
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// [user@]host of the server being deployed (the user is always root in the deploy image).
    pub host: String,
    /// The per-deploy directory `anemos deploy` printed (with known_hosts and deploy-id).
    #[arg(long)]
    pub dir: PathBuf,
    /// ssh option, passed as `-o OPTION` (repeatable), e.g. Port=2222.
    #[arg(long = "ssh-option", value_name = "OPTION")]
    pub ssh_option: Vec<String>,
    /// One JSON object per event on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `anemos watch`: re-attach to a running deploy image (e.g. after the workstation's
/// `anemos deploy` was interrupted); prints its log and how it ended.
pub fn watch(a: WatchArgs) -> Result<()> {
    let id = std::fs::read_to_string(a.dir.join("deploy-id"))
        .with_context(|| format!("--dir {}: no deploy-id in it", a.dir.display()))?;
    let p = Pinned {
        dir: a.dir.clone(),
        deploy_id: id.trim().to_string(),
    };
    let host = a.host.rsplit('@').next().unwrap_or(&a.host).to_string();
    let ev = Events::new(a.json);
    match follow(&p, &host, &a.ssh_option, &ev)? {
        Watched::Finished(st) => {
            eprintln!("deploy: {}", describe(&st));
            if st.status == "failed" {
                std::process::exit(1)
            }
            Ok(())
        }
        Watched::Dropped => bail!("the connection to the deploy image dropped before the deploy ended"),
        Watched::NotConnected(Refusal::OtherHostKey(e)) => bail!(
            "{host} answered with a host key other than this deploy's ({}, pinned in {}): it is not this deploy's image (the old system, the new one, or someone else); refusing to talk to it\n{e}",
            p.alias(),
            p.known_hosts().display()
        ),
        Watched::NotConnected(r) => bail!("cannot reach the deploy image on {host}: {r:?}"),
    }
}

/// What failed, without what comes next. Pure.
pub fn describe_failure(st: &State) -> String {
    format!(
        "the deploy FAILED in stage {}: {}; {}",
        st.stage,
        st.error.join(": "),
        if st.disks_written {
            "disks had been written"
        } else {
            "nothing was written, the old system is intact"
        }
    )
}

/// One line on how a deploy ended. Pure.
pub fn describe(st: &State) -> String {
    match st.status.as_str() {
        "done" => format!("the deploy image finished the deploy; next: {}", st.next),
        "failed" => format!(
            "{}; next: {}",
            describe_failure(st),
            match st.next.as_str() {
                "hold" => format!(
                    "holding {} s for a watcher, then reboot into the old system",
                    st.hold_s
                ),
                "console" => "the recovery console (over ssh too)".into(),
                n => n.to_string(),
            }
        ),
        s => format!("the deploy is {s} (stage {})", st.stage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pinned() -> Pinned {
        Pinned {
            dir: "/tmp/anemos-deploy-x".into(),
            deploy_id: "anemos-1-ab".into(),
        }
    }

    #[test]
    fn pinning_comes_before_the_users_options() {
        let v = pinned_argv(
            &pinned(),
            "127.0.0.1",
            &["StrictHostKeyChecking=no".into(), "Port=2222".into()],
            "anemos follow",
        );
        assert!(v.contains(&"StrictHostKeyChecking=yes".to_string()));
        // The user's weakening option is dropped, the others kept.
        assert!(
            !v.contains(&"StrictHostKeyChecking=no".to_string()),
            "{v:?}"
        );
        assert!(v.contains(&"UserKnownHostsFile=/tmp/anemos-deploy-x/known_hosts".to_string()));
        assert!(v.contains(&"HostKeyAlias=anemos-deploy-anemos-1-ab".to_string()));
        assert!(v.contains(&"Port=2222".to_string()));
        assert_eq!(v[v.len() - 2..], ["127.0.0.1", "anemos follow"]);
        let r = recovery_command(&pinned(), "127.0.0.1", &["Port=2222".into()]);
        assert!(r.starts_with("ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/tmp/anemos-deploy-x/known_hosts"), "{r}");
        assert!(r.ends_with("-o Port=2222 -l root 127.0.0.1"), "{r}");
        assert!(!r.contains("BatchMode") && !r.contains("-o -o"), "{r}");
        let q = recovery_command(&pinned(), "h", &["ProxyCommand=nc %h 22".into()]);
        assert!(q.contains("-o 'ProxyCommand=nc %h 22'"), "{q}");
    }

    #[test]
    fn refusals_are_told_apart() {
        assert!(matches!(
            classify("@@@@\nWARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!\n...\nHost key verification failed.\n"),
            Refusal::OtherHostKey(_)
        ));
        assert!(matches!(
            classify("root@127.0.0.1: Permission denied (publickey)."),
            Refusal::Denied(_)
        ));
        assert!(matches!(
            classify("ssh: connect to host 127.0.0.1 port 2222: Connection refused"),
            Refusal::Unreachable(_)
        ));
        assert!(matches!(
            classify("kex_exchange_identification: read: Connection reset by peer"),
            Refusal::Unreachable(_)
        ));
    }

    #[test]
    fn stage_lines_become_stage_events() {
        assert_eq!(
            log_event("[   1234 ms] STAGE partition ok (85 ms)"),
            Event::Stage {
                stage: "partition".into(),
                status: "ok".into(),
                ms: Some(85)
            }
        );
        assert_eq!(
            log_event("[     12 ms] STAGE plan begin"),
            Event::Stage {
                stage: "plan".into(),
                status: "begin".into(),
                ms: None
            }
        );
        assert_eq!(
            log_event("[     12 ms] anemos: install: 40%"),
            Event::Log {
                line: "anemos: install: 40%".into()
            }
        );
    }

    #[test]
    fn failures_are_described_with_what_comes_next() {
        let st = State {
            deploy_id: None,
            stage: "plan".into(),
            status: "failed".into(),
            error: vec!["disk \"system\"".into(), "matches nothing".into()],
            disks_written: false,
            next: "hold".into(),
            hold_s: 120,
        };
        let d = describe(&st);
        assert!(
            d.contains("FAILED in stage plan: disk \"system\": matches nothing"),
            "{d}"
        );
        assert!(
            d.contains("nothing was written") && d.contains("holding 120 s"),
            "{d}"
        );
    }

    /// The per-deploy host key, converted for dropbear, is the key a real dropbear serves, and
    /// a connection pinned to another key is refused as "another host key".
    #[test]
    fn dropbear_serves_the_pinned_key_and_another_key_is_refused() {
        let t = "dropbear_serves_the_pinned_key_and_another_key_is_refused";
        let Some(dropbear) = crate::testutil::tool("dropbear", "dropbear-bin", t) else {
            return;
        };
        if crate::testutil::tool("ssh-keygen", "openssh-client", t).is_none() {
            return;
        }
        let op = keys::parse_public_key(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOd8cM7etKG75xpl+zeQKQAZUUShaOfnaZ8T2uI0kWSc op",
        )
        .unwrap();
        let id = format!("test-{}", std::process::id());
        let p = make_access(&id, std::slice::from_ref(&op)).unwrap();
        let other = make_access(&format!("{id}-other"), &[op]).unwrap();
        // The bundle's dropbear key, as the deploy image gets it.
        let seg = std::fs::read(p.bundle()).unwrap();
        crate::remote::bundle::check_segment(&seg).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("host_key");
        let pem = std::fs::read_to_string(p.dir.join("host_key")).unwrap();
        std::fs::write(&key, keys::openssh_ed25519_to_dropbear(&pem).unwrap().0).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut d = Command::new(dropbear)
            .args(["-F", "-E", "-s", "-p", &format!("127.0.0.1:{port}"), "-r"])
            .arg(&key)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
        let opts = [format!("Port={port}"), "LogLevel=ERROR".to_string()];
        // Pinned to this deploy's key: the host key is accepted (then our test key, which is
        // not a real private key of any user here, is refused: Denied, not OtherHostKey).
        let ok = run_pinned(&p, "127.0.0.1", &opts, "true")
            .unwrap_err()
            .to_string();
        // Pinned to another deploy's key: refused before any authentication.
        let bad = run_pinned(&other, "127.0.0.1", &opts, "true")
            .unwrap_err()
            .to_string();
        let _ = d.kill();
        let _ = d.wait();
        let _ = std::fs::remove_dir_all(&p.dir);
        let _ = std::fs::remove_dir_all(&other.dir);
        assert!(matches!(classify(&ok), Refusal::Denied(_)), "{ok}");
        assert!(matches!(classify(&bad), Refusal::OtherHostKey(_)), "{bad}");
    }
}
