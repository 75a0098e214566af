//! The init's logger: the `log` facade to the console, `/dev/kmsg` and `/run/anemos/log`.
//!
//! - Console: plain lines (`anemos: ...`, warnings and errors marked); debug lines only with
//!   `anemos.debug`. `STAGE <name> begin|ok|fail` lines are printed bare so harnesses and
//!   operators can grep them.
//! - /dev/kmsg: `<prio>anemos: msg`, added once devtmpfs is mounted ([`attach_kmsg`]); lines are
//!   trimmed below the kernel's record limit. We write `on` to printk_devkmsg so bursts are not
//!   rate-limited (measured without it: 8 of 40 lines of a burst survived).
//! - /run/anemos/log: every line, for the report and the recovery console's `log` command.
//! - A ring of the last lines, shown in the failure banner.
//!
//! Written in-tree instead of using kernlog: kernlog cannot start on the console and switch to
//! kmsg later (the logger is set once) and maps levels one step off.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};

const KMSG_MAX: usize = 900;
const RING: usize = 200;

struct State {
    kmsg: Option<File>,
    file: Option<File>,
    ring: VecDeque<String>,
    pending: Vec<String>,
}

pub struct InitLogger {
    debug_console: std::sync::atomic::AtomicBool,
    start: Instant,
    state: Mutex<State>,
}

static LOGGER: std::sync::OnceLock<InitLogger> = std::sync::OnceLock::new();

/// Installs the logger (console only until [`attach_kmsg`]/[`attach_file`]).
pub fn init(start: Instant) {
    let l = LOGGER.get_or_init(|| InitLogger {
        debug_console: std::sync::atomic::AtomicBool::new(false),
        start,
        state: Mutex::new(State {
            kmsg: None,
            file: None,
            ring: VecDeque::new(),
            pending: Vec::new(),
        }),
    });
    if log::set_logger(l).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
}

fn logger() -> Option<&'static InitLogger> {
    LOGGER.get()
}

/// Shows debug lines on the console (`anemos.debug`).
pub fn set_debug(on: bool) {
    if let Some(l) = logger() {
        l.debug_console
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Starts writing to /dev/kmsg (after devtmpfs is mounted) and disables kmsg rate limiting.
pub fn attach_kmsg() {
    let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    if let (Some(l), Ok(f)) = (logger(), OpenOptions::new().write(true).open("/dev/kmsg")) {
        if let Ok(mut st) = l.state.lock() {
            st.kmsg = Some(f);
        }
    }
}

/// Starts appending to `path` (e.g. /run/anemos/log), replaying earlier lines.
pub fn attach_file(path: &str) {
    let Some(l) = logger() else { return };
    if let Some(dir) = std::path::Path::new(path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        if let Ok(mut st) = l.state.lock() {
            for line in st.pending.drain(..) {
                let _ = writeln!(f, "{line}");
            }
            st.file = Some(f);
        }
    }
}

/// The last `n` log lines (for the failure banner).
pub fn tail(n: usize) -> Vec<String> {
    let Some(l) = logger() else { return Vec::new() };
    let Ok(st) = l.state.lock() else {
        return Vec::new();
    };
    st.ring.iter().rev().take(n).rev().cloned().collect()
}

/// Milliseconds since the init started.
pub fn elapsed_ms() -> u128 {
    logger().map(|l| l.start.elapsed().as_millis()).unwrap_or(0)
}

/// Writes a line to the console only (banners, prompts), bypassing the log.
pub fn console(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}

fn prio(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for InitLogger {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let msg = record.args().to_string();
        let level = record.level();
        let stage_line = msg.starts_with("STAGE ");
        let console_line = match level {
            _ if stage_line => msg.clone(),
            Level::Error => format!("anemos: error: {msg}"),
            Level::Warn => format!("anemos: warning: {msg}"),
            _ => format!("anemos: {msg}"),
        };
        let show = level <= Level::Info
            || self
                .debug_console
                .load(std::sync::atomic::Ordering::Relaxed);
        if show {
            console(&console_line);
        }
        let stamped = format!(
            "[{:>7} ms] {}",
            self.start.elapsed().as_millis(),
            console_line
        );
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(k) = st.kmsg.as_mut() {
            let mut body = format!("<{}>anemos: {}", prio(level), msg);
            if body.len() > KMSG_MAX {
                let mut cut = KMSG_MAX;
                while !body.is_char_boundary(cut) {
                    cut -= 1;
                }
                body.truncate(cut);
            }
            let _ = k.write_all(body.as_bytes());
        }
        match st.file.as_mut() {
            Some(f) => {
                let _ = writeln!(f, "{stamped}");
            }
            None => st.pending.push(stamped.clone()),
        }
        if st.ring.len() == RING {
            st.ring.pop_front();
        }
        st.ring.push_back(console_line);
    }

    fn flush(&self) {}
}
