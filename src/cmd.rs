//! The one runner for external commands (mkfs, installers, bootloader tools).
//! Logs the quoted argv; on failure the error names the command, its exit status and the last
//! lines of its output. Children go through [`spawn`] so the reaper leaves them alone.

use std::io::Read;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use std::collections::HashSet;
use std::process::Child;
use std::sync::Mutex;

/// Children started through [`spawn`]: PID 1's reaper collects every other exited process
/// and must leave these to their owners' `wait`.
pub static TRACKED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Spawns `cmd`, registering the child so the reaper leaves it alone.
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let mut g = TRACKED.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    g.get_or_insert_with(HashSet::new).insert(child.id() as i32);
    Ok(child)
}

/// Waits for a child started with [`spawn`] and forgets it.
pub fn wait(child: &mut Child) -> std::io::Result<std::process::ExitStatus> {
    let r = child.wait();
    let mut g = TRACKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(set) = g.as_mut() {
        set.remove(&(child.id() as i32));
    }
    r
}

fn quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// Renders an argv the way a shell would accept it.
pub fn render(prog: &str, args: &[String]) -> String {
    std::iter::once(prog.to_string())
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `prog args`, capturing combined output. Fails with the tail of the output.
pub fn run(prog: &str, args: &[String]) -> Result<String> {
    let line = render(prog, args);
    log::debug!("running: {line}");
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(&mut cmd).with_context(|| format!("starting {line}"))?;
    let mut out = String::new();
    let mut err = String::new();
    let mut so = child.stdout.take();
    let mut se = child.stderr.take();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = se.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    if let Some(o) = so.as_mut() {
        let _ = o.read_to_string(&mut out);
    }
    err.push_str(&t.join().unwrap_or_default());
    let status = wait(&mut child).with_context(|| format!("waiting for {line}"))?;
    if !status.success() {
        let all = format!("{out}{err}");
        let tail: Vec<&str> = all
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!("{line} failed ({status}):\n{}", tail.join("\n"));
    }
    Ok(out)
}

/// Finds `name` in PATH.
pub fn which(name: &str) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    path.split(':')
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_failure_tail() {
        assert_eq!(
            render(
                "mkfs.ext4",
                &["-L".into(), "my root".into(), "/dev/vda1".into()]
            ),
            "mkfs.ext4 -L 'my root' /dev/vda1"
        );
        let out = run("sh", &["-c".into(), "echo hi".into()]).unwrap();
        assert_eq!(out, "hi\n");
        let e = run(
            "sh",
            &["-c".into(), "echo one; echo two >&2; exit 3".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "sh -c 'echo one; echo two >&2; exit 3' failed (exit status: 3):\none\ntwo"
            ),
            "{e}"
        );
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-tool").is_none());
    }
}
