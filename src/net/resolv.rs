//! `/etc/resolv.conf` text.

use std::net::IpAddr;

/// `/etc/resolv.conf` text: one `search` line (if any domain) and one `nameserver` line per
/// distinct server, in order. musl and glibc use only the first three servers.
pub fn resolv_conf(dns: &[IpAddr], search: &[String]) -> String {
    let mut out = String::new();
    let mut domains: Vec<&str> = Vec::new();
    for d in search.iter().map(|s| s.trim().trim_end_matches('.')) {
        if !d.is_empty() && !domains.contains(&d) {
            domains.push(d);
        }
    }
    if !domains.is_empty() {
        out.push_str("search ");
        out.push_str(&domains.join(" "));
        out.push('\n');
    }
    let mut seen: Vec<IpAddr> = Vec::new();
    for a in dns {
        if !seen.contains(a) {
            seen.push(*a);
            out.push_str(&format!("nameserver {a}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_text() {
        let dns: Vec<IpAddr> = vec![
            "10.0.2.3".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
            "10.0.2.3".parse().unwrap(),
        ];
        assert_eq!(
            resolv_conf(
                &dns,
                &[
                    "example.com".into(),
                    "lab.example.com.".into(),
                    "example.com".into()
                ]
            ),
            "search example.com lab.example.com\nnameserver 10.0.2.3\nnameserver 2001:db8::53\n"
        );
        assert_eq!(resolv_conf(&[], &[]), "");
    }
}
