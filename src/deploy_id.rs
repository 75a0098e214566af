//! Deploy IDs: every deploy gets a fresh one (`anemos deploy` / `anemos kexec`), the deploy
//! image receives it as `anemos.deploy_id=` and writes it into the system it deployed, and
//! `anemos deploy` calls a deploy successful only when the host answers with that ID. A host
//! that answers with another ID (or none) after a reboot is the old system back: the deploy
//! failed, whatever reports an earlier deploy left on it.

/// Where the deployed system keeps its deploy ID, relative to its root.
pub const FILE: &str = "var/log/anemos/deploy-id";

/// Where the deploy image keeps the ID of the deploy it runs (in RAM: gone at the next boot).
pub const IMAGE_FILE: &str = "/run/anemos/deploy-id";

/// Where a running Linux reports the ID of its current boot (changes at every boot, kexec
/// included).
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// A fresh deploy ID: `anemos-<unix seconds>-<8 random hex digits>`.
pub fn new() -> String {
    use rustix::rand::{getrandom, GetRandomFlags};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut b = [0u8; 4];
    if !matches!(getrandom(&mut b, GetRandomFlags::empty()), Ok(4)) {
        // No getrandom: the clock's nanoseconds still tell two deploys apart.
        b = now.subsec_nanos().to_ne_bytes();
    }
    format!("anemos-{}-{}", now.as_secs(), crate::util::hex(&b))
}

/// A deploy ID given by the operator: 1 to 64 letters, digits, `.`, `_` or `-` (it travels on
/// the kernel command line and into a file name-safe report line).
pub fn check(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 {
        return Err(format!("{id:?}: a deploy ID has 1 to 64 characters"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{id:?}: {c:?} is not allowed in a deploy ID (letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

/// The shell command `anemos deploy` runs on the host to see who answers: the boot ID and the
/// deploy ID of the running system (empty when it has none).
pub fn probe_command() -> String {
    format!(
        "printf 'boot=%s\\nid=%s\\nimage=%s\\n' \"$(cat {BOOT_ID} 2>/dev/null)\" \"$(cat /{FILE} 2>/dev/null)\" \"$(cat {IMAGE_FILE} 2>/dev/null)\""
    )
}

/// Who answered the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The same boot as before the kexec: the old system has not gone down yet.
    NotYetKexeced,
    /// A new boot carrying this deploy's ID: deployed.
    Deployed,
    /// The deploy image of this deploy is running (its ssh server answered).
    DeployImage,
    /// A new boot without this deploy's ID: the old system came back (the deploy failed), or
    /// another system answers on that address. `found` is the ID it has, if any.
    OtherSystem { found: Option<String> },
    /// The reply was not the probe's output.
    Unreadable,
}

/// Judges a probe reply, given the boot ID seen before the kexec and this deploy's ID.
pub fn judge(old_boot: &str, want: &str, reply: &str) -> Answer {
    let field = |k: &str| {
        reply
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
    };
    let (Some(boot), Some(id)) = (field("boot="), field("id=")) else {
        return Answer::Unreadable;
    };
    if boot.is_empty() {
        return Answer::Unreadable;
    }
    if id == want {
        return Answer::Deployed;
    }
    if field("image=").as_deref() == Some(want) {
        return Answer::DeployImage;
    }
    if boot == old_boot.trim() {
        return Answer::NotYetKexeced;
    }
    Answer::OtherSystem {
        found: (!id.is_empty()).then_some(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_valid_and_differ() {
        let (a, b) = (new(), new());
        assert!(check(&a).is_ok() && check(&b).is_ok(), "{a} {b}");
        assert_ne!(a, b);
        assert!(a.starts_with("anemos-"), "{a}");
    }

    #[test]
    fn check_names_the_bad_character() {
        assert!(check("web1-2026.11_30").is_ok());
        assert!(check("").unwrap_err().contains("1 to 64"));
        assert!(check(&"x".repeat(65)).unwrap_err().contains("1 to 64"));
        assert!(check("a b").unwrap_err().contains("' '"));
        assert!(check("a;reboot").unwrap_err().contains("';'"));
    }

    #[test]
    fn success_needs_this_deploys_id_not_just_a_report() {
        let old = "1111-old";
        let want = "anemos-1-abcd";
        // Before the kexec has taken effect: the same boot, an earlier deploy's ID.
        assert_eq!(
            judge(old, want, "boot=1111-old\nid=anemos-0-0000\n"),
            Answer::NotYetKexeced
        );
        // The old system rebooted (deploy failed): new boot, the earlier ID. Never success.
        assert_eq!(
            judge(old, want, "boot=2222-new\nid=anemos-0-0000\n"),
            Answer::OtherSystem {
                found: Some("anemos-0-0000".into())
            }
        );
        // ... or a system that anemos never deployed.
        assert_eq!(
            judge(old, want, "boot=2222-new\nid=\n"),
            Answer::OtherSystem { found: None }
        );
        assert_eq!(
            judge(old, want, "boot=3333\nid=anemos-1-abcd\n"),
            Answer::Deployed
        );
        // The deploy image itself, reached through the user's ssh options while it runs.
        assert_eq!(
            judge(old, want, "boot=4444\nid=\nimage=anemos-1-abcd\n"),
            Answer::DeployImage
        );
        // Another deploy's image is not this one.
        assert_eq!(
            judge(old, want, "boot=4444\nid=\nimage=anemos-9-9999\n"),
            Answer::OtherSystem { found: None }
        );
        assert_eq!(judge(old, want, "Permission denied"), Answer::Unreadable);
        assert_eq!(judge(old, want, "boot=\nid=\n"), Answer::Unreadable);
    }

    #[test]
    fn the_probe_reads_both_ids() {
        let c = probe_command();
        assert!(
            c.contains(BOOT_ID) && c.contains("/var/log/anemos/deploy-id"),
            "{c}"
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&c)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let boot = std::fs::read_to_string(BOOT_ID).unwrap();
        assert!(text.contains(&format!("boot={}", boot.trim())), "{text}");
        assert!(
            text.contains("\nid=") && text.contains("\nimage="),
            "{text}"
        );
    }
}
