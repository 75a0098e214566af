//! The failure policy and the recovery console.
//!
//! On failure: a banner (stage, error chain, last log lines, whether disks were written), then
//! - `shell`: `/bin/sh` from the tools root when present, then the built-in console (which is
//!   also used alone when there is no tools root), so an image without tools is debuggable;
//! - `reboot` / `poweroff`: after a visible countdown that Enter interrupts into the console.
//!
//! Before the first destructive write the default is `reboot`: the old system is untouched,
//! so rebooting brings the server back. After it, the default is `shell`.

use std::io::{BufRead, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::cmdline::OnFailure;
use super::logger::console;
use super::pid1::{self, PowerRequest};
use crate::remote::state::{take_control, Control};

/// What the operator chose in the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave the console and go on (after a break) or retry from a stage.
    Continue,
    Retry(Option<String>),
    Power(PowerRequest),
}

/// The policy that applies: the cmdline override, else reboot before destruction, shell after.
pub fn policy(over: Option<OnFailure>, destructive_started: bool) -> OnFailure {
    over.unwrap_or(if destructive_started {
        OnFailure::Shell
    } else {
        OnFailure::Reboot
    })
}

/// Renders the failure banner (pure, for tests).
pub fn banner(
    stage: &str,
    chain: &[String],
    tail: &[String],
    destructive_started: bool,
    policy: OnFailure,
) -> String {
    let mut s = String::new();
    s.push_str("\n================ anemos: deploy FAILED ================\n");
    s.push_str(&format!("stage:  {stage}\n"));
    for (i, e) in chain.iter().enumerate() {
        s.push_str(&format!(
            "{}{e}\n",
            if i == 0 { "error:  " } else { "cause:  " }
        ));
    }
    s.push_str(if destructive_started {
        "disks:  writing HAD STARTED; the machine may not boot its old system\n"
    } else {
        "disks:  nothing was written; the old system is intact\n"
    });
    s.push_str(&format!(
        "policy: {}\n",
        match policy {
            OnFailure::Shell => "recovery console",
            OnFailure::Reboot => "reboot",
            OnFailure::Poweroff => "power off",
        }
    ));
    s.push_str(&format!("last {} log lines:\n", tail.len()));
    for l in tail {
        s.push_str(&format!("  | {l}\n"));
    }
    s.push_str("=======================================================");
    s
}

/// Waits up to one second for console input: Some(true) when there is some, Some(false)
/// when not, None when the console cannot be polled (then it has slept the second).
fn stdin_ready_within_1s() -> Option<bool> {
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(n) => Some(n > 0),
        Err(_) => {
            std::thread::sleep(Duration::from_secs(1));
            None
        }
    }
}

/// Waits up to one second for a line on the console; true when Enter was pressed.
fn console_line_within_1s() -> bool {
    if stdin_ready_within_1s() != Some(true) {
        return false;
    }
    let mut line = String::new();
    // EOF (no console input at all) reads 0 bytes: not a key press.
    matches!(std::io::stdin().lock().read_line(&mut line), Ok(n) if n > 0)
}

