//! The failure report a deploy image leaves for the operator when it gives up: which stage
//! failed, why, whether any disk was written, and the last log lines. Pure: encoding to a small
//! text form that fits an EFI variable (see `crate::efivar`) and decoding it back.
//!
//! The text form, one `key: value` per line, values on one line each:
//!
//! ```text
//! anemos-failure-report 1
//! deploy_id: anemos-1700000000-ab12
//! stage: devices
//! time: 1700000000
//! disks_written: no
//! error: no disk matches rule "system"
//! error: ...
//! omitted: 3
//! log: ...
//! end
//! ```
//!
//! The encoded form never exceeds [`CAP`] bytes: the oldest log lines are dropped first, then
//! the later error lines; the stage and the first error line are always kept (cut short if
//! they alone are too long). `omitted` counts the lines dropped. `end` marks a complete report,
//! so a variable cut short by the firmware is told apart from a report.

use serde::{Deserialize, Serialize};

/// The largest encoded report, in bytes (the EFI variable's data, without its 4-byte
/// attribute prefix). Small on purpose: some firmwares offer only a few KiB of variable store.
pub const CAP: usize = 1024;

const MAGIC: &str = "anemos-failure-report 1";
const END: &str = "end";
/// Longest stage name and deploy ID kept (both are short in practice).
const MAX_FIELD: usize = 100;
/// Longest single log line kept.
const MAX_LOG_LINE: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    pub deploy_id: Option<String>,
    /// The stage that failed.
    pub stage: String,
    /// The error chain, outermost first.
    pub error: Vec<String>,
    /// Whether the deploy had started writing to disks when it failed.
    pub disks_written: bool,
    /// The last log lines, oldest first.
    pub log_tail: Vec<String>,
    /// When it failed (unix seconds).
    pub time: u64,
    /// Lines the encoder dropped to stay under [`CAP`] (set by [`decode`]).
    #[serde(default)]
    pub omitted: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an anemos failure report (the first line is not {MAGIC:?})")]
    NotAReport,
    #[error(
        "the failure report is cut short (no {END:?} line): the firmware stored only part of it"
    )]
    Truncated,
    #[error("the failure report is not UTF-8 text")]
    NotText,
    #[error("the failure report has a bad line {0:?}")]
    BadLine(String),
    #[error("the failure report lacks its {0:?} line")]
    Missing(&'static str),
}

/// One line: control characters (newlines included) become spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` cut to at most `max` bytes on a character boundary, marked with "..." when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn line(key: &str, value: &str) -> String {
    format!("{key}: {value}\n")
}

/// Encodes `r` in at most [`CAP`] bytes (see the module documentation for what is dropped).
pub fn encode(r: &FailureReport) -> Vec<u8> {
    let mut head = format!("{MAGIC}\n");
    if let Some(id) = &r.deploy_id {
        head += &line("deploy_id", &cut(&clean(id), MAX_FIELD));
    }
    let stage = cut(&clean(&r.stage), MAX_FIELD);
    head += &line("stage", if stage.is_empty() { "?" } else { &stage });
    head += &line("time", &r.time.to_string());
    head += &line("disks_written", if r.disks_written { "yes" } else { "no" });
    let tail = format!("{END}\n");
    // Room for the "omitted" line, whatever its count (fewer than 10^6 lines fit in memory
    // sensibly; the count is capped so the reservation holds).
    let omitted_room = line("omitted", "999999").len();
    let mut budget = CAP - head.len() - tail.len() - omitted_room;

    let mut errors = Vec::new();
    let mut omitted = 0usize;
    for (i, e) in r.error.iter().enumerate() {
        let prefix = line("error", "").len();
        let e = clean(e);
        if i == 0 {
            // Always kept, cut to the room left (the header is bounded, so some room is).
            let l = line("error", &cut(&e, budget - prefix));
            budget -= l.len();
            errors.push(l);
        } else {
            let l = line("error", &cut(&e, MAX_LOG_LINE.max(budget / 2)));
            if l.len() <= budget {
                budget -= l.len();
                errors.push(l);
            } else {
                omitted += 1;
            }
        }
    }
    if r.error.is_empty() {
        let l = line("error", "(no error text)");
        budget -= l.len();
        errors.push(l);
    }
    // The newest log lines first, as many as fit; shown oldest first.
    let mut logs = Vec::new();
    for (n, l) in r.log_tail.iter().rev().enumerate() {
        let l = line("log", &cut(&clean(l), MAX_LOG_LINE));
        if l.len() <= budget {
            budget -= l.len();
            logs.push(l);
        } else {
            omitted += r.log_tail.len() - n;
            break;
        }
    }
    logs.reverse();
    let mut out = head;
    out.extend(errors);
    if omitted > 0 {
        out += &line("omitted", &omitted.min(999_999).to_string());
    }
    out.extend(logs);
    out += &tail;
    debug_assert!(out.len() <= CAP);
    out.into_bytes()
}

