//! The kernel command line's `anemos.*` parameters (see docs/init.md for the reference).
//!
//! Parsing is pure: the caller reads /proc/cmdline and passes the string.

use std::time::Duration;

/// What to do when a stage fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Shell,
    Reboot,
    Poweroff,
}

impl OnFailure {
    pub fn parse(s: &str) -> Option<OnFailure> {
        match s {
            "shell" => Some(OnFailure::Shell),
            "reboot" => Some(OnFailure::Reboot),
            "poweroff" => Some(OnFailure::Poweroff),
            _ => None,
        }
    }
}

/// Parsed `anemos.*` parameters plus the few kernel ones the init honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// `anemos.debug`: debug-level logging on the console.
    pub debug: bool,
    /// `anemos.break=<stage>`: stop before that stage with a console; leaving it continues.
    pub break_at: Option<String>,
    /// `anemos.on_failure=shell|reboot|poweroff`: overrides the default policy.
    pub on_failure: Option<OnFailure>,
    /// `anemos.dry_run`: do everything non-destructive, print the plan, stop.
    pub dry_run: bool,
    /// `anemos.timeout=<s>`: bound for device waits (default 30).
    pub timeout: Duration,
    /// `anemos.countdown=<s>`: seconds before an automatic reboot/poweroff (default 10).
    pub countdown: u64,
    /// `anemos.keep_on_failure`: do not clear a half-written partition table (debugging).
    pub keep_on_failure: bool,
    /// `anemos.test_panic=<stage>`: TEST ONLY, panic at the start of that stage.
    pub test_panic: Option<String>,
    /// `modprobe.blacklist=a,b`: modules never loaded.
    pub blacklist: Vec<String>,
    /// `ip=` words, parsed, for the network stage.
    pub ip: Vec<crate::net::IpParam>,
    /// `nameserver=` words, parsed.
    pub nameservers: Vec<std::net::IpAddr>,
    /// A malformed `ip=`/`nameserver=`: the network stage fails with it (before any write)
    /// rather than deploying with a network the operator did not ask for.
    pub net_errors: Vec<String>,
    /// Warnings to log once logging is up (unknown `anemos.*` keys, bad values).
    pub warnings: Vec<String>,
    /// `anemos.deploy_id=<id>`: this deploy's ID (from `anemos kexec`/`anemos deploy`),
    /// written into the deployed system so the workstation can tell it from the old one.
    pub deploy_id: Option<String>,
    /// `anemos.hold=<s>`: after a failure before any write, with the ssh server up, wait this
    /// long for a watcher (`anemos ctl release` ends it) before rebooting (default 0).
    pub hold: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            debug: false,
            break_at: None,
            on_failure: None,
            dry_run: false,
            timeout: Duration::from_secs(30),
            countdown: 10,
            keep_on_failure: false,
            test_panic: None,
            blacklist: Vec::new(),
            ip: Vec::new(),
            nameservers: Vec::new(),
            net_errors: Vec::new(),
            warnings: Vec::new(),
            deploy_id: None,
            hold: 0,
        }
    }
}

use crate::kcmdline::split_words;

fn flag(v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("1") | Some("yes") | Some("true") | Some("on") => Ok(true),
        Some("0") | Some("no") | Some("false") | Some("off") => Ok(false),
        Some(o) => Err(format!(
            "expected 1/0, yes/no, true/false or on/off, got {o:?}"
        )),
    }
}

