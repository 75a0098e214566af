//! `anemos deploy --json`: one JSON object per line on stdout for each event of a deploy, so
//! scripts and orchestrators can follow it without parsing the human messages (which still go
//! to stderr). Every object has `t_ms` (milliseconds since the deploy started) and `event`.

use serde::Serialize;

/// One event of a deploy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A numbered step began (`step` of `of`).
    Step { step: u32, of: u32, what: String },
    /// A file the server needs: `uploaded`, or `present` (same sha256 already there).
    Upload { file: String, action: &'static str },
    /// The server's plan, as `anemos kexec` printed it (nothing changed yet).
    Plan { text: String },
    /// The kexec was started with this deploy ID; `old_boot_id` identifies the old system.
    Kexec {
        deploy_id: String,
        old_boot_id: String,
    },
    /// A stage of the deploy image, as it runs (`begin`, `ok`, `fail`, `skipped`; `ms` with
    /// `ok`/`fail`), seen over its ssh server.
    Stage {
        stage: String,
        status: String,
        ms: Option<u64>,
    },
    /// Any other line of the deploy image's log (progress of long steps, the plan, errors).
    Log { line: String },
    /// The deploy image reported the deploy's end: `failed` (with the stage, the error and
    /// whether disks were written) or `done`; `next` is what it does now.
    Outcome {
        status: String,
        stage: String,
        error: Vec<String>,
        disks_written: bool,
        next: String,
    },
    /// The end: `ok` with the deploy ID, or the error.
    Result {
        ok: bool,
        host: String,
        deploy_id: Option<String>,
        error: Option<String>,
    },
}

/// Where a deploy's events go: JSON lines on stdout with `--json`, else nowhere (the human
/// messages are printed by the caller).
pub struct Events {
    json: bool,
    start: std::time::Instant,
}

#[derive(Serialize)]
struct Line<'a> {
    t_ms: u128,
    #[serde(flatten)]
    event: &'a Event,
}

impl Events {
    pub fn new(json: bool) -> Self {
        Events {
            json,
            start: std::time::Instant::now(),
        }
    }

    /// The JSON line for `e` at `t_ms`. Pure.
    pub fn line(t_ms: u128, e: &Event) -> String {
        serde_json::to_string(&Line { t_ms, event: e }).unwrap_or_else(|err| {
            format!(
                "{{\"t_ms\":{t_ms},\"event\":\"error\",\"error\":{:?}}}",
                err.to_string()
            )
        })
    }

    pub fn emit(&self, e: Event) {
        if self.json {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", Self::line(self.start.elapsed().as_millis(), &e));
            let _ = out.flush();
        }
    }

    pub fn json(&self) -> bool {
        self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_one_flat_json_object() {
        let l = Events::line(
            12,
            &Event::Step {
                step: 1,
                of: 6,
                what: "packing \"x\"".into(),
            },
        );
        assert_eq!(
            l,
            r#"{"t_ms":12,"event":"step","step":1,"of":6,"what":"packing \"x\""}"#
        );
        let l = Events::line(
            5,
            &Event::Upload {
                file: "/tmp/anemos-deploy/base.img".into(),
                action: "present",
            },
        );
        assert_eq!(
            l,
            r#"{"t_ms":5,"event":"upload","file":"/tmp/anemos-deploy/base.img","action":"present"}"#
        );
        let l = Events::line(
            900,
            &Event::Result {
                ok: false,
                host: "root@h".into(),
                deploy_id: Some("anemos-1-ab".into()),
                error: Some("line1\nline2".into()),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "result");
        assert_eq!(v["ok"], false);
        assert_eq!(v["deploy_id"], "anemos-1-ab");
        assert_eq!(v["error"], "line1\nline2");
        assert!(!l.contains('\n'), "one line: {l}");
        let l = Events::line(
            1,
            &Event::Kexec {
                deploy_id: "d".into(),
                old_boot_id: "b".into(),
            },
        );
        assert_eq!(
            l,
            r#"{"t_ms":1,"event":"kexec","deploy_id":"d","old_boot_id":"b"}"#
        );
    }

    #[test]
    fn deploy_image_events_carry_stage_timing_and_outcome() {
        let l = Events::line(
            19631,
            &Event::Stage {
                stage: "partition".into(),
                status: "ok".into(),
                ms: Some(144),
            },
        );
        assert_eq!(
            l,
            r#"{"t_ms":19631,"event":"stage","stage":"partition","status":"ok","ms":144}"#
        );
        let l = Events::line(
            3,
            &Event::Outcome {
                status: "failed".into(),
                stage: "plan".into(),
                error: vec!["disk \"system\"".into(), "no disk".into()],
                disks_written: false,
                next: "hold".into(),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "outcome");
        assert_eq!(v["error"][0], "disk \"system\"");
        assert_eq!(v["disks_written"], false);
        assert_eq!(v["next"], "hold");
        let l = Events::line(
            4,
            &Event::Log {
                line: "provision: step 3 of 5 (60%)".into(),
            },
        );
        assert_eq!(
            l,
            r#"{"t_ms":4,"event":"log","line":"provision: step 3 of 5 (60%)"}"#
        );
    }
}