/// Decodes what [`encode`] wrote; anything else is a [`DecodeError`] saying what is wrong.
pub fn decode(data: &[u8]) -> Result<FailureReport, DecodeError> {
    let text = std::str::from_utf8(data).map_err(|_| DecodeError::NotText)?;
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(DecodeError::NotAReport);
    }
    let mut r = FailureReport {
        deploy_id: None,
        stage: String::new(),
        error: Vec::new(),
        disks_written: false,
        log_tail: Vec::new(),
        time: 0,
        omitted: 0,
    };
    let (mut stage, mut time, mut written, mut end) = (false, false, false, false);
    for l in lines {
        if end {
            return Err(DecodeError::BadLine(l.to_string()));
        }
        if l == END {
            end = true;
            continue;
        }
        let Some((k, v)) = l.split_once(": ") else {
            return Err(DecodeError::BadLine(l.to_string()));
        };
        match k {
            "deploy_id" => r.deploy_id = Some(v.to_string()),
            "stage" => (r.stage, stage) = (v.to_string(), true),
            "time" => {
                r.time = v.parse().map_err(|_| DecodeError::BadLine(l.to_string()))?;
                time = true;
            }
            "disks_written" => {
                r.disks_written = match v {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(DecodeError::BadLine(l.to_string())),
                };
                written = true;
            }
            "error" => r.error.push(v.to_string()),
            "omitted" => r.omitted = v.parse().map_err(|_| DecodeError::BadLine(l.to_string()))?,
            "log" => r.log_tail.push(v.to_string()),
            _ => return Err(DecodeError::BadLine(l.to_string())),
        }
    }
    if !end {
        return Err(DecodeError::Truncated);
    }
    for (seen, what) in [
        (stage, "stage"),
        (time, "time"),
        (written, "disks_written"),
        (!r.error.is_empty(), "error"),
    ] {
        if !seen {
            return Err(DecodeError::Missing(what));
        }
    }
    Ok(r)
}

