//! The built-in recovery console: enough to look around and decide, with no tools root.

use std::fs;
use std::io::Read;

use super::logger::console;
use super::pid1::PowerRequest;
use super::recovery::Action;

pub const HELP: &str = "\
commands:
  ls [DIR]            list a directory
  cat FILE            print a file
  dmesg               kernel log
  log                 the anemos log (/run/anemos/log)
  mount               list mounts
  mount DEV DIR FS    mount a filesystem (read-only)
  umount DIR          unmount
  disks               block devices with size, serial and by-id names
  sh                  /bin/sh from the tools root (if the image has one)
  retry [STAGE]       run the deploy again from STAGE (default: the failed stage)
  continue            leave the console and go on (after anemos.break)
  reboot | poweroff";

/// Runs one console command. `None` means stay in the console.
pub fn run_builtin(words: &[&str], stages: &[&str], failed: bool) -> Option<Action> {
    let (&cmd, args) = words.split_first()?;
    match cmd {
        "help" | "?" => console(HELP),
        "ls" => ls(args.first().copied().unwrap_or(".")),
        "cat" => match args.first() {
            Some(p) => match fs::read(p) {
                Ok(b) => console(String::from_utf8_lossy(&b).trim_end()),
                Err(e) => console(&format!("cat: {p}: {e}")),
            },
            None => console("usage: cat FILE"),
        },
        "dmesg" => dmesg(),
        "log" => match fs::read_to_string("/run/anemos/log") {
            Ok(s) => console(s.trim_end()),
            Err(e) => console(&format!("log: /run/anemos/log: {e}")),
        },
        "mount" if args.is_empty() => console(
            fs::read_to_string("/proc/self/mounts")
                .unwrap_or_default()
                .trim_end(),
        ),
        "mount" => mount(args),
        "umount" => match args.first() {
            Some(d) => {
                if let Err(e) = rustix::mount::unmount(*d, rustix::mount::UnmountFlags::empty()) {
                    console(&format!("umount: {d}: {e}"));
                }
            }
            None => console("usage: umount DIR"),
        },
        "disks" => disks(),
        "sh" => match super::recovery::run_tools_shell() {
            (false, _) => console("sh: this image has no /bin/sh (pack it with --rootfs)"),
            (true, Some(a)) => return Some(a),
            (true, None) => {}
        },
        "retry" => {
            if let Some(s) = args.first() {
                if !stages.contains(s) {
                    console(&format!(
                        "retry: unknown stage {s:?} (stages: {})",
                        stages.join(", ")
                    ));
                    return None;
                }
            }
            return Some(Action::Retry(args.first().map(|s| s.to_string())));
        }
        "continue" | "exit" if !failed => return Some(Action::Continue),
        "continue" | "exit" => console("the deploy failed: use `retry`, `reboot` or `poweroff`"),
        "reboot" => return Some(Action::Power(PowerRequest::Reboot)),
        "poweroff" | "halt" => return Some(Action::Power(PowerRequest::Poweroff)),
        other => console(&format!("{other}: unknown command (type `help`)")),
    }
    None
}

fn ls(dir: &str) {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .flatten()
                .map(|e| {
                    let mut n = e.file_name().to_string_lossy().into_owned();
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        n.push('/');
                    }
                    n
                })
                .collect();
            names.sort();
            console(&names.join("  "));
        }
        Err(e) => console(&format!("ls: {dir}: {e}")),
    }
}

fn dmesg() {
    // /dev/kmsg blocks at the end of the buffer; read non-blocking until EAGAIN.
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags_nonblock()
        .open("/dev/kmsg");
    let Ok(mut f) = f else {
        console("dmesg: cannot open /dev/kmsg");
        return;
    };
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        let rec = String::from_utf8_lossy(&buf[..n]);
        if let Some((_, msg)) = rec.split_once(';') {
            console(msg.trim_end());
        }
    }
}

trait NonBlock {
    fn custom_flags_nonblock(&mut self) -> &mut Self;
}
impl NonBlock for fs::OpenOptions {
    fn custom_flags_nonblock(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

fn mount(args: &[&str]) {
    let [dev, dir, fstype] = args else {
        console("usage: mount DEV DIR FSTYPE (read-only)");
        return;
    };
    let _ = fs::create_dir_all(dir);
    if let Err(e) =
        rustix::mount::mount(*dev, *dir, *fstype, rustix::mount::MountFlags::RDONLY, None)
    {
        console(&format!("mount: {dev} on {dir}: {e}"));
    }
}

fn disks() {
    let Ok(rd) = fs::read_dir("/sys/class/block") else {
        console("disks: /sys/class/block unreadable");
        return;
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        let base = format!("/sys/class/block/{n}");
        let sectors: u64 = fs::read_to_string(format!("{base}/size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let serial = fs::read_to_string(format!("{base}/serial"))
            .or_else(|_| fs::read_to_string(format!("{base}/device/serial")))
            .unwrap_or_default();
        console(&format!(
            "/dev/{n:<10} {:>10} MiB  serial={}",
            sectors * 512 / (1 << 20),
            serial.trim()
        ));
    }
    if let Ok(rd) = fs::read_dir("/dev/disk/by-id") {
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                console(&format!(
                    "  by-id/{} -> {}",
                    e.file_name().to_string_lossy(),
                    t.display()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions() {
        let st = ["modules", "payload"];
        assert_eq!(
            run_builtin(&["retry"], &st, true),
            Some(Action::Retry(None))
        );
        assert_eq!(
            run_builtin(&["retry", "payload"], &st, true),
            Some(Action::Retry(Some("payload".into())))
        );
        assert_eq!(run_builtin(&["retry", "nope"], &st, true), None);
        assert_eq!(
            run_builtin(&["continue"], &st, false),
            Some(Action::Continue)
        );
        assert_eq!(
            run_builtin(&["continue"], &st, true),
            None,
            "a failed deploy cannot just continue"
        );
        assert_eq!(
            run_builtin(&["poweroff"], &st, true),
            Some(Action::Power(PowerRequest::Poweroff))
        );
        assert_eq!(
            run_builtin(&["reboot"], &st, false),
            Some(Action::Power(PowerRequest::Reboot))
        );
        assert_eq!(run_builtin(&[], &st, false), None);
        assert_eq!(run_builtin(&["ls", "/"], &st, false), None);
    }
}
