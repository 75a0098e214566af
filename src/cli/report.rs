//! `anemos report [--clear] [--json]`: on a server whose deploy failed, shows the failure report
//! the deploy image left in an EFI variable (see `crate::failreport`), and with --clear removes
//! it. Exit status: 0 a report was shown, [`NO_REPORT`] there is none, 1 an error (no EFI, no
//! efivarfs, an unreadable variable).

use anyhow::{bail, Result};
use serde_json::json;

use crate::efivar::{self, FAILURE_VAR};
use crate::failreport::{self, FailureReport};

/// The exit status when no report is stored (2 is taken by usage errors).
pub const NO_REPORT: u8 = 3;

/// What the variable held.
enum Found {
    None,
    Report(FailureReport),
    Unreadable(String),
}

fn load() -> Result<Found> {
    if let Err(u) = efivar::ensure_mounted(true) {
        bail!("{u}");
    }
    let Some(content) = efivar::read(FAILURE_VAR).map_err(|e| {
        anyhow::anyhow!(
            "reading EFI variable {}: {e}",
            efivar::var_file(FAILURE_VAR)
        )
    })?
    else {
        return Ok(Found::None);
    };
    Ok(match efivar::strip_attributes(&content) {
        None => Found::Unreadable("the variable is empty".into()),
        Some((_, data)) => match failreport::decode(data) {
            Ok(r) => Found::Report(r),
            Err(e) => Found::Unreadable(e.to_string()),
        },
    })
}

/// Returns the exit status (0, [`NO_REPORT`] or 1).
pub fn run(clear: bool, json: bool) -> Result<u8> {
    let var = efivar::var_file(FAILURE_VAR);
    let found = match load() {
        Ok(f) => f,
        Err(e) if json => {
            println!(
                "{}",
                json!({"variable": var, "report": null, "error": format!("{e:#}")})
            );
            return Ok(1);
        }
        Err(e) => return Err(e),
    };
    let code = match &found {
        Found::None => {
            if json {
                println!(
                    "{}",
                    json!({"variable": var, "report": null, "error": null})
                );
            } else {
                println!("anemos: no failure report (no EFI variable {var})");
            }
            return Ok(NO_REPORT);
        }
        Found::Report(r) => {
            if json {
                println!("{}", json!({"variable": var, "report": r, "error": null}));
            } else {
                print!("{}", failreport::render(r));
            }
            0
        }
        Found::Unreadable(why) => {
            let msg = format!("EFI variable {var} holds no readable failure report: {why}");
            if json {
                println!("{}", json!({"variable": var, "report": null, "error": msg}));
            } else {
                eprintln!("anemos: error: {msg}");
            }
            1
        }
    };
    if clear {
        // A report, or a damaged variable: either way it is gone after this.
        efivar::delete(FAILURE_VAR)
            .map_err(|e| anyhow::anyhow!("removing EFI variable {var}: {e}"))?;
        eprintln!("anemos: removed EFI variable {var}");
    }
    Ok(code)
}
