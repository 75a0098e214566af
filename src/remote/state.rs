//! What the deploy image tells a watcher, and what a watcher may ask of it.
//!
//! The init keeps `/run/anemos/state` (one JSON object, replaced atomically) current: the
//! running stage, and at the end the result, the error, whether disks were written and what it
//! does next. `anemos follow` (run over ssh in the deploy image) streams the log and ends with
//! that state. A watcher asks for something by writing one word to `/run/anemos/control`
//! (`anemos ctl`): the init polls it while it holds after a failure and in its recovery
//! console. Encoding and decisions here are pure; the file access is two small functions.

use serde::{Deserialize, Serialize};

pub const STATE_PATH: &str = "/run/anemos/state";
pub const CONTROL_PATH: &str = "/run/anemos/control";
pub const LOG_PATH: &str = "/run/anemos/log";

/// Where the deploy is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub deploy_id: Option<String>,
    /// The stage running, or the last one.
    pub stage: String,
    /// `running`, `failed` or `done`.
    pub status: String,
    /// The error chain of a failure.
    #[serde(default)]
    pub error: Vec<String>,
    /// Whether any disk had been written when it failed.
    #[serde(default)]
    pub disks_written: bool,
    /// What the deploy image does next: `hold`, `reboot`, `poweroff`, `console`, `kexec`.
    #[serde(default)]
    pub next: String,
    /// For `hold`: seconds it waits for a watcher before rebooting.
    #[serde(default)]
    pub hold_s: u64,
}

impl State {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<State, String> {
        serde_json::from_str(text.trim()).map_err(|e| format!("deploy image state: {e}"))
    }

    pub fn finished(&self) -> bool {
        self.status != "running"
    }
}

/// A watcher's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// End a hold now: reboot into the old system.
    Release,
    Reboot,
    Poweroff,
    /// Leave the console and go on (after `anemos.break`).
    Continue,
    /// Run the stages again, from the failed one or the one named.
    Retry(Option<String>),
}

impl Control {
    pub fn parse(text: &str) -> Result<Control, String> {
        let w: Vec<&str> = text.split_whitespace().collect();
        Ok(match w.as_slice() {
            ["release"] => Control::Release,
            ["reboot"] => Control::Reboot,
            ["poweroff"] => Control::Poweroff,
            ["continue"] => Control::Continue,
            ["retry"] => Control::Retry(None),
            ["retry", s] => Control::Retry(Some(s.to_string())),
            _ => {
                return Err(format!(
                    "{:?}: expected release, reboot, poweroff, continue, retry or retry STAGE",
                    text.trim()
                ))
            }
        })
    }

    pub fn word(&self) -> String {
        match self {
            Control::Release => "release".into(),
            Control::Reboot => "reboot".into(),
            Control::Poweroff => "poweroff".into(),
            Control::Continue => "continue".into(),
            Control::Retry(None) => "retry".into(),
            Control::Retry(Some(s)) => format!("retry {s}"),
        }
    }
}

/// The longest hold the init accepts (`anemos.hold=`): a failed deploy must not keep a server
/// away from its old system for long because nobody watches.
pub const MAX_HOLD_S: u64 = 1800;

/// What `anemos deploy` needs between the failure and its own timeout: the deploy image's
/// boot and the old system's boot, which take well under this on real hardware.
pub const HOLD_MARGIN_S: u64 = 120;

/// Checks `anemos deploy --hold` against `--timeout`: the deploy image must give up holding
/// (and the old system come back) before the workstation stops waiting. Pure.
pub fn check_hold(hold_s: u64, timeout_s: u64) -> Result<(), String> {
    if hold_s > MAX_HOLD_S {
        return Err(format!(
            "--hold {hold_s}: at most {MAX_HOLD_S} s (a failed deploy keeps the server from its old system while it holds)"
        ));
    }
    if hold_s + HOLD_MARGIN_S > timeout_s {
        return Err(format!(
            "--hold {hold_s} with --timeout {timeout_s}: the timeout must exceed the hold by at least {HOLD_MARGIN_S} s (the deploy image's boot and the old system's), so anemos deploy is still waiting when the old system is back; raise --timeout to {} or lower --hold",
            hold_s + HOLD_MARGIN_S
        ));
    }
    Ok(())
}

