//! Interfaces as sysfs shows them: discovery, MAC address, carrier wait.

use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// A network interface as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    /// `aa:bb:cc:dd:ee:ff` as in `address`.
    pub mac: String,
    /// Basename of the `device/driver` symlink; `None` for virtual interfaces.
    pub driver: Option<String>,
}

/// Interfaces under `<sysfs>/class/net` (`sysfs` is normally `/sys`), except `lo`, by name.
pub fn list_ifaces(sysfs: &Path) -> io::Result<Vec<Iface>> {
    let dir = sysfs.join("class/net");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "lo" {
            continue;
        }
        let p = dir.join(&name);
        let mac = fs::read_to_string(p.join("address"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let driver = fs::read_link(p.join("device/driver"))
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
        out.push(Iface { name, mac, driver });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Whether sysfs says the link is up: `carrier` is 1, or `operstate` is `up`.
fn link_is_up(dir: &Path) -> bool {
    let read = |f: &str| fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string());
    matches!(read("carrier").as_deref(), Ok("1"))
        || matches!(read("operstate").as_deref(), Ok("up"))
}

/// Poll `<sysfs>/class/net/<name>/{carrier,operstate}` every 50 ms until the link is up or
/// `timeout` passes. The interface must already be administratively up.
pub fn wait_link(sysfs: &Path, name: &str, timeout: Duration) -> bool {
    let dir = sysfs.join("class/net").join(name);
    let deadline = Instant::now() + timeout;
    loop {
        if link_is_up(&dir) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The MAC address of `name` from `<sysfs>/class/net/<name>/address`. An unreadable or
/// malformed file is an error naming the interface and the file: the DHCP client identifies
/// itself by this address and must not send a made-up one.
pub fn read_mac(sysfs: &Path, name: &str) -> io::Result<[u8; 6]> {
    let path = sysfs.join("class/net").join(name).join("address");
    let text = fs::read_to_string(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "interface {name}: cannot read its MAC address from {}: {e}",
                path.display()
            ),
        )
    })?;
    crate::util::mac::parse(text.trim()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "interface {name}: {} holds {:?}, not a MAC address",
                path.display(),
                text.trim()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifaces_from_fake_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let net = t.path().join("class/net");
        let mk = |name: &str, mac: &str, driver: Option<&str>| {
            let d = net.join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("address"), format!("{mac}\n")).unwrap();
            if let Some(drv) = driver {
                let target = t.path().join("bus/pci/drivers").join(drv);
                fs::create_dir_all(&target).unwrap();
                fs::create_dir_all(d.join("device")).unwrap();
                std::os::unix::fs::symlink(&target, d.join("device/driver")).unwrap();
            }
        };
        mk("lo", "00:00:00:00:00:00", None);
        mk("eth1", "52:54:00:00:00:02", Some("e1000"));
        mk("eth0", "52:54:00:12:34:56", Some("virtio_net"));
        mk("dummy0", "aa:bb:cc:dd:ee:ff", None);
        let got = list_ifaces(t.path()).unwrap();
        let want = vec![
            Iface {
                name: "dummy0".into(),
                mac: "aa:bb:cc:dd:ee:ff".into(),
                driver: None,
            },
            Iface {
                name: "eth0".into(),
                mac: "52:54:00:12:34:56".into(),
                driver: Some("virtio_net".into()),
            },
            Iface {
                name: "eth1".into(),
                mac: "52:54:00:00:00:02".into(),
                driver: Some("e1000".into()),
            },
        ];
        assert_eq!(got, want);
        assert!(list_ifaces(&t.path().join("nope")).is_err());

        // wait_link: down then up.
        let d = net.join("eth0");
        fs::write(d.join("operstate"), "down\n").unwrap();
        assert!(!wait_link(t.path(), "eth0", Duration::from_millis(120)));
        fs::write(d.join("carrier"), "1\n").unwrap();
        assert!(wait_link(t.path(), "eth0", Duration::from_millis(0)));
        fs::remove_file(d.join("carrier")).unwrap();
        fs::write(d.join("operstate"), "up\n").unwrap();
        assert!(wait_link(t.path(), "eth0", Duration::from_secs(1)));
        assert!(!wait_link(t.path(), "missing", Duration::from_millis(60)));
    }

    #[test]
    fn read_mac_names_interface_and_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("class/net/eth0");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("address"), "52:54:00:12:34:56\n").unwrap();
        assert_eq!(
            read_mac(t.path(), "eth0").unwrap(),
            [0x52, 0x54, 0, 0x12, 0x34, 0x56]
        );
        let e = read_mac(t.path(), "eth9").unwrap_err().to_string();
        assert!(
            e.starts_with("interface eth9: cannot read its MAC address from ")
                && e.contains("class/net/eth9/address"),
            "{e}"
        );
        // An empty file (or a longer, non-Ethernet address) is an error, not a zero MAC.
        fs::write(d.join("address"), "\n").unwrap();
        let e = read_mac(t.path(), "eth0").unwrap_err().to_string();
        assert!(
            e.ends_with("class/net/eth0/address holds \"\", not a MAC address"),
            "{e}"
        );
        fs::write(d.join("address"), "80:00:00:48:fe:80:00:00\n").unwrap();
        let e = read_mac(t.path(), "eth0").unwrap_err().to_string();
        assert!(e.starts_with("interface eth0: "), "{e}");
    }
}