/// What a watcher's request means here.
fn control_action(c: Control) -> Action {
    if matches!(c, Control::Release | Control::Reboot | Control::Poweroff) {
        // The request came over ssh (`anemos ctl`): give that session a moment to deliver its
        // exit status and close before the power request takes the network down, so the
        // watcher sees its request succeed rather than a dropped connection.
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    match c {
        Control::Release | Control::Reboot => Action::Power(PowerRequest::Reboot),
        Control::Poweroff => Action::Power(PowerRequest::Poweroff),
        Control::Continue => Action::Continue,
        Control::Retry(s) => Action::Retry(s),
    }
}

/// Counts down; Enter opens the console, a watcher's request (`anemos ctl`) is obeyed.
fn countdown(what: &str, secs: u64, stages: &[&str]) -> Option<Action> {
    for left in (1..=secs).rev() {
        console(&format!(
            "anemos: {what} in {left} s (press Enter for the recovery console)"
        ));
        if console_line_within_1s() {
            return Some(console_loop(stages, true));
        }
        if let Some(c) = take_control() {
            return Some(control_action(c));
        }
    }
    None
}

/// Holds after a failure before any write, so a watcher over ssh can read the report: until
/// `anemos ctl release` (or another request), Enter on the console, or `secs` have passed.
fn hold(secs: u64, stages: &[&str]) -> Action {
    log::info!("holding {secs} s for a watcher (anemos ctl release ends it), then rebooting into the old system");
    let start = std::time::Instant::now();
    loop {
        let left = crate::remote::state::hold_left(secs, start.elapsed().as_secs());
        if left == 0 {
            log::info!("hold over: rebooting");
            return Action::Power(PowerRequest::Reboot);
        }
        if left.is_multiple_of(15) {
            console(&format!(
                "anemos: holding for a watcher: rebooting in {left} s (press Enter for the recovery console)"
            ));
        }
        if console_line_within_1s() {
            return console_loop(stages, true);
        }
        if let Some(c) = take_control() {
            log::info!("watcher asked: {}", c.word());
            return control_action(c);
        }
    }
}

/// Applies the policy after a failure. Returns only when the operator asks to retry.
pub fn on_failure(
    policy: OnFailure,
    countdown_secs: u64,
    hold_secs: u64,
    stages: &[&str],
) -> Action {
    let req = match policy {
        OnFailure::Shell => return console_loop(stages, true),
        OnFailure::Reboot => PowerRequest::Reboot,
        OnFailure::Poweroff => PowerRequest::Poweroff,
    };
    if hold_secs > 0 {
        return match hold(hold_secs, stages) {
            Action::Power(p) => pid1::power(p),
            a => a,
        };
    }
    let what = if req == PowerRequest::Reboot {
        "rebooting"
    } else {
        "powering off"
    };
    if let Some(a) = countdown(what, countdown_secs, stages) {
        if let Action::Power(p) = a {
            pid1::power(p)
        }
        return a;
    }
    log::info!("{what}");
    pid1::power(req)
}

/// Runs `/bin/sh` on the console if the image has one, until it exits or a watcher sends a
/// request (which then ends it). Returns false when there is none.
pub fn run_tools_shell() -> (bool, Option<Action>) {
    if !Path::new("/bin/sh").exists() {
        return (false, None);
    }
    console("anemos: starting /bin/sh; `exit` returns to the anemos console (retry, reboot, poweroff, continue)");
    let mut cmd = Command::new("/bin/sh");
    cmd.env("PS1", "anemos-recovery# ").env("ENV", "");
    let mut child = match crate::cmd::spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            log::error!("starting /bin/sh: {e}");
            return (true, None);
        }
    };
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            let _ = crate::cmd::wait(&mut child);
            return (true, None);
        }
        if let Some(c) = take_control() {
            log::info!("watcher asked: {}; ending the console shell", c.word());
            let _ = child.kill();
            let _ = crate::cmd::wait(&mut child);
            return (true, Some(control_action(c)));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The console used for breaks and failures: tools shell first (if any), then built-in. A
/// watcher's request (`anemos ctl` over ssh) is obeyed at any time.
pub fn console_loop(stages: &[&str], failed: bool) -> Action {
    if let (_, Some(a)) = run_tools_shell() {
        return a;
    }
    console(&format!(
        "anemos console: {}; type `help` for commands",
        if failed {
            "the deploy failed"
        } else {
            "boot is paused"
        }
    ));
    let stdin = std::io::stdin();
    let mut prompt = true;
    loop {
        if prompt {
            let mut e = std::io::stderr();
            let _ = write!(e, "anemos> ");
            let _ = e.flush();
            prompt = false;
        }
        if let Some(c) = take_control() {
            log::info!("watcher asked: {}", c.word());
            return control_action(c);
        }
        if stdin_ready_within_1s() != Some(true) {
            continue;
        }
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) => {
                // No console input at all (EOF): do not spin; wait and retry.
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            Err(_) => continue,
            Ok(_) => prompt = true,
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(a) = super::shell::run_builtin(&words, stages, failed) {
            return a;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_depends_on_destruction() {
        assert_eq!(policy(None, false), OnFailure::Reboot);
        assert_eq!(policy(None, true), OnFailure::Shell);
        assert_eq!(policy(Some(OnFailure::Poweroff), true), OnFailure::Poweroff);
    }

    #[test]
    fn banner_names_stage_chain_and_disk_state() {
        let b = banner(
            "payload",
            &["verifying the payload".into(), "sha256 mismatch".into()],
            &["l1".into(), "l2".into()],
            false,
            OnFailure::Reboot,
        );
        assert!(b.contains("stage:  payload"));
        assert!(b.contains("error:  verifying the payload\ncause:  sha256 mismatch"));
        assert!(b.contains("nothing was written"));
        assert!(b.contains("policy: reboot"));
        assert!(b.contains("last 2 log lines:\n  | l1\n  | l2"));
        let b = banner("disks", &["x".into()], &[], true, OnFailure::Shell);
        assert!(b.contains("writing HAD STARTED") && b.contains("recovery console"));
    }
}
