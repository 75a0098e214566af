//! Commands run inside the deploy image, over its ssh server (or on its console):
//! - `anemos follow`: the deploy's log from its start, then live, ending with the deploy's
//!   state once it has finished (failed or done) — what `anemos deploy` reads to watch;
//! - `anemos ctl WORD`: a request to the init (end a hold, reboot, retry, ...).
//!
//! Output of `follow`, one line each: `log <log line>` and, last, `state <JSON>` (the
//! [`crate::remote::state::State`]).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::remote::state::{self, Control, State};

#[derive(Debug, clap::Args)]
pub struct FollowArgs {
    /// Print the log so far and the state, then stop (do not wait for the end).
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// release (end a hold: reboot into the old system now), reboot, poweroff, continue
    /// (after anemos.break), retry [STAGE].
    #[arg(required = true, num_args = 1..=2, value_name = "WORD")]
    pub words: Vec<String>,
}

fn read_state() -> Option<State> {
    State::decode(&std::fs::read_to_string(state::STATE_PATH).ok()?).ok()
}

/// The complete lines in `buf` (consumed), leaving a partial last line in it. Pure.
pub fn take_lines(buf: &mut String) -> Vec<String> {
    let Some(end) = buf.rfind('\n') else {
        return Vec::new();
    };
    let rest = buf.split_off(end + 1);
    let lines = buf.lines().map(str::to_string).collect();
    *buf = rest;
    lines
}

pub fn follow(a: FollowArgs) -> Result<()> {
    let mut f = std::fs::File::open(state::LOG_PATH).with_context(|| {
        format!(
            "{}: not in a deploy image (anemos follow runs there, over its ssh server)",
            state::LOG_PATH
        )
    })?;
    let mut out = std::io::stdout().lock();
    let mut buf = String::new();
    let mut chunk = Vec::new();
    loop {
        chunk.clear();
        f.read_to_end(&mut chunk)?;
        let grew = !chunk.is_empty();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        for l in take_lines(&mut buf) {
            writeln!(out, "log {l}")?;
        }
        out.flush()?;
        let st = read_state();
        // The state is read after the log: a final state seen with nothing new in the log
        // means every line of the deploy was printed.
        if a.once || (!grew && st.as_ref().is_some_and(State::finished)) {
            if let Some(st) = st {
                writeln!(out, "state {}", st.encode())?;
            }
            out.flush()?;
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn ctl(a: CtlArgs) -> Result<()> {
    let c = Control::parse(&a.words.join(" ")).map_err(|e| anyhow::anyhow!(e))?;
    if !std::path::Path::new(state::LOG_PATH).exists() {
        bail!("not in a deploy image (no {})", state::LOG_PATH);
    }
    std::fs::write(state::CONTROL_PATH, c.word() + "\n")
        .with_context(|| format!("writing {}", state::CONTROL_PATH))?;
    let st = read_state();
    eprintln!(
        "anemos ctl: asked the init to {} ({}; it acts within a second while it holds or waits in its console)",
        c.word(),
        st.map(|s| format!("deploy {} in stage {}", s.status, s.stage))
            .unwrap_or_else(|| "state unknown".into())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_taken_whole() {
        let mut b = "a\nb\npart".to_string();
        assert_eq!(take_lines(&mut b), ["a", "b"]);
        assert_eq!(b, "part");
        assert!(take_lines(&mut b).is_empty());
        b.push_str("ial\n");
        assert_eq!(take_lines(&mut b), ["partial"]);
        assert_eq!(b, "");
    }
}
