//! `anemos deploy` after a failed deploy: the failure report the deploy image left in the
//! server's EFI variables (see `crate::failreport`), fetched over ssh with `anemos report`.

use anyhow::Context;

use super::deploy::{sh_quote, ssh_output, upload, DeployArgs};

/// After the old system came back: fetches (and clears) the failure report the deploy image
/// left in the server's EFI variables with `anemos report --clear --json`, uploading the binary
/// again if the reboot removed it. Returns a sentence for the error message; never fails.
pub fn failure_report(a: &DeployArgs, deploy_id: &str) -> String {
    let bin = format!("{}/anemos", a.remote_dir);
    let console = "its console shows the failed stage";
    let present = ssh_output(a, &format!("test -x {}", sh_quote(&bin)));
    if !matches!(present, Ok((true, _))) {
        let reupload = std::env::current_exe()
            .context("finding this anemos binary")
            .and_then(|me| {
                ssh_output(a, &format!("mkdir -p {}", sh_quote(&a.remote_dir)))?;
                upload(a, &me, &bin)
            });
        if let Err(e) = reupload {
            return format!("the failure report could not be read ({e:#}); {console}");
        }
    }
    let out = match ssh_output(a, &format!("{} report --clear --json", sh_quote(&bin))) {
        Ok((_, out)) => out,
        Err(e) => return format!("the failure report could not be read ({e:#}); {console}"),
    };
    describe_report(&out, deploy_id)
        .unwrap_or_else(|| format!("`anemos report` gave no answer ({}); {console}", out.trim()))
}

/// Pure: the sentence for `anemos report --json` output `out` (None when it has no JSON line).
pub fn describe_report(out: &str, deploy_id: &str) -> Option<String> {
    let v: serde_json::Value = out.lines().find_map(|l| {
        serde_json::from_str(l.trim())
            .ok()
            .filter(|v: &serde_json::Value| v.get("report").is_some())
    })?;
    let r = &v["report"];
    if r.is_null() {
        return Some(match v["error"].as_str() {
            Some(e) => format!("no failure report could be read from its EFI variables ({e}); its console shows the failed stage"),
            None => "it left no failure report in the EFI variables (it failed before it could write one, or the firmware dropped it); its console shows the failed stage".to_string(),
        });
    }
    let stage = r["stage"].as_str().unwrap_or("?");
    let errors: Vec<&str> = r["error"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
        .unwrap_or_default();
    let written = if r["disks_written"].as_bool() == Some(true) {
        "disks had been written"
    } else {
        "nothing was written"
    };
    Some(match r["deploy_id"].as_str() {
        Some(id) if id == deploy_id => format!(
            "its failure report (EFI variable, now cleared): stage {stage} failed: {}; {written}",
            errors.join(": ")
        ),
        other => format!(
            "the EFI failure report found there (now cleared) is from another deploy (deploy id {}, stage {stage}), not this one",
            other.unwrap_or("none")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_sentence_attributes_only_this_deploys_report() {
        let out = r#"anemos: removed EFI variable X
{"variable":"X","report":{"deploy_id":"anemos-1-a","stage":"devices","error":["no disk","not found"],"disks_written":false,"log_tail":[],"time":1,"omitted":0},"error":null}"#;
        let s = describe_report(out, "anemos-1-a").unwrap();
        assert!(
            s.contains("stage devices failed: no disk: not found; nothing was written"),
            "{s}"
        );
        let s = describe_report(out, "anemos-2-b").unwrap();
        assert!(
            s.contains("from another deploy (deploy id anemos-1-a"),
            "{s}"
        );
        assert!(!s.contains("no disk"), "{s}");
        let none = r#"{"variable":"X","report":null,"error":null}"#;
        assert!(describe_report(none, "x")
            .unwrap()
            .contains("left no failure report"));
        let err = r#"{"variable":"X","report":null,"error":"no EFI: this machine did not boot through UEFI"}"#;
        assert!(describe_report(err, "x").unwrap().contains("no EFI"));
        assert_eq!(describe_report("sh: anemos: not found", "x"), None);
    }
}