/// Parses the `anemos.*` (and `modprobe.blacklist`) words of a kernel command line.
pub fn parse(cmdline: &str) -> Params {
    let mut p = Params::default();
    for word in split_words(cmdline) {
        let (key, val) = match word.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (word.clone(), None),
        };
        match (key.as_str(), val.as_deref()) {
            ("ip", Some(v)) => {
                match crate::net::parse_ip_param(v) {
                    Ok(ip) => p.ip.push(ip),
                    Err(e) => p.net_errors.push(format!("kernel command line: {e}")),
                }
                continue;
            }
            ("nameserver", Some(v)) => {
                match crate::net::parse_nameserver(v) {
                    Ok(a) => p.nameservers.push(a),
                    Err(e) => p.net_errors.push(format!("kernel command line: {e}")),
                }
                continue;
            }
            _ => {}
        }
        if key == "modprobe.blacklist" {
            if let Some(v) = &val {
                p.blacklist.extend(
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.replace('-', "_")),
                );
            }
            continue;
        }
        let Some(name) = key.strip_prefix("anemos.") else {
            continue;
        };
        let v = val.as_deref();
        let r: Result<(), String> = match name {
            "debug" => flag(v).map(|b| p.debug = b),
            "dry_run" => flag(v).map(|b| p.dry_run = b),
            "keep_on_failure" => flag(v).map(|b| p.keep_on_failure = b),
            "break" => need(v).map(|s| p.break_at = Some(s.to_string())),
            "test_panic" => need(v).map(|s| p.test_panic = Some(s.to_string())),
            "on_failure" => need(v).and_then(|s| {
                OnFailure::parse(s)
                    .map(|f| p.on_failure = Some(f))
                    .ok_or_else(|| format!("expected shell, reboot or poweroff, got {s:?}"))
            }),
            "timeout" => need(v).and_then(|s| {
                s.parse::<u64>()
                    .map(|n| p.timeout = Duration::from_secs(n))
                    .map_err(|_| format!("expected seconds, got {s:?}"))
            }),
            "deploy_id" => need(v).and_then(|s| {
                crate::deploy_id::check(s).map(|()| p.deploy_id = Some(s.to_string()))
            }),
            "hold" => need(v).and_then(|s| match s.parse::<u64>() {
                Ok(n) if n <= crate::remote::state::MAX_HOLD_S => {
                    p.hold = n;
                    Ok(())
                }
                _ => Err(format!(
                    "expected seconds up to {}, got {s:?}",
                    crate::remote::state::MAX_HOLD_S
                )),
            }),
            "countdown" => need(v).and_then(|s| {
                s.parse::<u64>()
                    .map(|n| p.countdown = n)
                    .map_err(|_| format!("expected seconds, got {s:?}"))
            }),
            _ => {
                p.warnings.push(format!("unknown kernel parameter {word:?} ignored (see docs/init.md for anemos.* parameters)"));
                continue;
            }
        };
        if let Err(e) = r {
            p.warnings
                .push(format!("kernel parameter {word:?} ignored: {e}"));
        }
    }
    p
}

fn need(v: Option<&str>) -> Result<&str, String> {
    match v {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err("a value is required".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_parameter() {
        let p = parse(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 anemos.debug anemos.break=payload anemos.on_failure=poweroff \
             anemos.dry_run=1 anemos.timeout=5 anemos.countdown=0 anemos.keep_on_failure anemos.test_panic=modules \
             modprobe.blacklist=floppy,pcspkr-x anemos.deploy_id=anemos-1-ab12 anemos.hold=120",
        );
        assert!(p.debug && p.dry_run && p.keep_on_failure);
        assert_eq!(p.deploy_id.as_deref(), Some("anemos-1-ab12"));
        assert_eq!(p.hold, 120);
        assert_eq!(p.break_at.as_deref(), Some("payload"));
        assert_eq!(p.on_failure, Some(OnFailure::Poweroff));
        assert_eq!(p.timeout, Duration::from_secs(5));
        assert_eq!(p.countdown, 0);
        assert_eq!(p.test_panic.as_deref(), Some("modules"));
        assert_eq!(p.blacklist, ["floppy", "pcspkr_x"]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn defaults_without_parameters() {
        let p = parse("quiet root=/dev/vda1");
        assert_eq!(p, Params::default());
    }

    #[test]
    fn unknown_and_bad_values_become_warnings() {
        let p = parse("anemos.colour=blue anemos.timeout=soon anemos.on_failure=explode anemos.break anemos.debug=maybe anemos.deploy_id=a;b anemos.hold=99999");
        assert_eq!(p.warnings.len(), 7, "{:?}", p.warnings);
        assert!(p.warnings[5].contains("not allowed in a deploy ID"));
        assert!(p.warnings[6].contains("expected seconds up to 1800"));
        assert_eq!(p.hold, 0);
        assert_eq!(p.deploy_id, None);
        assert!(p.warnings[0].contains("unknown kernel parameter \"anemos.colour=blue\""));
        assert!(p.warnings[1].contains("expected seconds, got \"soon\""));
        assert!(p.warnings[2].contains("expected shell, reboot or poweroff"));
        assert!(p.warnings[3].contains("a value is required"));
        assert!(p.warnings[4].contains("expected 1/0"));
        assert_eq!(
            p.timeout,
            Duration::from_secs(30),
            "bad value keeps the default"
        );
        assert!(!p.debug);
    }

    #[test]
    fn last_value_wins_and_flags_can_be_turned_off() {
        let p = parse("anemos.debug anemos.debug=0 anemos.break=a anemos.break=b");
        assert!(!p.debug);
        assert_eq!(p.break_at.as_deref(), Some("b"));
    }

    #[test]
    fn network_words_are_parsed_once_for_the_stages() {
        let p = parse("ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off nameserver=10.0.2.3");
        assert_eq!(p.ip.len(), 1);
        assert_eq!(
            p.nameservers,
            ["10.0.2.3".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(p.net_errors.is_empty());
        let p = parse("ip=10.0.2.300::: nameserver=nope");
        assert_eq!(p.net_errors.len(), 2, "{:?}", p.net_errors);
        assert!(p.net_errors[0].starts_with("kernel command line: "));
    }
}
