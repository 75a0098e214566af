//! The one runner for external commands (mkfs, installers, bootloader tools).
//! Logs the quoted argv; on failure the error names the command, its exit status and the last
//! lines of its output. Children go through [`spawn`] so the reaper leaves them alone.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

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

/// Runs `prog args`, capturing its stdout (returned). On failure the error carries the last
/// lines of stdout and stderr.
pub fn run(prog: &str, args: &[String]) -> Result<String> {
    let line = render(prog, args);
    log::debug!("running: {line}");
    execute(&mut Command::new(prog), args, &line, None, None)
}

/// [`run`] with `input` written to the command's stdin (e.g. an sfdisk script).
pub fn run_input(prog: &str, args: &[String], input: &[u8]) -> Result<String> {
    let line = render(prog, args);
    log::debug!("running: {line}");
    execute(&mut Command::new(prog), args, &line, None, Some(input))
}

/// Where and how a builder (installer, bootloader command) runs: its working directory,
/// environment, optional chroot, and the prefix its streamed output lines carry.
pub struct Builder<'a> {
    pub cwd: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub chroot: Option<&'a Path>,
    pub prefix: &'a str,
}

/// Runs a builder with its output streamed, line by line, to the log (and so the console)
/// with the builder's prefix. On a non-zero exit the error carries the last lines.
pub fn run_streamed(prog: &str, args: &[String], b: &Builder) -> Result<()> {
    let line = render(prog, args);
    log::info!(
        "running {line} (in {}{})",
        b.cwd.display(),
        b.chroot
            .map(|c| format!(", chroot {}", c.display()))
            .unwrap_or_default()
    );
    let mut cmd = Command::new(prog);
    cmd.current_dir(b.cwd).envs(b.env);
    if let Some(root) = b.chroot {
        chroot_child(&mut cmd, root);
    }
    execute(&mut cmd, args, &line, Some(b.prefix), None).map(|_| ())
}

/// Lines kept for the error message of a failed command.
const TAIL: usize = 20;

/// The one place that spawns, drains and waits: both pipes are read concurrently (so
/// neither can fill and block the child); with `stream` every line is logged as it arrives,
/// otherwise stdout is collected and returned. `input`, when given, is fed to stdin by a
/// thread of its own (stdin is empty otherwise).
fn execute(
    cmd: &mut Command,
    args: &[String],
    line: &str,
    stream: Option<&str>,
    input: Option<&[u8]>,
) -> Result<String> {
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn(cmd).with_context(|| format!("starting {line}"))?;
    let feeder = match (child.stdin.take(), input) {
        (Some(mut stdin), Some(data)) => {
            let data = data.to_vec();
            // A child that exits without reading it all only breaks the pipe: ignored, its
            // exit status tells.
            Some(std::thread::spawn(move || {
                let _ = std::io::Write::write_all(&mut stdin, &data);
            }))
        }
        _ => None,
    };
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL)));
    let pipes: Vec<(bool, Box<dyn Read + Send>)> = [
        child
            .stdout
            .take()
            .map(|o| (true, Box::new(o) as Box<dyn Read + Send>)),
        child
            .stderr
            .take()
            .map(|e| (false, Box::new(e) as Box<dyn Read + Send>)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let threads: Vec<_> = pipes
        .into_iter()
        .map(|(is_stdout, pipe)| {
            let tail = tail.clone();
            let prefix = stream.map(str::to_string);
            std::thread::spawn(move || {
                let mut kept = String::new();
                for l in BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                    match &prefix {
                        Some(p) => log::info!("{p}| {l}"),
                        None if is_stdout => {
                            kept.push_str(&l);
                            kept.push('\n');
                        }
                        None => {}
                    }
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == TAIL {
                            t.pop_front();
                        }
                        t.push_back(l);
                    }
                }
                kept
            })
        })
        .collect();
    let mut out = String::new();
    for t in threads {
        out.push_str(&t.join().unwrap_or_default());
    }
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let status = wait(&mut child).with_context(|| format!("waiting for {line}"))?;
    if !status.success() {
        let t: Vec<String> = tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        bail!(
            "{line} failed ({status}); its last lines:\n{}",
            t.join("\n")
        );
    }
    Ok(out)
}

/// Makes `cmd` chroot into `root` (and chdir to its `/`) in the child, before exec. std has no
/// safe way to run code between fork and exec, hence the one `unsafe` of this module.
#[allow(unsafe_code)]
fn chroot_child(cmd: &mut Command, root: &Path) {
    use std::os::unix::process::CommandExt;
    let root = root.to_path_buf();
    // SAFETY: pre_exec runs in the forked child before exec; chroot and chdir are
    // async-signal-safe syscalls and touch no shared state.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::chroot(&root)?;
            rustix::process::chdir("/")?;
            Ok(())
        });
    }
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
            &[
                "-c".into(),
                "echo one; sleep 0.2; echo two >&2; exit 3".into(),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "sh -c 'echo one; sleep 0.2; echo two >&2; exit 3' failed (exit status: 3); its last lines:\none\ntwo"
            ),
            "{e}"
        );
        assert!(which("sh").is_some());
        assert!(which("definitely-not-a-tool").is_none());
    }

    #[test]
    fn input_reaches_stdin() {
        let big = "x".repeat(200_000) + "\n";
        let out = run_input("sh", &["-c".into(), "wc -c".into()], big.as_bytes()).unwrap();
        assert_eq!(out.trim(), "200001");
        // A child that does not read its input does not block the runner.
        assert_eq!(
            run_input("sh", &["-c".into(), "echo ok".into()], big.as_bytes()).unwrap(),
            "ok\n"
        );
    }
}