/// The report for people: what failed, whether disks were written, the last log lines.
pub fn render(r: &FailureReport) -> String {
    let mut s = format!(
        "deploy {} failed in stage {} at {} (unix time)\n",
        r.deploy_id.as_deref().unwrap_or("(no deploy id)"),
        r.stage,
        r.time
    );
    s += if r.disks_written {
        "disks: the deploy had started writing to disks\n"
    } else {
        "disks: nothing was written\n"
    };
    for (i, e) in r.error.iter().enumerate() {
        s += &format!("{}{e}\n", if i == 0 { "error: " } else { "  caused by: " });
    }
    if r.omitted > 0 {
        s += &format!("({} lines left out to fit the size limit)\n", r.omitted);
    }
    if !r.log_tail.is_empty() {
        s += "last log lines:\n";
        for l in &r.log_tail {
            s += &format!("  {l}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FailureReport {
        FailureReport {
            deploy_id: Some("anemos-1700000000-ab12".into()),
            stage: "devices".into(),
            error: vec![
                "no disk matches rule \"system\"".into(),
                "by_id virtio-sys0 not found".into(),
            ],
            disks_written: false,
            log_tail: vec!["STAGE devices begin".into(), "waiting for disks".into()],
            time: 1_700_000_000,
            omitted: 0,
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let data = encode(&r);
        assert!(data.len() <= CAP);
        assert_eq!(decode(&data).unwrap(), r);
        let mut r2 = r.clone();
        r2.deploy_id = None;
        r2.disks_written = true;
        assert_eq!(decode(&encode(&r2)).unwrap(), r2);
    }

    #[test]
    fn newlines_in_values_stay_on_one_line() {
        let mut r = sample();
        r.error = vec!["line one\nstage: forged".into()];
        let d = decode(&encode(&r)).unwrap();
        assert_eq!(d.error, ["line one stage: forged"]);
        assert_eq!(d.stage, "devices");
    }

    #[test]
    fn cap_drops_log_lines_first_then_errors_keeps_stage_and_first_error() {
        let mut r = sample();
        r.log_tail = (0..100)
            .map(|i| format!("log line {i} {}", "x".repeat(50)))
            .collect();
        let d = decode(&encode(&r)).unwrap();
        assert_eq!(d.error, r.error, "errors kept while log lines are dropped");
        assert!(d.log_tail.len() < 100 && !d.log_tail.is_empty());
        // The newest lines are the ones kept.
        assert_eq!(d.log_tail.last(), r.log_tail.last());
        assert_eq!(d.omitted, 100 - d.log_tail.len());

        r.error = (0..50)
            .map(|i| format!("error {i} {}", "e".repeat(60)))
            .collect();
        let d = decode(&encode(&r)).unwrap();
        assert!(d.log_tail.is_empty());
        assert_eq!(d.error[0], r.error[0]);
        assert!(d.error.len() < 50);
        assert_eq!(d.stage, "devices");
    }

    #[test]
    fn never_exceeds_the_cap_whatever_the_input() {
        let huge = "é".repeat(5000);
        for (stage, id, errs, logs) in [
            (
                huge.clone(),
                Some(huge.clone()),
                vec![huge.clone()],
                vec![huge.clone(); 50],
            ),
            ("s".into(), None, vec![], vec![]),
            (
                String::new(),
                None,
                vec![huge.clone(); 100],
                vec!["x".into(); 10_000],
            ),
            (
                "\n\n".into(),
                Some("\u{0}".into()),
                vec!["\r".repeat(3000)],
                vec![],
            ),
        ] {
            let r = FailureReport {
                deploy_id: id,
                stage,
                error: errs,
                disks_written: true,
                log_tail: logs,
                time: u64::MAX,
                omitted: 0,
            };
            let data = encode(&r);
            assert!(data.len() <= CAP, "{} bytes", data.len());
            let d = decode(&data).expect("an encoded report always decodes");
            assert!(!d.stage.is_empty() && !d.error.is_empty());
        }
    }

    #[test]
    fn garbage_and_truncated_input_give_clear_errors() {
        let data = encode(&sample());
        assert_eq!(
            decode(&data[..data.len() - 10]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(decode(b""), Err(DecodeError::NotAReport));
        assert_eq!(decode(b"\x07\0\0\0garbage"), Err(DecodeError::NotAReport));
        assert_eq!(decode(&[0xff, 0xfe, 0x00]), Err(DecodeError::NotText));
        let bad = format!("{MAGIC}\nstage: x\nwhat is this\nend\n");
        assert!(matches!(
            decode(bad.as_bytes()),
            Err(DecodeError::BadLine(_))
        ));
        let missing = format!("{MAGIC}\nstage: x\ntime: 1\ndisks_written: no\nend\n");
        assert_eq!(
            decode(missing.as_bytes()),
            Err(DecodeError::Missing("error"))
        );
        let e = decode(&data[..40]).unwrap_err().to_string();
        assert!(e.contains("cut short"), "{e}");
    }

    #[test]
    fn render_names_stage_error_and_disks() {
        let s = render(&sample());
        assert!(s.contains("failed in stage devices"), "{s}");
        assert!(s.contains("error: no disk matches rule"), "{s}");
        assert!(s.contains("nothing was written"), "{s}");
        assert!(s.contains("  waiting for disks"), "{s}");
    }
}
