//! The `ssh` stage: when the deploy image carries an access bundle (`anemos kexec --access`,
//! made by `anemos deploy`) and has a network, it starts dropbear from the tools root, so the
//! operator can watch the deploy (`anemos follow`), read a failure and reach the recovery
//! console without a serial line.
//!
//! Who gets in: only the bundle's public keys, as root, by public key. dropbear runs with
//! `-s` (no password logins at all), `-j -k` (no port forwarding) and the bundle's per-deploy
//! host key, which the workstation pins, so it can tell the deploy image from the old system
//! and the new one. Nothing listens before the keys are in place: the server starts after they
//! are written, and not at all without a bundle.
//!
//! An image without dropbear or without `/bin/sh` (dropbear runs every session through the
//! login shell) deploys unwatched: the stage says so and the deploy goes on; `anemos deploy`
//! checks the base image for both before it starts and says so there too.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::remote::bundle;

/// Where the tools root may have dropbear.
pub const DROPBEAR_PATHS: &[&str] = &[
    "/usr/sbin/dropbear",
    "/sbin/dropbear",
    "/usr/bin/dropbear",
    "/bin/dropbear",
];

const SSHD_LOG: &str = "/run/anemos/sshd.log";

/// Whether this deploy image carries an access bundle (it then wants the network up).
pub fn requested() -> bool {
    Path::new(bundle::AUTHORIZED).is_file()
}

/// The dropbear command line. Pure.
pub fn dropbear_args(host_key: &str) -> Vec<String> {
    [
        "-F", // foreground: the init's reaper collects it if it dies
        "-E", // log to stderr (our log file)
        "-s", // no password logins, for anyone
        "-j", // no local port forwarding
        "-k", // no remote port forwarding
        "-p", "22", "-r", host_key,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Whether something listens on TCP port `port`, from /proc/net/tcp{,6} text. Pure.
pub fn listening(tables: &[String], port: u16) -> bool {
    let want = format!(":{port:04X}");
    tables.iter().flat_map(|t| t.lines().skip(1)).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address is field 1, st (0A = LISTEN) field 3.
        f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
    })
}

fn write_mode(path: &str, data: &[u8], mode: u32) -> Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {path}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Root's account, home and keys, as dropbear looks them up.
fn setup_root(keys: &str) -> Result<()> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !passwd.lines().any(|l| l.starts_with("root:")) {
        // A locked password (`*`): public keys only, whatever dropbear's options.
        std::fs::write(
            "/etc/passwd",
            format!("{passwd}root:x:0:0:root:/root:/bin/sh\n"),
        )
        .context("writing /etc/passwd")?;
        let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
        write_mode(
            "/etc/shadow",
            format!("{shadow}root:*:19000:0:99999:7:::\n").as_bytes(),
            0o600,
        )?;
    }
    if !Path::new("/etc/group").exists() {
        std::fs::write("/etc/group", "root:x:0:\n")?;
    }
    std::fs::create_dir_all("/root/.ssh")?;
    std::fs::set_permissions("/root", std::fs::Permissions::from_mode(0o700))?;
    std::fs::set_permissions("/root/.ssh", std::fs::Permissions::from_mode(0o700))?;
    write_mode("/root/.ssh/authorized_keys", keys.as_bytes(), 0o600)?;
    // Interactive sessions need pseudo-terminals.
    std::fs::create_dir_all("/dev/pts")?;
    let _ = rustix::mount::mount(
        "devpts",
        "/dev/pts",
        "devpts",
        rustix::mount::MountFlags::empty(),
        None,
    );
    // `anemos follow` / `anemos ctl` in sessions: this binary is /init.
    for dir in ["/bin", "/usr/bin"] {
        let link = format!("{dir}/anemos");
        if Path::new(dir).is_dir() && !Path::new(&link).exists() {
            let _ = std::os::unix::fs::symlink("/init", &link);
        }
    }
    Ok(())
}

/// The `ssh` stage.
pub(super) fn stage(ctx: &mut super::Ctx) -> Result<()> {
    if !requested() {
        log::info!("ssh: no access bundle (anemos deploy adds one): no ssh server; this deploy shows on the console only");
        return Ok(());
    }
    if !ctx.network_up {
        log::warn!("ssh: the deploy image has no network: no ssh server, the deploy runs unwatched (a failure is reported after the old system is back)");
        return Ok(());
    }
    let Some(dropbear) = DROPBEAR_PATHS.iter().find(|p| Path::new(p).is_file()) else {
        log::warn!("ssh: the tools root has no dropbear ({}): no ssh server, the deploy runs unwatched; add it with `anemos pack --binary /usr/sbin/dropbear`", DROPBEAR_PATHS.join(", "));
        return Ok(());
    };
    if !Path::new("/bin/sh").exists() {
        log::warn!("ssh: the tools root has no /bin/sh, which dropbear runs every session with: no ssh server, the deploy runs unwatched");
        return Ok(());
    }
    let keys_text = std::fs::read_to_string(bundle::AUTHORIZED)?;
    let keys = crate::remote::keys::parse_authorized(&keys_text, bundle::AUTHORIZED)
        .map_err(|e| anyhow::anyhow!(e))?;
    let host_pub = std::fs::read_to_string(bundle::HOST_PUB)
        .ok()
        .and_then(|t| crate::remote::keys::parse_public_key(t.trim()).ok())
        .map(|k| k.fingerprint())
        .unwrap_or_else(|| "(unknown)".into());
    setup_root(&keys_text)?;
    let log = std::fs::File::create(SSHD_LOG).with_context(|| format!("creating {SSHD_LOG}"))?;
    let mut cmd = Command::new(dropbear);
    cmd.args(dropbear_args(bundle::HOST_KEY))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {dropbear}"))?;
    let t = Instant::now();
    loop {
        let tables: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        if listening(&tables, 22) {
            break;
        }
        if t.elapsed() > Duration::from_secs(5) {
            let out = std::fs::read_to_string(SSHD_LOG).unwrap_or_default();
            bail!(
                "{dropbear} (pid {}) is not listening on port 22 after 5 s: {}",
                child.id(),
                out.trim()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ctx.sshd_up = true;
    log::info!(
        "ssh: {dropbear} listening on port 22 (pid {}): host key {host_pub} (this deploy's), {} operator key(s), password logins off",
        child.id(),
        keys.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropbear_refuses_passwords_and_forwarding() {
        let a = dropbear_args("/k");
        for f in ["-s", "-j", "-k", "-F"] {
            assert!(a.contains(&f.to_string()), "{f} missing from {a:?}");
        }
        assert!(a.windows(2).any(|w| w == ["-r", "/k"]));
        assert!(a.windows(2).any(|w| w == ["-p", "22"]));
    }

    #[test]
    fn listening_reads_proc_net_tcp() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0F02000A:0016 0202000A:D2C4 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n".to_string();
        assert!(listening(std::slice::from_ref(&t), 22));
        assert!(!listening(std::slice::from_ref(&t), 80));
        // An established connection from port 22 alone is not a listener.
        let only_est = t
            .lines()
            .take(1)
            .chain(t.lines().skip(2))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!listening(&[only_est], 22));
    }
}