/// Whether the init holds after a failure, and for how long: only when nothing was written
/// (the old system is intact and rebooting is the plan), a watcher could be connected (the ssh
/// server runs) and a hold was asked for. Pure.
pub fn hold_for(reboot_planned: bool, disks_written: bool, sshd_up: bool, hold_s: u64) -> u64 {
    if reboot_planned && !disks_written && sshd_up {
        hold_s.min(MAX_HOLD_S)
    } else {
        0
    }
}

/// Seconds left of a hold that began `elapsed_s` ago. Pure.
pub fn hold_left(hold_s: u64, elapsed_s: u64) -> u64 {
    hold_s.saturating_sub(elapsed_s)
}

/// Replaces the state file (write + rename, so `anemos follow` never reads half of it).
pub fn write(st: &State) {
    let tmp = format!("{STATE_PATH}.tmp");
    if std::fs::write(&tmp, st.encode() + "\n").is_ok() {
        let _ = std::fs::rename(&tmp, STATE_PATH);
    }
}

/// Takes a pending request (removing it), if any. An unreadable request is logged and dropped.
pub fn take_control() -> Option<Control> {
    let text = std::fs::read_to_string(CONTROL_PATH).ok()?;
    let _ = std::fs::remove_file(CONTROL_PATH);
    match Control::parse(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            log::warn!("ignoring a request in {CONTROL_PATH}: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_tells_when_it_is_over() {
        let st = State {
            deploy_id: Some("anemos-1-ab".into()),
            stage: "plan".into(),
            status: "failed".into(),
            error: vec!["disk \"system\" matches nothing".into()],
            disks_written: false,
            next: "hold".into(),
            hold_s: 120,
        };
        let back = State::decode(&st.encode()).unwrap();
        assert_eq!(back, st);
        assert!(back.finished());
        let running =
            State::decode(r#"{"deploy_id":null,"stage":"mkfs","status":"running"}"#).unwrap();
        assert!(!running.finished() && running.error.is_empty());
        assert!(State::decode("{")
            .unwrap_err()
            .contains("deploy image state"));
    }

    #[test]
    fn controls_parse_and_print() {
        for w in [
            "release",
            "reboot",
            "poweroff",
            "continue",
            "retry",
            "retry mkfs",
        ] {
            assert_eq!(Control::parse(w).unwrap().word(), w);
        }
        assert_eq!(
            Control::parse(" retry  plan\n").unwrap(),
            Control::Retry(Some("plan".into()))
        );
        assert!(Control::parse("rm -rf /")
            .unwrap_err()
            .contains("expected release"));
        assert!(Control::parse("").is_err());
    }

    #[test]
    fn hold_must_end_before_the_workstation_gives_up() {
        assert!(check_hold(120, 900).is_ok());
        assert!(check_hold(0, 120).is_ok());
        assert!(check_hold(780, 900).is_ok());
        let e = check_hold(800, 900).unwrap_err();
        assert!(e.contains("raise --timeout to 920"), "{e}");
        assert!(check_hold(MAX_HOLD_S + 1, 100_000)
            .unwrap_err()
            .contains("at most 1800"));
    }

    #[test]
    fn the_init_holds_only_before_writes_with_a_reachable_watcher() {
        assert_eq!(hold_for(true, false, true, 120), 120);
        // Disks written: the recovery console, never a hold then reboot.
        assert_eq!(hold_for(true, true, true, 120), 0);
        // No ssh server: nobody can end the hold or read the report; reboot at once.
        assert_eq!(hold_for(true, false, false, 120), 0);
        // The policy is not reboot (poweroff, console): no hold.
        assert_eq!(hold_for(false, false, true, 120), 0);
        assert_eq!(hold_for(true, false, true, 99_999), MAX_HOLD_S);
        assert_eq!(hold_left(120, 30), 90);
        assert_eq!(hold_left(120, 500), 0);
    }
}
